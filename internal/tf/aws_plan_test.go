package tf

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

// machineMirror is where this project's machines carry the AWS provider,
// unpacked as `terraform providers mirror` lays it out; $GAUNTLET_PROVIDER_MIRROR
// (the variable provision reads) names another.
const machineMirror = "/opt/tf-plugins"

// awsMirror returns a provider mirror holding hashicorp/aws, or skips the
// test. Not a tool `make tools` can install: providers come from a registry
// these machines cannot reach, so where no mirror exists the test cannot
// run at all, and the skip is listed with its reason like the GPU test's.
func awsMirror(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{os.Getenv("GAUNTLET_PROVIDER_MIRROR"), machineMirror} {
		if dir == "" {
			continue
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "registry.terraform.io", "hashicorp", "aws", "*")); len(m) > 0 {
			return dir
		}
	}
	t.Skip("no provider mirror with hashicorp/aws in $GAUNTLET_PROVIDER_MIRROR or " + machineMirror +
		" (fill one with `terraform providers mirror` where the registry is reachable)")
	return ""
}

// awsPlanner is a copy of the aws-spot-gpu module initialised against the
// mirror, with credentials and account lookups turned off by an override
// file, so that `terraform plan` runs the real provider's schema and
// validation without reaching AWS: nothing in the module reads AWS at plan
// time (the policy documents are computed locally).
type awsPlanner struct {
	bin, dir string
	env      []string
}

