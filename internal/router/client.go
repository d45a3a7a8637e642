package router

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client drives a router's admin API, as the canary activities do.
type Client struct {
	// BaseURL is the router's address, e.g. http://127.0.0.1:8090.
	BaseURL string
	Token   string
	// HTTP defaults to http.DefaultClient.
	HTTP *http.Client
}

// State returns the router's variants and weights.
func (c *Client) State(ctx context.Context) (State, error) {
	var st State
	return st, c.do(ctx, http.MethodGet, "/admin/state", nil, &st)
}

// SetWeights sets the weights of the named variants in one change.
func (c *Client) SetWeights(ctx context.Context, weights map[string]int) (State, error) {
	var st State
	return st, c.do(ctx, http.MethodPut, "/admin/weights", weights, &st)
}

// UpdateVariants adds, replaces and removes variants in one change.
func (c *Client) UpdateVariants(ctx context.Context, u VariantsUpdate) (State, error) {
	var st State
	return st, c.do(ctx, http.MethodPut, "/admin/variants", u, &st)
}

// SetFaults injects, changes or removes (AbortPercent 0) the faults of the
// named variants in one change.
func (c *Client) SetFaults(ctx context.Context, faults map[string]Fault) (State, error) {
	var st State
	return st, c.do(ctx, http.MethodPut, "/admin/faults", faults, &st)
}

// StatusError is a non-2xx answer of the admin API.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("router admin: HTTP %d: %s", e.Code, e.Message)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("router admin %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("router admin %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("router admin %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("router admin %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("router admin %s: decode answer: %w", path, err)
	}
	return nil
}
