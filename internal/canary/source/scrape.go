package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
)

// ScrapeProvider measures by reading Prometheus /metrics pages itself, with
// no Prometheus server: each Measure scrapes every page and takes what the
// counters and histograms gained since the previous scrape. It keeps that
// scrape in memory, so it must outlive the intervals it measures (one per
// canary, held by the worker); after a restart its first Measure takes a new
// baseline and waits canary.Window.Duration before measuring. Use it through a
// pointer; Measure calls are serialised.
type ScrapeProvider struct {
	// URLs are the pages to read: the router's, or each model server's.
	// Series with the same labels on several pages add up.
	URLs   []string
	Source Source
	// HTTP defaults to http.DefaultClient.
	HTTP *http.Client

	mu   sync.Mutex
	prev map[string]series // nil until a scrape succeeds
}

// series is one series of a scrape, reduced to what a measurement needs.
type series struct {
	family  string
	variant string // the value of Source.Label
	code    string
	value   float64 // a counter's
	// buckets are a histogram's cumulative counts by upper bound, with the
	// total at +Inf.
	buckets map[float64]float64
}

// Measure measures w since the previous scrape.
func (p *ScrapeProvider) Measure(ctx context.Context, w canary.Window) (canary.Measurement, error) {
	if err := w.Validate(); err != nil {
		return canary.Measurement{}, err
	}
	if err := p.Source.validate(); err != nil {
		return canary.Measurement{}, err
	}
	if len(p.URLs) == 0 {
		return canary.Measurement{}, errors.New("canary: scrape: no URLs")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prev == nil {
		first, err := p.scrape(ctx)
		if err != nil {
			return canary.Measurement{}, err
		}
		p.prev = first
		if err := sleep(ctx, w.Duration); err != nil {
			return canary.Measurement{}, fmt.Errorf("canary: scrape: waiting for the first interval: %w", err)
		}
	}
	cur, err := p.scrape(ctx)
	if err != nil {
		return canary.Measurement{}, err
	}
	m := p.Source.delta(w, p.prev, cur)
	p.prev = cur
	return m, nil
}

// Baseline scrapes now and keeps the result as the start of the next
// interval, so that the next Measure covers only what happened from here:
// after a weight change, the traffic at the new weight.
func (p *ScrapeProvider) Baseline(ctx context.Context) error {
	if err := p.Source.validate(); err != nil {
		return err
	}
	if len(p.URLs) == 0 {
		return errors.New("canary: scrape: no URLs")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, err := p.scrape(ctx)
	if err != nil {
		return err
	}
	p.prev = cur
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// scrape reads every page, all or nothing: a baseline missing a page would
// make that page's series look new on the next scrape, and their whole
// history would count as one interval's.
func (p *ScrapeProvider) scrape(ctx context.Context) (map[string]series, error) {
	out := map[string]series{}
	for _, u := range p.URLs {
		if err := p.scrapeOne(ctx, u, out); err != nil {
			return nil, fmt.Errorf("canary: scrape %s: %w", u, err)
		}
	}
	return out, nil
}

func (p *ScrapeProvider) scrapeOne(ctx context.Context, url string, out map[string]series) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	hc := p.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	for {
		mf := &dto.MetricFamily{}
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := p.Source.read(url, mf, out); err != nil {
			return err
		}
	}
}

// read adds the series of mf that the source names to out, keyed by page,
// name and labels so that consecutive scrapes pair up.
func (src Source) read(url string, mf *dto.MetricFamily, out map[string]series) error {
	name := mf.GetName()
	var histogram bool
	switch {
	case name == src.Requests:
	case name == src.Latency, src.Scores != "" && name == src.Scores:
		histogram = true
	default:
		return nil
	}
	t, want := mf.GetType(), dto.MetricType_COUNTER
	if histogram {
		want = dto.MetricType_HISTOGRAM
	}
	// A page without TYPE lines has untyped counters.
	if t != want && (histogram || t != dto.MetricType_UNTYPED) {
		return fmt.Errorf("%s is a %s, want a %s", name, strings.ToLower(t.String()), strings.ToLower(want.String()))
	}
	for _, m := range mf.GetMetric() {
		s := series{family: name}
		labels := make([]string, 0, len(m.GetLabel()))
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case src.Label:
				s.variant = l.GetValue()
			case "code":
				s.code = l.GetValue()
			}
			labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
		}
		slices.Sort(labels)
		// Quoted values make the id unambiguous whatever they hold.
		id := "{" + strings.Join(labels, ",") + "}"
		var counts []float64
		if histogram {
			s.buckets = map[float64]float64{}
			h := m.GetHistogram()
			for _, b := range h.GetBucket() {
				s.buckets[b.GetUpperBound()] = count(b.GetCumulativeCountFloat(), b.GetCumulativeCount())
			}
			s.buckets[math.Inf(1)] = count(h.GetSampleCountFloat(), h.GetSampleCount())
			for _, c := range s.buckets {
				counts = append(counts, c)
			}
		} else {
			s.value = m.GetCounter().GetValue()
			if t == dto.MetricType_UNTYPED {
				s.value = m.GetUntyped().GetValue()
			}
			counts = append(counts, s.value)
		}
		for _, c := range counts {
			if !(c >= 0) || math.IsInf(c, 0) {
				return fmt.Errorf("%s%s: %v is not a count", name, id, c)
			}
		}
		out[url+" "+name+id] = s
	}
	return nil
}

// count reads a histogram count, which the text parser stores as a float
// only when it is not a whole number.
func count(f float64, i uint64) float64 {
	if f != 0 {
		return f
	}
	return float64(i)
}
