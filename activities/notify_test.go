package activities

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/webhook"
)

// The approval's webhook fails as the notify step's does: the kind says
// why, retries stop at a refusal, and the URL's token stays out of the
// error, which Temporal keeps in the run's history.
func TestNotifyErrorsForHistory(t *testing.T) {
	status := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	n := &Notifier{}
	for _, c := range []struct {
		status    int
		kind      string
		retryable bool
	}{
		{http.StatusRequestTimeout, webhook.KindUnavailable, true},
		{http.StatusServiceUnavailable, webhook.KindUnavailable, true},
		{http.StatusForbidden, webhook.KindRejected, false},
	} {
		status = c.status
		err := n.Notify(context.Background(), contract.NotifyInput{URL: srv.URL + "/hook?token=s3cr3t-t0ken", RunID: "r"})
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != c.kind || ae.NonRetryable() == c.retryable {
			t.Errorf("%d: %#v, want kind %s", c.status, err, c.kind)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), srv.URL) {
			t.Errorf("%d: error %q", c.status, err)
		}
	}
	status = http.StatusNoContent
	if err := n.Notify(context.Background(), contract.NotifyInput{URL: srv.URL}); err != nil {
		t.Errorf("204: %v", err)
	}
}
