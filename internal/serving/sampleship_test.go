package serving

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
)

func count(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func fileStore(t *testing.T) artifact.Store {
	t.Helper()
	s, err := artifact.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// shipped reads every chunk of model in store: the samples in chunk order
// and the chunks.
func shipped(t *testing.T, store artifact.Store, model string) ([]Sample, []SampleChunk) {
	t.Helper()
	ctx := context.Background()
	names, err := store.ListRefs(ctx, SampleRefPrefix+model+"/")
	if err != nil {
		t.Fatal(err)
	}
	var samples []Sample
	var chunks []SampleChunk
	for _, name := range names {
		ref, err := store.GetRef(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var c SampleChunk
		if err := json.Unmarshal(ref.Data, &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.HasPrefix(name, SampleDayPrefix(model, c.From)) {
			t.Errorf("%s holds samples from %s: not in that day's partition", name, c.From)
		}
		chunks = append(chunks, c)
		rc, err := store.Get(ctx, c.Blob)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(rc)
		n := 0
		for sc.Scan() {
			var s Sample
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
				t.Fatalf("%s: line %q: %v", name, sc.Text(), err)
			}
			if s.Time.Before(c.From) || s.Time.After(c.To) {
				t.Errorf("%s: sample at %s outside the chunk's %s to %s", name, s.Time, c.From, c.To)
			}
			samples = append(samples, s)
			n++
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if n != c.Samples {
			t.Errorf("%s: %d lines, the chunk says %d", name, n, c.Samples)
		}
	}
	return samples, chunks
}

func TestSamplesShippedToStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	store := fileStore(t)
	logDir := t.TempDir()
	s, ts := newServer(t, DirSource{Dir: dir, Name: "credit"}, Options{Sample: SampleOptions{
		Dir: logDir, Store: store, Replica: "stable-1", ShipInterval: time.Hour, Rate: 1, Buffer: 10000,
	}})
	b := body(t, records(d, 5))
	for range 10 {
		if code, r, _ := post(t, ts.URL, b); code != 200 {
			t.Fatalf("status %d: %s", code, r.Error)
		}
	}
	// Closing ships what the hour-long interval has not.
	s.Close()
	samples, chunks := shipped(t, store, "credit")
	if len(samples) != 50 {
		t.Fatalf("%d samples shipped, want the 50 scored", len(samples))
	}
	for _, c := range chunks {
		if c.Replica != "stable-1" || len(c.Versions) != 1 || c.Versions[0] != "dir" {
			t.Errorf("chunk %+v: want replica stable-1 and version dir", c)
		}
	}
	if samples[0].Features["purpose"] == nil || samples[0].Model != "credit" {
		t.Errorf("incomplete sample %+v", samples[0])
	}
	local, err := os.ReadFile(filepath.Join(logDir, SampleFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(local, []byte("\n")); n != 50 {
		t.Errorf("the local sample log has %d lines, want 50 as well", n)
	}
	if got := count(t, s.metrics.samplesShipped); got != 50 {
		t.Errorf("%s = %v, want 50", MetricSamplesShipped, got)
	}
}

// flakyStore fails Put while down; with loseAnswer set it stores a ref but
// answers an error, once, as a connection lost after the write would.
type flakyStore struct {
	artifact.Store
	down       atomic.Bool
	loseAnswer atomic.Bool
}

func (f *flakyStore) Put(ctx context.Context, r io.Reader) (artifact.BlobInfo, error) {
	if f.down.Load() {
		return artifact.BlobInfo{}, errors.New("store down")
	}
	return f.Store.Put(ctx, r)
}

func (f *flakyStore) PutRef(ctx context.Context, name string, data []byte, ifVersion string) (string, error) {
	v, err := f.Store.PutRef(ctx, name, data, ifVersion)
	if err == nil && f.loseAnswer.CompareAndSwap(true, false) {
		return "", errors.New("connection reset")
	}
	return v, err
}

// A store that is away keeps the samples waiting; they are stored once,
// in order, when it is back, even when an answer was lost on the way.
func TestSampleShippingOutlivesStoreOutage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	store := &flakyStore{Store: fileStore(t)}
	s, ts := newServer(t, DirSource{Dir: dir, Name: "credit"}, Options{Sample: SampleOptions{
		Store: store, Replica: "r", ShipInterval: time.Hour, Rate: 1, Buffer: 10000,
	}})
	ctx := context.Background()
	send := func(n int) {
		for range n {
			if code, r, _ := post(t, ts.URL, body(t, records(d, 1))); code != 200 {
				t.Fatalf("status %d: %s", code, r.Error)
			}
		}
	}
	// Samples reach the shipper through the log's queue: wait until every
	// one has been taken.
	drained := func(want float64) {
		t.Helper()
		for count(t, s.metrics.sampled) < want {
			time.Sleep(time.Millisecond)
		}
	}
	sh := s.samples.ship
	store.down.Store(true)
	send(3)
	drained(3)
	if err := sh.ship(ctx); err == nil {
		t.Fatal("ship with the store down: no error")
	}
	send(2)
	drained(5)
	store.down.Store(false)
	store.loseAnswer.Store(true)
	if err := sh.ship(ctx); err == nil {
		t.Fatal("ship whose answer was lost: no error")
	}
	if err := sh.ship(ctx); err != nil {
		t.Fatalf("ship once the store is back: %v", err)
	}
	samples, chunks := shipped(t, store, "credit")
	if len(samples) != 5 || len(chunks) != 2 {
		t.Fatalf("%d samples in %d chunks, want 5 in 2 (the 3 sealed while the store was down, then 2)", len(samples), len(chunks))
	}
	if got := count(t, s.metrics.sampleShipFailures); got != 2 {
		t.Errorf("%s = %v, want 2", MetricShipFailures, got)
	}
	s.Close()
}

func TestSampleShippingBoundsWhatWaits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	store := &flakyStore{Store: fileStore(t)}
	store.down.Store(true)
	s, ts := newServer(t, DirSource{Dir: dir, Name: "credit"}, Options{Sample: SampleOptions{
		Store: store, Replica: "r", ShipInterval: time.Hour, Rate: 1, Buffer: 10000, MaxBytes: 2000,
	}})
	sh := s.samples.ship
	for i := range 20 {
		if code, r, _ := post(t, ts.URL, body(t, records(d, 1))); code != 200 {
			t.Fatalf("status %d: %s", code, r.Error)
		}
		for count(t, s.metrics.sampled) < float64(i+1) {
			time.Sleep(time.Millisecond)
		}
		// Each failed shipment seals a chunk of one sample.
		_ = sh.ship(context.Background())
	}
	sh.mu.Lock()
	waiting := sh.waiting
	sh.mu.Unlock()
	if waiting > 2000 {
		t.Errorf("%d bytes wait for the store, over MaxBytes 2000", waiting)
	}
	if dropped := count(t, s.metrics.sampleDropped); dropped == 0 {
		t.Error("nothing counted as dropped")
	}
	store.down.Store(false)
	s.Close()
	samples, _ := shipped(t, store, "credit")
	dropped := int(count(t, s.metrics.sampleDropped))
	if len(samples)+dropped != 20 {
		t.Errorf("%d shipped and %d dropped of 20", len(samples), dropped)
	}
}

func TestReplicaName(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:8080": "127.0.0.1-8080", ":8080": "-8080", ".x": "x", "": "replica", "model-champion": "model-champion"} {
		got := ReplicaName(in)
		if got != want {
			t.Errorf("ReplicaName(%q) = %q, want %q", in, got, want)
		}
		if err := ValidReplica(got); err != nil {
			t.Errorf("ReplicaName(%q) = %q: %v", in, got, err)
		}
	}
	if ValidReplica("a/b") == nil || ValidReplica(".a") == nil {
		t.Error("invalid replica names accepted")
	}
}
