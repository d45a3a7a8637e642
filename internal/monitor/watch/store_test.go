package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

func fileStore(t *testing.T) artifact.Store {
	t.Helper()
	s, err := artifact.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// shippingReplica is a model server that logs to a directory and ships to
// store as well.
func shippingReplica(t *testing.T, modelDir string, store artifact.Store, name string) *replica {
	t.Helper()
	logDir := t.TempDir()
	s, err := serving.New(context.Background(), serving.DirSource{Dir: modelDir, Name: "credit"}, serving.Options{
		PollInterval: -1,
		Sample:       serving.SampleOptions{Dir: logDir, Store: store, Replica: name, ShipInterval: time.Hour, Rate: 1, Buffer: 1 << 16},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{s: s, ts: httptest.NewServer(s.Handler()), logDir: logDir}
	t.Cleanup(r.close)
	return r
}

// What servers shipped to the store is read as their local logs are.
func TestStoreSamplesReadWhatServersShipped(t *testing.T) {
	dir, m := trainedModel(t)
	store := fileStore(t)
	a, b := shippingReplica(t, dir, store, "a"), shippingReplica(t, dir, store, "b")
	a.post(t, records(load(t, "builtin:credit-risk?rows=600&seed=3&drift=1.5")))
	b.post(t, records(load(t, "builtin:credit-risk?rows=600&seed=4&drift=1.5")))
	a.close()
	b.close()
	local := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{a.logDir, b.logDir}})
	shipped := check(t, monitor.Config{}, Input{Model: m, Samples: StoreSamples{Store: store, Model: "credit"}, Since: time.Now().Add(-time.Hour)})
	if shipped.Samples != 1200 || local.Samples != 1200 {
		t.Fatalf("%d samples from the store, %d from the directories; want 1200 each", shipped.Samples, local.Samples)
	}
	if !shipped.DataDrifted || fmt.Sprint(kinds(shipped.Breaches)) != fmt.Sprint(kinds(local.Breaches)) {
		t.Fatalf("from the store: drifted %v, breaches %v; from the directories %v", shipped.DataDrifted, kinds(shipped.Breaches), kinds(local.Breaches))
	}
	none := check(t, monitor.Config{}, Input{Model: m, Samples: StoreSamples{Store: store, Model: "other"}})
	if none.Samples != 0 {
		t.Fatalf("another model's pass read %d samples", none.Samples)
	}
}

// putChunk stores samples of recs as one chunk at times from at on, one
// second apart, logged by version; with noBlob the chunk's blob is never
// stored, so reading it fails.
func putChunk(t *testing.T, store artifact.Store, at time.Time, versions []string, recs []map[string]any, noBlob bool) string {
	t.Helper()
	var lines bytes.Buffer
	c := serving.SampleChunk{From: at, Versions: versions, Replica: "r"}
	for i, rec := range recs {
		s := serving.Sample{Time: at.Add(time.Duration(i) * time.Second), Model: "credit", Version: versions[i%len(versions)], Features: rec, Score: 0.5, Label: "no"}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		lines.Write(append(b, '\n'))
		c.To = s.Time
		c.Samples++
	}
	ctx := context.Background()
	if noBlob {
		c.Blob = artifact.DigestBytes(append(lines.Bytes(), "never stored"...))
	} else {
		info, err := store.Put(ctx, &lines)
		if err != nil {
			t.Fatal(err)
		}
		c.Blob = info.Digest
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	name := serving.SampleDayPrefix("credit", at) + "r/" + at.Format("150405")
	if _, err := store.PutRef(ctx, name, data, ""); err != nil {
		t.Fatal(err)
	}
	return name
}

// A pass lists the days from Since on and reads the chunks holding samples
// after it, of the version asked for; the others are never opened (their
// blobs are missing here, and reading one fails).
func TestStoreSamplesDaysAndVersions(t *testing.T) {
	_, m := trainedModel(t)
	store := fileStore(t)
	recs := records(load(t, "builtin:credit-risk?rows=40&seed=5"))
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	since := now.Add(-30 * time.Hour)
	putChunk(t, store, now.AddDate(0, 0, -3), []string{"v2"}, recs[:10], true)         // a day not listed
	putChunk(t, store, since.Add(-time.Minute), []string{"v2"}, recs[:10], true)       // ends before since
	putChunk(t, store, since.Add(time.Hour), []string{"v1"}, recs[:10], true)          // another version
	putChunk(t, store, since.Add(2*time.Hour), []string{"v1", "v2"}, recs[:20], false) // 10 of v2
	putChunk(t, store, now.Add(-time.Hour), []string{"v2"}, recs[20:40], false)
	src := StoreSamples{Store: store, Model: "credit", Version: "v2", Now: func() time.Time { return now }}
	rep := check(t, monitor.Config{MinSamples: 1}, Input{Model: m, Samples: src, Since: since, Version: "v2"})
	if rep.Samples != 30 {
		t.Fatalf("%d samples, want the 30 of v2 after since", rep.Samples)
	}
	if !rep.Window.From.Equal(since.Add(2*time.Hour + time.Second)) {
		t.Errorf("window from %s, want the mixed chunk's first v2 sample", rep.Window.From)
	}

	// Without since every chunk is listed, and a missing blob is an error
	// naming its chunk.
	_, err := Check(context.Background(), monitor.Config{}, Input{Model: m, Samples: StoreSamples{Store: store, Model: "credit"}})
	if !errors.Is(err, artifact.ErrNotFound) || !strings.Contains(err.Error(), "samples/credit/") {
		t.Fatalf("reading a chunk whose blob is gone: %v", err)
	}
}
