package activities

import (
	"context"
	"errors"
	"net/http"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/webhook"
)

// Notifier posts workflow notifications (approval requests, reminders,
// decisions) to webhooks.
type Notifier struct {
	// Client sends the posts; nil means webhook's default.
	Client *http.Client
}

// Notify posts one notification. A 4xx answer (but 408 and 429) will not
// change on retry; other failures are retried by Temporal, under the same
// Idempotency-Key header, so a receiver can drop the repeat.
func (n *Notifier) Notify(ctx context.Context, in contract.NotifyInput) error {
	key := ""
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		key = info.WorkflowExecution.ID + "/" + info.WorkflowExecution.RunID + "/" + info.ActivityID
	}
	_, err := webhook.Post(ctx, n.Client, in.URL, key, in)
	var we *webhook.Error
	if errors.As(err, &we) {
		return temporal.NewApplicationErrorWithOptions("notify: "+we.Error(), we.Kind, temporal.ApplicationErrorOptions{NonRetryable: !we.Retryable()})
	}
	return err
}
