// Package spot watches for the notice EC2 gives a spot instance two
// minutes before it interrupts it, so a worker can stop on its own terms
// instead of vanishing mid-step.
//
// The notice is read from the instance metadata service with IMDSv2: a
// session token from PUT /latest/api/token (its lifetime in the
// X-aws-ec2-metadata-token-ttl-seconds header), then GET
// /latest/meta-data/spot/instance-action with the token in
// X-aws-ec2-metadata-token. 404 means no interruption is scheduled; 200
// carries {"action": "terminate"|"stop"|"hibernate", "time": RFC 3339}.
package spot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultEndpoint is the instance metadata service as every EC2
	// instance sees it.
	DefaultEndpoint = "http://169.254.169.254"
	// DefaultInterval is how often to look: AWS suggests every 5 seconds,
	// which leaves most of the two minutes' warning to act in.
	DefaultInterval = 5 * time.Second

	tokenPath  = "/latest/api/token"
	actionPath = "/latest/meta-data/spot/instance-action"
	// HeaderTokenTTL and HeaderToken are IMDSv2's request headers.
	HeaderTokenTTL = "X-aws-ec2-metadata-token-ttl-seconds"
	HeaderToken    = "X-aws-ec2-metadata-token"
	// tokenTTL is how long a token is asked for; it is renewed a minute
	// before it runs out, so a poll never carries an expired one.
	tokenTTL    = 6 * time.Hour
	tokenMargin = time.Minute
	// requestTimeout bounds one metadata request: the service answers in
	// milliseconds, and a hung request must not delay the next poll.
	requestTimeout = 2 * time.Second
)

// Notice is a scheduled interruption.
type Notice struct {
	// Action is what EC2 will do: terminate, stop or hibernate.
	Action string `json:"action"`
	// Time is when it will.
	Time time.Time `json:"time"`
}

func (n Notice) String() string {
	return fmt.Sprintf("spot instance %s scheduled at %s", n.Action, n.Time.Format(time.RFC3339))
}

// Watcher polls the metadata service for an interruption notice.
type Watcher struct {
	// Endpoint is the metadata service's base URL; DefaultEndpoint when empty.
	Endpoint string
	// Interval is the time between polls; DefaultInterval when zero.
	Interval time.Duration
	// Client makes the requests; a client with no proxy when nil, since
	// the link-local address must never go through one.
	Client *http.Client
	// OnError, when set, hears of each failed poll; polling goes on, as
	// the service may be briefly away while the instance runs.
	OnError func(error)

	token   string
	expires time.Time
}

// Watch polls until a notice arrives, which it returns, or ctx ends, when
// it returns ctx's error.
func (w *Watcher) Watch(ctx context.Context) (Notice, error) {
	every := w.Interval
	if every <= 0 {
		every = DefaultInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, ok, err := w.Check(ctx)
		switch {
		case ctx.Err() != nil:
			return Notice{}, ctx.Err()
		case err != nil:
			if w.OnError != nil {
				w.OnError(err)
			}
		case ok:
			return n, nil
		}
		select {
		case <-ctx.Done():
			return Notice{}, ctx.Err()
		case <-t.C:
		}
	}
}

// Check asks once whether an interruption is scheduled.
func (w *Watcher) Check(ctx context.Context) (Notice, bool, error) {
	token, err := w.sessionToken(ctx)
	if err != nil {
		return Notice{}, false, err
	}
	resp, err := w.do(ctx, http.MethodGet, actionPath, map[string]string{HeaderToken: token})
	if err != nil {
		return Notice{}, false, fmt.Errorf("spot: instance-action: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Notice{}, false, fmt.Errorf("spot: instance-action: reading the answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return Notice{}, false, nil
	case http.StatusUnauthorized:
		// The service forgot the token (it restarts with the instance's
		// metadata options); the next poll asks for a new one.
		w.token = ""
		return Notice{}, false, fmt.Errorf("spot: instance-action: token refused (401)")
	default:
		return Notice{}, false, fmt.Errorf("spot: instance-action: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var n Notice
	if err := json.Unmarshal(body, &n); err != nil {
		return Notice{}, false, fmt.Errorf("spot: instance-action: decoding %q: %w", body, err)
	}
	if n.Action == "" {
		return Notice{}, false, fmt.Errorf("spot: instance-action: no action in %q", body)
	}
	return n, true, nil
}

func (w *Watcher) sessionToken(ctx context.Context) (string, error) {
	if w.token != "" && time.Now().Before(w.expires) {
		return w.token, nil
	}
	ttl := strconv.Itoa(int(tokenTTL.Seconds()))
	resp, err := w.do(ctx, http.MethodPut, tokenPath, map[string]string{HeaderTokenTTL: ttl})
	if err != nil {
		return "", fmt.Errorf("spot: IMDSv2 token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return "", fmt.Errorf("spot: IMDSv2 token: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("spot: IMDSv2 token: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	token := strings.TrimSpace(string(body))
	if token == "" {
		return "", errors.New("spot: IMDSv2 token: empty answer")
	}
	w.token, w.expires = token, time.Now().Add(tokenTTL-tokenMargin)
	return token, nil
}

func (w *Watcher) do(ctx context.Context, method, path string, header map[string]string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	endpoint := strings.TrimRight(w.Endpoint, "/")
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint+path, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := w.Client
	if client == nil {
		client = noProxy
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

var noProxy = &http.Client{Transport: &http.Transport{Proxy: nil}}

// cancelOnClose keeps the request's deadline alive until its body is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
