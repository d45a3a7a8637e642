// Package cloud chooses where a GPU node runs: which EC2 instance types can
// hold a model, what they cost right now on the spot market, and what a run's
// nodes cost in the end. It knows nothing of Temporal or Terraform; the
// provision activity calls it and hands the chosen offer to a Terraform module.
package cloud

import (
	"fmt"
	"sort"
)

// InstanceType is one EC2 GPU instance type as the catalogue knows it.
type InstanceType struct {
	Name     string
	GPUModel string
	GPUCount int
	// GPUMemoryGB is per GPU: a model has to fit on one device, so the total
	// across GPUs would overstate what a single-GPU training step can use.
	GPUMemoryGB float64
	VCPUs       int
	// OnDemandPerHour is the us-east-1 Linux on-demand list price in USD
	// (catalogue snapshot of 2024). It is used only as the fallback price when a
	// request allows on-demand capacity; other regions are usually a little
	// dearer, so offers there are slightly under-priced by this figure.
	OnDemandPerHour float64
}

// catalogue is kept as a literal rather than fetched because the AWS Pricing
// API is a separate, large, slow endpoint and GPU shapes change rarely.
var catalogue = []InstanceType{
	{"g4dn.xlarge", "NVIDIA T4", 1, 16, 4, 0.526},
	{"g4dn.2xlarge", "NVIDIA T4", 1, 16, 8, 0.752},
	{"g4dn.4xlarge", "NVIDIA T4", 1, 16, 16, 1.204},
	{"g4dn.8xlarge", "NVIDIA T4", 1, 16, 32, 2.176},
	{"g4dn.12xlarge", "NVIDIA T4", 4, 16, 48, 3.912},
	{"g4dn.16xlarge", "NVIDIA T4", 1, 16, 64, 4.352},
	{"g5.xlarge", "NVIDIA A10G", 1, 24, 4, 1.006},
	{"g5.2xlarge", "NVIDIA A10G", 1, 24, 8, 1.212},
	{"g5.4xlarge", "NVIDIA A10G", 1, 24, 16, 1.624},
	{"g5.8xlarge", "NVIDIA A10G", 1, 24, 32, 2.448},
	{"g5.12xlarge", "NVIDIA A10G", 4, 24, 48, 5.672},
	{"g5.16xlarge", "NVIDIA A10G", 1, 24, 64, 4.096},
	{"g5.24xlarge", "NVIDIA A10G", 4, 24, 96, 8.144},
	{"g5.48xlarge", "NVIDIA A10G", 8, 24, 192, 16.288},
	{"g6.xlarge", "NVIDIA L4", 1, 24, 4, 0.8048},
	{"g6.2xlarge", "NVIDIA L4", 1, 24, 8, 0.9776},
	{"g6.4xlarge", "NVIDIA L4", 1, 24, 16, 1.3232},
	{"g6.8xlarge", "NVIDIA L4", 1, 24, 32, 2.0144},
	{"g6.12xlarge", "NVIDIA L4", 4, 24, 48, 4.6016},
	{"g6.16xlarge", "NVIDIA L4", 1, 24, 64, 3.3968},
	{"g6.24xlarge", "NVIDIA L4", 4, 24, 96, 6.6752},
	{"g6.48xlarge", "NVIDIA L4", 8, 24, 192, 13.3504},
	{"p3.2xlarge", "NVIDIA V100", 1, 16, 8, 3.06},
	{"p3.8xlarge", "NVIDIA V100", 4, 16, 32, 12.24},
	{"p3.16xlarge", "NVIDIA V100", 8, 16, 64, 24.48},
	{"p4d.24xlarge", "NVIDIA A100", 8, 40, 96, 32.7726},
	{"p5.48xlarge", "NVIDIA H100", 8, 80, 192, 98.32},
}

// Catalogue returns every known GPU instance type, sorted by name. The slice
// is a copy: callers may not change what later requests see.
func Catalogue() []InstanceType {
	out := append([]InstanceType(nil), catalogue...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the catalogue entry for an instance type name.
func Lookup(name string) (InstanceType, error) {
	for _, it := range catalogue {
		if it.Name == name {
			return it, nil
		}
	}
	return InstanceType{}, fmt.Errorf("instance type %q is not in the GPU catalogue", name)
}
