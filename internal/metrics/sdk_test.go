package metrics

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// TestSDKHandlerSequence replays what the SDK does: root tags for the
// namespace, then narrower handlers per worker and operation, the same name
// emitted under different tag sets.
func TestSDKHandlerSequence(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	root, err := NewSDKHandler(reg)
	if err != nil {
		t.Fatal(err)
	}
	ns := root.WithTags(map[string]string{"namespace": "default", "client_name": "temporal_go"})
	op := ns.WithTags(map[string]string{"operation": "StartWorkflowExecution"})
	op.Counter("temporal_request").Inc(1)
	op.Counter("temporal_request").Inc(2)
	ns.WithTags(map[string]string{"operation": "PollActivityTaskQueue"}).Counter("temporal_request").Inc(1)
	// Same name, a different key set: a checked collector could not hold both.
	ns.Counter("temporal_request").Inc(5)
	op.Counter("temporal_request").Inc(-4) // ignored: counters only go up
	act := ns.WithTags(map[string]string{"activity_type": "step.train", "task_queue": "gauntlet", "workflow_type": "Pipeline"})
	act.Timer("temporal_activity_execution_latency").Record(1500 * time.Millisecond)
	act.Timer("temporal_activity_execution_latency").Record(40 * time.Millisecond)
	ns.WithTags(map[string]string{"worker_type": "ActivityWorker"}).Gauge("temporal_worker_task_slots_available").Update(1000)
	ns.WithTags(map[string]string{"worker_type": "ActivityWorker"}).Gauge("temporal_worker_task_slots_available").Update(998)
	// Later tags overwrite earlier ones of the same key, and the parent
	// handler keeps its own.
	ns.WithTags(map[string]string{"namespace": "other", "bad-key": "x"}).Counter("temporal.odd-name").Inc(1)

	want := `
# HELP temporal_request_total Temporal SDK metric temporal_request_total.
# TYPE temporal_request_total counter
temporal_request_total{client_name="temporal_go",namespace="default"} 5
temporal_request_total{client_name="temporal_go",namespace="default",operation="PollActivityTaskQueue"} 1
temporal_request_total{client_name="temporal_go",namespace="default",operation="StartWorkflowExecution"} 3
# HELP temporal_worker_task_slots_available Temporal SDK metric temporal_worker_task_slots_available.
# TYPE temporal_worker_task_slots_available gauge
temporal_worker_task_slots_available{client_name="temporal_go",namespace="default",worker_type="ActivityWorker"} 998
# HELP temporal_odd_name_total Temporal SDK metric temporal_odd_name_total.
# TYPE temporal_odd_name_total counter
temporal_odd_name_total{bad_key="x",client_name="temporal_go",namespace="other"} 1
# HELP temporal_activity_execution_latency_seconds Temporal SDK metric temporal_activity_execution_latency_seconds.
# TYPE temporal_activity_execution_latency_seconds histogram
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="0.001"} 0
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="0.005"} 0
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="0.01"} 0
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="0.025"} 0
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="0.05"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="0.1"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="0.25"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="0.5"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="1"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="2.5"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="5"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="10"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="30"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="60"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="120"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="300"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="900"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="1800"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="3600"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline",le="+Inf"} 2
temporal_activity_execution_latency_seconds_sum{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline"} 1.54
temporal_activity_execution_latency_seconds_count{activity_type="step.train",client_name="temporal_go",namespace="default",task_queue="gauntlet",workflow_type="Pipeline"} 2
`
	if err := gatherAndCompare(reg, want); err != nil {
		t.Fatal(err)
	}
}

// TestSDKHandlerRealClient lets the SDK's own gRPC interceptor emit through
// the handler: a lazy client whose first call cannot reach a server.
func TestSDKHandlerRealClient(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h, err := NewSDKHandler(reg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1", Namespace: "default", MetricsHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.DescribeWorkflowExecution(ctx, "no-such-run", ""); err == nil {
		t.Fatal("a call to a closed port succeeded")
	}
	n, err := gatherAndCount(reg, "temporal_request_total", "temporal_request_failure_total", "temporal_request_latency_seconds")
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	if n < 3 {
		t.Fatalf("got %d series of temporal_request_total, _failure_total and _latency_seconds, want at least one each", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "temporal_request_failure_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status_code" && l.GetValue() != "UNAVAILABLE" {
					t.Errorf("status_code = %q, want UNAVAILABLE", l.GetValue())
				}
			}
		}
	}
}

// TestSDKHandlerConcurrent creates the same and different vecs from many
// goroutines; run with -race.
func TestSDKHandlerConcurrent(t *testing.T) {
	reg := prometheus.NewRegistry()
	root, err := NewSDKHandler(reg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tags := map[string]string{"namespace": "default"}
			if i%2 == 0 {
				tags["task_queue"] = "gauntlet"
			}
			h := root.WithTags(tags)
			for range 100 {
				h.Counter("temporal_request").Inc(1)
				h.Timer("temporal_request_latency").Record(time.Millisecond)
				if _, err := reg.Gather(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := `
# HELP temporal_request_total Temporal SDK metric temporal_request_total.
# TYPE temporal_request_total counter
temporal_request_total{namespace="default"} 800
temporal_request_total{namespace="default",task_queue="gauntlet"} 800
`
	if err := gatherAndCompare(reg, want, "temporal_request_total"); err != nil {
		t.Fatal(err)
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"temporal_request": "temporal_request",
		"temporal.request": "temporal_request",
		"a:b-c d":          "a_b_c_d",
		"9lives":           "_lives",
		"":                 "_",
		"task_queue2":      "task_queue2",
		"ünïcode":          "__n__code",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}
