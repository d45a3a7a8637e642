// Package webhook posts a JSON message to a webhook: the one sender behind
// the notify step and the approval gate's notifications. A webhook URL often
// carries its credential (Slack's /services/T…/B…/secret, a ?token=), and
// errors end up in a run's history, so no error names more of the URL than
// its scheme and host.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Error kinds, as a pipeline's `retry.non_retryable` names them.
const (
	// KindBadInput: the URL or the message cannot be sent at all.
	KindBadInput = "BadInput"
	// KindRejected: the webhook answered 4xx (other than 408 and 429);
	// the same message would be refused again.
	KindRejected = "WebhookRejected"
	// KindUnavailable: no answer, 408, 429 or 5xx; worth another attempt.
	KindUnavailable = "WebhookUnavailable"
)

// Error is a failed post.
type Error struct {
	Kind string
	// Status is the HTTP status of the answer, 0 when there was none.
	Status int
	msg    string
	err    error
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.err }

// Retryable reports whether another attempt may succeed.
func (e *Error) Retryable() bool { return e.Kind == KindUnavailable }

// DefaultTimeout bounds one post when the caller gives no client.
const DefaultTimeout = 20 * time.Second

// Post sends payload as JSON to target with an Idempotency-Key header, so
// that a receiver can drop the repeat of a post whose answer was lost (every
// attempt of one notification must pass the same key). It returns the
// answer's status. A nil client means one with DefaultTimeout.
func Post(ctx context.Context, client *http.Client, target, key string, payload any) (int, error) {
	u, err := Parse(target)
	if err != nil {
		return 0, err
	}
	where := Redact(u)
	body, err := json.Marshal(payload)
	if err != nil {
		return 0, &Error{Kind: KindBadInput, msg: fmt.Sprintf("webhook %s: message is not JSON-encodable: %v", where, err), err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, &Error{Kind: KindBadInput, msg: fmt.Sprintf("webhook %s: %v", where, unwrapURLError(err)), err: unwrapURLError(err)}
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	resp, err := client.Do(req)
	if err != nil {
		cause := unwrapURLError(err)
		return 0, &Error{Kind: KindUnavailable, msg: fmt.Sprintf("webhook %s: post: %v", where, cause), err: cause}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return code, nil
	}
	kind := KindUnavailable
	if code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests {
		kind = KindRejected
	}
	msg := fmt.Sprintf("webhook %s answered %s", where, resp.Status)
	if s := scrub(snippet, u); s != "" {
		msg += ": " + s
	}
	return code, &Error{Kind: kind, Status: code, msg: msg}
}

// Parse checks that target is an http(s) URL with a host. Its error names
// the scheme and host at most.
func Parse(target string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(target))
	if err != nil {
		// url.Parse's error quotes the whole URL.
		return nil, &Error{Kind: KindBadInput, msg: "webhook URL does not parse"}
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &Error{Kind: KindBadInput, msg: fmt.Sprintf("webhook URL %s: want an http(s) URL with a host", Redact(u))}
	}
	return u, nil
}

// Redact is what of u may be shown: its scheme and host.
func Redact(u *url.URL) string {
	switch {
	case u.Scheme == "" && u.Host == "":
		return "(no scheme or host)"
	case u.Host == "":
		return u.Scheme + ":"
	}
	return u.Scheme + "://" + u.Host
}

// unwrapURLError drops *url.Error's wrapping, which quotes the full URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// scrub makes an answer's body fit for an error message: one line, and
// without any part of the URL's path, query or user, which a receiver may
// echo back, raw or decoded.
func scrub(body []byte, u *url.URL) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	secrets := []string{u.String(), u.RawQuery, u.EscapedPath(), u.Path}
	secrets = append(secrets, strings.Split(u.Path, "/")...)
	for _, vs := range u.Query() {
		secrets = append(secrets, vs...)
	}
	if u.User != nil {
		secrets = append(secrets, u.User.String(), u.User.Username())
		if p, ok := u.User.Password(); ok {
			secrets = append(secrets, p)
		}
	}
	// Longest first, so a part inside a longer secret does not leave the
	// rest of that one behind.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, x := range secrets {
		if len(x) > 3 {
			s = strings.ReplaceAll(s, x, "…")
		}
	}
	return s
}
