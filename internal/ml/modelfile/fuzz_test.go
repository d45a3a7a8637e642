package modelfile_test

import (
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
)

// FuzzDecodeManifest: arbitrary bytes must decode or fail, never panic, and a
// manifest that decodes must be internally consistent.
func FuzzDecodeManifest(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := modelfile.DecodeManifest(b)
		if err != nil {
			return
		}
		if len(m.Features) != m.Preprocessing.Width() {
			t.Fatalf("accepted %d features for an encoder of width %d", len(m.Features), m.Preprocessing.Width())
		}
	})
}

// FuzzDecodeSafetensors: arbitrary bytes must decode or fail, never panic,
// and whatever decodes must re-encode to a file that decodes the same way.
func FuzzDecodeSafetensors(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, meta, err := modelfile.DecodeSafetensors(b)
		if err != nil {
			return
		}
		again, err := modelfile.EncodeSafetensors(ts, meta)
		if err != nil {
			return // e.g. NaN payloads or names the encoder refuses
		}
		back, _, err := modelfile.DecodeSafetensors(again)
		if err != nil || len(back) != len(ts) {
			t.Fatalf("re-encoded file does not decode: %v", err)
		}
	})
}
