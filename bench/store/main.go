// Command store measures what putting the fleet's artifact store on an S3
// server costs the credit-risk gauntlet against a file:// store on the same
// disk: it starts Temporal's dev server (the official CLI's, in memory),
// Versity's S3 gateway on loopback behind a counting proxy, and for each
// run a fresh worker process (bin/worker) with a fresh store, then runs
// credit-risk (a local node provisioned through Terraform, training,
// quantize, evaluate, fairness, explain, report, approval, a canary under
// generated traffic; the monitor is off, since it only waits) and times it
// from start to close on the server's clock. The sides alternate run by
// run, the first side swapping each pair. It prints every run, then
// min/median/max per side, the ratio of the medians, and what each S3 run
// sent to and read from the store (requests by method, bytes each way) or
// wrote into the file store.
//
// Usage, from the repository root (bench/store/run.sh builds and runs it):
//
//	go run ./bench/store -pairs 7 -worker bin/worker
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/bench/countproxy"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"github.com/gauntlet-ml/gauntlet/internal/traffic"
)

const (
	bucket    = "bench"
	accessKey = "benchaccess"
	region    = "us-east-1"
)

type config struct {
	pairs                                  int
	worker, temporal, versitygw, terraform string
	pipelines, modules, data, keep         string
	steps                                  bool
}

func main() {
	var c config
	flag.IntVar(&c.pairs, "pairs", 7, "pairs of runs (file, s3), alternating")
	flag.StringVar(&c.worker, "worker", "bin/worker", "worker binary (go build -o bin/worker ./worker)")
	flag.StringVar(&c.temporal, "temporal", "bin/temporal", "the official temporal CLI, for its dev server")
	flag.StringVar(&c.versitygw, "versitygw", "bin/versitygw", "Versity's S3 gateway")
	flag.StringVar(&c.terraform, "terraform", "bin/terraform", "Terraform, which provisions the run's local node")
	flag.StringVar(&c.pipelines, "pipelines", "pipelines", "directory of pipeline definitions")
	flag.StringVar(&c.modules, "modules", "infra/modules", "Terraform modules")
	flag.StringVar(&c.data, "data", "builtin:credit-risk?rows=20000&seed=7&bias=0.3", "the pipeline's data parameter")
	flag.StringVar(&c.keep, "keep", "", "keep the runs' directories under this directory (default: a temporary one, removed)")
	flag.BoolVar(&c.steps, "steps", false, "print each run's steps with their times, on stderr")
	flag.Parse()
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "store:", err)
		os.Exit(1)
	}
}

type result struct {
	side     string
	took     time.Duration
	load     string
	counts   countproxy.Counts
	written  int64 // file store: bytes in the store after the run
	objects  int64 // objects (files) in the store after the run
	pairSlot int
}

func run(c config, out io.Writer) error {
	for _, p := range []*string{&c.worker, &c.temporal, &c.versitygw, &c.terraform, &c.pipelines, &c.modules} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("%s: %w (see bench/store/run.sh)", *p, err)
		}
		*p = abs
	}
	root := c.keep
	if root == "" {
		var err error
		if root, err = os.MkdirTemp("", "gauntlet-store-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(root)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()

	addr, err := freeAddr()
	if err != nil {
		return err
	}
	tp, err := startTemporal(ctx, c.temporal, addr, root)
	if err != nil {
		return err
	}
	defer stop(tp)
	tc, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer tc.Close()

	secret := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	s3addr, err := freeAddr()
	if err != nil {
		return err
	}
	gw := exec.Command(c.versitygw, "--port", s3addr, "--region", region, "--quiet", "posix", filepath.Join(root, "s3"))
	gw.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+accessKey, "ROOT_SECRET_ACCESS_KEY="+secret)
	if err := os.MkdirAll(filepath.Join(root, "s3"), 0o755); err != nil {
		return err
	}
	if err := startLogged(gw, filepath.Join(root, "s3.log")); err != nil {
		return err
	}
	defer stop(gw)
	if err := createBucket(ctx, "http://"+s3addr, secret); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	proxy, err := countproxy.Serve(l, "http://"+s3addr, nil)
	if err != nil {
		return err
	}
	defer proxy.Close()
	endpoint := "http://" + l.Addr().String()

	fmt.Fprintf(out, "credit-risk, %s, canary_interval 1s, monitor off; store file:// against s3:// (versitygw on loopback, through a counting proxy)\n", c.data)
	fmt.Fprintf(out, "machine: %d CPUs, %s; start load %s\n", runtime.NumCPU(), runtime.Version(), loadavg())
	var results []result
	for i := range c.pairs {
		sides := []string{"file", "s3"}
		if i%2 == 1 {
			slices.Reverse(sides)
		}
		for slot, side := range sides {
			dir := filepath.Join(root, fmt.Sprintf("run-%02d-%s", i+1, side))
			store := "file://" + filepath.Join(dir, "store")
			if side == "s3" {
				store = fmt.Sprintf("s3://%s/run-%02d?region=%s&endpoint=%s", bucket, i+1, region, endpoint)
			}
			r := result{side: side, pairSlot: slot}
			measure := func() {
				proxy.Reset()
				r.load = loadavg()
				if side == "file" {
					r.written, r.objects = du(filepath.Join(dir, "store"))
				}
			}
			if r.took, err = oneRun(ctx, c, tc, addr, secret, dir, store, fmt.Sprintf("bench-store-%02d-%s", i+1, side), measure); err != nil {
				return fmt.Errorf("pair %d, %s: %w", i+1, side, err)
			}
			if side == "s3" {
				r.counts = proxy.Counts()
			} else {
				written, objects := du(filepath.Join(dir, "store"))
				r.written, r.objects = written-r.written, objects-r.objects
			}
			results = append(results, r)
			fmt.Fprintf(out, "pair %d %-4s %8s  load %s  %s\n", i+1, side, r.took.Round(time.Millisecond), r.load, r.describe())
		}
	}
	summarize(out, results)
	return nil
}

