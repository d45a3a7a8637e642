package traffic

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock ticks only when the test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
	c   chan time.Time
	// ready closes when Run asks for its ticker, after it has read its start
	// time: advancing the clock before that would move the start as well.
	ready chan struct{}
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1000, 0), c: make(chan time.Time), ready: make(chan struct{})}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Ticker(time.Duration) (<-chan time.Time, func()) {
	close(f.ready)
	return f.c, func() {}
}

// tick advances the clock by d and delivers a tick, unless Run has stopped.
func (f *fakeClock) tick(d time.Duration, done <-chan struct{}) bool {
	select {
	case <-f.ready:
	case <-done:
		return false
	}
	f.mu.Lock()
	f.now = f.now.Add(d)
	t := f.now
	f.mu.Unlock()
	select {
	case f.c <- t:
		return true
	case <-done:
		return false
	}
}

// recorder is a model server stand-in that keeps the records it gets.
type recorder struct {
	mu      sync.Mutex
	records []map[string]any
	status  int
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body struct{ Records []map[string]any }
	if req.URL.Path != "/v1/predict" || json.NewDecoder(req.Body).Decode(&body) != nil {
		w.WriteHeader(400)
		return
	}
	r.mu.Lock()
	r.records = append(r.records, body.Records...)
	status := r.status
	r.mu.Unlock()
	w.WriteHeader(status)
}

func start(t *testing.T, opts Options, clk *fakeClock) (<-chan Result, <-chan struct{}) {
	t.Helper()
	opts.clock = clk
	out, done := make(chan Result, 1), make(chan struct{})
	go func() {
		defer close(done)
		res, err := Run(context.Background(), opts)
		if err != nil {
			t.Error(err)
		}
		out <- res
	}()
	return out, done
}

func TestSendsAtMostRateTimesDuration(t *testing.T) {
	rec := &recorder{status: 200}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	clk := newFakeClock()
	// 5 per second for 2 s: 10 requests at most, however many ticks come.
	res, done := start(t, Options{Target: srv.URL, Data: "builtin:credit-risk?rows=50&seed=2", Rate: 5, Duration: 2 * time.Second, Batch: 3}, clk)
	ticks := 0
	for ticks < 100 && clk.tick(time.Millisecond, done) {
		ticks++
	}
	r := <-res
	if ticks != 10 || r.Sent != 10 || r.OK != 10 || r.Records != 30 || len(r.Errors) != 0 {
		t.Fatalf("%d ticks taken, result %+v; want 10 requests of 3 records, all ok", ticks, r)
	}
	if len(rec.records) != 30 {
		t.Fatalf("server got %d records, want 30", len(rec.records))
	}
	for _, rc := range rec.records {
		if _, ok := rc["defaulted"]; ok {
			t.Fatal("the label was sent")
		}
		if _, ok := rc["age"].(float64); !ok {
			t.Fatalf("age is %T, want a number", rc["age"])
		}
	}
}

func TestStopsAtTheDeadline(t *testing.T) {
	rec := &recorder{status: 503}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	clk := newFakeClock()
	res, done := start(t, Options{Target: srv.URL + "/", Data: "builtin:credit-risk?rows=20", Rate: 1000, Duration: time.Second}, clk)
	for range 4 {
		clk.tick(100*time.Millisecond, done)
	}
	// The next tick is at the deadline: the run ends without sending it.
	clk.tick(600*time.Millisecond, done)
	r := <-res
	if r.Sent != 4 || r.Errors[503] != 4 || r.OK != 0 || r.Elapsed != time.Second {
		t.Fatalf("result %+v; want 4 sent, all 503, after 1s", r)
	}
}

func TestDriftShiftsTheFeature(t *testing.T) {
	base, err := LoadRecords("builtin:credit-risk?rows=30&seed=4", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"age+10", "income*1.5"} {
		d, err := ParseDrift(spec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := LoadRecords("builtin:credit-risk?rows=30&seed=4", "", nil, []Drift{d})
		if err != nil {
			t.Fatal(err)
		}
		for i := range base {
			b, g := base[i][d.Feature].(float64), got[i][d.Feature].(float64)
			want := b + 10
			if d.Scale {
				want = b * 1.5
			}
			if g != want {
				t.Fatalf("%s: record %d: %v from %v, want %v", spec, i, g, b, want)
			}
			if got[i]["debt_ratio"] != base[i]["debt_ratio"] {
				t.Fatalf("%s changed another feature", spec)
			}
		}
	}
	if _, err := LoadRecords("builtin:credit-risk?rows=5", "", nil, []Drift{{Feature: "purpose", Delta: 1}}); err == nil {
		t.Fatal("drift of a categorical column was accepted")
	}
}

func TestParseDrift(t *testing.T) {
	for in, want := range map[string]Drift{
		"age+10":          {Feature: "age", Delta: 10},
		"age-5":           {Feature: "age", Delta: -5},
		"income*1.5":      {Feature: "income", Scale: true, Delta: 1.5},
		"x+1e-3":          {Feature: "x", Delta: 1e-3},
		"education-num+2": {Feature: "education-num", Delta: 2},
		"age+-3":          {Feature: "age", Delta: -3},
	} {
		got, err := ParseDrift(in)
		if err != nil || got != want {
			t.Errorf("ParseDrift(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"age", "age+", "+10", "age+x", "age*NaN"} {
		if _, err := ParseDrift(bad); err == nil {
			t.Errorf("ParseDrift(%q) accepted", bad)
		}
	}
}

func TestCSVSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.csv")
	if err := os.WriteFile(path, []byte("age,city,y\n30,Oslo,1\n,Rome,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRecords(path, "", nil, nil); err == nil {
		t.Fatal("a CSV without a label column named was accepted")
	}
	recs, err := LoadRecords(path, "y", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0]["age"] != 30.0 || recs[1]["age"] != nil || recs[1]["city"] != "Rome" || recs[0]["y"] != nil {
		t.Fatalf("records %v", recs)
	}
}

func TestRealClockRun(t *testing.T) {
	rec := &recorder{status: 200}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	r, err := Run(context.Background(), Options{Target: srv.URL, Data: "builtin:credit-risk?rows=10", Rate: 200, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent == 0 || r.Sent > 20 || r.OK != r.Sent || r.P99 < r.P50 {
		t.Fatalf("result %+v; want 1 to 20 requests, all ok", r)
	}
}
