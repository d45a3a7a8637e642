// Package workflows holds Gauntlet's Temporal workflow code and nothing else:
// the Pipeline DAG interpreter and the steps carried out in workflow code.
// Everything here obeys Temporal's determinism rules; maths, I/O and infra
// logic live in plain packages called through activities.
package workflows
