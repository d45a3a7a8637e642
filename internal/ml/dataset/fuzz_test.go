package dataset_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

// FuzzRead feeds arbitrary bytes to the CSV loader: it must return a data set
// or an error, never panic, and a data set it returns must be encodable.
func FuzzRead(f *testing.F) {
	f.Add([]byte(small))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := dataset.Read(bytes.NewReader(data), "fuzz.csv", dataset.WithLabel("y", "yes"))
		if err != nil {
			var de *dataset.Error
			if errors.As(err, &de) && de.Retryable() {
				t.Fatalf("bad data reported retryable: %v", err)
			}
			return
		}
		var pos int
		for _, y := range d.Y {
			if y == 1 {
				pos++
			}
		}
		if pos == 0 || pos == d.Len() || len(d.Digest) != 64 {
			t.Fatalf("accepted a data set with %d/%d positives, digest %q", pos, d.Len(), d.Digest)
		}
		enc, err := dataset.FitEncoder(d, dataset.EncoderOptions{Unseen: dataset.UnseenOther, MinFrequency: 2})
		if err != nil {
			return
		}
		x, err := enc.Transform(d)
		if err != nil {
			t.Fatalf("transform of the training data failed: %v", err)
		}
		if r, c := x.Dims(); r != d.Len() || c != enc.Width() {
			t.Fatalf("matrix %d×%d for %d rows and %d features", r, c, d.Len(), enc.Width())
		}
	})
}
