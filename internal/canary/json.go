package canary

import (
	"encoding/json"
	"math"
)

// MarshalJSON writes a NaN P99Latency as null: encoding/json (and so
// Temporal's payload converter) refuses NaN.
func (s Sample) MarshalJSON() ([]byte, error) {
	type plain Sample
	return json.Marshal(struct {
		plain
		P99Latency *float64 `json:"p99_latency_seconds"`
	}{plain(s), finite(s.P99Latency)})
}

// UnmarshalJSON reads a null or missing P99Latency as NaN.
func (s *Sample) UnmarshalJSON(b []byte) error {
	type plain Sample
	p := plain{P99Latency: math.NaN()}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*s = Sample(p)
	return nil
}

// MarshalJSON writes NaN values as null.
func (c CheckResult) MarshalJSON() ([]byte, error) {
	type plain CheckResult
	return json.Marshal(struct {
		plain
		Value     *float64 `json:"value"`
		Champion  *float64 `json:"champion"`
		Threshold *float64 `json:"threshold"`
	}{plain(c), finite(c.Value), finite(c.Champion), finite(c.Threshold)})
}

// UnmarshalJSON reads null or missing values as NaN.
func (c *CheckResult) UnmarshalJSON(b []byte) error {
	type plain CheckResult
	p := plain{Value: math.NaN(), Champion: math.NaN(), Threshold: math.NaN()}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*c = CheckResult(p)
	return nil
}

// finite is nil for what JSON cannot hold.
func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}
