package steps

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/cloud"
	"github.com/gauntlet-ml/gauntlet/internal/tf"
)

// fakePrices answers spot price queries from a table by region.
type fakePrices struct {
	mu     sync.Mutex
	table  map[string][]cloud.SpotPrice
	called int
}

func (f *fakePrices) Latest(_ context.Context, region string, types []string) ([]cloud.SpotPrice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called++
	var out []cloud.SpotPrice
	for _, p := range f.table[region] {
		if slices.Contains(types, p.InstanceType) {
			out = append(out, p)
		}
	}
	return out, nil
}

func usePrices(t *testing.T, p cloud.SpotPrices) {
	t.Helper()
	old := spotPrices
	spotPrices = func(context.Context) (cloud.SpotPrices, error) { return p, nil }
	t.Cleanup(func() { spotPrices = old })
}

// fakeCloudModule declares the variables of aws-spot-gpu that provision
// sets, and plays EC2 with terraform_data: launching the type in full
// fails the way AWS reports a capacity shortage.
func fakeCloudModule(t *testing.T, full string) string {
	t.Helper()
	dir := t.TempDir()
	src := `variable "node_id" { type = string }
variable "task_queue" { type = string }
variable "region" { type = string }
variable "instance_types" { type = list(string) }
variable "availability_zone" { type = string }
variable "max_price_per_hour" { type = number }
variable "gpu_description" {
  type    = string
  default = ""
}

resource "terraform_data" "node" {
  triggers_replace = [var.instance_types[0], var.availability_zone]
  provisioner "local-exec" {
    command = "if [ \"$TYPE\" = \"$FULL\" ]; then echo \"Error: InsufficientInstanceCapacity: no $TYPE in $ZONE\" >&2; exit 1; fi; echo launched $TYPE in $ZONE"
    environment = {
      TYPE = var.instance_types[0]
      ZONE = var.availability_zone
      FULL = "` + full + `"
    }
  }
}

output "node_id" { value = var.node_id }
output "task_queue" { value = var.task_queue }
output "gpu_description" { value = var.gpu_description }
output "launched" { value = "${var.instance_types[0]}@${var.availability_zone}/${var.region}" }
`
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestProvisionCloudOfferFallsBackOnCapacity(t *testing.T) {
	terraformForTest(t)
	prices := &fakePrices{table: map[string][]cloud.SpotPrice{
		"us-west-2": {
			{AvailabilityZone: "us-west-2b", InstanceType: "g6.xlarge", PricePerHour: 0.25},
			{AvailabilityZone: "us-west-2a", InstanceType: "g4dn.xlarge", PricePerHour: 0.33},
			{AvailabilityZone: "us-west-2c", InstanceType: "g4dn.xlarge", PricePerHour: 0.36},
			{AvailabilityZone: "us-west-2a", InstanceType: "g5.xlarge", PricePerHour: 0.90},
		},
		"us-east-1": {{AvailabilityZone: "us-east-1a", InstanceType: "g4dn.xlarge", PricePerHour: 0.31}},
	}}
	usePrices(t, prices)
	env := newEnv(t, t.TempDir())
	with := map[string]any{"module": fakeCloudModule(t, "g6.xlarge"), "gpu_memory_gb": 16, "max_price_per_hour": 0.5,
		"regions": []any{"us-east-1", "us-west-2"}, "instance_types": "g6.xlarge,g4dn.xlarge,g5.xlarge"}

	out := mustRun(t, env, "provision", "gpu", with)
	// us-west-2 holds the cheapest offer; g6 has no capacity, so the next
	// type there runs, not the cheaper g4dn of us-east-1.
	if got := out["module_outputs"].(map[string]any)["launched"]; got != "g4dn.xlarge@us-west-2a/us-west-2" {
		t.Errorf("launched %v, want g4dn.xlarge@us-west-2a/us-west-2", got)
	}
	if out["price_per_hour"] != 0.33 {
		t.Errorf("price_per_hour = %v, want 0.33", out["price_per_hour"])
	}
	if gpu := fmt.Sprint(out["gpu"]); !strings.Contains(gpu, "NVIDIA T4") || !strings.Contains(gpu, "g4dn.xlarge") {
		t.Errorf("gpu = %q", gpu)
	}
	if offer, _ := out["offer"].(map[string]any); offer["instance_type"] != "g4dn.xlarge" || offer["market"] != "spot" {
		t.Errorf("offer = %v", out["offer"])
	}
	if log := readOut(t, env, out["terraform_log"]); !strings.Contains(string(log), "InsufficientInstanceCapacity") {
		t.Errorf("the log does not show the capacity failure:\n%s", log)
	}

	// A retry applies what the node's record kept, whatever the market says now.
	prices.table["us-west-2"] = []cloud.SpotPrice{{AvailabilityZone: "us-west-2a", InstanceType: "g5.xlarge", PricePerHour: 0.05}}
	calls := prices.called
	again := mustRun(t, env, "provision", "gpu", with)
	if again["price_per_hour"] != 0.33 || again["started_at"] != out["started_at"] || prices.called != calls {
		t.Errorf("retry re-chose the offer: %v (price queries %d → %d)", again, calls, prices.called)
	}

	d := mustRun(t, env, "destroy", "teardown", map[string]any{"node": "gpu"})
	secs, _ := d["seconds"].(float64)
	if d["destroyed"] != true || math.Abs(d["cost_usd"].(float64)-0.33*secs/3600) > 1e-12 {
		t.Errorf("destroy = %v, want cost 0.33/h × %g s", d, secs)
	}
}

func TestProvisionNoOfferIsRetryable(t *testing.T) {
	usePrices(t, &fakePrices{table: map[string][]cloud.SpotPrice{
		"us-east-1": {{AvailabilityZone: "us-east-1a", InstanceType: "g4dn.xlarge", PricePerHour: 0.31}},
	}})
	// Offers are chosen before Terraform runs; any executable passes tf.Find.
	t.Setenv(tf.EnvTerraform, "/bin/true")
	env := newEnv(t, t.TempDir())
	_, err := run(t, env, "provision", "gpu", map[string]any{"module": "aws-spot-gpu", "max_price_per_hour": 0.1, "regions": "us-east-1"})
	if err == nil || !strings.Contains(err.Error(), "no eligible GPU offer") {
		t.Fatalf("err = %v, want no eligible offer", err)
	}
	if kind, retryable := Classify(err); kind != kindNoOffer || !retryable {
		t.Errorf("classified %s retryable=%v, want %s retryable", kind, retryable, kindNoOffer)
	}
}
