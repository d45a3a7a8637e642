// Package searchattr names the custom search attributes Gauntlet writes, so
// the dev stack, the worker and the CLI agree on them.
package searchattr

import (
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// Keys as typed SDK keys, for workflows that upsert them.
var (
	Pipeline     = temporal.NewSearchAttributeKeyKeyword("GauntletPipeline")
	RunStatus    = temporal.NewSearchAttributeKeyKeyword("GauntletStatus")
	ModelVersion = temporal.NewSearchAttributeKeyKeyword("GauntletModelVersion")
	SpecHash     = temporal.NewSearchAttributeKeyKeyword("GauntletSpecHash")
	Approval     = temporal.NewSearchAttributeKeyKeyword("GauntletApproval")
	// RetryOf is the run a recovered run recovers (gauntlet retry).
	RetryOf = temporal.NewSearchAttributeKeyKeyword("GauntletRetryOf")
)

// Definitions lists every custom attribute with its index type; a namespace
// must have all of them registered before a workflow may upsert one.
func Definitions() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		Pipeline.GetName():     enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		RunStatus.GetName():    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		ModelVersion.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SpecHash.GetName():     enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		Approval.GetName():     enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		RetryOf.GetName():      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	}
}