func (r result) describe() string {
	if r.side == "s3" {
		return fmt.Sprintf("store: %d requests (%s), up %s, down %s", r.counts.Total(), r.counts, mib(r.counts.Up), mib(r.counts.Down))
	}
	return fmt.Sprintf("store: %s in %d files written", mib(r.written), r.objects)
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

func summarize(out io.Writer, results []result) {
	took := map[string][]time.Duration{}
	for _, r := range results {
		took[r.side] = append(took[r.side], r.took)
	}
	fmt.Fprintln(out)
	med := map[string]time.Duration{}
	for _, side := range []string{"file", "s3"} {
		t := slices.Clone(took[side])
		slices.Sort(t)
		med[side] = median(t)
		fmt.Fprintf(out, "%-4s  min %8s  median %8s  max %8s  (%d runs)\n", side, t[0].Round(time.Millisecond), med[side].Round(time.Millisecond), t[len(t)-1].Round(time.Millisecond), len(t))
	}
	var ratios []float64
	for i := 0; i+1 < len(results); i += 2 {
		a, b := results[i], results[i+1]
		if a.side == "s3" {
			a, b = b, a
		}
		ratios = append(ratios, float64(b.took)/float64(a.took))
	}
	slices.Sort(ratios)
	fmt.Fprintf(out, "s3/file: ratio of medians %.3f; per pair min %.3f median %.3f max %.3f\n",
		float64(med["s3"])/float64(med["file"]), ratios[0], ratios[len(ratios)/2], ratios[len(ratios)-1])
	var reqs, up, down []int64
	for _, r := range results {
		if r.side == "s3" {
			reqs, up, down = append(reqs, r.counts.Total()), append(up, r.counts.Up), append(down, r.counts.Down)
		}
	}
	for _, s := range [][]int64{reqs, up, down} {
		slices.Sort(s)
	}
	fmt.Fprintf(out, "s3 per run: requests min %d median %d max %d; up median %s; down median %s\n",
		reqs[0], reqs[len(reqs)/2], reqs[len(reqs)-1], mib(up[len(up)/2]), mib(down[len(down)/2]))
	fmt.Fprintf(out, "end load %s\n", loadavg())
}

func median(t []time.Duration) time.Duration {
	n := len(t)
	if n%2 == 1 {
		return t[n/2]
	}
	return (t[n/2-1] + t[n/2]) / 2
}

// oneRun starts a worker with the store and runs credit-risk through it
// twice: once to make a champion, untimed, then, after calling measure,
// the run it returns the time of (start to close, on the server's clock),
// which canaries its model against that champion as a nightly run does.
func oneRun(ctx context.Context, c config, tc client.Client, addr, secret, dir, store, id string, measure func()) (time.Duration, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	queue := "q-" + id
	w := exec.Command(c.worker, "--address", addr, "--task-queue", queue, "--state-dir", filepath.Join(dir, "state"),
		"--store", store, "--pipelines", c.pipelines, "--log-level", "warn")
	w.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+accessKey, "AWS_SECRET_ACCESS_KEY="+secret, "AWS_REGION="+region,
		"GAUNTLET_WORKER_BINARY="+c.worker, "GAUNTLET_INFRA_MODULES="+c.modules, "GAUNTLET_TERRAFORM="+c.terraform,
		"TEMPORAL_ADDRESS="+addr, "TEMPORAL_NAMESPACE=default")
	if err := startLogged(w, filepath.Join(dir, "worker.log")); err != nil {
		return 0, err
	}
	defer stop(w)
	if _, err := credit(ctx, c, tc, queue, id+"-champion", dir); err != nil {
		return 0, err
	}
	measure()
	return credit(ctx, c, tc, queue, id, dir)
}

