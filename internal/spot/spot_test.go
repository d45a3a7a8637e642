package spot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// imds is an instance metadata service holding to IMDSv2: a token only
// from PUT with a TTL header, and metadata only with a token it issued.
// It schedules the interruption once noticeAfter polls have been answered.
type imds struct {
	t           *testing.T
	noticeAfter int
	notice      string

	mu       sync.Mutex
	tokens   map[string]bool
	polls    int
	refused  int
	tokenReq int
}

func newIMDS(t *testing.T, noticeAfter int, notice string) (*imds, *httptest.Server) {
	m := &imds{t: t, noticeAfter: noticeAfter, notice: notice, tokens: map[string]bool{}}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, srv
}

func (m *imds) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch r.URL.Path {
	case tokenPath:
		if r.Method != http.MethodPut {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		ttl, err := strconv.Atoi(r.Header.Get(HeaderTokenTTL))
		if err != nil || ttl < 1 || ttl > 21600 {
			http.Error(w, "bad TTL", http.StatusBadRequest)
			return
		}
		m.tokenReq++
		tok := fmt.Sprintf("token-%d", m.tokenReq)
		m.tokens[tok] = true
		fmt.Fprint(w, tok)
	case actionPath:
		if r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if !m.tokens[r.Header.Get(HeaderToken)] {
			m.refused++
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		m.polls++
		if m.polls <= m.noticeAfter {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, m.notice)
	default:
		http.NotFound(w, r)
	}
}

func (m *imds) counts() (polls, refused, tokens int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.polls, m.refused, m.tokenReq
}

// watch runs w.Watch with a bound on the wait, not on the polls' timing.
func watch(t *testing.T, w *Watcher) (Notice, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := w.Watch(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("no notice within 20s")
	}
	return n, err
}

func TestWatchReturnsNoticeAfterSomePolls(t *testing.T) {
	m, srv := newIMDS(t, 3, `{"action": "terminate", "time": "2026-11-29T11:00:00Z"}`)
	var errs []error
	w := &Watcher{Endpoint: srv.URL, Interval: time.Millisecond, OnError: func(err error) { errs = append(errs, err) }}
	n, err := watch(t, w)
	if err != nil {
		t.Fatal(err)
	}
	want := Notice{Action: "terminate", Time: time.Date(2026, 11, 29, 11, 0, 0, 0, time.UTC)}
	if !n.Time.Equal(want.Time) || n.Action != want.Action {
		t.Errorf("notice = %+v, want %+v", n, want)
	}
	polls, refused, tokens := m.counts()
	if polls != 4 || refused != 0 || tokens != 1 {
		t.Errorf("polls %d, refused %d, tokens %d: want 4 polls with one token, none refused", polls, refused, tokens)
	}
	if len(errs) != 0 {
		t.Errorf("errors while polling: %v", errs)
	}
	if !strings.Contains(n.String(), "terminate") {
		t.Errorf("String() = %q", n)
	}
}

func TestCheckNoNoticeAndStop(t *testing.T) {
	_, srv := newIMDS(t, 1, `{"action": "stop", "time": "2026-11-29T11:02:00Z"}`)
	w := &Watcher{Endpoint: srv.URL + "/"}
	if _, ok, err := w.Check(context.Background()); ok || err != nil {
		t.Fatalf("first check = %v, %v: want no notice (404)", ok, err)
	}
	n, ok, err := w.Check(context.Background())
	if !ok || err != nil || n.Action != "stop" {
		t.Fatalf("second check = %+v, %v, %v: want the stop notice", n, ok, err)
	}
}

// The service's 401 is what a request without a valid token gets: the
// watcher reports it and takes a new token for the next poll.
func TestTokenRefusedIsRenewed(t *testing.T) {
	m, srv := newIMDS(t, 0, `{"action": "terminate", "time": "2026-11-29T11:00:00Z"}`)
	resp, err := http.Get(srv.URL + actionPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the fake service answered %s without a token, want 401", resp.Status)
	}
	w := &Watcher{Endpoint: srv.URL, token: "stale", expires: time.Now().Add(time.Hour)}
	if _, ok, err := w.Check(context.Background()); ok || err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("check with a stale token = %v, %v: want the 401", ok, err)
	}
	if _, ok, err := w.Check(context.Background()); !ok || err != nil {
		t.Fatalf("check after the 401 = %v, %v: want a new token and the notice", ok, err)
	}
	if _, refused, tokens := m.counts(); refused != 2 || tokens != 1 {
		t.Errorf("refused %d, tokens %d: want the test's and the stale token refused, then one token", refused, tokens)
	}
}

func TestWatchKeepsPollingThroughErrorsAndStopsWithContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "metadata service unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 10)
	w := &Watcher{Endpoint: srv.URL, Interval: time.Millisecond, OnError: func(err error) {
		select {
		case errs <- err:
		default:
		}
	}}
	done := make(chan error, 1)
	go func() {
		_, err := w.Watch(ctx)
		done <- err
	}()
	for range 3 {
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "IMDSv2 token") {
				t.Errorf("error %q does not say which request failed and how", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("fewer than 3 failed polls reported within 20s")
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Watch did not return within 20s of cancel")
	}
}

func TestMalformedNotice(t *testing.T) {
	_, srv := newIMDS(t, 0, `{"time": "2026-11-29T11:00:00Z"}`)
	if _, ok, err := (&Watcher{Endpoint: srv.URL}).Check(context.Background()); ok || err == nil || !strings.Contains(err.Error(), "no action") {
		t.Errorf("check of a notice without action = %v, %v", ok, err)
	}
	_, srv = newIMDS(t, 0, `not json`)
	if _, ok, err := (&Watcher{Endpoint: srv.URL}).Check(context.Background()); ok || err == nil || !strings.Contains(err.Error(), "decoding") {
		t.Errorf("check of a notice that is not JSON = %v, %v", ok, err)
	}
}
