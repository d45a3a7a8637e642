package serving

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
)

// trainModel saves a small logistic model of builtin:credit-risk under dir;
// different seeds give different weights and digests.
func trainModel(t testing.TB, dir string, seed int) *dataset.Dataset {
	t.Helper()
	return mltest.SaveLogReg(t, dir, seed, map[string]any{NegativeLabelParam: "no"})
}

func records(d *dataset.Dataset, n int) []map[string]any { return mltest.Records(d, n) }

func body(t testing.TB, recs []map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"records": recs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type response struct {
	Model struct {
		Name, Version, Digest string
	}
	Predictions []struct {
		Score float64
		Label string
	}
	Error string
}

func post(t testing.TB, url string, b []byte) (int, response, http.Header) {
	t.Helper()
	resp, err := http.Post(url+"/v1/predict", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("decode response (status %d): %v", resp.StatusCode, err)
	}
	return resp.StatusCode, r, resp.Header
}

func newServer(t testing.TB, src Source, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(context.Background(), src, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return s, ts
}

func TestPredictMatchesTheModel(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	s, ts := newServer(t, DirSource{Dir: dir, Name: "credit"}, Options{})
	recs := records(d, 50)
	code, r, _ := post(t, ts.URL, body(t, recs))
	if f := s.Model().Scoring.Info().Format; f != scoring.Gauntlet {
		t.Fatalf("format %q", f)
	}
	if code != 200 {
		t.Fatalf("status %d: %s", code, r.Error)
	}
	a, err := modelfile.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Model.Name != "credit" || r.Model.Version != "dir" || r.Model.Digest != a.Digest || len(r.Predictions) != 50 {
		t.Fatalf("response %+v", r)
	}
	x, err := a.Manifest.Preprocessing.Transform(d)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := a.Scorer()
	want, err := sc.PredictProba(x)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range r.Predictions {
		if math.Abs(p.Score-want[i]) > 1e-12 {
			t.Fatalf("record %d: score %v, want %v", i, p.Score, want[i])
		}
		wantLabel := "no"
		if want[i] >= a.Manifest.Threshold {
			wantLabel = "yes"
		}
		if p.Label != wantLabel {
			t.Fatalf("record %d: label %q, want %q", i, p.Label, wantLabel)
		}
	}
}

func TestSchemaErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	_, ts := newServer(t, DirSource{Dir: dir}, Options{})
	good := records(d, 5)
	mutate := func(i int, f func(map[string]any)) []byte {
		recs := records(d, 5)
		f(recs[i])
		return body(t, recs)
	}
	cases := []struct {
		name string
		body []byte
		want string
	}{
		{"missing", mutate(3, func(r map[string]any) { delete(r, "income") }), `record 3: field "income": missing`},
		{"unknown", mutate(1, func(r map[string]any) { r["colour"] = "red" }), `record 1: field "colour": not in the model's schema`},
		{"label", mutate(0, func(r map[string]any) { r["defaulted"] = "yes" }), `record 0: field "defaulted": is the label`},
		{"string for number", mutate(3, func(r map[string]any) { r["age"] = "abc" }), `record 3: field "age": want a number, got "abc"`},
		{"number for string", mutate(2, func(r map[string]any) { r["purpose"] = 7 }), `record 2: field "purpose": want a string, got 7`},
		{"bool", mutate(4, func(r map[string]any) { r["age"] = true }), `record 4: field "age": want a number, got true`},
		{"object", mutate(0, func(r map[string]any) { r["age"] = map[string]any{} }), `record 0: field "age": want a number, got an object`},
		{"no records", []byte(`{"records": []}`), "no records"},
		{"top level", []byte(`{"rows": []}`), `unknown field "rows"`},
		{"not an object", []byte(`{"records": [1]}`), "record 0: want an object, got 1"},
		{"truncated", body(t, good)[:40], "invalid JSON"},
		{"trailing", append(body(t, good), 'x'), "trailing data"},
		{"bad number", []byte(`{"records":[{"age": 01}]}`), "invalid JSON"},
		{"duplicate", []byte(`{"records":[{"age": 1, "age": 2}]}`), `record 0: field "age": given twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, r, _ := post(t, ts.URL, c.body)
			if code != 400 || !strings.Contains(r.Error, c.want) {
				t.Fatalf("status %d, error %q; want 400 with %q", code, r.Error, c.want)
			}
		})
	}
	// null is an explicit missing value, imputed as in training; optional
	// sensitive columns may be left out.
	recs := records(d, 2)
	recs[0]["income"] = nil
	recs[1]["purpose"] = nil
	delete(recs[1], "sex")
	if code, r, _ := post(t, ts.URL, body(t, recs)); code != 200 {
		t.Fatalf("nulls: status %d: %s", code, r.Error)
	}
}

func TestBodyTooLarge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	_, ts := newServer(t, DirSource{Dir: dir}, Options{MaxBodyBytes: 2000, MaxRecords: 3})
	big := body(t, records(d, 20))
	if code, r, _ := post(t, ts.URL, big); code != 413 {
		t.Fatalf("status %d (%s), want 413", code, r.Error)
	}
	// Without a Content-Length the limit holds while reading.
	resp, err := http.Post(ts.URL+"/v1/predict", "application/json", io.MultiReader(bytes.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked: status %d, want 413", resp.StatusCode)
	}
	if code, r, _ := post(t, ts.URL, body(t, records(d, 4))); code != 413 || !strings.Contains(r.Error, "more than 3 records") {
		t.Fatalf("4 records: status %d (%s), want 413", code, r.Error)
	}
}

func TestOverloadIs429(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	s, ts := newServer(t, DirSource{Dir: dir}, Options{MaxInFlight: 2, RetryAfter: 3 * time.Second})
	entered, release := make(chan struct{}), make(chan struct{})
	s.scoreHook = func() {
		entered <- struct{}{}
		<-release
	}
	b := body(t, records(d, 1))
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 {
		wg.Go(func() {
			code, _, _ := post(t, ts.URL, b)
			codes <- code
		})
	}
	<-entered
	<-entered
	code, r, h := post(t, ts.URL, b)
	if code != 429 || h.Get("Retry-After") != "3" {
		t.Fatalf("third request: status %d, Retry-After %q (%s); want 429 and 3", code, h.Get("Retry-After"), r.Error)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("admitted request: status %d", c)
		}
	}
	s.scoreHook = nil
	if code, _, _ := post(t, ts.URL, b); code != 200 {
		t.Fatalf("after the load: status %d", code)
	}
}

// flipSource alternates between two model directories each time it is told.
type flipSource struct {
	mu   sync.Mutex
	refs [2]Ref
	cur  int
}

func (f *flipSource) flip() {
	f.mu.Lock()
	f.cur = 1 - f.cur
	f.mu.Unlock()
}

func (f *flipSource) Resolve(context.Context) (Ref, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refs[f.cur], nil
}

func (f *flipSource) Materialize(_ context.Context, r Ref) (Ref, error) { return r, nil }

func twoModels(t *testing.T) (*flipSource, *dataset.Dataset) {
	root := t.TempDir()
	src := &flipSource{}
	var d *dataset.Dataset
	for i := range 2 {
		dir := filepath.Join(root, fmt.Sprint("v", i+1))
		d = trainModel(t, dir, i+1)
		ref, err := DirSource{Dir: dir, Name: "credit"}.Resolve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ref.Version = fmt.Sprint("v", i+1)
		src.refs[i] = ref
	}
	return src, d
}

func TestSwapUnderLoadFailsNothing(t *testing.T) {
	src, d := twoModels(t)
	s, ts := newServer(t, src, Options{MaxInFlight: 64, PollInterval: -1})
	b := body(t, records(d, 3))
	var failed, ok atomic.Int64
	seen := [2]atomic.Int64{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := ts.Client()
	for range 8 {
		wg.Go(func() {
			for range 500 {
				resp, err := client.Post(ts.URL+"/v1/predict", "application/json", bytes.NewReader(b))
				if err != nil {
					failed.Add(1)
					continue
				}
				var r response
				derr := json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if resp.StatusCode != 200 || derr != nil || len(r.Predictions) != 3 {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				if r.Model.Version == "v2" {
					seen[1].Add(1)
				} else {
					seen[0].Add(1)
				}
			}
		})
	}
	swaps := 0
	wg.Go(func() {
		for range 20 {
			select {
			case <-stop:
				return
			default:
			}
			src.flip()
			swapped, err := s.Reload(context.Background())
			if err != nil || !swapped {
				t.Errorf("reload: swapped %v, %v", swapped, err)
				return
			}
			swaps++
		}
	})
	wg.Wait()
	close(stop)
	if failed.Load() != 0 || ok.Load() != 4000 || swaps != 20 {
		t.Fatalf("%d failed, %d ok, %d swaps; want 0, 4000, 20", failed.Load(), ok.Load(), swaps)
	}
	t.Logf("served by v1: %d, v2: %d", seen[0].Load(), seen[1].Load())
}

func TestAdminReload(t *testing.T) {
	src, d := twoModels(t)
	_, ts := newServer(t, src, Options{AdminToken: "s3cret", PollInterval: -1})
	reload := func(token string) int {
		req, _ := http.NewRequest("POST", ts.URL+"/admin/reload", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	src.flip()
	if c := reload(""); c != 401 {
		t.Fatalf("no token: %d", c)
	}
	if c := reload("wrong"); c != 401 {
		t.Fatalf("wrong token: %d", c)
	}
	if _, r, _ := post(t, ts.URL, body(t, records(d, 1))); r.Model.Version != "v1" {
		t.Fatalf("an unauthorised reload swapped: serving %s", r.Model.Version)
	}
	if c := reload("s3cret"); c != 200 {
		t.Fatalf("reload: %d", c)
	}
	if _, r, _ := post(t, ts.URL, body(t, records(d, 1))); r.Model.Version != "v2" {
		t.Fatalf("after reload: serving %s", r.Model.Version)
	}
}

func TestGracefulShutdownDrains(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	s, err := New(context.Background(), DirSource{Dir: dir}, Options{PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	s.scoreHook = func() {
		close(entered)
		<-release
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String()
	codes := make(chan int, 1)
	go func() {
		resp, err := http.Post(url+"/v1/predict", "application/json", bytes.NewReader(body(t, records(d, 1))))
		if err != nil {
			codes <- -1
			return
		}
		resp.Body.Close()
		codes <- resp.StatusCode
	}()
	<-entered
	cancel()
	// Shutdown closes the listener first; once new connections are refused
	// the request in flight must still complete.
	for {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		runtime.Gosched()
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}
	close(release)
	if c := <-codes; c != 200 {
		t.Fatalf("in-flight request: status %d", c)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func TestSampleLogRotates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	logDir := t.TempDir()
	s, ts := newServer(t, DirSource{Dir: dir}, Options{Sample: SampleOptions{Dir: logDir, Rate: 1, MaxBytes: 3000, Keep: 2, Buffer: 10000}})
	b := body(t, records(d, 5))
	for range 40 {
		if code, r, _ := post(t, ts.URL, b); code != 200 {
			t.Fatalf("status %d: %s", code, r.Error)
		}
	}
	s.Close()
	entries, err := os.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	rotated, lines := 0, 0
	for _, e := range entries {
		if e.Name() != SampleFile {
			rotated++
		}
		f, err := os.Open(filepath.Join(logDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var smp Sample
			if err := json.Unmarshal(sc.Bytes(), &smp); err != nil {
				t.Fatalf("%s: invalid line %q: %v", e.Name(), sc.Text(), err)
			}
			if smp.Features["purpose"] == nil || (smp.Label != "yes" && smp.Label != "no") || smp.Version != "dir" {
				t.Fatalf("%s: incomplete sample %+v", e.Name(), smp)
			}
			lines++
		}
		f.Close()
		if fi, _ := e.Info(); fi.Size() > 3000 {
			t.Fatalf("%s is %d bytes, over the 3000 limit", e.Name(), fi.Size())
		}
	}
	if rotated != 2 {
		t.Fatalf("%d rotated files, want the 2 kept (of %v)", rotated, entries)
	}
	if lines == 0 || lines >= 200 {
		t.Fatalf("%d lines kept; rotation should have dropped the oldest of 200", lines)
	}
}

func TestRegistryAliasMove(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	store, err := artifact.Open(ctx, "file://"+filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(store)
	var d *dataset.Dataset
	for i := range 2 {
		dir := filepath.Join(root, fmt.Sprint("m", i))
		d = trainModel(t, dir, i+1)
		dg, err := artifact.PutTree(ctx, store, os.DirFS(dir))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Register(ctx, registry.RegisterRequest{Model: "credit", Artifact: dg, Lineage: registry.Lineage{RunID: "r", StepID: fmt.Sprint("s", i)}, CreatedAt: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	audit := registry.Audit{At: time.Unix(0, 0), Actor: "test"}
	if err := reg.SetAlias(ctx, "credit", "challenger", 1, 0, audit); err != nil {
		t.Fatal(err)
	}
	src := RegistrySource{Registry: reg, Store: store, Model: "credit", Ref: "challenger", CacheDir: filepath.Join(root, "cache")}
	s, ts := newServer(t, src, Options{PollInterval: -1})
	if _, r, _ := post(t, ts.URL, body(t, records(d, 1))); r.Model.Version != "v1" {
		t.Fatalf("serving %q, want v1", r.Model.Version)
	}
	if err := reg.SetAlias(ctx, "credit", "challenger", 2, 1, audit); err != nil {
		t.Fatal(err)
	}
	if swapped, err := s.Reload(ctx); err != nil || !swapped {
		t.Fatalf("reload: %v, %v", swapped, err)
	}
	if _, r, _ := post(t, ts.URL, body(t, records(d, 1))); r.Model.Version != "v2" || r.Model.Name != "credit" {
		t.Fatalf("serving %s %s, want credit v2", r.Model.Name, r.Model.Version)
	}
	if swapped, err := s.Reload(ctx); err != nil || swapped {
		t.Fatalf("reload without a move: %v, %v", swapped, err)
	}
}

func TestMetricsExposed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	_, ts := newServer(t, DirSource{Dir: dir, Name: "credit"}, Options{})
	post(t, ts.URL, body(t, records(d, 2)))
	post(t, ts.URL, []byte(`{}`))
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		MetricRequests + `{code="200",version="dir"} 1`,
		MetricRequests + `{code="400",version="dir"} 1`,
		MetricLatency + `_count{code="200",version="dir"} 1`,
		MetricScore + `_count{version="dir"} 2`,
		MetricInFlight + " 0",
		MetricModelInfo + `{digest="`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
}
