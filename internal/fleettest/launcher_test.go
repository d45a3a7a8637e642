package fleettest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A worker host runs the launcher as Terraform would: each node starts on
// the live node host with the fewest nodes, in that host's network and
// private directory, with the caller's variables; stop goes to the host
// the node started on, even once that host is down; a down host gets no
// new node.
func TestNodeLauncherPlacesNodesOnNodeHosts(t *testing.T) {
	f := New(t)
	// Node hosts first: a worker host's mount namespace, made later,
	// would not hold theirs (the launcher goes around it anyway).
	a, b := f.AddHost("node-a"), f.AddHost("node-b")
	worker := f.AddHost("worker")
	l := f.NewNodeLauncher(a, b)

	script := filepath.Join(f.ConfDir("scripts"), "where.sh")
	body := `echo "$ACTION $NODE on $(ip -o -4 addr show eth0 | awk '{print $4}')"
mkdir -p "$PWD/nodes" && echo "$NODE" >>"$PWD/nodes/$ACTION"
`
	if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	launch := func(node, action string) string {
		t.Helper()
		out, err := worker.Output(Spec{Args: []string{l.Path, node, action, script}, Env: []string{"NODE=" + node, "ACTION=" + action}})
		if err != nil {
			t.Fatalf("launcher %s %s: %v", node, action, err)
		}
		return string(out)
	}
	ip := func(h *Host) string { return h.IP.String() + "/24" }
	if out := launch("n1", "start"); !strings.Contains(out, "start n1 on "+ip(a)) {
		t.Errorf("first node: %s, want it on node-a", out)
	}
	if out := launch("n2", "start"); !strings.Contains(out, "start n2 on "+ip(b)) {
		t.Errorf("second node: %s, want it on node-b, which had none", out)
	}
	l.Down(t, a)
	if out := launch("n3", "start"); !strings.Contains(out, "start n3 on "+ip(b)) {
		t.Errorf("with node-a down: %s, want node-b", out)
	}
	if out := launch("n1", "stop"); !strings.Contains(out, "stop n1 on "+ip(a)) {
		t.Errorf("stop of n1: %s, want it on node-a, where it started", out)
	}
	if out := launch("n9", "stop"); !strings.Contains(out, "never started") {
		t.Errorf("stop of a node never started: %s", out)
	}
	if got := l.Nodes(); got["n1"] != "node-a" || got["n2"] != "node-b" || got["n3"] != "node-b" || len(got) != 3 {
		t.Errorf("nodes %v", got)
	}
	// Each host's private directory saw its own nodes alone.
	for h, want := range map[*Host]string{a: "n1", b: "n2\nn3"} {
		out, err := h.Output(Spec{Args: []string{"cat", filepath.Join(h.Dir(), "nodes", "start")}})
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("%s started %q (%v), want %q", h.Name, out, err, want)
		}
	}
	if out, err := worker.Output(Spec{Args: []string{"ls", worker.Dir()}}); err != nil || strings.Contains(string(out), "nodes") {
		t.Errorf("the worker host's own directory got node files: %q %v", out, err)
	}
}
