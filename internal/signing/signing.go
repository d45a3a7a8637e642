// Package signing makes approval decisions attributable: a reviewer signs
// what they decide with an Ed25519 key, and the approval gate verifies the
// signature against the reviewer's configured public key before counting the
// vote.
//
// Verification is pure and deterministic (no I/O, no clock, no randomness)
// so that it can run inside Temporal workflow code and give the same answer
// on replay: the caller passes "now" from workflow.Now.
package signing

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Decisions a reviewer can sign; they match the approval gate's handler
// names.
const (
	Approve = "approve"
	Reject  = "reject"
)

// Errors Verify returns, wrapped with details; test with errors.Is. Each
// names one way a decision can be wrong so that the gate can say precisely
// why it refused a vote.
var (
	ErrUnsigned        = errors.New("decision is not signed")
	ErrUnknownReviewer = errors.New("reviewer has no configured key")
	ErrMalformed       = errors.New("malformed signature")
	ErrWrongKey        = errors.New("signed with a key that is not the reviewer's configured key")
	ErrBadSignature    = errors.New("signature does not verify: the decision was altered or forged")
	ErrWrongReviewer   = errors.New("signature is for another reviewer")
	ErrWrongRun        = errors.New("signature is for another run")
	ErrWrongStep       = errors.New("signature is for another approval step")
	ErrWrongDecision   = errors.New("signature is for another decision")
	ErrCommentChanged  = errors.New("comment differs from the signed comment")
	ErrWrongModel      = errors.New("signature is for another model")
	ErrStale           = errors.New("signature is too old")
	ErrFutureDated     = errors.New("signature is dated in the future")
)

// Approval is what a reviewer decides, as the approval gate knows it.
type Approval struct {
	RunID    string // the run (workflow) id
	Step     string // the approval step id
	Decision string // Approve or Reject
	Reviewer string
	Comment  string
	// Model is the digest of the artifact the gate asks about, when it
	// names one: a signature then covers exactly that model.
	Model string
}

// Statement is exactly what is signed. It travels with the signature so
// that a verifier can tell a signature replayed from another run, step or
// decision (valid, but for different facts) from a forged one.
type Statement struct {
	RunID    string `json:"run_id"`
	Step     string `json:"step"`
	Decision string `json:"decision"`
	Reviewer string `json:"reviewer"`
	// SignedAt is UTC with whole seconds: the canonical form is RFC 3339
	// without fractions, and a finer time would not be covered by it.
	SignedAt time.Time `json:"signed_at"`
	// CommentSHA256 is the hex SHA-256 of the comment, so that the comment
	// cannot be changed after signing while the statement stays short.
	CommentSHA256 string `json:"comment_sha256"`
	// Model is the digest of the model approved or rejected; empty for a
	// gate that names no model.
	Model string `json:"model,omitempty"`
}

// Signature is what a signed decision carries besides the decision itself.
type Signature struct {
	Statement
	// KeyID is the signing key's fingerprint (see Fingerprint). It is not
	// trusted: it only lets a verifier tell "wrong key" from "forged".
	KeyID string `json:"key_id"`
	Value []byte `json:"value"`
}

// SignedDecision pairs what the gate knows independently of the reviewer's
// claims (Approval: the run id from the workflow, the step it resolved, the
// handler that received the decision) with the signature the reviewer sent.
type SignedDecision struct {
	Approval
	Signature *Signature
}

// domain separates these signatures from anything else a reviewer's key
// signs, and versions the encoding: v2 statements name a model, and v1
// ones (which cannot) keep verifying as they were signed.
const (
	domainV1 = "gauntlet approval signature v1"
	domainV2 = "gauntlet approval signature v2"
)

// CommentHash returns the hex SHA-256 of a comment as signed.
func CommentHash(comment string) string {
	sum := sha256.Sum256([]byte(comment))
	return hex.EncodeToString(sum[:])
}

