package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const token = "T0K3N-s3cr3t"

func post(t *testing.T, target string) (int, error) {
	t.Helper()
	return Post(context.Background(), nil, target, "run/step", map[string]any{"message": "hi"})
}

// noURL fails when err says more of target than its scheme and host.
func noURL(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), token) {
		t.Errorf("error shows the URL's secret: %v", err)
	}
}

func TestPostSendsJSONWithKey(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Idempotency-Key") != "run/step" {
			t.Errorf("%s %q %q", r.Method, r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key"))
		}
		if r.URL.Query().Get("token") != token {
			t.Errorf("query %q", r.URL.RawQuery)
		}
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	status, err := post(t, srv.URL+"/hook?token="+token)
	if err != nil || status != http.StatusAccepted || got["message"] != "hi" {
		t.Errorf("status %d, err %v, body %v", status, err, got)
	}
}

func TestPostClassifiesAnswers(t *testing.T) {
	status := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A receiver that echoes the request, as some do in their errors.
		http.Error(w, "no hook at "+r.URL.String()+" (token "+r.URL.Query().Get("token")+")", status)
	}))
	defer srv.Close()
	target := srv.URL + "/services/" + token + "?token=" + token
	for _, c := range []struct {
		status    int
		kind      string
		retryable bool
	}{
		{http.StatusRequestTimeout, KindUnavailable, true},
		{http.StatusTooManyRequests, KindUnavailable, true},
		{http.StatusInternalServerError, KindUnavailable, true},
		{http.StatusBadGateway, KindUnavailable, true},
		{http.StatusBadRequest, KindRejected, false},
		{http.StatusUnauthorized, KindRejected, false},
		{http.StatusNotFound, KindRejected, false},
	} {
		status = c.status
		got, err := post(t, target)
		var we *Error
		if !errors.As(err, &we) || we.Kind != c.kind || we.Retryable() != c.retryable || we.Status != c.status || got != c.status {
			t.Errorf("%d: status %d, error %#v, want kind %s", c.status, got, err, c.kind)
			continue
		}
		if !strings.Contains(err.Error(), srv.URL) || !strings.Contains(err.Error(), "no hook at") {
			t.Errorf("%d: error %q names neither the host nor the answer", c.status, err)
		}
		noURL(t, err)
	}
}

func TestPostRedactsURLs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	_, err = post(t, closed+"/hooks/"+token+"?token="+token)
	var we *Error
	if !errors.As(err, &we) || !we.Retryable() || !strings.Contains(err.Error(), closed) {
		t.Errorf("closed port: %v", err)
	}
	noURL(t, err)

	for _, bad := range []string{"ftp://host/" + token, "hooks.example/" + token, "http://h:bad port/" + token, "http:///" + token} {
		_, err := post(t, bad)
		if !errors.As(err, &we) || we.Kind != KindBadInput || we.Retryable() {
			t.Errorf("%s: %v", bad, err)
		}
		noURL(t, err)
	}
	_, err = Post(context.Background(), nil, "http://127.0.0.1:1/"+token, "", map[string]any{"x": func() {}})
	if !errors.As(err, &we) || we.Kind != KindBadInput {
		t.Errorf("unencodable message: %v", err)
	}
	noURL(t, err)
}
