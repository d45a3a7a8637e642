package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
)

// Shipped samples live in the artifact store the fleet shares, so that a
// monitor on any worker reads what every model server sampled. Each
// shipment of one server is a chunk: its JSON lines (the sample log's
// format) stored as one blob, and a ref naming it,
//
//	samples/<model>/<UTC day YYYYMMDD>/<replica>/<process start>-<seq>
//
// whose data is a SampleChunk. Partitioning by day lets a reader list only
// the days after the time it reads from; a chunk never spans two days.
const SampleRefPrefix = "samples/"

// SampleDayLayout formats the day partition of a chunk ref.
const SampleDayLayout = "20060102"

// SampleDayPrefix is the ref prefix of model's chunks of day (in UTC).
func SampleDayPrefix(model string, day time.Time) string {
	return SampleRefPrefix + model + "/" + day.UTC().Format(SampleDayLayout) + "/"
}

// SampleChunk is the data of a chunk ref.
type SampleChunk struct {
	// Blob holds the samples as JSON lines, oldest first.
	Blob    artifact.Digest `json:"blob"`
	Samples int             `json:"samples"`
	From    time.Time       `json:"from"`
	To      time.Time       `json:"to"`
	// Versions are the model versions that logged the samples, sorted.
	Versions []string `json:"versions"`
	Replica  string   `json:"replica"`
}

// DefaultShipInterval is how often samples are shipped when
// SampleOptions.ShipInterval is not set.
const DefaultShipInterval = 10 * time.Second

// shipTimeout bounds one shipment, and the last one at close.
const shipTimeout = 30 * time.Second

// ValidReplica checks a replica name: one ref name segment.
func ValidReplica(name string) error {
	if name == "" || strings.Contains(name, "/") || artifact.ValidateRefName(name) != nil {
		return fmt.Errorf("sample replica name %q: want letters, digits, '.', '_' and '-', not starting with '.'", name)
	}
	return nil
}

// ReplicaName turns s (such as a host:port) into a valid replica name by
// replacing what a ref name cannot hold with '-'.
func ReplicaName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	for len(b) > 0 && b[0] == '.' {
		b = b[1:]
	}
	if len(b) == 0 {
		return "replica"
	}
	return string(b)
}

// chunk is samples of one model and day on their way to the store. Once
// sealed it keeps its name, so a shipment retried after an answer was lost
// rewrites the same ref instead of storing the samples twice.
type chunk struct {
	model, day string
	name       string // set when sealed
	lines      bytes.Buffer
	n          int
	from, to   time.Time
	versions   []string
}

func (c *chunk) add(s Sample, line []byte) {
	c.lines.Write(line)
	if c.n == 0 || s.Time.Before(c.from) {
		c.from = s.Time
	}
	if c.n == 0 || s.Time.After(c.to) {
		c.to = s.Time
	}
	if !slices.Contains(c.versions, s.Version) {
		c.versions = append(c.versions, s.Version)
		slices.Sort(c.versions)
	}
	c.n++
}

// shipper batches sampled records and stores them every interval. A
// shipment that fails is kept and tried again at the next one; what waits
// is bounded by maxBytes, beyond which the oldest chunks are dropped and
// counted.
type shipper struct {
	store    artifact.Store
	replica  string
	stamp    string
	interval time.Duration
	maxBytes int64
	metrics  *Metrics
	log      *slog.Logger

	mu      sync.Mutex
	open    map[[2]string]*chunk // by model and day
	sealed  []*chunk             // waiting, oldest first
	waiting int64                // bytes in open and sealed
	seq     int

	shipMu sync.Mutex // one shipment at a time
	stop   chan struct{}
	done   chan struct{}
}

func newShipper(opts SampleOptions, metrics *Metrics, log *slog.Logger) (*shipper, error) {
	if err := ValidReplica(opts.Replica); err != nil {
		return nil, fmt.Errorf("sample log: %w", err)
	}
	interval := opts.ShipInterval
	if interval <= 0 {
		interval = DefaultShipInterval
	}
	sh := &shipper{
		store: opts.Store, replica: opts.Replica, stamp: strconv.FormatInt(time.Now().UnixNano(), 10),
		interval: interval, maxBytes: opts.MaxBytes, metrics: metrics, log: log,
		open: map[[2]string]*chunk{}, stop: make(chan struct{}), done: make(chan struct{}),
	}
	go sh.run()
	return sh, nil
}