// credit runs credit-risk on queue and returns its time.
func credit(ctx context.Context, c config, tc client.Client, queue, id, dir string) (time.Duration, error) {
	h, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, contract.PipelineName, contract.PipelineInput{
		Pipeline: "credit-risk", StartedBy: "bench/store",
		Params: map[string]any{"data": c.data, "canary_interval": "1s", "monitor": false},
	})
	if err != nil {
		return 0, err
	}
	done := make(chan struct{})
	defer close(done)
	go approve(ctx, tc, id, done)
	go clients(ctx, tc, id, done)
	var res contract.Result
	if err := h.Get(ctx, &res); err != nil {
		return 0, fmt.Errorf("%w (worker log %s)", err, filepath.Join(dir, "worker.log"))
	}
	if c.steps {
		for _, st := range res.Steps {
			took := time.Duration(0)
			if st.StartedAt != nil && st.EndedAt != nil {
				took = st.EndedAt.Sub(*st.StartedAt)
			}
			fmt.Fprintf(os.Stderr, "  %-10s %-14s %-10s %8s %s\n", st.ID, st.Uses, st.State, took.Round(time.Millisecond), st.Reason)
		}
	}
	d, err := tc.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return 0, err
	}
	info := d.GetWorkflowExecutionInfo()
	if c.steps {
		fmt.Fprintf(os.Stderr, "  %s: %d history events\n", id, info.GetHistoryLength())
	}
	return info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime()), nil
}

func approve(ctx context.Context, tc client.Client, id string, done <-chan struct{}) {
	for {
		h, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: contract.ApproveName,
			Args: []any{contract.Decision{Reviewer: "demo-reviewer", Comment: "bench"}}, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err == nil && h.Get(ctx, nil) == nil {
			return
		}
		select {
		case <-done:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var routerURL = regexp.MustCompile(`behind (http://\S+)`)

// clients send the usual population to the router while the canary runs,
// as the demo's clients do.
func clients(ctx context.Context, tc client.Client, id string, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		default:
		}
		target := ""
		if v, err := tc.QueryWorkflow(ctx, id, "", contract.StatusQuery); err == nil {
			var st contract.Status
			if v.Get(&st) == nil {
				for _, s := range st.Steps {
					if m := routerURL.FindStringSubmatch(s.Reason); s.State == contract.StateRunning && m != nil {
						target = m[1]
					}
				}
			}
		}
		if target == "" {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		_, _ = traffic.Run(ctx, traffic.Options{Target: target, Data: "builtin:credit-risk?rows=2000&seed=11&bias=0.3",
			Rate: 40, Duration: time.Second, Batch: 10, Client: &http.Client{Timeout: 10 * time.Second}})
	}
}

func startTemporal(ctx context.Context, bin, addr, root string) (*exec.Cmd, error) {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"server", "start-dev", "--headless", "--ip", host, "--port", port, "--log-level", "error",
		"--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
		"--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
		"--dynamic-config-value", "history.transferProcessorMaxPollRPS=10000",
		"--dynamic-config-value", `history.longPollExpirationInterval="3s"`}
	for name := range searchattr.Definitions() {
		args = append(args, "--search-attribute", name+"=Keyword")
	}
	cmd := exec.Command(bin, args...)
	if err := startLogged(cmd, filepath.Join(root, "temporal.log")); err != nil {
		return nil, err
	}
	// The dev server answers before its search attributes are usable.
	tc, err := dial(ctx, addr)
	if err != nil {
		stop(cmd)
		return nil, err
	}
	defer tc.Close()
	for {
		res, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
		if err == nil {
			ok := true
			for name := range searchattr.Definitions() {
				ok = ok && res.GetCustomAttributes()[name] == enumspb.INDEXED_VALUE_TYPE_KEYWORD
			}
			if ok {
				return cmd, nil
			}
		}
		select {
		case <-ctx.Done():
			stop(cmd)
			return nil, errors.New("temporal dev server: search attributes never appeared")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dial connects to a server that may still be starting.
func dial(ctx context.Context, addr string) (client.Client, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := tclient.Dial(ctx, tclient.Options{Address: addr, Namespace: "default"}, 10*time.Second)
		if err == nil || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func createBucket(ctx context.Context, endpoint, secret string) error {
	c := s3.New(s3.Options{Region: region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, secret, "")})
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw at %s: %w", endpoint, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startLogged(cmd *exec.Cmd, logPath string) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	go func() {
		_ = cmd.Wait()
		f.Close()
	}()
	return nil
}

// stop asks a process to end and kills it after a while.
func stop(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	for range 300 {
		if cmd.Process.Signal(syscall.Signal(0)) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// du sums the sizes of the regular files under dir.
func du(dir string) (bytes, files int64) {
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			bytes += info.Size()
			files++
		}
		return nil
	})
	return bytes, files
}
