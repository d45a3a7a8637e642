package steps

import (
	"context"
	"errors"
	"fmt"

	"github.com/gauntlet-ml/gauntlet/internal/webhook"
)

func init() {
	Register(Define(Type{
		Name: "notify",
		Doc: "Sends a message: POSTs JSON {run_id, pipeline, step_id, message, fields} to a webhook, or only logs it when " +
			"no url is given. A 4xx answer fails permanently (" + webhook.KindRejected + ", except 408 and 429); 5xx and " +
			"network errors are retried (" + webhook.KindUnavailable + "). Errors name the webhook's scheme and host only.",
		Kind: Activity,
	}, notifyInputs{}, runNotify))
}

type notifyInputs struct {
	Message string         `json:"message" required:"true" doc:"the text"`
	URL     string         `json:"url" doc:"webhook URL (http or https)"`
	Fields  map[string]any `json:"fields" doc:"extra key/value pairs sent with the message"`
}

// NotifyOutputs are the outputs of a notify step.
type NotifyOutputs struct {
	Delivered bool   `json:"delivered" doc:"the webhook accepted the message (false when there is no url)"`
	Message   string `json:"message" doc:"the text sent"`
	Status    int    `json:"status" doc:"the webhook's HTTP status, 0 without a url"`
}

// webhookPayload is what a webhook receives.
type webhookPayload struct {
	RunID    string         `json:"run_id"`
	Pipeline string         `json:"pipeline"`
	StepID   string         `json:"step_id"`
	Message  string         `json:"message"`
	Fields   map[string]any `json:"fields,omitempty"`
}

func runNotify(ctx context.Context, env Env, in Input, a notifyInputs) (*NotifyOutputs, error) {
	if a.URL == "" {
		env.Logger().Info("notify", "message", a.Message, "fields", a.Fields, "run_id", in.RunID, "step_id", in.StepID)
		return &NotifyOutputs{Message: a.Message}, nil
	}
	if _, err := webhook.Parse(a.URL); err != nil {
		return nil, badInput("url", "%v", err)
	}
	// Every attempt of this step of this run posts under one key, so a
	// receiver can drop the repeat of a post whose answer was lost.
	status, err := webhook.Post(ctx, nil, a.URL, in.RunID+"/"+in.StepID,
		webhookPayload{RunID: in.RunID, Pipeline: in.Pipeline, StepID: in.StepID, Message: a.Message, Fields: a.Fields})
	var we *webhook.Error
	if errors.As(err, &we) {
		return nil, &Error{Kind: we.Kind, Retryable: we.Retryable(), Err: fmt.Errorf("notify: %w", err)}
	}
	if err != nil {
		return nil, err
	}
	return &NotifyOutputs{Delivered: true, Message: a.Message, Status: status}, nil
}
