package serving

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

// TestLimitsHoldAgainstAFuzzingClient sends a seeded stream of hostile
// bodies — valid requests with bytes flipped, cut short, repeated, nested
// deep, stuffed with huge numbers and long strings — and checks that every
// answer is a client error or a prediction, never a server error, and that
// the server still answers a good request afterwards.
func TestLimitsHoldAgainstAFuzzingClient(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	fuzzingClient(t, dir, d, Options{})
}

// fuzzingClient runs the hostile stream against the model in dir, whose
// records d holds.
func fuzzingClient(t *testing.T, dir string, d *dataset.Dataset, opts Options) {
	opts.MaxBodyBytes, opts.MaxRecords = 64<<10, 50
	_, ts := newServer(t, DirSource{Dir: dir}, opts)
	good := body(t, records(d, 3))
	rng := rand.New(rand.NewPCG(7, 11))
	mutations := []func([]byte) []byte{
		func(b []byte) []byte { // flip bytes
			c := bytes.Clone(b)
			for range 1 + rng.IntN(8) {
				c[rng.IntN(len(c))] = byte(rng.IntN(256))
			}
			return c
		},
		func(b []byte) []byte { return b[:rng.IntN(len(b))] }, // cut short
		func(b []byte) []byte { // more records than allowed
			return []byte(`{"records":[` + strings.Repeat(`{},`, 60) + `{}]}`)
		},
		func(b []byte) []byte { // deep nesting
			n := 1 + rng.IntN(5000)
			return []byte(`{"records":[{"age":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}]}`)
		},
		func(b []byte) []byte { // numbers and strings out of range
			return []byte(`{"records":[{"age":1e999,"purpose":"` + strings.Repeat("x", rng.IntN(100000)) + `"}]}`)
		},
		func(b []byte) []byte { return bytes.Repeat(b, 1+rng.IntN(40)) }, // concatenated and oversized
		func(b []byte) []byte { // random bytes
			c := make([]byte, rng.IntN(2048))
			for i := range c {
				c[i] = byte(rng.IntN(256))
			}
			return c
		},
	}
	statuses := map[int]int{}
	for i := range 1500 {
		in := mutations[i%len(mutations)](good)
		resp, err := http.Post(ts.URL+"/v1/predict", "application/json", bytes.NewReader(in))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
		switch resp.StatusCode {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		default:
			t.Fatalf("request %d (%.80q…) answered %d", i, in, resp.StatusCode)
		}
	}
	if statuses[http.StatusBadRequest] == 0 || statuses[http.StatusRequestEntityTooLarge] == 0 {
		t.Fatalf("the hostile bodies were not refused as expected: %v", statuses)
	}
	if code, r, _ := post(t, ts.URL, good); code != http.StatusOK || len(r.Predictions) != 3 {
		t.Fatalf("after the fuzzing client: HTTP %d, %d predictions", code, len(r.Predictions))
	}
}
