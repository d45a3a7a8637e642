package contract

import (
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/signing"
)

// Decision is what a reviewer sends.
type Decision struct {
	Reviewer string `json:"reviewer"`
	Comment  string `json:"comment,omitempty"`
	// Step names the approval step when several wait at once.
	Step string `json:"step,omitempty"`
	// Signature is required by approval steps with require_signatures.
	Signature *signing.Signature `json:"signature,omitempty"`
}

// Vote is a recorded decision.
type Vote struct {
	Reviewer string    `json:"reviewer"`
	Decision string    `json:"decision"` // approve or reject
	Comment  string    `json:"comment,omitempty"`
	At       time.Time `json:"at"`
	Via      string    `json:"via"` // update, signal or timeout
	// KeyID and SignedAt are set for a vote whose signature was verified.
	KeyID    string     `json:"key_id,omitempty"`
	SignedAt *time.Time `json:"signed_at,omitempty"`
}

// ApprovalRequest is what a waiting approval step shows a reviewer.
type ApprovalRequest struct {
	Step       string         `json:"step"`
	Reviewers  []string       `json:"reviewers"`
	Required   int            `json:"required"`
	Deadline   time.Time      `json:"deadline"`
	OnTimeout  string         `json:"on_timeout"`
	Escalated  bool           `json:"escalated,omitempty"`
	StartedBy  string         `json:"started_by,omitempty"`
	Votes      []Vote         `json:"votes"`
	Evidence   map[string]any `json:"evidence,omitempty"`
	Invalid    []string       `json:"invalid_signals,omitempty"`
	Notified   int            `json:"notifications_sent"`
	SelfForbid bool           `json:"forbid_self_approval,omitempty"`
	// RequireSignatures says votes must be signed (gauntlet approve --key);
	// KeyFingerprints lets a reviewer check they hold the configured key.
	RequireSignatures bool              `json:"require_signatures,omitempty"`
	KeyFingerprints   map[string]string `json:"key_fingerprints,omitempty"`
	// Model and Report are the artifacts the decision is about, as the
	// step names them, with their digests: a signed decision covers the
	// model's, and canary-deploy refuses any other model in the run.
	Model        string `json:"model,omitempty"`
	ModelDigest  string `json:"model_digest,omitempty"`
	Report       string `json:"report,omitempty"`
	ReportDigest string `json:"report_digest,omitempty"`
}

// NotifyInput is an approval notification.
type NotifyInput struct {
	URL      string          `json:"url"`
	RunID    string          `json:"run_id"`
	Pipeline string          `json:"pipeline"`
	StepID   string          `json:"step_id"`
	Event    string          `json:"event"`
	Request  ApprovalRequest `json:"request"`
}
