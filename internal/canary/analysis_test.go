package canary

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// near compares within 1e-9, and NaN with NaN.
func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

// measured is the interval the Evaluate tests judge.
var measured = Measurement{
	Champion: Sample{Variant: "v1", Requests: 1000, Errors: 5, P99Latency: 0.120,
		Scores: Histogram{Bounds: []float64{0.3, 0.6}, Counts: []float64{50, 30, 20}}},
	Candidate: Sample{Variant: "v2", Requests: 200, Errors: 6, P99Latency: 0.180,
		Scores: Histogram{Bounds: []float64{0.3, 0.6}, Counts: []float64{30, 30, 40}}},
}

// scoreShift is PSI(candidate, champion) of measured: shares p = .3 .3 .4
// against q = .5 .3 .2, so
// (.3-.5)*ln(.3/.5) + (.3-.3)*ln(1) + (.4-.2)*ln(.4/.2)
// = (-.2)(-0.5108256) + 0 + (.2)(0.6931472) = 0.1021651 + 0.1386294.
const scoreShift = 0.2407945609

func TestEvaluateCheck(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name     string
		check    Check
		m        Measurement
		value    float64
		champion float64
		outcome  Outcome
	}{
		// 6/200 = 0.03 against the champion's 5/1000 = 0.005.
		{"error rate above max", Check{Metric: ErrorRate, Max: 0.02}, measured, 0.03, 0.005, Fail},
		{"error rate at max passes", Check{Metric: ErrorRate, Max: 0.03}, measured, 0.03, 0.005, Pass},
		{"p99 below max", Check{Metric: P99Latency, Max: 0.25}, measured, 0.18, 0.12, Pass},
		{"p99 above max", Check{Metric: P99Latency, Max: 0.15}, measured, 0.18, 0.12, Fail},
		{"score shift below max", Check{Metric: ScoreShift, Max: 0.25}, measured, scoreShift, nan, Pass},
		{"score shift above max", Check{Metric: ScoreShift, Max: 0.2}, measured, scoreShift, nan, Fail},
		// 200 requests < 500: the value is reported but not judged.
		{"too few requests", Check{Metric: ErrorRate, Max: 0.05, MinRequests: 500}, measured, 0.03, 0.005, Inconclusive},
		{"exactly min requests", Check{Metric: ErrorRate, Max: 0.05, MinRequests: 200}, measured, 0.03, 0.005, Pass},
		{"too few requests for a failing value", Check{Metric: P99Latency, Max: 0.1, MinRequests: 201}, measured, 0.18, 0.12, Inconclusive},
		{"no requests", Check{Metric: ErrorRate, Max: 0.05},
			Measurement{Champion: measured.Champion, Candidate: Sample{P99Latency: nan}}, nan, 0.005, Inconclusive},
		{"no latency observations", Check{Metric: P99Latency, Max: 0.25},
			Measurement{Champion: measured.Champion, Candidate: Sample{Requests: 10, P99Latency: nan}}, nan, 0.12, Inconclusive},
		{"no candidate scores", Check{Metric: ScoreShift, Max: 0.25},
			Measurement{Champion: measured.Champion, Candidate: Sample{Requests: 10, P99Latency: 0.1}}, nan, nan, Inconclusive},
		{"unknown metric", Check{Metric: "accuracy", Max: 1}, measured, nan, nan, Inconclusive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check.Name = "c"
			r := Evaluate(Analysis{Checks: []Check{tt.check}}, tt.m)
			if len(r.Checks) != 1 {
				t.Fatalf("got %d check results, want 1", len(r.Checks))
			}
			cr := r.Checks[0]
			if !near(cr.Value, tt.value) || !near(cr.Champion, tt.champion) || cr.Outcome != tt.outcome {
				t.Errorf("got value %v champion %v %s (%s), want value %v champion %v %s",
					cr.Value, cr.Champion, cr.Outcome, cr.Reason, tt.value, tt.champion, tt.outcome)
			}
			if cr.Threshold != tt.check.Max || cr.Name != "c" || cr.Metric != tt.check.Metric {
				t.Errorf("got %+v, want the check's name, metric and max echoed", cr)
			}
			if cr.Outcome != Pass && cr.Reason == "" {
				t.Error("a check that did not pass gives no reason")
			}
			if r.Outcome != tt.outcome {
				t.Errorf("interval %s, want %s as its only check", r.Outcome, tt.outcome)
			}
		})
	}
}

func TestEvaluateInterval(t *testing.T) {
	pass := Check{Name: "pass", Metric: P99Latency, Max: 1}
	fail := Check{Name: "fail", Metric: P99Latency, Max: 0.1}
	inconclusive := Check{Name: "few", Metric: P99Latency, Max: 1, MinRequests: 1000}
	tests := []struct {
		name   string
		checks []Check
		want   Outcome
	}{
		{"all pass", []Check{pass, pass}, Pass},
		{"one fails", []Check{pass, fail}, Fail},
		{"a failure outweighs an inconclusive", []Check{inconclusive, fail, pass}, Fail},
		{"one inconclusive", []Check{pass, inconclusive}, Inconclusive},
		{"no checks", nil, Inconclusive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Evaluate(Analysis{Checks: tt.checks}, measured).Outcome; got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Check{Name: "errors", Metric: ErrorRate, Max: 0.01, MinRequests: 100}
	tests := []struct {
		name string
		a    Analysis
		want []string // substrings of the error; none for a valid analysis
	}{
		{"valid", Analysis{Checks: []Check{ok}, FailureLimit: 2}, nil},
		{"no checks", Analysis{}, []string{"no checks"}},
		{"everything wrong", Analysis{
			Checks: []Check{
				ok, ok,
				{Metric: "accuracy", Max: math.NaN(), MinRequests: -1},
				{Name: "neg", Metric: P99Latency, Max: -1},
			},
			FailureLimit: -1, InconclusiveLimit: -2,
		}, []string{
			`check "errors" given twice`, "check 2 has no name", `metric "accuracy"`, "max NaN",
			"min_requests -1", "check neg: max -1", "failure_limit -1", "inconclusive_limit -2",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.a.Validate()
			if (err != nil) != (len(tt.want) > 0) {
				t.Fatalf("got %v, want an error: %v", err, len(tt.want) > 0)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// NaN has no JSON spelling, and Temporal's payload converter is
// encoding/json: results and measurements must survive it.
func TestJSONRoundTripsNaN(t *testing.T) {
	m := measured
	m.Candidate.P99Latency = math.NaN()
	r := Evaluate(Analysis{Checks: []Check{{Name: "s", Metric: ScoreShift, Max: 0.25}}}, m)

	b, err := json.Marshal(struct {
		M Measurement
		R Result
	}{m, r})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"p99_latency_seconds":null`, `"champion":null`, `"p99_latency_seconds":0.12`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s does not hold %s", b, want)
		}
	}
	var back struct {
		M Measurement
		R Result
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(back.M.Candidate.P99Latency) || back.M.Champion.P99Latency != 0.12 || back.M.Candidate.Requests != 200 {
		t.Errorf("measurement came back as %+v", back.M)
	}
	if len(back.M.Candidate.Scores.Counts) != 3 || back.M.Candidate.Scores.Counts[2] != 40 {
		t.Errorf("scores came back as %+v", back.M.Candidate.Scores)
	}
	got := back.R.Checks[0]
	if !near(got.Value, scoreShift) || !math.IsNaN(got.Champion) || got.Threshold != 0.25 || got.Outcome != Pass || back.R.Outcome != Pass {
		t.Errorf("result came back as %+v", back.R)
	}
}
