package workflows

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
)

func step(id string, with map[string]any) *stepRun {
	return &stepRun{spec: spec.Step{ID: id}, with: with}
}

var now = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// Inputs in the forms a YAML file gives them read the same through the
// typed decoder as through the parsers of earlier runs: a run that moves
// to the new version waits, routes and monitors as before.
func TestTypedInputsAgreeWithEarlierParsers(t *testing.T) {
	approval := map[string]any{"reviewers": []any{"alice", "bob"}, "required": 2.0, "timeout": "2d", "on_timeout": "escalate",
		"escalate_to": "carol", "forbid_self_approval": true, "reminder": "12h", "notify_url": "http://hooks/x",
		"evidence": map[string]any{"auc": 0.9}, "require_signatures": "true", "signature_max_skew": "5m"}
	for _, with := range []map[string]any{approval, {"reviewers": "alice"}} {
		old, err := newGate(step("gate", with), "dave", now, typedInputsVersion-1)
		if err != nil {
			t.Fatal(err)
		}
		typed, err := newGate(step("gate", with), "dave", now, typedInputsVersion)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(old, typed) {
			t.Errorf("%v:\n before %+v\n now    %+v", with, old, typed)
		}
	}

	canaryWith := map[string]any{"model": "/m", "name": "credit", "weights": []any{5.0, 50.0, 100.0}, "interval": "90s",
		"analysis": map[string]any{"max_error_rate": 0.02, "max_p99_latency": "250ms", "max_score_psi": 0.1, "min_requests": 50.0,
			"failure_limit": 1.0, "inconclusive_limit": 4.0, "prometheus_url": "http://prom:9090", "prometheus_matchers": `job="r"`}}
	for _, with := range []map[string]any{canaryWith, {"model": "/m"}} {
		old, err := newCanaryConfig(step("canary", with), "p", typedInputsVersion-1)
		if err != nil {
			t.Fatal(err)
		}
		typed, err := newCanaryConfig(step("canary", with), "p", typedInputsVersion)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(old, typed) {
			t.Errorf("%v:\n before %+v\n now    %+v", with, old, typed)
		}
	}

	monitorWith := map[string]any{"name": "credit", "interval": "1m", "window": "30m", "duration": "1h", "on_breach": []any{"rollback"},
		"cooldown": "1d", "retrain_pipeline": "other", "retrain_params": map[string]any{"rows": 10.0}, "psi_threshold": 0.3,
		"alpha": 0.01, "min_samples": 100.0, "max_error_rate": 0.05, "max_p99_latency": "1s", "min_accuracy": 0.7,
		"max_accuracy_drop": 0.02, "labels": "/l.csv", "reference": "/r.csv"}
	params := map[string]any{"data": "x"}
	for _, with := range []map[string]any{monitorWith, {}, {"retrain_pipeline": "p"}} {
		old, od, err := newMonitorInput(step("monitor", with), "p", params, typedInputsVersion-1)
		if err != nil {
			t.Fatal(err)
		}
		typed, td, err := newMonitorInput(step("monitor", with), "p", params, typedInputsVersion)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(old, typed) || od != td {
			t.Errorf("%v:\n before %+v %v\n now    %+v %v", with, old, od, typed, td)
		}
	}
}

// From typedInputsVersion the workflow steps read inputs as activity steps
// do, and refuse what earlier runs silently ignored.
func TestTypedInputsAreLenientAndStrict(t *testing.T) {
	g, err := newGate(step("gate", map[string]any{"reviewers": "alice, bob", "required": "2", "forbid_self_approval": "true"}), "", now, typedInputsVersion)
	if err != nil || g.req.Required != 2 || !g.req.SelfForbid || strings.Join(g.req.Reviewers, "|") != "alice|bob" {
		t.Errorf("gate %+v, %v", g, err)
	}
	old, err := newGate(step("gate", map[string]any{"reviewers": "alice", "forbid_self_approval": "true", "on_timeout": 5.0}), "", now, typedInputsVersion-1)
	if err != nil || old.req.SelfForbid || old.req.OnTimeout != "reject" {
		t.Errorf("earlier runs must keep their reading: %+v, %v", old, err)
	}
	c, err := newCanaryConfig(step("canary", map[string]any{"model": "/m", "weights": "10, 100", "analysis": map[string]any{"max_error_rate": "0.05"}}), "p", typedInputsVersion)
	if err != nil || !reflect.DeepEqual(c.weights, []int{10, 100}) || c.analysis.Checks[0].Max != 0.05 {
		t.Errorf("canary %+v, %v", c, err)
	}
	m, _, err := newMonitorInput(step("monitor", map[string]any{"on_breach": "retrain", "min_samples": "500"}), "p", nil, typedInputsVersion)
	if err != nil || len(m.Policy.OnBreach) != 1 || m.Policy.OnBreach[0] != "retrain" || m.Config.MinSamples != 500 {
		t.Errorf("monitor %+v, %v", m, err)
	}

	for _, c := range []struct {
		parse func() error
		want  string
	}{
		{func() error {
			_, err := newGate(step("g", map[string]any{"reviewers": ","}), "", now, typedInputsVersion)
			return err
		}, "approval g: with.reviewers: required"},
		{func() error {
			_, err := newGate(step("g", map[string]any{"reviewers": "a", "on_timeout": 5.0}), "", now, typedInputsVersion)
			return err
		}, `approval g: with.on_timeout: want reject, approve or escalate, got "5"`},
		{func() error {
			_, err := newGate(step("g", map[string]any{"reviewers": "a", "forbid_self_approval": "yes please"}), "", now, typedInputsVersion)
			return err
		}, `approval g: with.forbid_self_approval: want true or false, got "yes please"`},
		{func() error {
			_, err := newGate(step("g", map[string]any{"reviewers": "a", "required": 2.0}), "", now, typedInputsVersion)
			return err
		}, "with.required is 2 but only 1 reviewers"},
		{func() error {
			_, err := newGate(step("g", map[string]any{"reviewers": "a", "timeout": 48.0}), "", now, typedInputsVersion)
			return err
		}, "with.timeout: want a duration"},
		{func() error {
			_, err := newCanaryConfig(step("c", map[string]any{"model": "/m", "weights": []any{50.0, 10.0}}), "p", typedInputsVersion)
			return err
		}, "canary-deploy c: with.weights[1]: 10"},
		{func() error {
			_, err := newCanaryConfig(step("c", map[string]any{"model": "/m", "analysis": map[string]any{"max_eror_rate": 0.1}}), "p", typedInputsVersion)
			return err
		}, "with.analysis.max_eror_rate: unknown key"},
		{func() error {
			_, err := newCanaryConfig(step("c", map[string]any{"model": "/m", "analysis": map[string]any{"prometheus_url": "prom:9090/?token=s3cret"}}), "p", typedInputsVersion)
			return err
		}, "with.analysis.prometheus_url: want the http(s) URL"},
		{func() error {
			_, _, err := newMonitorInput(step("m", map[string]any{"on_breach": "rollback,page"}), "p", nil, typedInputsVersion)
			return err
		}, `monitor m: with.on_breach[1]: "page" is not an action`},
		{func() error {
			_, _, err := newMonitorInput(step("m", map[string]any{"alpha": -1.0}), "p", nil, typedInputsVersion)
			return err
		}, "with.alpha: want a number of at least 0"},
	} {
		err := c.parse()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %v repeats a URL", err)
		}
	}
}
