package cli

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gauntlet-ml/gauntlet/internal/traffic"
)

type trafficFlags struct {
	target      string
	data        string
	rate        float64
	duration    time.Duration
	batch       int
	concurrency int
	drift       []string
	label       string
	headers     []string
}

func (a *app) trafficCommand() *cobra.Command {
	var f trafficFlags
	cmd := &cobra.Command{
		Use:   "traffic --target URL --data SOURCE --rate R --duration D",
		Short: "Replay a data set against a model server at a fixed rate and report what came back",
		Long: `traffic posts the records of SOURCE (a CSV file or a builtin: URI) to URL at
--rate requests per second for --duration, never faster and never more than
rate × duration requests, and prints how many were answered, the errors by HTTP
status (0: no answer) and the latency percentiles. --drift shifts a numeric
feature (age+10, income*0.8) to exercise drift monitoring. Ctrl-C stops early
and still reports. Exits 1 when not one request succeeded.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.traffic(ctx, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.target, "target", "", "base URL of the model server or router; requests go to /v1/predict unless the URL has a path")
	fl.StringVar(&f.data, "data", "", "records to send: a CSV path or a builtin: URI (e.g. builtin:credit-risk?rows=1000)")
	fl.Float64Var(&f.rate, "rate", 0, "requests per second")
	fl.DurationVar(&f.duration, "duration", 0, "how long to send for, e.g. 30s")
	fl.IntVar(&f.batch, "batch", 1, "records per request")
	fl.IntVar(&f.concurrency, "concurrency", 32, "most requests in flight; ticks that find them all busy are dropped")
	fl.StringArrayVar(&f.drift, "drift", nil, "shift a numeric feature: FEATURE+DELTA, FEATURE-DELTA or FEATURE*FACTOR (repeatable)")
	fl.StringVar(&f.label, "label", "", "label column of a CSV, left out of the records (builtin sources know theirs)")
	fl.StringArrayVar(&f.headers, "header", nil, "HTTP header K=V added to every request (repeatable)")
	return cmd
}

// options checks every flag up front: traffic.Run would refuse most of them
// too, but only as a failure, not as a usage error naming the flag.
func (f trafficFlags) options() (traffic.Options, error) {
	var o traffic.Options
	if f.target == "" {
		return o, usagef("--target URL is required")
	}
	if u, err := url.Parse(f.target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return o, usagef("--target %q: want an http:// or https:// URL", f.target)
	}
	if f.data == "" {
		return o, usagef("--data SOURCE is required (a CSV path or builtin:credit-risk)")
	}
	if !strings.HasPrefix(f.data, "builtin:") && f.label == "" {
		return o, usagef("--label COL is required with CSV data, so the label is not sent as a feature")
	}
	if !(f.rate > 0) || math.IsInf(f.rate, 0) {
		return o, usagef("--rate %v: want a positive number of requests per second", f.rate)
	}
	if f.duration <= 0 {
		return o, usagef("--duration %v: want a positive duration such as 30s", f.duration)
	}
	// Run sends on ticks of its rate that come before the deadline, none at
	// the start.
	if period := time.Duration(float64(time.Second) / f.rate); period >= f.duration {
		return o, usagef("--rate %v sends its first request after %v, so --duration %v sends none", f.rate, period, f.duration)
	}
	if f.batch <= 0 {
		return o, usagef("--batch %d: want a positive number of records", f.batch)
	}
	if f.concurrency <= 0 {
		return o, usagef("--concurrency %d: want a positive number", f.concurrency)
	}
	for _, s := range f.drift {
		d, err := traffic.ParseDrift(s)
		if err != nil {
			return o, withCode(ExitUsage, fmt.Errorf("--drift: %w", err))
		}
		o.Drift = append(o.Drift, d)
	}
	if len(f.headers) > 0 {
		o.Header = http.Header{}
	}
	for _, kv := range f.headers {
		k, v, ok := splitKV(kv)
		if !ok {
			return o, usagef("--header %q is not K=V", kv)
		}
		o.Header.Add(k, v)
	}
	o.Target, o.Data, o.Label = f.target, f.data, f.label
	o.Rate, o.Duration = f.rate, f.duration
	o.Batch, o.Concurrency = f.batch, f.concurrency
	return o, nil
}

// trafficReport is the JSON form of a run: durations in readable units
// rather than the nanoseconds time.Duration encodes to.
type trafficReport struct {
	Target  string `json:"target"`
	Sent    int    `json:"sent"`
	Records int    `json:"records"`
	OK      int    `json:"ok"`
	// Errors counts failed requests by HTTP status, 0 for no answer.
	Errors map[int]int `json:"errors"`
	// CutOff are requests still in flight when Ctrl-C stopped the run.
	CutOff     int     `json:"cut_off"`
	Rate       float64 `json:"rate"`
	TargetRate float64 `json:"target_rate"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	ElapsedS   float64 `json:"elapsed_s"`
}

func (a *app) traffic(ctx context.Context, opts traffic.Options) error {
	res, err := traffic.Run(ctx, opts)
	if err != nil {
		return err
	}
	failed := 0
	for _, n := range res.Errors {
		failed += n
	}
	rep := trafficReport{
		Target: res.Target, Sent: res.Sent, Records: res.Records, OK: res.OK, Errors: res.Errors,
		CutOff: res.Sent - res.OK - failed, Rate: res.Rate, TargetRate: opts.Rate,
		P50ms: ms(res.P50), P99ms: ms(res.P99), ElapsedS: res.Elapsed.Seconds(),
	}
	if a.jsonOut() {
		err = a.printJSON(rep)
	} else {
		err = a.printTraffic(rep)
	}
	if err != nil {
		return err
	}
	switch {
	case res.Sent == 0:
		return withCode(ExitFailed, fmt.Errorf("traffic: sent no request to %s", res.Target))
	case res.OK == 0:
		return withCode(ExitFailed, fmt.Errorf("traffic: all %d requests to %s failed", res.Sent, res.Target))
	}
	return nil
}

func (a *app) printTraffic(r trafficReport) error {
	var errs []string
	codes := make([]int, 0, len(r.Errors))
	for c := range r.Errors {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		what := fmt.Sprint(c)
		if c == 0 {
			what = "no answer"
		}
		errs = append(errs, fmt.Sprintf("%d × %s", r.Errors[c], what))
	}
	if len(errs) == 0 {
		errs = []string{"none"}
	}
	if r.CutOff > 0 {
		errs = append(errs, fmt.Sprintf("%d cut off", r.CutOff))
	}
	latency := fmt.Sprintf("p50 %.2fms, p99 %.2fms", r.P50ms, r.P99ms)
	if r.Sent-r.CutOff-r.Errors[0] == 0 {
		latency = "nothing answered"
	}
	_, err := fmt.Fprintf(a.stdout, "Sent %d requests (%d records) to %s in %.2fs: %.1f/s of %g/s\nOK %d, errors: %s\nLatency %s\n",
		r.Sent, r.Records, r.Target, r.ElapsedS, r.Rate, r.TargetRate, r.OK, strings.Join(errs, ", "), latency)
	return err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
