package steps

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestNotifyWebhook(t *testing.T) {
	var got webhookPayload
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s with %q", r.Method, r.Header.Get("Content-Type"))
		}
		if k := r.Header.Get("Idempotency-Key"); k != "run-1/tell" {
			t.Errorf("Idempotency-Key %q, want run-1/tell", k)
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	out := mustRun(t, newEnv(t, t.TempDir()), "notify", "tell", map[string]any{
		"message": "model promoted", "url": srv.URL, "fields": `{"auc": 0.91, "model": "m1"}`})
	if out["delivered"] != true {
		t.Errorf("outputs %v", out)
	}
	if got.RunID != "run-1" || got.Pipeline != "p" || got.StepID != "tell" || got.Message != "model promoted" ||
		got.Fields["auc"] != 0.91 || got.Fields["model"] != "m1" {
		t.Errorf("payload %+v", got)
	}
}

func TestNotifyErrors(t *testing.T) {
	status := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", status)
	}))
	defer srv.Close()
	with := map[string]any{"message": "hi", "url": srv.URL}

	status = http.StatusInternalServerError
	_, err := run(t, newEnv(t, t.TempDir()), "notify", "n", with)
	if _, retryable := Classify(err); err == nil || !retryable {
		t.Errorf("500: want a retryable error, got %v", err)
	}
	status = http.StatusBadRequest
	_, err = run(t, newEnv(t, t.TempDir()), "notify", "n", with)
	wantPermanent(t, err, "400")

	srv.Close()
	_, err = run(t, newEnv(t, t.TempDir()), "notify", "n", with)
	if _, retryable := Classify(err); err == nil || !retryable {
		t.Errorf("closed server: want a retryable error, got %v", err)
	}
	_, err = run(t, newEnv(t, t.TempDir()), "notify", "n", map[string]any{"message": "hi", "url": "ftp://x"})
	wantPermanent(t, err, "with.url")
}

func TestNotifyWithoutURLLogs(t *testing.T) {
	out := mustRun(t, newEnv(t, t.TempDir()), "notify", "n", map[string]any{"message": "hello"})
	if out["delivered"] != false || out["message"] != "hello" {
		t.Errorf("outputs %v", out)
	}
}
