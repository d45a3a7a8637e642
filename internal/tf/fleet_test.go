package tf

import (
	"context"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

func TestStoreBackend(t *testing.T) {
	bin := terraformForTest(t)
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	for _, local := range []string{"file:///var/gauntlet/artifacts", "/var/gauntlet/artifacts", ""} {
		if cfg, err := StoreBackend(bin, local, "n"); cfg != nil || err != nil {
			t.Errorf("%q: %v %v, want local state (nil)", local, cfg, err)
		}
	}
	cfg, err := StoreBackend(bin, "s3://fleet/gauntlet/prod?region=eu-west-1&endpoint=http://10.0.0.5:7070", "run-1-gpu-ab12")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"bucket": "fleet", "key": "gauntlet/prod/terraform/run-1-gpu-ab12.tfstate", "region": "eu-west-1",
		"endpoint": "http://10.0.0.5:7070", "force_path_style": "true", "skip_credentials_validation": "true",
		"skip_region_validation": "true", "skip_metadata_api_check": "true"}
	if testkit.TerraformAtLeast(t, bin, 1, 6) {
		want["skip_requesting_account_id"] = "true"
	}
	if !mapsEqual(cfg, want) {
		t.Errorf("backend\n got %v\nwant %v", cfg, want)
	}
	// AWS itself: the SDK's environment gives the region, nothing else is
	// needed; the bucket's root holds the state when the store has no prefix.
	t.Setenv("AWS_REGION", "us-east-2")
	cfg, err = StoreBackend(bin, "s3://fleet", "n")
	if err != nil || !mapsEqual(cfg, map[string]string{"bucket": "fleet", "key": "terraform/n.tfstate", "region": "us-east-2"}) {
		t.Errorf("AWS store: %v %v", cfg, err)
	}
	t.Setenv("AWS_REGION", "")
	if _, err := StoreBackend(bin, "s3://fleet/p?secret=x", "n"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("no region: %v, want an error that leaves the query out", err)
	}
	if _, err := StoreBackend(bin, "s3://fleet/p?region=r", "a/b"); err == nil {
		t.Error("a state name with a slash was accepted")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// copyFS writes fsys into dir, as materialising a published tree does.
func copyFS(t *testing.T, fsys fs.FS, dir string) []string {
	t.Helper()
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// A node applied on one host, its state in S3, is destroyed from another
// host that has only the module as applied (Module), the backend and the
// variables: what provision keeps in the store.
func TestDestroyWithFromAnotherHost(t *testing.T) {
	bin := terraformForTest(t)
	s3 := s3mem.New()
	if err := s3.CreateBucket("fleet"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(s3, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	backend, err := StoreBackend(bin, "s3://fleet/prod?region=us-east-1&endpoint="+srv.URL, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	creds := map[string]string{"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}

	root := t.TempDir()
	script, _ := standIn(t, root, true)
	hostA := filepath.Join(root, "a")
	ws, err := New(Config{Terraform: bin, Module: "../../infra/modules/local-node", Dir: hostA, Backend: backend, Env: creds})
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]any{"node_id": "node-1", "task_queue": "q", "worker_binary": script, "temporal_address": "127.0.0.1:7233",
		"state_dir": filepath.Join(root, "state"), "log_file": filepath.Join(hostA, "worker.log")}
	out, err := ws.Apply(context.Background(), vars)
	if err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, out["pid_file"].(string))
	if _, err := s3.HeadObject("fleet", "prod/terraform/node-1.tfstate"); err != nil {
		t.Fatalf("no state in the store's bucket: %v", err)
	}

	module, err := ws.Module()
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(root, "published")
	names := copyFS(t, module, copied)
	slices.Sort(names)
	if want := []string{"main.tf", "outputs.tf", "start.sh", "stop.sh", "variables.tf", "versions.tf"}; !slices.Equal(names, want) {
		t.Errorf("Module shows %v, want the module's files alone (no state, log, vars or worker.log)", names)
	}

	other, err := New(Config{Terraform: bin, Module: copied, Dir: filepath.Join(root, "b"), Backend: backend, Env: creds})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.DestroyWith(context.Background(), vars); err != nil {
		t.Fatal(err)
	}
	if testkit.Alive(pid) {
		t.Errorf("worker %d still running after the destroy from another host", pid)
	}
}

// With a launcher, the start and stop scripts run through it: the module
// passes the node id and the action, the script, and its variables.
func TestLocalNodeLauncher(t *testing.T) {
	bin := terraformForTest(t)
	ws, vars, argsFile := localNode(t, bin)
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	launcher := filepath.Join(dir, "launcher")
	// Stands in for a launcher that would run the script on another
	// machine: it records the call and runs the script here.
	body := "#!/bin/sh\nset -eu\necho \"$1 $2 $(basename \"$3\") queue=${TASK_QUEUE-}\" >> " + calls + "\nexec /bin/sh -s < \"$3\"\n"
	if err := os.WriteFile(launcher, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	vars["launcher"] = []string{launcher}
	out, err := ws.Apply(context.Background(), vars)
	if err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, out["pid_file"].(string))
	if _, err := os.Stat(argsFile); err != nil {
		t.Fatalf("the launched worker did not start: %v", err)
	}
	if err := ws.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if testkit.Alive(pid) {
		t.Errorf("worker %d still running after destroy", pid)
	}
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "node-1 start start.sh queue=run-42-gpu\nnode-1 stop stop.sh queue=" {
		t.Errorf("launcher calls:\n%s", got)
	}
}
