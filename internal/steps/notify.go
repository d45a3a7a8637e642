package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

func init() {
	Register(Type{
		Name: "notify",
		Doc: "Sends a message: POSTs JSON {run_id, pipeline, step_id, message, fields} to a webhook, or only logs it when " +
			"no url is given. A 4xx answer fails permanently (except 408 and 429); 5xx and network errors are retried.",
		Kind: Activity,
		Inputs: []InputSpec{
			{Name: "message", Required: true, Doc: "the text"},
			{Name: "url", Doc: "webhook URL (http or https)"},
			{Name: "fields", Doc: "extra key/value pairs sent with the message"},
		},
		Outputs: []string{"delivered", "message", "status"},
		Run:     runNotify,
	})
}

// webhookPayload is what a webhook receives.
type webhookPayload struct {
	RunID    string         `json:"run_id"`
	Pipeline string         `json:"pipeline"`
	StepID   string         `json:"step_id"`
	Message  string         `json:"message"`
	Fields   map[string]any `json:"fields,omitempty"`
}

func runNotify(ctx context.Context, env Env, in Input) (map[string]any, error) {
	msg, err := requireString(in, "message")
	if err != nil {
		return nil, err
	}
	target, _, err := argString(in, "url")
	if err != nil {
		return nil, err
	}
	fields, err := argMap(in, "fields")
	if err != nil {
		return nil, err
	}
	if target == "" {
		env.Logger().Info("notify", "message", msg, "fields", fields, "run_id", in.RunID, "step_id", in.StepID)
		return map[string]any{"delivered": false, "message": msg, "status": float64(0)}, nil
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, badInput("url", "want an http(s) URL, got %q", target)
	}
	body, err := json.Marshal(webhookPayload{RunID: in.RunID, Pipeline: in.Pipeline, StepID: in.StepID, Message: msg, Fields: fields})
	if err != nil {
		return nil, badInput("fields", "not JSON-encodable: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, badInput("url", "%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	// Every attempt of this step of this run posts under one key, so a
	// receiver can drop the repeat of a post whose answer was lost.
	req.Header.Set("Idempotency-Key", in.RunID+"/"+in.StepID)
	// The URL may carry a token; errors name only its host.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("notify: POST to %s: %w", u.Host, unwrapURLError(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return map[string]any{"delivered": true, "message": msg, "status": float64(resp.StatusCode)}, nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return nil, Permanent("WebhookRejected", fmt.Errorf("notify: webhook at %s answered %s: %s", u.Host, resp.Status, bytes.TrimSpace(snippet)))
	}
	return nil, fmt.Errorf("notify: webhook at %s answered %s: %s", u.Host, resp.Status, bytes.TrimSpace(snippet))
}

// unwrapURLError drops *url.Error's wrapping, which quotes the full URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
