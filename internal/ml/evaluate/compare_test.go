package evaluate

import (
	"strings"
	"testing"
)

func f(v float64) *float64 { return &v }

func TestCompareFirstModelUsesOnlyAbsoluteThresholds(t *testing.T) {
	th := map[string]Threshold{
		ROCAUC:  {Threshold: f(0.8), MinAbsoluteChange: f(0.01)},
		LogLoss: {Threshold: f(0.4)},
	}
	v, err := Compare(map[string]float64{ROCAUC: 0.85, LogLoss: 0.35}, nil, th)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Passed || v.HasBaseline || !strings.Contains(v.Note, "no baseline") || len(v.Checks) != 2 {
		t.Fatalf("verdict %+v", v)
	}
	v, err = Compare(map[string]float64{ROCAUC: 0.75, LogLoss: 0.45}, nil, th)
	if err != nil {
		t.Fatal(err)
	}
	if v.Passed || len(v.Failures) != 2 {
		t.Fatalf("verdict %+v", v)
	}
	for _, fl := range v.Failures {
		if fl.Kind != CheckThreshold || fl.Shortfall < 0.049 || fl.Shortfall > 0.051 {
			t.Errorf("failure %+v", fl)
		}
	}
	if !strings.Contains(v.Failures[0].Message, "log_loss 0.4500 misses the ceiling") {
		t.Errorf("message %q", v.Failures[0].Message)
	}
}

func TestCompareAgainstBaseline(t *testing.T) {
	base := map[string]float64{ROCAUC: 0.90, Brier: 0.10, F1: 0.5}
	cases := []struct {
		name     string
		cand     map[string]float64
		th       Threshold
		metric   string
		pass     bool
		failKind string
	}{
		{"abs improvement", map[string]float64{ROCAUC: 0.92}, Threshold{MinAbsoluteChange: f(0.01)}, ROCAUC, true, ""},
		{"abs too small", map[string]float64{ROCAUC: 0.905}, Threshold{MinAbsoluteChange: f(0.01)}, ROCAUC, false, CheckAbsolute},
		{"abs tolerated drop", map[string]float64{ROCAUC: 0.895}, Threshold{MinAbsoluteChange: f(-0.01)}, ROCAUC, true, ""},
		{"abs drop too big", map[string]float64{ROCAUC: 0.88}, Threshold{MinAbsoluteChange: f(-0.01)}, ROCAUC, false, CheckAbsolute},
		{"lower better improves", map[string]float64{Brier: 0.08}, Threshold{MinAbsoluteChange: f(0.01)}, Brier, true, ""},
		{"lower better worsens", map[string]float64{Brier: 0.12}, Threshold{MinAbsoluteChange: f(0.01)}, Brier, false, CheckAbsolute},
		{"relative", map[string]float64{F1: 0.52}, Threshold{MinRelativeChange: f(0.05)}, F1, false, CheckRelative},
		{"relative ok", map[string]float64{F1: 0.53}, Threshold{MinRelativeChange: f(0.05)}, F1, true, ""},
		{"missing", map[string]float64{}, Threshold{Threshold: f(0.5)}, F1, false, CheckMissing},
	}
	for _, c := range cases {
		v, err := Compare(c.cand, base, map[string]Threshold{c.metric: c.th})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if v.Passed != c.pass || !v.HasBaseline || v.Note != "" {
			t.Errorf("%s: verdict %+v", c.name, v)
			continue
		}
		if !c.pass && (len(v.Failures) != 1 || v.Failures[0].Kind != c.failKind || v.Failures[0].Message == "") {
			t.Errorf("%s: failures %+v", c.name, v.Failures)
		}
	}
}

func TestCompareUnknownMetricNeedsDirection(t *testing.T) {
	if _, err := Compare(map[string]float64{"custom": 1}, nil, map[string]Threshold{"custom": {Threshold: f(0)}}); err == nil {
		t.Fatal("no error for a metric of unknown direction")
	}
	up := true
	v, err := Compare(map[string]float64{"custom": 1}, nil, map[string]Threshold{"custom": {Threshold: f(2), GreaterIsBetter: &up}})
	if err != nil || v.Passed {
		t.Fatalf("verdict %+v, err %v", v, err)
	}
}
