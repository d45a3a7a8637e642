package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWarningsFindUnapprovedShipping(t *testing.T) {
	const head = "name: p\nsteps:\n  - {id: train, uses: train}\n  - {id: quantize, uses: quantize, needs: [train], with: {model: \"${{ steps.train.outputs.model }}\"}}\n"
	for _, tc := range []struct {
		name, steps string
		want        string
	}{
		{"no approval at all",
			"  - {id: canary, uses: canary-deploy, needs: [quantize], with: {model: \"${{ steps.quantize.outputs.model }}\"}}\n",
			"p.yaml:5:"},
		{"the reviewer saw the model before its last transformation",
			"  - {id: approve, uses: approval, needs: [quantize], with: {reviewers: [a], model: \"${{ steps.train.outputs.model }}\"}}\n" +
				"  - {id: canary, uses: canary-deploy, needs: [approve], with: {model: \"${{ steps.quantize.outputs.model }}\"}}\n",
			"p.yaml:6:"},
		{"an approval naming no model",
			"  - {id: approve, uses: approval, needs: [quantize], with: {reviewers: [a]}}\n" +
				"  - {id: canary, uses: canary-deploy, needs: [approve], with: {model: \"${{ steps.quantize.outputs.model }}\"}}\n",
			"p.yaml:6:"},
		{"an approval the canary does not wait for",
			"  - {id: approve, uses: approval, needs: [quantize], with: {reviewers: [a], model: \"${{ steps.quantize.outputs.model }}\"}}\n" +
				"  - {id: canary, uses: canary-deploy, needs: [quantize], with: {model: \"${{ steps.quantize.outputs.model }}\"}}\n",
			"p.yaml:6:"},
		{"approved artifact, written differently",
			"  - {id: approve, uses: approval, needs: [quantize], with: {reviewers: [a], model: \"${{steps.quantize.outputs.model}}\"}}\n" +
				"  - {id: gate, uses: echo, needs: [approve]}\n" +
				"  - {id: canary, uses: canary-deploy, needs: [gate], with: {model: \"${{ steps.quantize.outputs.model }}\"}}\n",
			""},
		{"shipping the approval's output",
			"  - {id: approve, uses: approval, needs: [quantize], with: {reviewers: [a], model: \"${{ steps.quantize.outputs.model }}\"}}\n" +
				"  - {id: canary, uses: canary-deploy, needs: [approve], with: {model: \"${{ steps.approve.outputs.model }}\"}}\n",
			""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, diags := Parse("p.yaml", []byte(head+tc.steps))
			if len(diags) > 0 {
				t.Fatal(diags)
			}
			ws := Warnings(sp)
			if tc.want == "" {
				if len(ws) != 0 {
					t.Fatalf("warnings: %v", ws)
				}
				return
			}
			if len(ws) != 1 || !strings.HasPrefix(ws[0].String(), tc.want) || !strings.Contains(ws[0].Message, "no reviewer approved this artifact") {
				t.Fatalf("warnings %v, want one at %s", ws, tc.want)
			}
		})
	}
}

// TestShippedPipelinesApproveWhatShips keeps the pipelines in pipelines/
// free of the warning.
func TestShippedPipelinesApproveWhatShips(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "pipelines", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped pipelines: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sp, diags := Parse(f, b)
		if len(diags) > 0 {
			t.Fatal(diags)
		}
		if ws := Warnings(sp); len(ws) > 0 {
			t.Errorf("%s:\n%v", f, ws)
		}
	}
}
