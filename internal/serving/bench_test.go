package serving

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// discard is a ResponseWriter that keeps nothing, so the benchmark measures
// the handler rather than a recorder.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

func benchmarkPredict(b *testing.B, n int) {
	dir := filepath.Join(b.TempDir(), "m")
	d := trainModel(b, dir, 1)
	s, _ := newServer(b, DirSource{Dir: dir}, Options{})
	payload := body(b, records(d, n))
	h := s.Handler()
	req, err := http.NewRequest("POST", "/v1/predict", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.ContentLength = int64(len(payload))
	rd := bytes.NewReader(payload)
	w := &discard{h: http.Header{}}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(payload)
		req.Body = io.NopCloser(rd)
		w.code = 0
		h.ServeHTTP(w, req)
		if w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

func BenchmarkPredict1(b *testing.B)   { benchmarkPredict(b, 1) }
func BenchmarkPredict100(b *testing.B) { benchmarkPredict(b, 100) }

// FuzzDecode checks that the hand-written decoder never panics and accepts
// only bodies that are valid JSON.
func FuzzDecode(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "m")
	d := trainModel(f, dir, 1)
	m, err := LoadModel(Ref{Dir: dir}, "", scoring.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body(f, records(d, 2)))
	f.Add([]byte(`{"records":[{"age":1e3,"purpose":"a\u00e9\n"}]}`))
	f.Add([]byte(`{"records":[{"age":-0.5E-2,"purpose":null}],"records":[]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		b := m.getBatch()
		defer m.putBatch(b)
		if err := decodeRequest(in, m, b, 100); err == nil {
			if !json.Valid(in) {
				t.Fatalf("accepted invalid JSON %q", in)
			}
			if err := m.score(b); err != nil {
				t.Fatal(err)
			}
		}
	})
}
