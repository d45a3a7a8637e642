package codec

import (
	"context"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

type trainParams struct {
	DBPassword string  `json:"db_password"`
	MinAUC     float64 `json:"min_auc"`
}

// The codec as a worker uses it: workflow input, activity input and result
// and workflow result all pass through it and arrive intact.
func TestCodecInWorkflow(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	c := &counting{PayloadCodec: newCodec(t, ring(t, entry(t, "k1")))}
	env.SetDataConverter(NewDataConverter(nil, c))
	train := func(ctx context.Context, p trainParams) (map[string]float64, error) {
		if p.DBPassword != secret {
			t.Errorf("activity got %+v", p)
		}
		return map[string]float64{"auc": p.MinAUC + 0.04}, nil
	}
	env.RegisterActivityWithOptions(train, activity.RegisterOptions{Name: "Train"})
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, p trainParams) (map[string]float64, error) {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
		var m map[string]float64
		err := workflow.ExecuteActivity(ctx, "Train", p).Get(ctx, &m)
		return m, err
	}, workflow.RegisterOptions{Name: "Pipeline"})
	env.ExecuteWorkflow("Pipeline", trainParams{DBPassword: secret, MinAUC: 0.8})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var m map[string]float64
	if err := env.GetWorkflowResult(&m); err != nil {
		t.Fatal(err)
	}
	if c.encoded == 0 || c.decoded == 0 {
		t.Fatalf("codec not used: %d payloads encoded, %d decoded", c.encoded, c.decoded)
	}
	if m["auc"] < 0.839 || m["auc"] > 0.841 {
		t.Fatalf("result %v", m)
	}
}

type counting struct {
	converter.PayloadCodec
	mu               sync.Mutex
	encoded, decoded int
}

func (c *counting) Encode(p []*commonpb.Payload) ([]*commonpb.Payload, error) {
	c.mu.Lock()
	c.encoded += len(p)
	c.mu.Unlock()
	return c.PayloadCodec.Encode(p)
}

func (c *counting) Decode(p []*commonpb.Payload) ([]*commonpb.Payload, error) {
	c.mu.Lock()
	for _, x := range p {
		if string(x.Metadata[converter.MetadataEncoding]) == EncodingEncrypted {
			c.decoded++
		}
	}
	c.mu.Unlock()
	return c.PayloadCodec.Decode(p)
}
