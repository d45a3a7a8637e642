package activities

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/signing"
)

// ReviewerKeys serves the worker's reviewer key file to approval steps that
// require signed decisions.
type ReviewerKeys struct {
	// Path is the key file (worker --reviewer-keys); empty means none.
	Path string
}

// Load reads the key file. With no file configured it returns an empty
// ring, and the approval step names the reviewers who have no key, which
// says more than "no file". A file that is missing or malformed is a
// configuration fault a retry cannot mend.
func (k *ReviewerKeys) Load(context.Context) (signing.KeyRing, error) {
	if k.Path == "" {
		return signing.KeyRing{}, nil
	}
	data, err := os.ReadFile(k.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("reviewer keys %s: no such file (worker --reviewer-keys or GAUNTLET_REVIEWER_KEYS)", k.Path)
		} else {
			err = fmt.Errorf("reviewer keys: %w", err)
		}
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidReviewerKeys", err)
	}
	ring, err := signing.Parse(data, k.Path)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidReviewerKeys", err)
	}
	return ring, nil
}
