package watch

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

// StoreSamples reads the chunks model servers shipped to the artifact store
// (serving.SampleOptions.Store): what a fleet's servers, wherever they run,
// sampled of one model.
type StoreSamples struct {
	Store artifact.Store
	Model string
	// Version, when set, leaves out chunks holding no sample of it; the
	// samples themselves are filtered by Input.Version.
	Version string
	// Now is the last day partition listed (servers' clocks may be a
	// little ahead: the next day is listed too); nil means time.Now.
	Now func() time.Time
}

// maxDays bounds the day partitions one pass lists.
const maxDays = 366

// Logs lists the chunks of the days from since's to today's and reads those
// holding samples after since, oldest first. Without since it lists every
// chunk of the model.
func (s StoreSamples) Logs(ctx context.Context, since time.Time, fn func(name string, r io.Reader) error) error {
	if s.Store == nil || s.Model == "" {
		return errors.New("monitor: store samples: no store or no model")
	}
	var prefixes []string
	if since.IsZero() {
		prefixes = []string{serving.SampleRefPrefix + s.Model + "/"}
	} else {
		now := time.Now
		if s.Now != nil {
			now = s.Now
		}
		last := now().UTC().AddDate(0, 0, 1)
		day := since.UTC().Truncate(24 * time.Hour)
		for ; !day.After(last) && len(prefixes) < maxDays; day = day.AddDate(0, 0, 1) {
			prefixes = append(prefixes, serving.SampleDayPrefix(s.Model, day))
		}
	}
	type found struct {
		name  string
		chunk serving.SampleChunk
	}
	var chunks []found
	for _, p := range prefixes {
		names, err := s.Store.ListRefs(ctx, p)
		if err != nil {
			return fmt.Errorf("monitor: list samples of %s under %s: %w", s.Model, p, err)
		}
		for _, name := range names {
			ref, err := s.Store.GetRef(ctx, name)
			if errors.Is(err, artifact.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("monitor: samples %s: %w", name, err)
			}
			var c serving.SampleChunk
			if err := json.Unmarshal(ref.Data, &c); err != nil {
				return fmt.Errorf("monitor: samples %s: not a sample chunk: %w", name, err)
			}
			if !c.To.After(since) || s.Version != "" && !slices.Contains(c.Versions, s.Version) {
				continue
			}
			chunks = append(chunks, found{name, c})
		}
	}
	slices.SortFunc(chunks, func(a, b found) int {
		return cmp.Or(a.chunk.From.Compare(b.chunk.From), strings.Compare(a.name, b.name))
	})
	for _, c := range chunks {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("monitor: reading sample logs: %w", err)
		}
		if err := s.read(ctx, c.name, c.chunk, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s StoreSamples) read(ctx context.Context, name string, c serving.SampleChunk, fn func(string, io.Reader) error) error {
	rc, err := s.Store.Get(ctx, c.Blob)
	if err != nil {
		return fmt.Errorf("monitor: samples %s: blob %s: %w", name, c.Blob, err)
	}
	defer rc.Close()
	return fn(name, rc)
}
