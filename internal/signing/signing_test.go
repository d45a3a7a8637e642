package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

var signedAt = time.Date(2026, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func approval() Approval {
	return Approval{RunID: "credit-risk-20260314", Step: "sign-off", Decision: Approve, Reviewer: "alice", Comment: "AUC 0.84, fairness gap 0.02: ship it"}
}

func signed(t *testing.T, priv ed25519.PrivateKey, a Approval) SignedDecision {
	t.Helper()
	sig, err := Sign(priv, a, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	return SignedDecision{Approval: a, Signature: sig}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	d := signed(t, priv, approval())
	if got := d.Signature.SignedAt; !got.Equal(signedAt.Truncate(time.Second)) || got.Location() != time.UTC {
		t.Fatalf("SignedAt = %v, want whole seconds in UTC", got)
	}
	if d.Signature.KeyID != Fingerprint(pub) {
		t.Fatalf("KeyID = %s, want %s", d.Signature.KeyID, Fingerprint(pub))
	}
	for _, now := range []time.Time{signedAt, signedAt.Add(4 * time.Minute), signedAt.Add(-4 * time.Minute)} {
		if err := Verify(pub, d, now, 5*time.Minute); err != nil {
			t.Errorf("Verify at %s: %v", now, err)
		}
	}
	if err := (KeyRing{"alice": pub}).Verify(d, signedAt, time.Minute); err != nil {
		t.Errorf("KeyRing.Verify: %v", err)
	}
}

// A signer in another time zone signs the same instant.
func TestSignNormalisesZone(t *testing.T) {
	pub, priv := newKey(t)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	sig, err := Sign(priv, approval(), signedAt.In(zone))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(pub, SignedDecision{Approval: approval(), Signature: sig}, signedAt, time.Minute); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRefusals(t *testing.T) {
	pub, priv := newKey(t)
	_, otherPriv := newKey(t)
	now := signedAt.Add(30 * time.Second)
	cases := []struct {
		name string
		edit func(d *SignedDecision)
		want error
	}{
		{"unsigned", func(d *SignedDecision) { d.Signature = nil }, ErrUnsigned},
		{"empty signature", func(d *SignedDecision) { d.Signature.Value = nil }, ErrUnsigned},
		{"short signature", func(d *SignedDecision) { d.Signature.Value = d.Signature.Value[:10] }, ErrMalformed},
		{"fractional time", func(d *SignedDecision) { d.Signature.SignedAt = d.Signature.SignedAt.Add(time.Millisecond) }, ErrMalformed},
		{"flipped bit", func(d *SignedDecision) { d.Signature.Value[7] ^= 1 }, ErrBadSignature},
		// Editing the signed statement without re-signing is forgery.
		{"statement run edited", func(d *SignedDecision) { d.Signature.RunID = "other"; d.RunID = "other" }, ErrBadSignature},
		{"statement step edited", func(d *SignedDecision) { d.Signature.Step = "x"; d.Step = "x" }, ErrBadSignature},
		{"statement decision edited", func(d *SignedDecision) { d.Signature.Decision = Reject; d.Decision = Reject }, ErrBadSignature},
		{"statement reviewer edited", func(d *SignedDecision) { d.Signature.Reviewer = "bob"; d.Reviewer = "bob" }, ErrBadSignature},
		{"statement time edited", func(d *SignedDecision) { d.Signature.SignedAt = d.Signature.SignedAt.Add(time.Second) }, ErrBadSignature},
		{"statement comment edited", func(d *SignedDecision) {
			d.Comment = "lgtm"
			d.Signature.CommentSHA256 = CommentHash("lgtm")
		}, ErrBadSignature},
		{"key id of another key", func(d *SignedDecision) { d.Signature.KeyID = Fingerprint(otherPriv.Public().(ed25519.PublicKey)) }, ErrWrongKey},
		// A valid signature presented for other facts is a replay.
		{"another run", func(d *SignedDecision) { d.RunID = "credit-risk-20260315" }, ErrWrongRun},
		{"another step", func(d *SignedDecision) { d.Step = "final-sign-off" }, ErrWrongStep},
		{"another decision", func(d *SignedDecision) { d.Decision = Reject }, ErrWrongDecision},
		{"another reviewer", func(d *SignedDecision) { d.Reviewer = "bob" }, ErrWrongReviewer},
		{"comment changed", func(d *SignedDecision) { d.Comment += "!" }, ErrCommentChanged},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := signed(t, priv, approval())
			c.edit(&d)
			err := Verify(pub, d, now, 5*time.Minute)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func TestVerifyWrongKey(t *testing.T) {
	pub, _ := newKey(t)
	_, mallory := newKey(t)
	d := signed(t, mallory, approval())
	if err := Verify(pub, d, signedAt, time.Minute); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("with key id: %v, want ErrWrongKey", err)
	}
	// Without the advisory key id the signature check itself refuses it.
	d.Signature.KeyID = ""
	if err := Verify(pub, d, signedAt, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("without key id: %v, want ErrBadSignature", err)
	}
}

func TestKeyRingUnknownReviewer(t *testing.T) {
	pub, priv := newKey(t)
	a := approval()
	a.Reviewer = "mallory"
	err := KeyRing{"alice": pub}.Verify(signed(t, priv, a), signedAt, time.Minute)
	if !errors.Is(err, ErrUnknownReviewer) || !strings.Contains(err.Error(), "mallory") {
		t.Fatalf("err = %v, want ErrUnknownReviewer naming mallory", err)
	}
}

func TestVerifySkew(t *testing.T) {
	pub, priv := newKey(t)
	d := signed(t, priv, approval())
	at := d.Signature.SignedAt
	skew := 5 * time.Minute
	cases := []struct {
		now  time.Time
		want error
	}{
		{at.Add(skew), nil},
		{at.Add(-skew), nil},
		{at.Add(skew + time.Second), ErrStale},
		{at.Add(48 * time.Hour), ErrStale},
		{at.Add(-skew - time.Second), ErrFutureDated},
	}
	for _, c := range cases {
		err := Verify(pub, d, c.now, skew)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("now %s: %v, want %v", c.now.Sub(at), err, c.want)
		}
	}
	if err := Verify(pub, d, at, 0); err == nil {
		t.Error("zero max skew accepted")
	}
}

func TestSignVerifyRejectInputs(t *testing.T) {
	pub, priv := newKey(t)
	for _, edit := range []func(*Approval){
		func(a *Approval) { a.RunID = "" },
		func(a *Approval) { a.Step = "" },
		func(a *Approval) { a.Reviewer = "" },
		func(a *Approval) { a.Decision = "maybe" },
	} {
		a := approval()
		edit(&a)
		if _, err := Sign(priv, a, signedAt); err == nil {
			t.Errorf("Sign(%+v) accepted", a)
		}
		good := signed(t, priv, approval())
		good.Approval = a
		if err := Verify(pub, good, signedAt, time.Minute); err == nil {
			t.Errorf("Verify(%+v) accepted", a)
		}
	}
	if _, err := Sign(priv[:10], approval(), signedAt); err == nil {
		t.Error("Sign with a short key accepted")
	}
	if err := Verify(pub[:10], signed(t, priv, approval()), signedAt, time.Minute); err == nil {
		t.Error("Verify with a short key accepted")
	}
}

// The canonical message must not let two different statements collide,
// whichever field boundaries an attacker shifts.
func TestMessageUnambiguous(t *testing.T) {
	base := Statement{RunID: "a|b", Step: "c", Decision: Approve, Reviewer: "r", SignedAt: signedAt, CommentSHA256: CommentHash("")}
	shifted := base
	shifted.RunID, shifted.Step = "a", "b|c"
	if bytes.Equal(Message(base), Message(shifted)) {
		t.Fatal("shifted field boundary gives the same message")
	}
	empty := base
	empty.RunID, empty.Step = "a|bc", ""
	if bytes.Equal(Message(base), Message(empty)) {
		t.Fatal("moving a field into its neighbour gives the same message")
	}
}

// The fingerprint matches what ssh-keygen prints for the same key.
func TestFingerprintMatchesSSHKeygen(t *testing.T) {
	testkit.Tool(t, "ssh-keygen")
	pub, _ := newKey(t)
	path := filepath.Join(t.TempDir(), "k.pub")
	if err := os.WriteFile(path, []byte(FormatPublicKey(pub)+" test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	if !strings.Contains(string(out), Fingerprint(pub)) {
		t.Fatalf("ssh-keygen says %q, Fingerprint %q", out, Fingerprint(pub))
	}
}

// The signature and the key ring travel as JSON: in the approve Update's
// payload and as the result of the activity that loads the key file.
func TestJSONRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	d := signed(t, priv, approval())
	data, err := json.Marshal(d.Signature)
	if err != nil {
		t.Fatal(err)
	}
	var sig Signature
	if err := json.Unmarshal(data, &sig); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"run_id"`, `"step"`, `"decision"`, `"reviewer"`, `"signed_at":"2026-03-14T09:26:53Z"`, `"comment_sha256"`, `"key_id"`, `"value"`} {
		if !strings.Contains(string(data), field) {
			t.Errorf("JSON lacks %s: %s", field, data)
		}
	}
	ringJSON, err := json.Marshal(KeyRing{"alice": pub})
	if err != nil {
		t.Fatal(err)
	}
	var ring KeyRing
	if err := json.Unmarshal(ringJSON, &ring); err != nil {
		t.Fatal(err)
	}
	if err := ring.Verify(SignedDecision{Approval: approval(), Signature: &sig}, signedAt, time.Minute); err != nil {
		t.Fatal(err)
	}
}

const modelDigest = "sha256:2a5f9c0d7e1b3a4c6d8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e"

// TestSignatureCoversTheModel binds a signature to the artifact the gate
// names: the same decision about another model, or a statement whose model
// was edited, does not verify; a gate without a model keeps v1 signatures.
func TestSignatureCoversTheModel(t *testing.T) {
	pub, priv := newKey(t)
	a := approval()
	a.Model = modelDigest
	d := signed(t, priv, a)
	if err := Verify(pub, d, signedAt, time.Minute); err != nil {
		t.Fatalf("verify: %v", err)
	}
	swapped := d
	swapped.Model = "sha256:" + strings.Repeat("0", 64)
	if err := Verify(pub, swapped, signedAt, time.Minute); !errors.Is(err, ErrWrongModel) {
		t.Fatalf("another model: %v, want ErrWrongModel", err)
	}
	edited := signed(t, priv, a)
	edited.Signature.Model = swapped.Model
	edited.Model = swapped.Model
	if err := Verify(pub, edited, signedAt, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("statement model edited: %v, want ErrBadSignature", err)
	}
	// A v1 signature (no model) is not a signature for a gate that names one.
	v1 := signed(t, priv, approval())
	v1.Model = modelDigest
	if err := Verify(pub, v1, signedAt, time.Minute); !errors.Is(err, ErrWrongModel) {
		t.Fatalf("v1 signature on a model gate: %v, want ErrWrongModel", err)
	}
	if bytes.Equal(Message(d.Signature.Statement)[:4+len(domainV2)], Message(v1.Signature.Statement)[:4+len(domainV2)]) {
		t.Fatal("v1 and v2 statements share a domain")
	}
}
