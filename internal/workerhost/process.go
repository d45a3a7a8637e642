package workerhost

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/gauntlet-ml/gauntlet/internal/tclient"
)

// ProcessOptions are the settings of a worker process beyond its worker.
type ProcessOptions struct {
	// Codec encrypts payloads; nil leaves them plain.
	Codec *Codec
	// Stderr receives the log; LogFormat and LogLevel are logging.New's.
	Stderr              io.Writer
	LogFormat, LogLevel string
	// MetricsAddr, when set, is where /metrics is served.
	MetricsAddr string
	// Secrets are values the log masks besides the environment's and the
	// payload keys: ones read from files, such as a fleet's admin token.
	Secrets []string
}

// SettingsError is a log format or level the process cannot use: a usage
// error of the command that gave it.
type SettingsError struct{ Err error }

func (e *SettingsError) Error() string { return "--log-format/--log-level: " + e.Err.Error() }
func (e *SettingsError) Unwrap() error { return e.Err }

// Process is the one setup of a worker process, for the worker binary and
// `gauntlet dev` alike: a log that masks the environment's secrets and the
// payload keys, metrics served (and fed by the SDK and the activities)
// before Temporal is dialled so that a taken port fails at once, the
// client options the codec and metrics need, and the worker New builds,
// with the approvals-waiting gauges kept by long-lived workers.
type Process struct {
	Config Config
	Logger *slog.Logger
	// Telemetry and MetricsAddr are nil without ProcessOptions.MetricsAddr.
	Telemetry   *Telemetry
	MetricsAddr net.Addr

	codec *Codec
	stops []func()
}

// NewProcess prepares a worker process with cfg as its worker's
// configuration; cfg's Logger and Metrics are set here. Close releases what
// it started.
func NewProcess(cfg Config, o ProcessOptions) (*Process, error) {
	known := NewSecrets(os.Environ(), o.Codec)
	known.Add(o.Secrets...)
	logger, err := NewLogger(o.Stderr, known, o.LogFormat, o.LogLevel)
	if err != nil {
		return nil, &SettingsError{Err: err}
	}
	p := &Process{Config: cfg, Logger: logger, codec: o.Codec}
	p.Config.Logger = logger
	if o.MetricsAddr != "" {
		tel, err := NewTelemetry(cfg.PipelinesDir)
		if err != nil {
			return nil, err
		}
		addr, stop, err := tel.Serve(o.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("--metrics-addr: %w", err)
		}
		p.stops = append(p.stops, stop)
		p.Telemetry, p.MetricsAddr = tel, addr
		p.Config.Metrics = tel.Metrics
	}
	return p, nil
}

// Dial connects to Temporal with the process's payload encryption and
// the SDK's metrics; Close closes the client.
func (p *Process) Dial(ctx context.Context, conn tclient.Options, timeout time.Duration) (client.Client, error) {
	var adjust []func(*client.Options)
	if p.codec != nil {
		adjust = append(adjust, p.codec.DialOption)
	}
	if p.Telemetry != nil {
		adjust = append(adjust, p.Telemetry.DialOption)
	}
	c, err := tclient.Dial(ctx, conn, timeout, adjust...)
	if err != nil {
		return nil, err
	}
	p.stops = append(p.stops, c.Close)
	return c, nil
}

// Start builds the worker on c and starts it. With metrics on, a worker
// that is not a GPU node's also counts the cluster's waiting approvals
// until Close: a node worker lives for one run's steps. The caller stops
// the worker (Stop, or ServeUntil).
func (p *Process) Start(ctx context.Context, c client.Client) (worker.Worker, error) {
	w, err := New(c, p.Config)
	if err != nil {
		return nil, err
	}
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("start worker on task queue %s: %w", p.Config.TaskQueue, err)
	}
	if p.Config.Metrics != nil && p.Config.NodeID == "" {
		p.stops = append(p.stops, WatchApprovals(ctx, c, p.Config.Metrics, ApprovalsInterval, p.Logger))
	}
	return w, nil
}

// Close stops what the process started, last first: the approvals watch,
// the client, the metrics server.
func (p *Process) Close() {
	for i := len(p.stops) - 1; i >= 0; i-- {
		p.stops[i]()
	}
	p.stops = nil
}
