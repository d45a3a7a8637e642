package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

// s3Fleet is an S3 store (gofakes3 over HTTP) that hosts share, with the
// URL a worker is given.
func s3Fleet(t *testing.T) (*artifacttest.FakeS3, string) {
	t.Helper()
	f := artifacttest.NewFakeS3(t)
	return f, "s3://" + artifacttest.Bucket + "/fleet?region=us-east-1&endpoint=" + f.Server.URL
}

func localNodeWorker(t *testing.T) {
	t.Helper()
	terraformForTest(t)
	script, _ := fakeWorker(t)
	t.Setenv(EnvWorkerBinary, script)
	t.Setenv(envTemporalAddress, "127.0.0.1:7999")
}

// A node provisioned by a worker on host A is destroyed by a worker on
// host B that shares only the store: B finds the record, the module as
// applied and the state in the store's bucket, and the node's worker stops.
func TestNodeDestroyedFromAnotherHost(t *testing.T) {
	localNodeWorker(t)
	fake, store := s3Fleet(t)
	a, b := newHostEnv(t, store), newHostEnv(t, store)
	id := nodeID("run-1", "gpu")
	killNodeOnCleanup(t, id)

	out := mustRun(t, a, "provision", "gpu", map[string]any{"vars": map[string]any{"stop_timeout_seconds": 5}})
	if !slices.Contains(fake.Keys(t), "fleet/terraform/"+id+".tfstate") {
		t.Errorf("no Terraform state in the store's bucket: %v", fake.Keys(t))
	}
	rec, err := loadNodeRecord(context.Background(), b.Artifacts().Store(), id)
	if err != nil || rec == nil {
		t.Fatalf("host B reads no record: %v %v", rec, err)
	}
	if rec.Backend["bucket"] != artifacttest.Bucket || rec.Config == "" || rec.Vars["node_id"] != id || rec.Workdir != nodeWorkdir(a.state, "run-1", "gpu") {
		t.Errorf("record %+v", rec)
	}
	pids := nodeProcesses(t, id)
	if len(pids) != 1 {
		t.Fatalf("node workers %v, want one", pids)
	}
	if out["task_queue"] != "gauntlet-node-"+id {
		t.Errorf("outputs %v", out)
	}

	d := mustRun(t, b, "destroy", "teardown", map[string]any{"node": "gpu"})
	if d["destroyed"] != true || d["node_id"] != id {
		t.Fatalf("destroy on host B = %v", d)
	}
	if testkit.Alive(pids[0]) {
		t.Errorf("node worker %d still running after host B's destroy", pids[0])
	}
	if _, err := os.Stat(filepath.Join(nodeWorkdir(b.state, "run-1", "gpu"), "main.tf")); err != nil {
		t.Errorf("host B did not destroy with the module as applied: %v", err)
	}
	// Host A, whose working directory is stale, sees it destroyed.
	again := mustRun(t, a, "destroy", "teardown", map[string]any{"node": id})
	if again["destroyed"] != false || !strings.Contains(fmt.Sprint(again["reason"]), "already destroyed") || again["seconds"] != d["seconds"] {
		t.Errorf("destroy again on host A = %v, first %v", again, d)
	}
}

// A retried provision on another host applies the configuration the first
// attempt applied, from the store, even though the module's source has
// changed since; the node keeps its start time.
func TestProvisionRetryOnAnotherHostAppliesTheRecordedModule(t *testing.T) {
	terraformForTest(t)
	_, store := s3Fleet(t)
	module := t.TempDir()
	write := func(version string) {
		src := `variable "node_id" { type = string }
variable "task_queue" { type = string }
resource "terraform_data" "node" { input = var.node_id }
output "version" { value = "` + version + `" }
output "task_queue" { value = var.task_queue }
`
		if err := os.WriteFile(filepath.Join(module, "main.tf"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1")
	with := map[string]any{"module": module}
	first := mustRun(t, newHostEnv(t, store), "provision", "gpu", with)
	write("2")
	retry := mustRun(t, newHostEnv(t, store), "provision", "gpu", with)
	if v := retry["module_outputs"].(map[string]any)["version"]; v != "1" || retry["started_at"] != first["started_at"] {
		t.Errorf("retry on another host: version %v, started %v (first %v); want the recorded module's 1 and the first start", v, retry["started_at"], first["started_at"])
	}
	d := mustRun(t, newHostEnv(t, store), "destroy", "teardown", map[string]any{"node": "gpu"})
	if d["destroyed"] != true {
		t.Errorf("destroy from a third host = %v", d)
	}
}

// A file:// store keeps the state with the worker that applied the node:
// another worker says where it is rather than report the node gone.
func TestLocalStateOnAnotherHostIsRefused(t *testing.T) {
	localNodeWorker(t)
	store := "file://" + filepath.Join(t.TempDir(), "store")
	a, b := newHostEnv(t, store), newHostEnv(t, store)
	id := nodeID("run-1", "gpu")
	killNodeOnCleanup(t, id)
	mustRun(t, a, "provision", "gpu", nil)
	_, err := run(t, b, "destroy", "teardown", map[string]any{"node": "gpu"})
	wantPermanent(t, err, id, nodeWorkdir(a.state, "run-1", "gpu"), "s3://")
	if d := mustRun(t, a, "destroy", "teardown", map[string]any{"node": "gpu"}); d["destroyed"] != true {
		t.Errorf("destroy on the host that applied it = %v", d)
	}
}

// A node provisioned before records moved into the store has its
// node.json alone; destroy still finds it there, by step id or workdir.
func TestLegacyNodeRecordIsDestroyed(t *testing.T) {
	localNodeWorker(t)
	state := t.TempDir()
	id := nodeID("run-1", "gpu")
	killNodeOnCleanup(t, id)
	mustRun(t, newEnv(t, state), "provision", "gpu", nil)
	pids := nodeProcesses(t, id)
	if len(pids) != 1 {
		t.Fatalf("node workers %v", pids)
	}
	// The same host with a store that has never heard of the node: what a
	// worker upgraded under a running node sees.
	other := newHostEnv(t, "file://"+filepath.Join(t.TempDir(), "new-store"))
	other.state = state
	d := mustRun(t, other, "destroy", "teardown", map[string]any{"node": nodeWorkdir(state, "run-1", "gpu")})
	if d["destroyed"] != true || d["node_id"] != id || testkit.Alive(pids[0]) {
		t.Errorf("legacy destroy = %v, worker alive %v", d, testkit.Alive(pids[0]))
	}
	again := mustRun(t, other, "destroy", "teardown", map[string]any{"node": "gpu"})
	if again["destroyed"] != false || !strings.Contains(fmt.Sprint(again["reason"]), "already destroyed") {
		t.Errorf("legacy destroy again by step id = %v", again)
	}
}