func newAWSPlanner(t *testing.T) *awsPlanner {
	t.Helper()
	bin, err := Find("")
	if err != nil {
		testkit.Need(t, "%v", err)
	}
	mirror := awsMirror(t)
	dir := t.TempDir()
	files, _ := filepath.Glob(filepath.Join(modulesDir, "aws-spot-gpu", "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	override := `provider "aws" {
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
}
`
	rc := "provider_installation {\n  filesystem_mirror {\n    path    = " + strconv.Quote(mirror) + "\n    include = [\"*/*/*\"]\n  }\n}\n"
	for name, body := range map[string]string{"provider_override.tf": override, "cli.tfrc": rc} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := &awsPlanner{bin: bin, dir: dir, env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "CHECKPOINT_DISABLE=1",
		"TF_CLI_CONFIG_FILE=" + filepath.Join(dir, "cli.tfrc"), "TF_IN_AUTOMATION=1"}}
	if out, err := p.terraform("init", "-input=false", "-no-color"); err != nil {
		t.Fatalf("terraform init: %v\n%s", err, out)
	}
	if out, err := p.terraform("validate", "-no-color"); err != nil {
		t.Fatalf("terraform validate: %v\n%s", err, out)
	}
	return p
}

func (p *awsPlanner) terraform(args ...string) ([]byte, error) {
	cmd := exec.CommandContext(context.Background(), p.bin, args...)
	cmd.Dir, cmd.Env = p.dir, p.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// plan plans the module with vars over a valid base and returns `terraform
// show -json` of the plan, or the plan's error output.
func (p *awsPlanner) plan(t *testing.T, vars map[string]any) (map[string]any, string) {
	t.Helper()
	all := map[string]any{
		"node_id": "run-1-gpu-ab12cd34", "task_queue": "gauntlet-node-run-1-gpu-ab12cd34", "temporal_address": "temporal.internal:7233",
		"region": "us-east-1", "instance_types": []string{"g5.xlarge"}, "subnet_ids": map[string]string{"us-east-1a": "subnet-0123"},
		"vpc_id": "vpc-0123", "ami_id": "ami-0123", "max_price_per_hour": 1.2, "worker_url": "s3://bucket/worker",
		"artifact_bucket": "bucket", "artifact_prefix": "runs/run-1/",
	}
	for k, v := range vars {
		all[k] = v
	}
	b, _ := json.Marshal(all)
	if err := os.WriteFile(filepath.Join(p.dir, "test.tfvars.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := p.terraform("plan", "-input=false", "-no-color", "-var-file=test.tfvars.json", "-out=plan.bin"); err != nil {
		return nil, string(out)
	}
	out, err := p.terraform("show", "-json", "plan.bin")
	if err != nil {
		t.Fatalf("terraform show: %v\n%s", err, out)
	}
	var plan map[string]any
	if err := json.Unmarshal(out, &plan); err != nil {
		t.Fatal(err)
	}
	return plan, ""
}

func planned(t *testing.T, plan map[string]any, typ string) map[string]any {
	t.Helper()
	for _, r := range plan["resource_changes"].([]any) {
		rc := r.(map[string]any)
		if rc["type"] == typ {
			return rc["change"].(map[string]any)
		}
	}
	t.Fatalf("plan creates no %s", typ)
	return nil
}

// workerCommand is the worker's ExecStart line from the planned user data.
func workerCommand(t *testing.T, plan map[string]any) string {
	t.Helper()
	ud, err := base64.StdEncoding.DecodeString(planned(t, plan, "aws_launch_template")["after"].(map[string]any)["user_data"].(string))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(ud), "ExecStart=")
	if !ok {
		t.Fatalf("user data has no ExecStart:\n%s", ud)
	}
	line, _, _ := strings.Cut(rest, "\n")
	return line
}

// The metrics port is open to the monitoring network alone, and only when
// there is one; the worker then serves metrics there and the module tells
// provision where to scrape it.
func TestAWSSpotGPUModulePlansMetricsForTheMonitoringNetworkOnly(t *testing.T) {
	p := newAWSPlanner(t)

	closed, errOut := p.plan(t, nil)
	if closed == nil {
		t.Fatalf("plan without monitoring failed:\n%s", errOut)
	}
	if in, _ := planned(t, closed, "aws_security_group")["after"].(map[string]any)["ingress"].([]any); len(in) != 0 {
		t.Errorf("without a monitoring network the node admits %v", in)
	}
	if cmd := workerCommand(t, closed); strings.Contains(cmd, "--metrics-addr") {
		t.Errorf("without a monitoring network the worker serves metrics: %s", cmd)
	}
	if out := closed["output_changes"].(map[string]any)["metrics_endpoint"].(map[string]any); out["after"] != "" {
		t.Errorf("metrics_endpoint without monitoring = %v, want empty", out)
	}

	open, errOut := p.plan(t, map[string]any{"monitoring_cidr_blocks": []string{"10.20.0.0/16"}, "monitoring_security_group_ids": []string{"sg-0abc123"}})
	if open == nil {
		t.Fatalf("plan with monitoring failed:\n%s", errOut)
	}
	in, _ := planned(t, open, "aws_security_group")["after"].(map[string]any)["ingress"].([]any)
	if len(in) != 1 {
		t.Fatalf("ingress %v, want one rule", in)
	}
	rule := in[0].(map[string]any)
	if rule["from_port"] != 9464.0 || rule["to_port"] != 9464.0 || rule["protocol"] != "tcp" ||
		!slices.Equal(strs(rule["cidr_blocks"]), []string{"10.20.0.0/16"}) || !slices.Equal(strs(rule["security_groups"]), []string{"sg-0abc123"}) ||
		len(strs(rule["ipv6_cidr_blocks"])) != 0 || rule["self"] != false {
		t.Errorf("ingress rule %v, want tcp 9464 from 10.20.0.0/16 and sg-0abc123 only", rule)
	}
	if cmd := workerCommand(t, open); !strings.Contains(cmd, "--metrics-addr ':9464'") {
		t.Errorf("worker command does not serve metrics on the opened port: %s", cmd)
	}
	// The private address exists only after apply.
	if out := open["output_changes"].(map[string]any)["metrics_endpoint"].(map[string]any); out["after_unknown"] != true {
		t.Errorf("metrics_endpoint with monitoring = %v, want the instance's address, known after apply", out)
	}

	for _, bad := range []struct {
		vars map[string]any
		want string
	}{
		{map[string]any{"monitoring_cidr_blocks": []string{"0.0.0.0/0"}}, "never a /0"},
		{map[string]any{"monitoring_cidr_blocks": []string{"10.20.0.0"}}, "IPv4 CIDR blocks"},
		{map[string]any{"monitoring_security_group_ids": []string{"prometheus"}}, "security group ids"},
		{map[string]any{"monitoring_cidr_blocks": []string{"10.20.0.0/16"}, "metrics_port": 0}, "metrics_port"},
	} {
		if plan, errOut := p.plan(t, bad.vars); plan != nil || !strings.Contains(errOut, bad.want) {
			t.Errorf("%v: plan succeeded or its error lacks %q:\n%s", bad.vars, bad.want, errOut)
		}
	}
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		out = append(out, e.(string))
	}
	return out
}

// The node's role may read and write the fleet's store under its prefix,
// and list only that prefix; without an S3 store it gets no store grant.
func TestAWSSpotGPUModuleGrantsTheStorePrefix(t *testing.T) {
	p := newAWSPlanner(t)
	statements := func(plan map[string]any) map[string]map[string]any {
		t.Helper()
		doc := planned(t, plan, "aws_iam_role_policy")["after"].(map[string]any)["policy"].(string)
		var policy struct {
			Statement []map[string]any
		}
		if err := json.Unmarshal([]byte(doc), &policy); err != nil {
			t.Fatalf("policy %s: %v", doc, err)
		}
		out := map[string]map[string]any{}
		for _, s := range policy.Statement {
			out[s["Sid"].(string)] = s
		}
		return out
	}
	plan, errOut := p.plan(t, map[string]any{"store": "s3://fleet-store/gauntlet/prod?region=us-east-1"})
	if plan == nil {
		t.Fatalf("plan with a store failed:\n%s", errOut)
	}
	st := statements(plan)
	objects, list := st["StoreObjects"], st["StoreList"]
	if objects == nil || list == nil {
		t.Fatalf("policy statements %v lack the store's", st)
	}
	if objects["Resource"] != "arn:aws:s3:::fleet-store/gauntlet/prod/*" || !slices.Equal(sorted(strs(objects["Action"])), []string{"s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"}) {
		t.Errorf("store objects statement %v", objects)
	}
	cond, _ := list["Condition"].(map[string]any)["StringLike"].(map[string]any)
	if list["Resource"] != "arn:aws:s3:::fleet-store" || !slices.Equal(sorted(strs(cond["s3:prefix"])), []string{"gauntlet/prod", "gauntlet/prod/*"}) {
		t.Errorf("store list statement %v", list)
	}

	whole, errOut := p.plan(t, map[string]any{"store": "s3://fleet-store"})
	if whole == nil {
		t.Fatalf("plan with a bucket store failed:\n%s", errOut)
	}
	if st := statements(whole); st["StoreObjects"]["Resource"] != "arn:aws:s3:::fleet-store/*" || st["StoreList"]["Condition"] != nil {
		t.Errorf("a store at the bucket's root: %v", st)
	}
	none, errOut := p.plan(t, nil)
	if none == nil {
		t.Fatalf("plan without a store failed:\n%s", errOut)
	}
	if st := statements(none); st["StoreObjects"] != nil || st["StoreList"] != nil {
		t.Errorf("no store, yet the policy grants one: %v", st)
	}
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}