// add queues a sample with its encoded line (newline included).
func (sh *shipper) add(s Sample, line []byte) {
	day := s.Time.UTC().Format(SampleDayLayout)
	key := [2]string{s.Model, day}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.open[key]
	if c == nil {
		c = &chunk{model: s.Model, day: day}
		sh.open[key] = c
	}
	c.add(s, line)
	sh.waiting += int64(len(line))
	for sh.waiting > sh.maxBytes && len(sh.sealed) > 0 {
		old := sh.sealed[0]
		sh.sealed = sh.sealed[1:]
		sh.waiting -= int64(old.lines.Len())
		sh.metrics.sampleDropped.Add(float64(old.n))
		sh.log.Error("sample shipping: dropped samples that could not be stored", "samples", old.n, "chunk", old.name)
	}
}

func (sh *shipper) run() {
	defer close(sh.done)
	t := time.NewTicker(sh.interval)
	defer t.Stop()
	for {
		select {
		case <-sh.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), shipTimeout)
			_ = sh.ship(ctx)
			cancel()
		}
	}
}

// ship seals the open chunks and stores every sealed one, oldest first; it
// stops at the first failure, keeping that chunk and the ones after it.
func (sh *shipper) ship(ctx context.Context) error {
	sh.shipMu.Lock()
	defer sh.shipMu.Unlock()
	sh.mu.Lock()
	keys := make([][2]string, 0, len(sh.open))
	for k := range sh.open {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[1]+"/"+a[0], b[1]+"/"+b[0]) })
	for _, k := range keys {
		c := sh.open[k]
		delete(sh.open, k)
		sh.seq++
		c.name = fmt.Sprintf("%s%s/%s/%s/%s-%08d", SampleRefPrefix, c.model, c.day, sh.replica, sh.stamp, sh.seq)
		sh.sealed = append(sh.sealed, c)
	}
	sh.mu.Unlock()
	for {
		sh.mu.Lock()
		if len(sh.sealed) == 0 {
			sh.mu.Unlock()
			return nil
		}
		c := sh.sealed[0]
		sh.mu.Unlock()
		if err := sh.store1(ctx, c); err != nil {
			sh.metrics.sampleShipFailures.Inc()
			sh.log.Warn("sample shipping: store unavailable, samples kept for the next shipment", "chunk", c.name, "err", err)
			return err
		}
		sh.mu.Lock()
		// add may have dropped it meanwhile.
		if len(sh.sealed) > 0 && sh.sealed[0] == c {
			sh.sealed = sh.sealed[1:]
			sh.waiting -= int64(c.lines.Len())
		}
		sh.mu.Unlock()
		sh.metrics.samplesShipped.Add(float64(c.n))
	}
}

func (sh *shipper) store1(ctx context.Context, c *chunk) error {
	info, err := sh.store.Put(ctx, bytes.NewReader(c.lines.Bytes()))
	if err != nil {
		return fmt.Errorf("store %s: %w", c.name, err)
	}
	data, err := json.Marshal(SampleChunk{Blob: info.Digest, Samples: c.n, From: c.from, To: c.to, Versions: c.versions, Replica: sh.replica})
	if err != nil {
		return fmt.Errorf("store %s: %w", c.name, err)
	}
	_, err = sh.store.PutRef(ctx, c.name, data, "")
	if errors.Is(err, artifact.ErrConflict) {
		// A retry of a shipment whose answer was lost finds its own ref.
		if ref, gerr := sh.store.GetRef(ctx, c.name); gerr == nil && bytes.Equal(ref.Data, data) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", c.name, err)
	}
	return nil
}

// close ships what is left, within shipTimeout.
func (sh *shipper) close() {
	close(sh.stop)
	<-sh.done
	ctx, cancel := context.WithTimeout(context.Background(), shipTimeout)
	defer cancel()
	if err := sh.ship(ctx); err != nil {
		sh.mu.Lock()
		lost := 0
		for _, c := range sh.sealed {
			lost += c.n
		}
		sh.mu.Unlock()
		sh.metrics.sampleDropped.Add(float64(lost))
		sh.log.Error("sample shipping: samples not stored at shutdown", "samples", lost, "err", err)
	}
}
