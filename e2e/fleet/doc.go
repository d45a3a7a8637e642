// Package fleet holds no code: its tests run Gauntlet's production topology
// on simulated hosts (internal/fleettest) with the real parts, no Docker:
// PostgreSQL and the official Temporal server set up by the compose file's
// own scripts (deploy/temporal), the worker as a separate process on
// another host and the CLI on a third.
package fleet
