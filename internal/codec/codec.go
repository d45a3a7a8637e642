// Package codec encrypts Temporal payloads (workflow and activity inputs,
// results, signals, memos) with AES-256-GCM, so that parameters, metrics and
// outputs are stored encrypted in the Temporal server's database, and serves
// the same codec over HTTP for the Temporal UI and CLI to decrypt for
// people allowed to see them.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"sort"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// Metadata of an encrypted payload.
const (
	EncodingEncrypted = "binary/encrypted"
	MetadataKeyID     = "encryption-key-id"
)

const nonceSize = 12

// aadPrefix binds a ciphertext to this use and to the key id in its
// metadata, so a payload cannot be passed off as one under another id.
const aadPrefix = "gauntlet payload v1 "

// Codec is a converter.PayloadCodec that seals each payload, metadata and
// data together, under the current key, and opens payloads under any key of
// the ring.
type Codec struct {
	current string
	aeads   map[string]cipher.AEAD
}

var _ converter.PayloadCodec = (*Codec)(nil)

// New makes a codec from a key ring.
func New(k Keys) (*Codec, error) {
	if _, ok := k.ByID[k.Current]; !ok {
		return nil, fmt.Errorf("codec: current key id %q is not in the key ring", k.Current)
	}
	c := &Codec{current: k.Current, aeads: map[string]cipher.AEAD{}}
	for id, key := range k.ByID {
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("codec: %w", err)
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("codec: key %q has %d bytes, want %d", id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("codec: key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("codec: key %q: %w", id, err)
		}
		c.aeads[id] = aead
	}
	return c, nil
}

// Encode encrypts every payload under the current key with a fresh random
// nonce. The whole original payload, metadata included, is sealed, so not
// even its encoding or message type is visible at rest.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := c.aeads[c.current]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encrypt payload %d: marshal: %w", i, err)
		}
		nonce := make([]byte, nonceSize, nonceSize+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("encrypt payload %d: nonce: %w", i, err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(EncodingEncrypted),
				MetadataKeyID:              []byte(c.current),
			},
			Data: aead.Seal(nonce, nonce, plain, []byte(aadPrefix+c.current)),
		}
	}
	return out, nil
}

// Decode decrypts encrypted payloads and passes others through unchanged:
// histories written before encryption was enabled must stay readable.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != EncodingEncrypted {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		aead, ok := c.aeads[id]
		if !ok {
			return nil, fmt.Errorf("decrypt payload %d: it was encrypted with key id %q, which is not in the key ring (ids: %s); add that key back to read it", i, id, strings.Join(sortedIDs(c.aeads), ", "))
		}
		data := p.GetData()
		if len(data) < nonceSize+aead.Overhead() {
			return nil, fmt.Errorf("decrypt payload %d (key %q): %d bytes is too short to be encrypted data", i, id, len(data))
		}
		plain, err := aead.Open(nil, data[:nonceSize], data[nonceSize:], []byte(aadPrefix+id))
		if err != nil {
			return nil, fmt.Errorf("decrypt payload %d (key %q): authentication failed: the payload was altered or the key with this id is not the one that encrypted it", i, id)
		}
		var orig commonpb.Payload
		if err := proto.Unmarshal(plain, &orig); err != nil {
			return nil, fmt.Errorf("decrypt payload %d (key %q): decrypted bytes are not a payload: %w", i, id, err)
		}
		out[i] = &orig
	}
	return out, nil
}

func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// NewDataConverter wraps base (the SDK default when nil) so that everything
// it produces is encrypted by c. Give the result to client.Options
// DataConverter in the worker and the CLI alike: a client without it sees
// only ciphertext.
func NewDataConverter(base converter.DataConverter, c converter.PayloadCodec) converter.DataConverter {
	if base == nil {
		base = converter.GetDefaultDataConverter()
	}
	return converter.NewCodecDataConverter(base, c)
}
