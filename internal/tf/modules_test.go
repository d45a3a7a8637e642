package tf

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

// The aws-spot-gpu module needs the AWS provider, which cannot be installed
// here, so it is checked statically: formatting by terraform itself, and
// the blocks that make it a spot, egress-only, least-privilege node by
// reading its source.

const modulesDir = "../../infra/modules"

func TestModulesAreFormatted(t *testing.T) {
	bin, err := Find("")
	if errors.Is(err, ErrNotFound) {
		testkit.Need(t, "needs terraform: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"local-node", "aws-spot-gpu"} {
		cmd := exec.CommandContext(context.Background(), bin, "fmt", "-check", "-diff", "-recursive", filepath.Join(modulesDir, m))
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+os.DevNull)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("terraform fmt -check %s: %v\n%s", m, err, out)
		}
	}
}

// hclSource is the module's .tf files, concatenated.
func hclSource(t *testing.T, module string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(modulesDir, module, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s: %v", module, err)
	}
	var b strings.Builder
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(src)
		b.WriteByte('\n')
	}
	return b.String()
}

// blockBodies returns the bodies of every block in src whose header matches
// header (a regexp for what precedes the opening brace, anchored at a line
// start). Braces inside strings and comments are skipped; the module has no
// heredocs.
func blockBodies(t *testing.T, src, header string) []string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^[ \t]*` + header + `[ \t]*\{`)
	var bodies []string
	for _, loc := range re.FindAllStringIndex(src, -1) {
		start := loc[1]
		depth, inString, inComment := 1, false, false
		i := start
		for ; i < len(src) && depth > 0; i++ {
			c := src[i]
			switch {
			case inComment:
				inComment = c != '\n'
			case inString:
				if c == '\\' {
					i++
				} else if c == '"' {
					inString = false
				}
			case c == '"':
				inString = true
			case c == '#':
				inComment = true
			case c == '{':
				depth++
			case c == '}':
				depth--
			}
		}
		if depth != 0 {
			t.Fatalf("unbalanced block %q", header)
		}
		bodies = append(bodies, src[start:i-1])
	}
	return bodies
}

func oneBlock(t *testing.T, src, header string) string {
	t.Helper()
	b := blockBodies(t, src, header)
	if len(b) != 1 {
		t.Fatalf("want exactly one %q block, found %d", header, len(b))
	}
	return b[0]
}

func hasAttr(body, name, valueRe string) bool {
	return regexp.MustCompile(`(?m)^[ \t]*` + name + `[ \t]*=[ \t]*` + valueRe).MatchString(body)
}

func TestAWSSpotGPUModule(t *testing.T) {
	src := hclSource(t, "aws-spot-gpu")

	aws := oneBlock(t, oneBlock(t, oneBlock(t, src, `terraform`), `required_providers`), `aws[ \t]*=`)
	if !hasAttr(aws, "source", `"hashicorp/aws"`) || !hasAttr(aws, "version", `"~> 5\.`) {
		t.Errorf("required_providers.aws must be hashicorp/aws ~> 5.x:\n%s", aws)
	}

	lt := oneBlock(t, src, `resource "aws_launch_template" "node"`)
	market := oneBlock(t, lt, `instance_market_options`)
	if !hasAttr(market, "market_type", `"spot"`) {
		t.Errorf("launch template is not spot:\n%s", market)
	}
	spot := oneBlock(t, market, `spot_options`)
	if !hasAttr(spot, "max_price", `\S`) || !hasAttr(spot, "instance_interruption_behavior", `"terminate"`) {
		t.Errorf("spot_options needs max_price and instance_interruption_behavior = \"terminate\":\n%s", spot)
	}
	if !strings.Contains(spot, "var.max_price_per_hour") {
		t.Errorf("max_price does not come from max_price_per_hour:\n%s", spot)
	}
	if !hasAttr(lt, "image_id", `var\.ami_id`) || !hasAttr(lt, "user_data", `.*templatefile\(`) {
		t.Errorf("launch template must take the AMI from var.ami_id and render user data with templatefile")
	}
	if !strings.Contains(oneBlock(t, lt, `iam_instance_profile`), "aws_iam_instance_profile.node") {
		t.Errorf("launch template does not use the node's instance profile")
	}

	inst := oneBlock(t, src, `resource "aws_instance" "node"`)
	if !strings.Contains(oneBlock(t, inst, `launch_template`), "aws_launch_template.node.id") || !hasAttr(inst, "subnet_id", `local\.subnet_id`) {
		t.Errorf("instance must launch from the template into the chosen subnet:\n%s", inst)
	}
	for _, v := range []string{"instance_types", "subnet_ids", "ami_id", "task_queue", "node_id", "temporal_address", "artifact_bucket", "artifact_prefix", "max_price_per_hour"} {
		if len(blockBodies(t, src, `variable "`+v+`"`)) != 1 {
			t.Errorf("missing input variable %s", v)
		}
	}

	sg := oneBlock(t, src, `resource "aws_security_group" "node"`)
	if len(blockBodies(t, sg, `ingress`)) != 0 || len(blockBodies(t, sg, `egress`)) != 1 {
		t.Errorf("security group must have egress and no ingress:\n%s", sg)
	}
	for _, r := range []string{"aws_security_group_rule", "aws_vpc_security_group_ingress_rule"} {
		if strings.Contains(src, `resource "`+r+`"`) {
			t.Errorf("module declares %s: the node takes no inbound traffic", r)
		}
	}

	policy := oneBlock(t, src, `data "aws_iam_policy_document" "artifacts"`)
	stmts := blockBodies(t, policy, `statement`)
	if len(stmts) == 0 {
		t.Fatal("artifact policy has no statements")
	}
	resRe := regexp.MustCompile(`"arn:aws:s3:::[^"]*"`)
	for _, s := range stmts {
		for _, arn := range resRe.FindAllString(s, -1) {
			if arn != `"arn:aws:s3:::${var.artifact_bucket}/${local.prefix}/*"` && arn != `"arn:aws:s3:::${var.artifact_bucket}"` {
				t.Errorf("policy reaches beyond the artifact bucket prefix: %s", arn)
			}
		}
		if strings.Contains(s, `"arn:aws:s3:::${var.artifact_bucket}"`) && !strings.Contains(s, `"s3:prefix"`) {
			t.Errorf("bucket-level statement is not limited by s3:prefix:\n%s", s)
		}
		if strings.Contains(s, `"s3:*"`) || strings.Contains(s, `"*"`) {
			t.Errorf("wildcard action or resource in artifact policy:\n%s", s)
		}
	}
	if !strings.Contains(oneBlock(t, src, `resource "aws_iam_role_policy" "artifacts"`), "data.aws_iam_policy_document.artifacts.json") {
		t.Error("the role does not carry the artifact policy")
	}

	for _, o := range []string{"task_queue", "node_id", "gpu_description", "instance_id", "instance_type", "availability_zone"} {
		if len(blockBodies(t, src, `output "`+o+`"`)) != 1 {
			t.Errorf("missing output %s", o)
		}
	}

	ud, err := os.ReadFile(filepath.Join(modulesDir, "aws-spot-gpu", "user_data.sh.tftpl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--task-queue '${task_queue}'", "--node-id '${node_id}'", "--address '${temporal_address}'", "--namespace '${namespace}'", "systemctl enable --now"} {
		if !strings.Contains(string(ud), want) {
			t.Errorf("user data lacks %q", want)
		}
	}
	tmplVars := oneBlock(t, lt, `user_data[ \t]*=[ \t]*base64encode\(templatefile\("\$\{path\.module\}/user_data\.sh\.tftpl",`)
	for _, ref := range regexp.MustCompile(`\$\{([a-z_]+)\}|%\{ for [a-z_]+ in ([a-z_]+) \}`).FindAllStringSubmatch(string(ud), -1) {
		name := ref[1] + ref[2]
		if name == "a" {
			continue
		}
		if !hasAttr(tmplVars, name, `\S`) {
			t.Errorf("user data uses ${%s}, which templatefile is not given", name)
		}
	}
}

func TestLocalNodeModuleNeedsNoProvider(t *testing.T) {
	src := hclSource(t, "local-node")
	if strings.Contains(src, "required_providers") || regexp.MustCompile(`(?m)^\s*provider\s+"`).MatchString(src) {
		t.Error("local-node must need no provider")
	}
	for _, m := range regexp.MustCompile(`(?m)^resource "([a-z_0-9]+)"`).FindAllStringSubmatch(src, -1) {
		if m[1] != "terraform_data" {
			t.Errorf("local-node uses resource type %s; only the built-in terraform_data needs no provider", m[1])
		}
	}
	destroy := 0
	for _, p := range blockBodies(t, src, `provisioner "local-exec"`) {
		if hasAttr(p, "when", `destroy`) {
			destroy++
			if strings.Contains(p, "var.") || strings.Contains(p, "local.") {
				t.Errorf("destroy provisioner refers to var or local; only self is allowed:\n%s", p)
			}
		}
	}
	if destroy != 1 {
		t.Errorf("want one destroy-time provisioner, found %d", destroy)
	}
}
