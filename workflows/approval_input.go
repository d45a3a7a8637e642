package workflows

import (
	"fmt"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
)

// newGate reads an approval step's resolved inputs.
func newGate(sr *stepRun, startedBy string, now time.Time) (*gate, error) {
	w := sr.with
	reviewers, err := stringList(w["reviewers"])
	if err != nil || len(reviewers) == 0 {
		return nil, fmt.Errorf("approval %s: with.reviewers must list at least one reviewer", sr.spec.ID)
	}
	escalate, err := stringList(w["escalate_to"])
	if err != nil {
		return nil, fmt.Errorf("approval %s: with.escalate_to: %w", sr.spec.ID, err)
	}
	required := 1
	if v, ok := w["required"]; ok && v != nil {
		f, ok := v.(float64)
		if !ok || f != float64(int(f)) || f < 1 {
			return nil, fmt.Errorf("approval %s: with.required must be a whole number ≥ 1, not %v", sr.spec.ID, v)
		}
		required = int(f)
	}
	if required > len(reviewers) {
		return nil, fmt.Errorf("approval %s: with.required is %d but only %d reviewers are listed", sr.spec.ID, required, len(reviewers))
	}
	timeout, err := durationIn(w, "timeout", defaultApprovalT)
	if err != nil {
		return nil, fmt.Errorf("approval %s: %w", sr.spec.ID, err)
	}
	reminder, err := durationIn(w, "reminder", 0)
	if err != nil {
		return nil, fmt.Errorf("approval %s: %w", sr.spec.ID, err)
	}
	onTimeout, _ := w["on_timeout"].(string)
	switch onTimeout {
	case "":
		onTimeout = "reject"
	case "reject", "approve":
	case "escalate":
		if len(escalate) == 0 {
			return nil, fmt.Errorf("approval %s: on_timeout: escalate needs with.escalate_to", sr.spec.ID)
		}
	default:
		return nil, fmt.Errorf("approval %s: with.on_timeout must be reject, approve or escalate, not %q", sr.spec.ID, onTimeout)
	}
	self, _ := w["forbid_self_approval"].(bool)
	requireSig, err := boolIn(w, "require_signatures")
	if err != nil {
		return nil, fmt.Errorf("approval %s: %w", sr.spec.ID, err)
	}
	maxSkew, err := durationIn(w, "signature_max_skew", defaultSignatureSkew)
	if err != nil {
		return nil, fmt.Errorf("approval %s: %w", sr.spec.ID, err)
	}
	url, _ := w["notify_url"].(string)
	evidence, _ := w["evidence"].(map[string]any)
	return &gate{
		req: contract.ApprovalRequest{
			Step: sr.spec.ID, Reviewers: reviewers, Required: required, Deadline: now.Add(timeout),
			OnTimeout: onTimeout, StartedBy: startedBy, Votes: []contract.Vote{}, Evidence: evidence, SelfForbid: self,
			RequireSignatures: requireSig,
		},
		requireSig: requireSig,
		maxSkew:    maxSkew,
		escalateTo: escalate,
		timeout:    timeout,
		notifyURL:  url,
		reminder:   reminder,
		open:       true,
	}, nil
}

func stringList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		var out []string
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok || strings.TrimSpace(s) == "" {
				return nil, fmt.Errorf("want names, got %v", e)
			}
			out = append(out, strings.TrimSpace(s))
		}
		return out, nil
	default:
		return nil, fmt.Errorf("want a list of names, got %v", v)
	}
}

// boolIn reads a flag given literally or through a template, which renders
// it as a string.
func boolIn(w map[string]any, key string) (bool, error) {
	switch v := w[key].(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	case string:
		switch v {
		case "true":
			return true, nil
		case "false", "":
			return false, nil
		}
	}
	return false, fmt.Errorf("with.%s must be true or false, not %v", key, w[key])
}

func durationIn(w map[string]any, key string, def time.Duration) (time.Duration, error) {
	v, ok := w[key]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("with.%s must be a duration such as 48h, not %v", key, v)
	}
	d, err := spec.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("with.%s: %q is not a positive duration", key, s)
	}
	return time.Duration(d), nil
}
