package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// upstream answers with its name and the body length it received.
func upstream(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d", name, len(b))
	}))
	t.Cleanup(s.Close)
	return s
}

const token = "t0ken"

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

type fixture struct {
	r   *Router
	reg *prometheus.Registry
	ts  *httptest.Server
}

func setup(t *testing.T, opts Options, weights ...int) *fixture {
	t.Helper()
	for i, name := range []string{"champion", "canary"} {
		opts.Variants = append(opts.Variants, Variant{Name: name, URL: upstream(t, name).URL, Weight: weights[i]})
	}
	opts.AdminToken = token
	opts.Registry = prometheus.NewRegistry()
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(r)
	t.Cleanup(ts.Close)
	return &fixture{r, opts.Registry, ts}
}

// send posts body with headers and returns the serving variant and body.
func (f *fixture) send(t *testing.T, body string, headers ...string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.ts.URL+"/v1/predict", strings.NewReader(body))
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get(HeaderVariant), string(b)
}

func TestWeightedSplit(t *testing.T) {
	f := setup(t, Options{}, 90, 10)
	const n = 10000
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range n / 4 {
				code, v, body := f.send(t, "{}")
				if code != 200 || !strings.HasPrefix(body, v+" ") {
					t.Errorf("status %d, variant %q, body %q", code, v, body)
					return
				}
				mu.Lock()
				counts[v]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Binomial(10000, 0.1): sd 30; 5 sd is a false alarm in about 1 of 3.5
	// million runs.
	if c := counts["canary"]; math.Abs(float64(c)-1000) > 150 || counts["champion"]+c != n {
		t.Fatalf("split %v, want about 9000/1000", counts)
	}
	if got := counter(t, f.r.requests.WithLabelValues("canary", "200")); int(got) != counts["canary"] {
		t.Fatalf("metric counts %v canary requests, responses %d", got, counts["canary"])
	}
}

func TestStickyByKey(t *testing.T) {
	f := setup(t, Options{KeyField: "customer"}, 50, 50)
	first := map[string]string{}
	for round := range 3 {
		for k := range 100 {
			key := fmt.Sprint("user-", k)
			var v string
			if k%2 == 0 {
				_, v, _ = f.send(t, "{}", HeaderKey, key)
			} else {
				body := fmt.Sprintf(`{"customer": %q, "records": []}`, key)
				var got string
				_, v, got = f.send(t, body)
				if want := fmt.Sprintf("%s %d", v, len(body)); got != want {
					t.Fatalf("the upstream got %q, want %q: the body was not passed on whole", got, want)
				}
			}
			if round == 0 {
				first[key] = v
			} else if first[key] != v {
				t.Fatalf("key %s went to %s, then %s", key, first[key], v)
			}
		}
	}
	n := map[string]int{}
	for _, v := range first {
		n[v]++
	}
	if n["champion"] == 0 || n["canary"] == 0 {
		t.Fatalf("100 keys at 50/50 all went one way: %v", n)
	}
}

func TestPinHeader(t *testing.T) {
	f := setup(t, Options{}, 100, 0)
	for range 20 {
		if _, v, _ := f.send(t, "{}", HeaderVariant, "canary"); v != "canary" {
			t.Fatalf("pinned to canary, served by %q", v)
		}
	}
	if code, _, _ := f.send(t, "{}", HeaderVariant, "nope"); code != 400 {
		t.Fatalf("unknown pin: status %d, want 400", code)
	}
	if _, err := f.r.SetWeights(map[string]int{"champion": 0}); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := f.send(t, "{}"); code != 503 {
		t.Fatalf("all weights 0: status %d, want 503", code)
	}
}

func TestAdminAuthAndAtomicity(t *testing.T) {
	f := setup(t, Options{}, 90, 10)
	ctx := context.Background()
	before := f.r.State()
	for _, tok := range []string{"", "wrong", token + "x"} {
		c := &Client{BaseURL: f.ts.URL, Token: tok}
		_, err1 := c.State(ctx)
		_, err2 := c.SetWeights(ctx, map[string]int{"champion": 0, "canary": 100})
		_, err3 := c.UpdateVariants(ctx, VariantsUpdate{Remove: []string{"canary"}})
		for _, err := range []error{err1, err2, err3} {
			var se *StatusError
			if !errors.As(err, &se) || se.Code != 401 {
				t.Fatalf("token %q: %v, want 401", tok, err)
			}
		}
	}
	c := &Client{BaseURL: f.ts.URL, Token: token}
	// Invalid changes are refused whole: one bad entry spoils the rest.
	bad := []func() error{
		func() error { _, err := c.SetWeights(ctx, map[string]int{"champion": 0, "ghost": 100}); return err },
		func() error { _, err := c.SetWeights(ctx, map[string]int{"champion": 50, "canary": -1}); return err },
		func() error {
			_, err := c.UpdateVariants(ctx, VariantsUpdate{Set: []Variant{{Name: "x", URL: "http://127.0.0.1:1", Weight: 1}}, Remove: []string{"ghost"}})
			return err
		},
		func() error {
			_, err := c.UpdateVariants(ctx, VariantsUpdate{Set: []Variant{{Name: "x", URL: "ftp://nowhere", Weight: 1}}, Remove: []string{"canary"}})
			return err
		},
		func() error {
			_, err := c.UpdateVariants(ctx, VariantsUpdate{Remove: []string{"champion", "canary"}})
			return err
		},
	}
	for i, fn := range bad {
		var se *StatusError
		if err := fn(); !errors.As(err, &se) || se.Code != 400 {
			t.Fatalf("bad change %d: %v, want 400", i, err)
		}
	}
	if got, err := c.State(ctx); err != nil || fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("state changed by refused updates: %v (%v), was %v", got, err, before)
	}
	st, err := c.SetWeights(ctx, map[string]int{"champion": 0, "canary": 100})
	if err != nil || st.Version != before.Version+1 {
		t.Fatalf("set weights: %v, %v", st, err)
	}
	shadow := upstream(t, "shadow")
	st, err = c.UpdateVariants(ctx, VariantsUpdate{Set: []Variant{{Name: "shadow", URL: shadow.URL, Weight: 100}}, Remove: []string{"canary"}})
	if err != nil || len(st.Variants) != 2 || st.Variants[1].Name != "shadow" {
		t.Fatalf("update variants: %v, %v", st, err)
	}
	if _, v, _ := f.send(t, "{}"); v != "shadow" {
		t.Fatalf("served by %q, want shadow", v)
	}
}

