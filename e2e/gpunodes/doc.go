// Package gpunodes holds no code: its test provisions nodes through the
// real local-node Terraform module and checks that a real Prometheus,
// running the shipped gauntlet-gpu-workers job, scrapes each node while it
// lives and forgets it once it is destroyed.
package gpunodes