// Message returns the canonical bytes that are signed for a statement.
//
// Every field is written as a 4-byte big-endian length followed by its
// bytes, in a fixed order, after a fixed domain string. Length prefixes make
// the encoding injective: with a separator, run "a|b" step "c" and run "a"
// step "b|c" would sign the same bytes, and JSON would make the signature
// depend on an encoder's escaping and key order, which a verifier in another
// language or a later Go release could reproduce differently.
func Message(s Statement) []byte {
	fields := []string{domainV1, s.RunID, s.Step, s.Decision, s.Reviewer, s.SignedAt.UTC().Format(time.RFC3339), s.CommentSHA256}
	if s.Model != "" {
		fields[0] = domainV2
		fields = append(fields, s.Model)
	}
	n := 0
	for _, f := range fields {
		n += 4 + len(f)
	}
	out := make([]byte, 0, n)
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// Fingerprint names a public key the way `ssh-keygen -l` does
// ("SHA256:" and the unpadded base64 SHA-256 of the SSH wire form), so that
// an operator can compare it with the reviewer's own tools.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(sshWire(pub))
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// Sign signs a decision made at the given time; the time is truncated to
// whole seconds in UTC.
func Sign(priv ed25519.PrivateKey, a Approval, at time.Time) (*Signature, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if err := checkApproval(a); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	st := Statement{
		RunID:         a.RunID,
		Step:          a.Step,
		Decision:      a.Decision,
		Reviewer:      a.Reviewer,
		SignedAt:      at.UTC().Truncate(time.Second),
		CommentSHA256: CommentHash(a.Comment),
		Model:         a.Model,
	}
	pub := priv.Public().(ed25519.PublicKey)
	return &Signature{Statement: st, KeyID: Fingerprint(pub), Value: ed25519.Sign(priv, Message(st))}, nil
}

func checkApproval(a Approval) error {
	switch {
	case a.RunID == "":
		return errors.New("no run id")
	case a.Step == "":
		return errors.New("no approval step")
	case a.Reviewer == "":
		return errors.New("no reviewer")
	case a.Decision != Approve && a.Decision != Reject:
		return fmt.Errorf("decision %q is neither %q nor %q", a.Decision, Approve, Reject)
	}
	return nil
}

// Verify checks that d is signed by pub, for the run, step, decision,
// reviewer and comment that d.Approval names, at a time within maxSkew of
// now. It reads no clock: now comes from the caller (workflow.Now in a
// workflow), so it gives the same result on replay.
//
// The signature is checked before the facts, so a mismatch error means the
// reviewer really signed other facts (a replay), not that bytes were
// altered.
func Verify(pub ed25519.PublicKey, d SignedDecision, now time.Time, maxSkew time.Duration) error {
	if err := checkApproval(d.Approval); err != nil {
		return fmt.Errorf("verify: the decision to check is incomplete: %w", err)
	}
	if maxSkew <= 0 {
		return fmt.Errorf("verify: max skew must be positive, got %s", maxSkew)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("verify: %s's public key has %d bytes, want %d", d.Reviewer, len(pub), ed25519.PublicKeySize)
	}
	s := d.Signature
	if s == nil || len(s.Value) == 0 {
		return fmt.Errorf("%w: %s by %s on %s", ErrUnsigned, d.Decision, d.Reviewer, d.Step)
	}
	if len(s.Value) != ed25519.SignatureSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(s.Value), ed25519.SignatureSize)
	}
	if !s.SignedAt.Equal(s.SignedAt.Truncate(time.Second)) {
		return fmt.Errorf("%w: signed_at %s has a fraction of a second, which the signature does not cover", ErrMalformed, s.SignedAt.Format(time.RFC3339Nano))
	}
	if want := Fingerprint(pub); s.KeyID != "" && s.KeyID != want {
		return fmt.Errorf("%w: signed with %s, %s's key is %s", ErrWrongKey, s.KeyID, d.Reviewer, want)
	}
	if !ed25519.Verify(pub, Message(s.Statement), s.Value) {
		return fmt.Errorf("%w (%s by %s on %s)", ErrBadSignature, d.Decision, d.Reviewer, d.Step)
	}
	switch {
	case s.Reviewer != d.Reviewer:
		return fmt.Errorf("%w: signed as %q, sent as %q", ErrWrongReviewer, s.Reviewer, d.Reviewer)
	case s.RunID != d.RunID:
		return fmt.Errorf("%w: signed for run %q, this is run %q", ErrWrongRun, s.RunID, d.RunID)
	case s.Step != d.Step:
		return fmt.Errorf("%w: signed for step %q, this is step %q", ErrWrongStep, s.Step, d.Step)
	case s.Decision != d.Decision:
		return fmt.Errorf("%w: signed %q, received as %q", ErrWrongDecision, s.Decision, d.Decision)
	case s.CommentSHA256 != CommentHash(d.Comment):
		return fmt.Errorf("%w: %s's comment was changed after signing", ErrCommentChanged, d.Reviewer)
	case s.Model != d.Model:
		return fmt.Errorf("%w: signed for model %q, the gate asks about %q", ErrWrongModel, s.Model, d.Model)
	}
	age := now.Sub(s.SignedAt)
	switch {
	case age > maxSkew:
		return fmt.Errorf("%w: signed at %s, %s before %s (allowed: %s)", ErrStale, s.SignedAt.UTC().Format(time.RFC3339), age.Round(time.Second), now.UTC().Format(time.RFC3339), maxSkew)
	case -age > maxSkew:
		return fmt.Errorf("%w: signed at %s, %s after %s (allowed: %s); check the reviewer's clock", ErrFutureDated, s.SignedAt.UTC().Format(time.RFC3339), (-age).Round(time.Second), now.UTC().Format(time.RFC3339), maxSkew)
	}
	return nil
}

// KeyRing maps reviewer names to their public keys. It encodes to JSON as
// {"alice": "<base64 key>"}, so it can be an activity's result and be
// recorded in workflow history.
type KeyRing map[string]ed25519.PublicKey

// Verify looks up d's reviewer and verifies d with their key.
func (k KeyRing) Verify(d SignedDecision, now time.Time, maxSkew time.Duration) error {
	pub, ok := k[d.Reviewer]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownReviewer, d.Reviewer)
	}
	return Verify(pub, d, now, maxSkew)
}
