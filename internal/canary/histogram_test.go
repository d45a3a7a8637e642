package canary

import (
	"math"
	"slices"
	"testing"
)

func TestQuantile(t *testing.T) {
	// The worked example: bounds 0.1 0.2 0.4, counts 20 40 35 and 5 above
	// 0.4; cumulative 20 60 95 100.
	h := Histogram{Bounds: []float64{0.1, 0.2, 0.4}, Counts: []float64{20, 40, 35, 5}}
	tests := []struct {
		name string
		h    Histogram
		q    float64
		want float64
	}{
		// rank 0.9*100 = 90 lies in (0.2, 0.4], whose cumulative count is
		// the first >= 90; 30 of its 35 are needed past the 60 below it:
		// 0.2 + (0.4-0.2) * 30/35 = 0.3714285714.
		{"interpolated", h, 0.9, 0.2 + 0.2*30.0/35},
		// rank 50 in (0.1, 0.2]: 0.1 + 0.1 * (50-20)/40 = 0.175.
		{"median", h, 0.5, 0.175},
		// rank 10 in the first bucket, whose lower edge is 0: 0.1 * 10/20.
		{"first bucket from zero", h, 0.1, 0.05},
		// rank 99 is past the 95 at 0.4: the highest finite bound.
		{"above the last bound", h, 0.99, 0.4},
		{"q above 1", h, 1.5, math.Inf(1)},
		{"q below 0", h, -0.5, math.Inf(-1)},
		{"no observations", Histogram{Bounds: []float64{0.1}, Counts: []float64{0, 0}}, 0.5, math.NaN()},
		{"no finite bound", Histogram{Counts: []float64{7}}, 0.5, math.NaN()},
		{"malformed", Histogram{Bounds: []float64{0.1}, Counts: []float64{1}}, 0.5, math.NaN()},
		// A first bound <= 0 has no lower edge to interpolate from.
		{"non-positive first bound", Histogram{Bounds: []float64{-1, 0, 1}, Counts: []float64{5, 5, 5, 0}}, 0.2, -1},
		// The router's latency buckets: 90 requests in (0.0025, 0.005], 8
		// in (0.01, 0.025], 2 in (0.25, 0.5]; rank 99 needs 1 of the last 2:
		// 0.25 + (0.5-0.25) * 1/2 = 0.375.
		{"p99 of latencies", Histogram{
			Bounds: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
			Counts: []float64{0, 0, 0, 0, 90, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0},
		}, 0.99, 0.375},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.Quantile(tt.q)
			if !(near(got, tt.want) || got == tt.want) {
				t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestPSI(t *testing.T) {
	tests := []struct {
		name                string
		candidate, champion Histogram
		want                float64
	}{
		{"shifted", measured.Candidate.Scores, measured.Champion.Scores, scoreShift},
		{"identical", measured.Champion.Scores, measured.Champion.Scores, 0},
		// The candidate's extra bound 0.5 is not the champion's, so its
		// buckets (0.3, 0.5] and (0.5, 0.6] merge into (0.3, 0.6]: 10+20 =
		// 30, the same shares as "shifted".
		{"shared bounds only", Histogram{Bounds: []float64{0.3, 0.5, 0.6}, Counts: []float64{30, 10, 20, 40}},
			measured.Champion.Scores, scoreShift},
		// The champion's empty bucket counts as a 0.0001 share:
		// (.95-1)*ln(.95/1) + (.05-.0001)*ln(.05/.0001)
		// = (-.05)(-0.0512933) + (.0499)(6.2146081) = 0.0025647 + 0.3101089.
		{"empty bucket", Histogram{Bounds: []float64{0.5}, Counts: []float64{95, 5}},
			Histogram{Bounds: []float64{0.5}, Counts: []float64{100, 0}}, 0.3126736088},
		{"no shared bound", Histogram{Bounds: []float64{0.5}, Counts: []float64{1, 1}},
			Histogram{Bounds: []float64{0.4}, Counts: []float64{1, 1}}, math.NaN()},
		{"no candidate scores", Histogram{}, measured.Champion.Scores, math.NaN()},
		{"no champion observations", measured.Candidate.Scores,
			Histogram{Bounds: []float64{0.3, 0.6}, Counts: []float64{0, 0, 0}}, math.NaN()},
		{"unsorted bounds", Histogram{Bounds: []float64{0.6, 0.3}, Counts: []float64{1, 1, 1}}, measured.Champion.Scores, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PSI(tt.candidate, tt.champion); !near(got, tt.want) {
				t.Errorf("PSI = %.10f, want %.10f", got, tt.want)
			}
		})
	}
}

func TestFromCumulative(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name string
		cum  map[float64]float64
		want Histogram
	}{
		{"le buckets", map[float64]float64{0.5: 5, 0.1: 2, inf: 7},
			Histogram{Bounds: []float64{0.1, 0.5}, Counts: []float64{2, 3, 2}}},
		// increase() extrapolates each bucket alone and can dip; the dip is
		// raised to the count before, as histogram_quantile does.
		{"non-monotonic", map[float64]float64{0.1: 3, 0.5: 2.5, inf: 6},
			Histogram{Bounds: []float64{0.1, 0.5}, Counts: []float64{3, 0, 3}}},
		{"no +Inf", map[float64]float64{0.1: 1, 0.5: 4},
			Histogram{Bounds: []float64{0.1, 0.5}, Counts: []float64{1, 3, 0}}},
		{"empty", nil, Histogram{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromCumulative(tt.cum)
			if !slices.Equal(got.Bounds, tt.want.Bounds) || !slices.Equal(got.Counts, tt.want.Counts) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
