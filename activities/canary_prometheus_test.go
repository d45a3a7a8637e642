package activities

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"github.com/gauntlet-ml/gauntlet/internal/traffic"
)

// TestCanaryAnalysisThroughPrometheus runs two canaries the way the
// canary-deploy workflow does, with the real activities judging each
// interval through a real Prometheus that scrapes the router while traffic
// flows: a good candidate is promoted; one whose variant aborts 20% of its
// requests by injected fault is rolled back by the analysis alone.
func TestCanaryAnalysisThroughPrometheus(t *testing.T) {
	bin := testkit.Tool(t, "prometheus")
	ctx := context.Background()
	f := newRegistryFixture(t)
	bad := filepath.Join(t.TempDir(), "bad")
	trainModel(t, bad, 4)
	local := deploy.NewLocal(deploy.Options{StateDir: f.state, Workspace: f.ws, Serving: serving.Options{PollInterval: 20 * time.Millisecond}})
	t.Cleanup(func() {
		if err := local.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	env, _ := testEnv(t, Config{PipelinesDir: t.TempDir(), StateDir: f.state, Workspace: f.ws, Deploy: embeddedOnly(t, local)})

	// The router comes first and keeps its port through both canaries, so
	// Prometheus can be pointed at it once.
	de, err := local.Ensure(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(de.RouterMetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	prom := startPrometheus(t, bin, target.Host)

	tctx, stopTraffic := context.WithCancel(ctx)
	var sent sync.WaitGroup
	sent.Go(func() {
		// The result is not judged: the analysis is.
		_, _ = traffic.Run(tctx, traffic.Options{Target: de.RouterURL, Data: "builtin:credit-risk?rows=200&seed=9", Rate: 80, Duration: 5 * time.Minute})
	})
	t.Cleanup(func() { stopTraffic(); sent.Wait() })

	analysis := canary.Analysis{
		Checks: []canary.Check{
			{Name: "error rate", Metric: canary.ErrorRate, Max: 0.05, MinRequests: 20},
			// Latency and score shift are not what this test is about: the
			// bounds only keep a loaded machine or two tiny models that
			// disagree from failing a good candidate.
			{Name: "p99 latency", Metric: canary.P99Latency, Max: 5, MinRequests: 20},
			{Name: "score shift", Metric: canary.ScoreShift, Max: 10, MinRequests: 20},
		},
		FailureLimit: 2, InconclusiveLimit: 3,
	}
	pc := &contract.CanaryPrometheus{URL: prom, Matchers: `job="router"`}
	c := canaryDriver{t: t, env: env, analysis: analysis, prom: pc, interval: 4 * time.Second, weights: []int{25, 50, 100}}

	queried := promQueries(t, prom)
	good := c.run("run-good", f.candidate, nil)
	if good.decision != "promoted" {
		t.Fatalf("good candidate: %s after %+v", good.decision, good.results)
	}
	if n := promQueries(t, prom); n <= queried {
		t.Fatal("the analysis never queried Prometheus")
	}
	champion := resolveChampion(t, f.reg)
	if champion != good.start.Version {
		t.Fatalf("champion v%d after promoting v%d", champion, good.start.Version)
	}
	after, _ := local.Describe(modelName)
	if s, _ := after.Variant(deploy.Stable); fmt.Sprint(after.Weights) != "map[stable:100]" || s.Version != fmt.Sprint("v", champion) {
		t.Fatalf("after promotion: weights %v, stable %+v", after.Weights, s)
	}

	faulty := c.run("run-bad", bad, func() {
		if _, err := local.SetFault(ctx, modelName, deploy.Canary, 20, 0); err != nil {
			t.Fatal(err)
		}
	})
	if faulty.decision != string(canary.Rollback) {
		t.Fatalf("candidate aborting 20%%: %s after %+v", faulty.decision, faulty.results)
	}
	last := faulty.results[len(faulty.results)-1]
	if ch := last.Checks[0]; ch.Outcome != canary.Fail || !(ch.Value > 0.05) {
		t.Fatalf("rolled back, but not for the error rate: %+v", last.Checks)
	}
	if got := resolveChampion(t, f.reg); got != champion {
		t.Fatalf("champion v%d after a rollback, was v%d", got, champion)
	}
	after, _ = local.Describe(modelName)
	if _, has := after.Variant(deploy.Canary); has || fmt.Sprint(after.Weights) != "map[stable:100]" || after.Faults != nil {
		t.Fatalf("after rollback: weights %v, variants %+v, faults %v", after.Weights, after.Variants, after.Faults)
	}
}

// canaryDriver runs the canary activities in the workflow's order (see
// runCanary): start, then per weight move the traffic, let an interval
// pass, measure and let the tracker decide; promote when every weight
// passed, abort at the first rollback.
type canaryDriver struct {
	t        *testing.T
	env      *testsuite.TestActivityEnvironment
	analysis canary.Analysis
	prom     *contract.CanaryPrometheus
	interval time.Duration
	weights  []int
}

type canaryOutcome struct {
	start    contract.CanaryStartResult
	decision string
	results  []canary.Result
}

func (c canaryDriver) run(runID, model string, started func()) canaryOutcome {
	t := c.t
	t.Helper()
	var out canaryOutcome
	v, err := c.env.ExecuteActivity(contract.CanaryStartName, contract.CanaryStartInput{RunID: runID, StepID: "canary", Name: modelName, Model: model})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Get(&out.start); err != nil {
		t.Fatal(err)
	}
	if started != nil {
		started()
	}
	var tracker canary.Tracker
	for _, w := range c.weights {
		if _, err := c.env.ExecuteActivity(contract.CanaryWeightName, contract.CanaryWeightInput{Name: modelName, Percent: w}); err != nil {
			t.Fatal(err)
		}
		// The workflow's timer: traffic flows at this weight for an
		// interval, which is what gets measured.
		time.Sleep(c.interval)
		v, err := c.env.ExecuteActivity(contract.CanaryMeasureName, contract.CanaryMeasureInput{Name: modelName, Analysis: c.analysis, Interval: c.interval, Prometheus: c.prom})
		if err != nil {
			t.Fatal(err)
		}
		var res canary.Result
		if err := v.Get(&res); err != nil {
			t.Fatal(err)
		}
		out.results = append(out.results, res)
		t.Logf("%s at %d%%: %s %+v", runID, w, res.Outcome, res.Checks)
		if d := tracker.Record(c.analysis, res.Outcome); d != canary.Continue {
			if _, err := c.env.ExecuteActivity(contract.CanaryAbortName, contract.CanaryAbortInput{Name: modelName, Reason: string(d)}); err != nil {
				t.Fatal(err)
			}
			out.decision = string(d)
			return out
		}
	}
	in := contract.CanaryPromoteInput{Name: modelName, Version: out.start.Version, ExpectedChampion: out.start.Champion, RunID: runID, Actor: "test", Reason: "analysis passed"}
	if _, err := c.env.ExecuteActivity(contract.CanaryPromoteName, in); err != nil {
		t.Fatal(err)
	}
	out.decision = "promoted"
	return out
}

func resolveChampion(t *testing.T, reg *registry.Registry) int {
	t.Helper()
	mv, err := reg.Resolve(context.Background(), modelName, registry.Champion)
	if err != nil {
		t.Fatal(err)
	}
	return mv.Version
}

// startPrometheus runs bin scraping target every second, with its config
// and storage in temporary directories, and returns its URL once it has
// scraped target successfully.
func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: router
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited: %v\n%s", err, logs.String())
		default:
		}
		if up, err := scraped(base); err == nil && up {
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus at %s has not scraped %s in 30s\n%s", base, target, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scraped tells whether Prometheus has a successful scrape of its target.
func scraped(base string) (bool, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(`up{job="router"}`))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return false, err
	}
	return len(r.Data.Result) == 1 && r.Data.Result[0].Value[1] == "1", nil
}

// promQueries is how many instant queries Prometheus has answered, from
// its own metrics.
func promQueries(t *testing.T, base string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "prometheus_http_requests_total{") || !strings.Contains(line, `handler="/api/v1/query"`) {
			continue
		}
		fields := strings.Fields(line)
		n, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("prometheus metrics: %q: %v", line, err)
		}
		total += n
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// embeddedOnly is the target set of a worker with the embedded target only,
// the one a test holds.
func embeddedOnly(t *testing.T, l *deploy.Local) *deploy.Set {
	t.Helper()
	s, err := deploy.NewSet(deploy.Embedded, l)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
