package recovery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
)

const pipeline = `
name: p
params:
  data: {type: string, default: d}
  min_auc: {type: number, default: 0.7}
  note: {type: string, default: hi}
steps:
  - {id: prep, uses: echo, with: {data: "${{ params.data }}"}}
  - {id: gpu, uses: provision, needs: [prep]}
  - {id: train, uses: train, needs: [gpu], runs_on: gpu, with: {data: "${{ steps.prep.outputs.data }}"}}
  - {id: eval, uses: evaluate, needs: [train], with: {model: "${{ steps.train.outputs.model }}", min: "${{ params.min_auc }}"}}
  - {id: gate, uses: approval, needs: [eval]}
  - {id: ship, uses: echo, needs: [gate], with: {note: "${{ params.note }}"}}
finally:
  - {id: teardown, uses: destroy, with: {node: gpu}}
`

func definition(t *testing.T) contract.Resolved {
	t.Helper()
	sp, diags := spec.ParseAndValidate("p.yaml", []byte(pipeline), nil)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	params, err := spec.ResolveParams(sp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return contract.Resolved{Spec: *sp, Params: params}
}

func status(state string, steps map[string]string) contract.Status {
	st := contract.Status{RunID: "old-1", State: state}
	for _, id := range []string{"prep", "gpu", "train", "eval", "gate", "ship", "teardown"} {
		s := steps[id]
		if s == "" {
			s = contract.StatePending
		}
		st.Steps = append(st.Steps, contract.StepStatus{ID: id, State: s, Outputs: map[string]any{"of": id}})
	}
	return st
}

func reusedIDs(p *Plan) []string {
	var out []string
	for _, r := range p.Reused {
		out = append(out, r.ID)
	}
	return out
}

func TestFailedRunReusesWhatSucceededBeforeTheFailure(t *testing.T) {
	old := status(contract.RunFailed, map[string]string{"prep": "succeeded", "gpu": "succeeded", "train": "succeeded", "eval": "failed", "gate": "skipped", "ship": "skipped", "teardown": "succeeded"})
	p, err := Make(definition(t), old, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	// train ran on the old node and its outputs stand; nothing that runs
	// again runs on gpu, so no node is started.
	if got := reusedIDs(p); !reflect.DeepEqual(got, []string{"prep", "train"}) {
		t.Fatalf("reused %v", got)
	}
	if !reflect.DeepEqual(p.Rerun, []string{"eval", "gate", "ship"}) || !reflect.DeepEqual(p.NotNeeded, []string{"gpu"}) {
		t.Fatalf("rerun %v, not needed %v", p.Rerun, p.NotNeeded)
	}
	if p.Reused[1].Outputs["of"] != "train" {
		t.Fatalf("records are the old run's: %+v", p.Reused[1])
	}
}

func TestApprovalsAreNeverTakenOver(t *testing.T) {
	old := status(contract.RunFailed, map[string]string{"prep": "succeeded", "gpu": "succeeded", "train": "succeeded", "eval": "succeeded", "gate": "succeeded", "ship": "failed"})
	p, err := Make(definition(t), old, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := reusedIDs(p); !reflect.DeepEqual(got, []string{"prep", "train", "eval"}) || !reflect.DeepEqual(p.Rerun, []string{"gate", "ship"}) {
		t.Fatalf("reused %v rerun %v", got, p.Rerun)
	}
}

func TestFromRunsAStepAndWhatFollowsAgain(t *testing.T) {
	old := status(contract.RunSucceeded, map[string]string{"prep": "succeeded", "gpu": "succeeded", "train": "succeeded", "eval": "succeeded", "gate": "succeeded", "ship": "succeeded"})
	p, err := Make(definition(t), old, "train", nil)
	if err != nil {
		t.Fatal(err)
	}
	// train runs again on a new node: gpu is needed.
	if got := reusedIDs(p); !reflect.DeepEqual(got, []string{"prep"}) || !reflect.DeepEqual(p.Rerun, []string{"gpu", "train", "eval", "gate", "ship"}) || p.NotNeeded != nil {
		t.Fatalf("reused %v rerun %v not needed %v", got, p.Rerun, p.NotNeeded)
	}
}

func TestRefusals(t *testing.T) {
	def := definition(t)
	ok := map[string]string{"prep": "succeeded", "gpu": "succeeded", "train": "succeeded", "eval": "failed"}
	for name, c := range map[string]struct {
		old       contract.Status
		from      string
		overrides map[string]any
		want      string
	}{
		"running":          {status(contract.RunRunning, ok), "", nil, "run old-1 is still running: cancel it (gauntlet cancel old-1) or wait for it to end"},
		"waiting":          {status(contract.RunWaiting, ok), "", nil, "is still waiting"},
		"succeeded":        {status(contract.RunSucceeded, ok), "", nil, "run old-1 succeeded: there is nothing to retry"},
		"unknown from":     {status(contract.RunFailed, ok), "trian", nil, `--from trian: pipeline p has no step "trian" (it has prep, gpu, train, eval, gate, ship)`},
		"finally from":     {status(contract.RunFailed, ok), "teardown", nil, "finally steps always run again"},
		"reused param":     {status(contract.RunFailed, ok), "", map[string]any{"data": "other"}, "param data is read by prep, which succeeded and would be taken over as it ran; give --from prep"},
		"unknown param":    {status(contract.RunFailed, ok), "", map[string]any{"nope": 1}, `unknown param "nope"`},
		"badly typed":      {status(contract.RunFailed, ok), "", map[string]any{"min_auc": "high"}, `param "min_auc": "high" is not a number`},
		"no definition":    {status(contract.RunFailed, ok), "", nil, ""},
		"everything taken": {status(contract.RunFailed, map[string]string{"prep": "succeeded", "gpu": "succeeded", "train": "succeeded", "eval": "succeeded", "gate": "failed"}), "", nil, ""},
	} {
		t.Run(name, func(t *testing.T) {
			d := def
			if name == "no definition" {
				d = contract.Resolved{}
				c.want = "run old-1 has no definition to recover"
			}
			_, err := Make(d, c.old, c.from, c.overrides)
			if name == "everything taken" {
				// The approval runs again: never nothing to do.
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var re *Error
			if !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestParamsMayChangeForStepsThatRunAgain(t *testing.T) {
	old := status(contract.RunFailed, map[string]string{"prep": "succeeded", "gpu": "succeeded", "train": "succeeded", "eval": "failed"})
	p, err := Make(definition(t), old, "", map[string]any{"min_auc": "0.65", "note": "bye"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Params["min_auc"] != 0.65 || p.Params["note"] != "bye" || p.Params["data"] != "d" {
		t.Fatalf("params %v", p.Params)
	}
	// The same value as before is no change, even for a reused step.
	if _, err := Make(definition(t), old, "", map[string]any{"data": "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Make(definition(t), old, "prep", map[string]any{"data": "other"}); err != nil {
		t.Fatalf("--from the reader lets it change: %v", err)
	}
}

func TestCheckFindsMissingArtifactsAndOtherStores(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := artifact.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := store.Put(ctx, strings.NewReader("fold 0"))
	if err != nil {
		t.Fatal(err)
	}
	kept := artifact.PointerTo(store, artifact.KindBlob, info.Digest).String()
	gone := artifact.PointerTo(store, artifact.KindBlob, artifact.DigestBytes([]byte("deleted"))).String()
	records := []contract.StepStatus{
		{ID: "split", Outputs: map[string]any{"folds": []any{map[string]any{"train": kept, "test": gone}}, "k": 1.0}},
		{ID: "train", Outputs: map[string]any{"model": []any{kept, nil, "/a/local/path"}}},
	}
	ps := Pointers(records)
	if len(ps) != 3 || ps[0].Output != "folds[0].test" || ps[1].Output != "folds[0].train" || ps[2].Output != "model[0]" {
		t.Fatalf("pointers %+v", ps)
	}
	err = Check(ctx, store, records)
	if err == nil || !strings.Contains(err.Error(), "step split's output folds[0].test ("+string(artifact.DigestBytes([]byte("deleted")))+")") {
		t.Fatalf("got %v", err)
	}
	if err := Check(ctx, store, records[1:]); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "blobs", "sha256", info.Digest.Hex())); err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, store, records[1:]); err == nil || !strings.Contains(err.Error(), "step train's output model[0]") {
		t.Fatalf("a deleted blob: %v", err)
	}
	other := []contract.StepStatus{{ID: "x", Outputs: map[string]any{"m": "file:///elsewhere/blobs/sha256/" + info.Digest.Hex()}}}
	if err := Check(ctx, store, other); err == nil || !strings.Contains(err.Error(), "another store") {
		t.Fatalf("another store: %v", err)
	}
}
