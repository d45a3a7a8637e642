package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

// Notifier posts workflow notifications (approval requests, reminders,
// decisions) to webhooks.
type Notifier struct {
	Client *http.Client
}

// Notify posts one notification. A 4xx answer will not change on retry;
// 5xx and network errors are retried by Temporal, under the same
// Idempotency-Key header.
func (n *Notifier) Notify(ctx context.Context, in contract.NotifyInput) error {
	body, err := json.Marshal(in)
	if err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "BadInput", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.URL, bytes.NewReader(body))
	if err != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("notify: webhook %q: %v", in.URL, err), "BadInput", err)
	}
	req.Header.Set("Content-Type", "application/json")
	// A retried post (a 5xx, or a worker that died before it heard the
	// answer) carries the same key, so a receiver can drop the repeat.
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		req.Header.Set("Idempotency-Key", info.WorkflowExecution.ID+"/"+info.WorkflowExecution.RunID+"/"+info.ActivityID)
	}
	c := n.Client
	if c == nil {
		c = &http.Client{Timeout: 20 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("notify: post %s: %w", in.URL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		msg := fmt.Sprintf("notify: webhook %s answered %s", in.URL, resp.Status)
		return temporal.NewNonRetryableApplicationError(msg, "WebhookRefused", nil)
	default:
		return fmt.Errorf("notify: webhook %s answered %s", in.URL, resp.Status)
	}
}
