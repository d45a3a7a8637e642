package fleettest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// NodeLauncher places the local nodes a fleet's workers provision on node
// hosts, the way a cloud places instances on machines: it is the program
// infra/modules/local-node runs as its launcher (GAUNTLET_NODE_LAUNCHER),
// called as
//
//	LAUNCHER NODE_ID start|stop SCRIPT
//
// with the script's variables in its environment. Start picks the live
// node host running the fewest nodes (the first on a tie), remembers it,
// and runs SCRIPT there with /bin/sh; stop runs SCRIPT on the host that
// node was started on, so the stop script finds the pid file the start
// script wrote. A host marked Down (its power was cut) gets no new nodes.
//
// The launcher runs inside a worker host, whose mount namespace cannot
// hold the node hosts' (the kernel does not copy a mount namespace's file
// into a namespace made after it), so it steps back into the test
// process's namespaces first: the stand-in for a cloud's control plane,
// which reaches machines the worker's network cannot.
type NodeLauncher struct {
	// Path is the launcher program, on the filesystem every host shares.
	Path string
	reg  string
}

// NewNodeLauncher writes a launcher for hosts, in the order it prefers
// them.
func (f *Fleet) NewNodeLauncher(hosts ...*Host) *NodeLauncher {
	f.t.Helper()
	nsenter := f.nsenter
	dir := f.ConfDir("node-launcher")
	l := &NodeLauncher{Path: filepath.Join(dir, "launch"), reg: filepath.Join(dir, "nodes")}
	if err := os.MkdirAll(l.reg, 0o755); err != nil {
		f.t.Fatalf("fleettest: %v", err)
	}
	var names, cases []string
	for _, h := range hosts {
		names = append(names, h.Name)
		cases = append(cases, fmt.Sprintf("%s) net=%s mnt=%s ;;", h.Name, shQuote(filepath.Join("/run/netns", h.ns)), shQuote(h.mnt)))
	}
	script := `#!/bin/sh
# fleettest node launcher: LAUNCHER NODE_ID start|stop SCRIPT (see NodeLauncher).
set -eu
node=$1 action=$2 script=$3
reg=` + shQuote(l.reg) + `
case $action in start | stop) ;; *) echo "launcher: action $action: want start or stop" >&2; exit 2 ;; esac
exec 9>"$reg/.lock"
flock 9
if [ -f "$reg/$node" ]; then
  host=$(cat "$reg/$node")
elif [ "$action" = stop ]; then
  echo "launcher: node $node was never started: nothing to stop"
  exit 0
else
  host= best=
  for h in ` + strings.Join(names, " ") + `; do
    [ -e "$reg/down-$h" ] && continue
    n=$(grep -lx "$h" "$reg"/* 2>/dev/null | wc -l)
    if [ -z "$best" ] || [ "$n" -lt "$best" ]; then host=$h best=$n; fi
  done
  [ -n "$host" ] || { echo "launcher: no node host is up for node $node" >&2; exit 1; }
  echo "$host" >"$reg/$node"
fi
flock -u 9
case $host in
` + strings.Join(cases, "\n") + `
*) echo "launcher: unknown host $host" >&2; exit 1 ;;
esac
echo "launcher: node $node $action on host $host"
exec ` + shQuote(nsenter) + ` --mount=/proc/` + strconv.Itoa(os.Getpid()) + `/ns/mnt -- \
  ` + shQuote(nsenter) + ` --net="$net" --mount="$mnt" -- ` + shQuote(f.env) + ` --chdir=` + shQuote(f.Dir()) + ` /bin/sh -s <"$script"
`
	if err := os.WriteFile(l.Path, []byte(script), 0o755); err != nil {
		f.t.Fatalf("fleettest: %v", err)
	}
	return l
}

// Down marks h as gone: no node starts there any more. Its nodes stay
// recorded there, so stopping one still goes to it.
func (l *NodeLauncher) Down(t testing.TB, h *Host) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(l.reg, "down-"+h.Name), nil, 0o644); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
}

// HostOf names the host node was started on, "" if none.
func (l *NodeLauncher) HostOf(node string) string {
	b, err := os.ReadFile(filepath.Join(l.reg, node))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Nodes maps every node started so far to its host.
func (l *NodeLauncher) Nodes() map[string]string {
	out := map[string]string{}
	entries, _ := os.ReadDir(l.reg)
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") && !strings.HasPrefix(n, "down-") {
			out[n] = l.HostOf(n)
		}
	}
	return out
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
