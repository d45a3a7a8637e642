package codec

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

const secret = "hunter2-s3cr3t-db-password"

func ring(t testing.TB, entries ...string) Keys {
	t.Helper()
	k, err := ParseKeys([]byte(strings.Join(entries, "\n")), "test")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func entry(t testing.TB, id string) string {
	t.Helper()
	e, err := GenerateKey(rand.Reader, id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func newCodec(t testing.TB, k Keys) *Codec {
	t.Helper()
	c, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func jsonPayload(t testing.TB, v any) *commonpb.Payload {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	c := newCodec(t, ring(t, entry(t, "k1")))
	in := []*commonpb.Payload{
		jsonPayload(t, map[string]any{"params": map[string]any{"db_password": secret}, "auc": 0.84}),
		jsonPayload(t, nil),
		jsonPayload(t, []byte{0, 1, 2}),
	}
	enc, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range enc {
		if got := string(p.Metadata[converter.MetadataEncoding]); got != EncodingEncrypted {
			t.Errorf("payload %d encoding %q", i, got)
		}
		if got := string(p.Metadata[MetadataKeyID]); got != "k1" {
			t.Errorf("payload %d key id %q", i, got)
		}
		if len(p.Metadata) != 2 {
			t.Errorf("payload %d leaks metadata: %v", i, p.Metadata)
		}
	}
	dec, err := c.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if !proto.Equal(in[i], dec[i]) {
			t.Errorf("payload %d: got %v, want %v", i, dec[i], in[i])
		}
	}
}

func TestDataConverter(t *testing.T) {
	dc := NewDataConverter(nil, newCodec(t, ring(t, entry(t, "k1"))))
	type params struct {
		Password string  `json:"password"`
		MinAUC   float64 `json:"min_auc"`
	}
	p, err := dc.ToPayload(params{Password: secret, MinAUC: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, []byte("min_auc")) {
		t.Fatal("stored payload holds plaintext")
	}
	var back params
	if err := dc.FromPayload(p, &back); err != nil {
		t.Fatal(err)
	}
	if back.Password != secret || back.MinAUC != 0.8 {
		t.Fatalf("got %+v", back)
	}
}

// The same plaintext never encrypts to the same bytes: a reader of the
// database cannot tell that two runs had equal parameters.
func TestFreshNonce(t *testing.T) {
	c := newCodec(t, ring(t, entry(t, "k1")))
	p := jsonPayload(t, secret)
	a, err := c.Encode([]*commonpb.Payload{p, p})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[0].Data, a[1].Data) || bytes.Equal(a[0].Data[:nonceSize], a[1].Data[:nonceSize]) {
		t.Fatal("same plaintext gave the same ciphertext or nonce")
	}
}

func TestTamperingDetected(t *testing.T) {
	k := ring(t, entry(t, "k1"), entry(t, "k2"))
	c := newCodec(t, k)
	edits := map[string]func(p *commonpb.Payload){
		"nonce":      func(p *commonpb.Payload) { p.Data[0] ^= 1 },
		"ciphertext": func(p *commonpb.Payload) { p.Data[nonceSize+2] ^= 0x80 },
		"tag":        func(p *commonpb.Payload) { p.Data[len(p.Data)-1] ^= 1 },
		"truncated":  func(p *commonpb.Payload) { p.Data = p.Data[:len(p.Data)-1] },
		"too short":  func(p *commonpb.Payload) { p.Data = p.Data[:nonceSize] },
		// Relabelling a payload with another key's id must not decrypt.
		"key id": func(p *commonpb.Payload) { p.Metadata[MetadataKeyID] = []byte("k1") },
	}
	for name, edit := range edits {
		enc, err := c.Encode([]*commonpb.Payload{jsonPayload(t, secret)})
		if err != nil {
			t.Fatal(err)
		}
		edit(enc[0])
		if _, err := c.Decode(enc); err == nil {
			t.Errorf("%s: tampered payload decoded", name)
		}
	}
}

func TestRotation(t *testing.T) {
	k1, k2 := entry(t, "k1"), entry(t, "k2")
	old := newCodec(t, ring(t, k1))
	oldEnc, err := old.Encode([]*commonpb.Payload{jsonPayload(t, "from before")})
	if err != nil {
		t.Fatal(err)
	}
	rotated := newCodec(t, ring(t, k1, k2))
	newEnc, err := rotated.Encode([]*commonpb.Payload{jsonPayload(t, "after")})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(newEnc[0].Metadata[MetadataKeyID]); got != "k2" {
		t.Fatalf("rotated codec encrypts with %q, want the last key k2", got)
	}
	dec, err := rotated.Decode(append(oldEnc, newEnc...))
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(dec[0], &s); err != nil || s != "from before" {
		t.Fatalf("old payload: %q, %v", s, err)
	}
	// Staged rollout: every worker gets k2 first while k1 still encrypts.
	staged, err := ring(t, k1, k2).WithCurrent("k1")
	if err != nil {
		t.Fatal(err)
	}
	enc, err := newCodec(t, staged).Encode([]*commonpb.Payload{jsonPayload(t, 1)})
	if err != nil || string(enc[0].Metadata[MetadataKeyID]) != "k1" {
		t.Fatalf("WithCurrent: %v %v", enc, err)
	}
	if _, err := ring(t, k1).WithCurrent("k9"); err == nil || !strings.Contains(err.Error(), `"k9"`) {
		t.Fatalf("WithCurrent unknown id: %v", err)
	}
}

func TestUnknownKeyID(t *testing.T) {
	enc, err := newCodec(t, ring(t, entry(t, "retired-2025"))).Encode([]*commonpb.Payload{jsonPayload(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = newCodec(t, ring(t, entry(t, "k2026"))).Decode(enc)
	if err == nil || !strings.Contains(err.Error(), `key id "retired-2025"`) || !strings.Contains(err.Error(), "k2026") {
		t.Fatalf("err = %v, want it to name the missing and known key ids", err)
	}
}

func TestPlaintextPassesThrough(t *testing.T) {
	c := newCodec(t, ring(t, entry(t, "k1")))
	in := []*commonpb.Payload{jsonPayload(t, "written before encryption"), {}, {Metadata: map[string][]byte{converter.MetadataEncoding: []byte("binary/zlib")}, Data: []byte{1}}}
	out, err := c.Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if out[i] != in[i] {
			t.Errorf("payload %d was changed", i)
		}
	}
}

func TestEncodeDoesNotMutate(t *testing.T) {
	c := newCodec(t, ring(t, entry(t, "k1")))
	p := jsonPayload(t, secret)
	before := proto.Clone(p)
	enc, err := c.Encode([]*commonpb.Payload{p})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(p, before) {
		t.Fatal("Encode changed its input")
	}
	encBefore := proto.Clone(enc[0])
	if _, err := c.Decode(enc); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(enc[0], encBefore) {
		t.Fatal("Decode changed its input")
	}
}

func TestNewRefusesBadRings(t *testing.T) {
	good := ring(t, entry(t, "k1"))
	cases := map[string]Keys{
		"no current":  {Current: "k9", ByID: good.ByID},
		"short key":   {Current: "k1", ByID: map[string][]byte{"k1": make([]byte, 16)}},
		"bad key id":  {Current: "a b", ByID: map[string][]byte{"a b": make([]byte, KeySize)}},
		"empty rings": {},
	}
	for name, k := range cases {
		if _, err := New(k); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseKeys(t *testing.T) {
	k1, k2, k3 := entry(t, "2025-q4"), entry(t, "k_2026.1"), entry(t, "k3")
	k, err := ParseKeys([]byte("# codec keys\r\n"+k1+"\r\n\n"+k2+" , "+k3+"\n"), "keys")
	if err != nil {
		t.Fatal(err)
	}
	if k.Current != "k3" || len(k.ByID) != 3 {
		t.Fatalf("got current %q and %d keys", k.Current, len(k.ByID))
	}
	_, b64, _ := strings.Cut(k1, ":")
	want, _ := base64.StdEncoding.DecodeString(b64)
	if !bytes.Equal(k.ByID["2025-q4"], want) {
		t.Fatal("key bytes differ")
	}
}

func TestParseKeysErrors(t *testing.T) {
	good := entry(t, "k1")
	_, keyText, _ := strings.Cut(good, ":")
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	cases := []struct{ name, data, want string }{
		{"empty", "# none\n", "codec.keys: no keys"},
		{"no id", "\n" + keyText + "\n", "codec.keys:2: an entry is not ID:BASE64KEY"},
		{"no key", "k1:\n", "codec.keys:1: an entry is not ID:BASE64KEY"},
		{"bad id", "k 1:" + keyText + "\n", `codec.keys:1: key id "k 1" has ' '`},
		{"not base64", "k1:!!!!\n", `codec.keys:1: key "k1" is not base64`},
		{"short", "k1:" + short + "\n", `codec.keys:1: key "k1" has 16 bytes, want 32`},
		{"duplicate", good + "\n#\n" + good + "\n", `codec.keys:3: key id "k1" is already used on line 1`},
	}
	for _, c := range cases {
		_, err := ParseKeys([]byte(c.data), "codec.keys")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), keyText) {
			t.Errorf("%s: error quotes key material", c.name)
		}
	}
}

func TestGenerateKey(t *testing.T) {
	if _, err := GenerateKey(rand.Reader, "bad id"); err == nil {
		t.Error("bad id accepted")
	}
	if _, err := GenerateKey(bytes.NewReader(nil), "k1"); err == nil {
		t.Error("empty random source accepted")
	}
}

func FuzzDecode(f *testing.F) {
	seed := bytes.Repeat([]byte{1}, KeySize)
	k := Keys{Current: "k1", ByID: map[string][]byte{"k1": seed}}
	c, err := New(k)
	if err != nil {
		f.Fatal(err)
	}
	enc, err := c.Encode([]*commonpb.Payload{jsonPayload(f, "x")})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(EncodingEncrypted), []byte("k1"), enc[0].Data)
	f.Add([]byte("json/plain"), []byte(""), []byte(`"plain"`))
	f.Fuzz(func(t *testing.T, encoding, keyID, data []byte) {
		in := &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: encoding, MetadataKeyID: keyID}, Data: data}
		out, err := c.Decode([]*commonpb.Payload{in})
		if err != nil {
			return
		}
		if string(encoding) != EncodingEncrypted {
			if out[0] != in {
				t.Fatal("plaintext payload not passed through")
			}
			return
		}
		// Whatever decrypted must encrypt and decrypt back to itself.
		again, err := c.Encode(out)
		if err != nil {
			t.Fatal(err)
		}
		back, err := c.Decode(again)
		if err != nil || !proto.Equal(back[0], out[0]) {
			t.Fatalf("re-encryption round trip: %v", err)
		}
	})
}