// While the weights flip between all-champion and all-canary, every request
// is served by one of them: there is no moment without a valid state.
func TestConcurrentChangesAreAtomic(t *testing.T) {
	f := setup(t, Options{}, 100, 0)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			w := map[string]int{"champion": 100, "canary": 0}
			if i%2 == 1 {
				w = map[string]int{"champion": 0, "canary": 100}
			}
			if _, err := f.r.SetWeights(w); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 500 {
		if code, v, _ := f.send(t, "{}"); code != 200 || (v != "champion" && v != "canary") {
			t.Fatalf("status %d, variant %q", code, v)
		}
	}
	close(stop)
	wg.Wait()
}

func TestUpstreamFailureIs502(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	f := setup(t, Options{}, 100, 0)
	if _, err := f.r.UpdateVariants(VariantsUpdate{Set: []Variant{{Name: "canary", URL: dead, Weight: 0}}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if code, v, _ := f.send(t, "{}", HeaderVariant, "canary"); code != 502 || v != "canary" {
			t.Fatalf("status %d, variant %q; want 502 from canary", code, v)
		}
	}
	f.send(t, "{}")
	if got := counter(t, f.r.errors.WithLabelValues("canary", "502")); got != 3 {
		t.Fatalf("canary errors %v, want 3", got)
	}
	if got := counter(t, f.r.errors.WithLabelValues("champion", "502")); got != 0 {
		t.Fatalf("champion errors %v, want 0", got)
	}
	resp, err := http.Get(f.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		MetricErrors + `{code="502",variant="canary"} 3`,
		MetricRequests + `{code="200",variant="champion"} 1`,
		MetricLatency + `_count{variant="canary"} 3`,
		MetricWeight + `{variant="champion"} 100`,
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// A fault aborts exactly its share of the variant's requests, counted as the
// status it answers, survives weight changes and ends with the variant.
func TestFaultAbortsExactShare(t *testing.T) {
	f := setup(t, Options{}, 50, 50)
	ctx := context.Background()
	if _, err := (&Client{BaseURL: f.ts.URL, Token: "wrong"}).SetFaults(ctx, map[string]Fault{"canary": {AbortPercent: 20}}); err == nil {
		t.Fatal("faults set with a wrong token")
	}
	c := &Client{BaseURL: f.ts.URL, Token: token}
	before := f.r.State()
	for i, bad := range []map[string]Fault{
		{"canary": {AbortPercent: 20}, "ghost": {AbortPercent: 1}},
		{"canary": {AbortPercent: 101}},
		{"canary": {AbortPercent: 20, Status: 200}},
	} {
		var se *StatusError
		if _, err := c.SetFaults(ctx, bad); !errors.As(err, &se) || se.Code != 400 {
			t.Fatalf("bad faults %d: %v, want 400", i, err)
		}
	}
	if got := f.r.State(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("state changed by refused faults: %v, was %v", got, before)
	}
	st, err := c.SetFaults(ctx, map[string]Fault{"canary": {AbortPercent: 20}})
	if err != nil || st.Faults["canary"] != (Fault{AbortPercent: 20, Status: 503}) || len(st.Faults) != 1 {
		t.Fatalf("set faults: %+v, %v", st, err)
	}
	// A weight change in the middle must neither lose the fault nor
	// restart its count.
	var aborted []int
	for i := 1; i <= 100; i++ {
		if i == 51 {
			if st, err := c.SetWeights(ctx, map[string]int{"champion": 0, "canary": 100}); err != nil || st.Faults["canary"].AbortPercent != 20 {
				t.Fatalf("weights after fault: %+v, %v", st, err)
			}
		}
		code, v, body := f.send(t, "{}", HeaderVariant, "canary")
		if v != "canary" {
			t.Fatalf("request %d served by %q", i, v)
		}
		switch code {
		case 503:
			aborted = append(aborted, i)
			if !strings.Contains(body, "fault injected") {
				t.Fatalf("aborted request %d answered %q", i, body)
			}
		case 200:
		default:
			t.Fatalf("request %d: status %d", i, code)
		}
	}
	if want := []int{5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100}; fmt.Sprint(aborted) != fmt.Sprint(want) {
		t.Fatalf("aborted requests %v, want %v", aborted, want)
	}
	if got := counter(t, f.r.requests.WithLabelValues("canary", "503")); got != 20 {
		t.Fatalf("requests{canary,503} = %v, want 20", got)
	}
	if got := counter(t, f.r.errors.WithLabelValues("canary", "503")); got != 20 {
		t.Fatalf("errors{canary,503} = %v, want 20", got)
	}
	for range 10 {
		if code, _, _ := f.send(t, "{}", HeaderVariant, "champion"); code != 200 {
			t.Fatalf("champion, without a fault, answered %d", code)
		}
	}

	if st, err := c.SetFaults(ctx, map[string]Fault{"canary": {AbortPercent: 100, Status: 429}}); err != nil || st.Faults["canary"].Status != 429 {
		t.Fatalf("change fault: %+v, %v", st, err)
	}
	if code, _, _ := f.send(t, "{}", HeaderVariant, "canary"); code != 429 {
		t.Fatalf("abort_percent 100, status 429: answered %d", code)
	}
	if st, err := c.SetFaults(ctx, map[string]Fault{"canary": {}}); err != nil || st.Faults != nil {
		t.Fatalf("remove fault: %+v, %v", st, err)
	}
	if code, _, _ := f.send(t, "{}", HeaderVariant, "canary"); code != 200 {
		t.Fatalf("fault removed: answered %d", code)
	}
	if _, err := c.SetFaults(ctx, map[string]Fault{"canary": {AbortPercent: 50}}); err != nil {
		t.Fatal(err)
	}
	st, err = c.UpdateVariants(ctx, VariantsUpdate{Remove: []string{"canary"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err = c.UpdateVariants(ctx, VariantsUpdate{Set: []Variant{{Name: "canary", URL: upstream(t, "canary").URL, Weight: 1}}})
	if err != nil || st.Faults != nil {
		t.Fatalf("a variant removed and added again kept its fault: %+v, %v", st, err)
	}
}
