// Package fleettest starts real servers on separate simulated hosts for
// multi-host tests: PostgreSQL, the official Temporal server on it, and an
// S3-compatible object store (Versity's S3 gateway). It knows nothing of
// Gauntlet's workflows; callers pass what is theirs (search attributes,
// dynamic config, binaries to run).
//
// A host is a network namespace with its own address on a private bridge
// plus a mount namespace in which a tmpfs at Host.Dir is private to that
// host: every host sees the same path and only its own contents there,
// so a path one host wrote is not a file on another. The bridge lives in a
// namespace of its own and no host has a default route, so nothing a test
// starts can reach, or be reached from, anything but the fleet's hosts;
// an unreachable route for the fleets' subnet in the root namespace makes
// a dial that forgot Host.DialContext fail instead of leaving the machine.
// The test process itself joins a host's network only to dial
// (Host.DialContext), which is how its clients reach the servers.
//
// Everything a test starts is stopped when it ends: processes first
// (gracefully, then by SIGKILL to every process left in each host's
// network namespace), then the namespaces and their mounts. A fleet left
// behind by a test binary that was killed is removed by the next New.
//
// The package needs root (network and mount namespaces) and the tools
// that `make tools` installs (scripts/install-fleet.sh); without them a
// test skips, and under CI=true it fails naming the missing tool.
package fleettest
