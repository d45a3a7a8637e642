package fleettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TemporalPort is the frontend's gRPC port, on the server host's address.
const TemporalPort = 7233

// TemporalOptions says what StartTemporal prepares besides the server.
type TemporalOptions struct {
	// Namespace is registered, with Retention (default 72 h), when not
	// empty; leave it empty to test a setup script on a bare server.
	Namespace string
	Retention time.Duration
	// SearchAttributes are registered in Namespace, and READY then means a
	// workflow's first task could upsert every one of them.
	SearchAttributes map[string]enumspb.IndexedValueType
	// DynamicConfig is a dynamic config file for the server; none when empty.
	DynamicConfig string
	// SkipSchema leaves the databases to the caller (a schema script under
	// test); the server then starts on whatever the caller set up.
	SkipSchema bool
}

// Temporal is the official Temporal server (all four services in one
// process) on a host, with PostgreSQL persistence and visibility.
type Temporal struct {
	Host      *Host
	Proc      *Proc
	Namespace string
	// Schema is how long the SQL tool took to create both databases and
	// their schemas; Startup from the server's start until its frontend
	// served; Ready from then until the namespace was ready for workflows.
	Schema, Startup, Ready time.Duration
}

// Addr is the frontend's host:port on the fleet's network.
func (tp *Temporal) Addr() string { return tp.Host.Addr(TemporalPort) }

// StartTemporal sets up the schemas with the server's own SQL tool
// (temporal-sql-tool), starts the server binary (temporal-server) on h
// with a generated configuration, and returns once the server serves and,
// when opts name a namespace, once that namespace is ready (see Ready).
func StartTemporal(t testing.TB, h *Host, pg *Postgres, opts TemporalOptions) *Temporal {
	t.Helper()
	server := Tool(t, "temporal-server")
	tp := &Temporal{Host: h, Namespace: opts.Namespace}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if !opts.SkipSchema {
		start := time.Now()
		if err := SetupTemporalSchema(ctx, t, h, pg); err != nil {
			t.Fatalf("fleettest: %v", err)
		}
		tp.Schema = time.Since(start)
	}
	conf, err := writeTemporalConfig(h, pg, opts.DynamicConfig)
	if err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	start := time.Now()
	tp.Proc, err = h.Start("temporal", Spec{
		Args: []string{server, "--config-file", conf, "--allow-no-auth", "start"},
		Env:  []string{"TEMPORAL_DB_PASSWORD=" + pg.Password()},
	}, nil)
	if err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	if err := tp.WaitServing(ctx, h); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	tp.Startup = time.Since(start)
	if opts.Namespace == "" {
		return tp
	}
	start = time.Now()
	retention := opts.Retention
	if retention == 0 {
		retention = 72 * time.Hour
	}
	if err := tp.RegisterNamespace(ctx, h, opts.Namespace, retention); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	if err := tp.AddSearchAttributes(ctx, h, opts.Namespace, opts.SearchAttributes); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	if err := tp.WaitReady(ctx, h, opts.Namespace, opts.SearchAttributes); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	tp.Ready = time.Since(start)
	return tp
}

// SetupTemporalSchema creates Temporal's two databases on pg and sets up
// their schemas with the server's own SQL tool, run on host h. The tool
// takes the password from its environment (SQL_PASSWORD).
func SetupTemporalSchema(ctx context.Context, t testing.TB, h *Host, pg *Postgres) error {
	tool := Tool(t, "temporal-sql-tool")
	for _, db := range []struct{ name, schema string }{
		{"temporal", "postgresql/v12/temporal"},
		{"temporal_visibility", "postgresql/v12/visibility"},
	} {
		base := []string{tool, "--plugin", "postgres12", "--ep", pg.Host.IP.String(), "-p", fmt.Sprint(PostgresPort), "-u", pg.User, "--db", db.name}
		for _, step := range [][]string{
			{"create-database"},
			{"setup-schema", "-v", "0.0"},
			{"update-schema", "--schema-name", db.schema},
		} {
			if _, err := h.OutputContext(ctx, Spec{Args: append(slices.Clone(base), step...), Env: []string{"SQL_PASSWORD=" + pg.Password()}}); err != nil {
				return fmt.Errorf("temporal schema %s: %s: %w", db.name, step[0], err)
			}
		}
	}
	return nil
}

// The server's config loader expands this template itself ("enable-template"),
// so the database password comes from the environment, not from the file.
var temporalConfig = template.Must(template.New("config").Parse(`# enable-template
log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: 4
  datastores:
{{- range $name, $db := .Stores }}
    {{ $name }}:
      sql:
        pluginName: postgres12
        databaseName: {{ $db }}
        connectAddr: "{{ $.DB }}"
        connectProtocol: tcp
        user: {{ $.User }}
        password: {{ "{{" }} env "TEMPORAL_DB_PASSWORD" | quote {{ "}}" }}
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: 1h
{{- end }}
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: "{{ .IP }}"
  metrics:
    prometheus:
      framework: tally
      timerType: histogram
      listenAddress: "{{ .IP }}:8000"
services:
{{- range $svc, $p := .Services }}
  {{ $svc }}:
    rpc:
      grpcPort: {{ index $p 0 }}
      membershipPort: {{ index $p 1 }}
      bindOnIP: "{{ $.IP }}"
{{- if eq $svc "frontend" }}
      httpPort: 7243
{{- end }}
{{- end }}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "{{ .IP }}:7233"
dcRedirectionPolicy:
  policy: noop
{{- if .DynamicConfig }}
dynamicConfigClient:
  filepath: "{{ .DynamicConfig }}"
  pollInterval: 10s
{{- end }}
`))

func writeTemporalConfig(h *Host, pg *Postgres, dynamicConfig string) (string, error) {
	if dynamicConfig != "" {
		abs, err := filepath.Abs(dynamicConfig)
		if err != nil {
			return "", err
		}
		dynamicConfig = abs
	}
	var b strings.Builder
	err := temporalConfig.Execute(&b, map[string]any{
		"Stores": map[string]string{"default": "temporal", "visibility": "temporal_visibility"},
		"DB":     pg.Addr(),
		"User":   pg.User,
		"IP":     h.IP.String(),
		"Services": map[string][2]int{
			"frontend": {TemporalPort, 6933},
			"history":  {7234, 6934},
			"matching": {7235, 6935},
			"worker":   {7239, 6939},
		},
		"DynamicConfig": dynamicConfig,
	})
	if err != nil {
		return "", err
	}
	p := filepath.Join(h.f.ConfDir(h.Name+"-temporal"), "config.yaml")
	return p, os.WriteFile(p, []byte(b.String()), 0o644)
}

var quietLogger = sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// Dial connects a client from host from, through the host's network.
func (tp *Temporal) Dial(ctx context.Context, from *Host, namespace string) (client.Client, error) {
	return client.DialContext(ctx, client.Options{
		HostPort:  tp.Addr(),
		Namespace: namespace,
		Logger:    quietLogger,
		ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return from.DialContext(ctx, "tcp", addr)
			}),
		}},
	})
}

// retry calls fn until it succeeds, the server exits or ctx ends, and
// then reports fn's last error with what.
func (tp *Temporal) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := fn(attempt)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-tp.Proc.Done():
			return fmt.Errorf("%s: the server on %s exited (%v): %s", what, tp.Host.Name, tp.Proc.Err(), tail(tp.Proc.Output(), 20))
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitServing waits until the frontend answers a health check from host
// from.
func (tp *Temporal) WaitServing(ctx context.Context, from *Host) error {
	return tp.retry(ctx, "temporal frontend "+tp.Addr(), func(ctx context.Context) error {
		c, err := tp.Dial(ctx, from, "")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	})
}

// RegisterNamespace registers namespace (an existing one is kept) and
// waits until the frontend can describe it: a namespace just registered is
// invisible until the server's namespace cache refreshes.
func (tp *Temporal) RegisterNamespace(ctx context.Context, from *Host, namespace string, retention time.Duration) error {
	return tp.retry(ctx, "register namespace "+namespace, func(ctx context.Context) error {
		c, err := tp.Dial(ctx, from, namespace)
		if err != nil {
			return err
		}
		defer c.Close()
		svc := c.WorkflowService()
		_, err = svc.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace:                        namespace,
			WorkflowExecutionRetentionPeriod: durationpb.New(retention),
		})
		var exists *serviceerror.NamespaceAlreadyExists
		if err != nil && !errors.As(err, &exists) {
			return err
		}
		_, err = svc.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
		return err
	})
}

// AddSearchAttributes registers the attributes in namespace that it lacks.
func (tp *Temporal) AddSearchAttributes(ctx context.Context, from *Host, namespace string, attrs map[string]enumspb.IndexedValueType) error {
	if len(attrs) == 0 {
		return nil
	}
	return tp.retry(ctx, "add search attributes to "+namespace, func(ctx context.Context) error {
		c, err := tp.Dial(ctx, from, namespace)
		if err != nil {
			return err
		}
		defer c.Close()
		missing, err := missingSearchAttributes(ctx, c, namespace, attrs)
		if err != nil || len(missing) == 0 {
			return err
		}
		_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
		return err
	})
}

// missingSearchAttributes lists the attributes the server does not report
// for namespace, and fails on one registered with another type.
func missingSearchAttributes(ctx context.Context, c client.Client, namespace string, attrs map[string]enumspb.IndexedValueType) (map[string]enumspb.IndexedValueType, error) {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, err
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range attrs {
		got, ok := resp.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = typ
		case got != typ:
			return nil, fmt.Errorf("search attribute %s is %v in namespace %s, want %v", name, got, namespace, typ)
		}
	}
	return missing, nil
}

// probeWorkflow upserts one value of each attribute in its first task,
// which is what the server rejects while an attribute is unknown to it.
func probeWorkflow(ctx workflow.Context, attrs []probeAttr) error {
	updates := make([]temporal.SearchAttributeUpdate, 0, len(attrs))
	for _, a := range attrs {
		switch a.Type {
		case enumspb.INDEXED_VALUE_TYPE_KEYWORD:
			updates = append(updates, temporal.NewSearchAttributeKeyKeyword(a.Name).ValueSet("fleettest-probe"))
		case enumspb.INDEXED_VALUE_TYPE_TEXT:
			updates = append(updates, temporal.NewSearchAttributeKeyString(a.Name).ValueSet("fleettest probe"))
		case enumspb.INDEXED_VALUE_TYPE_INT:
			updates = append(updates, temporal.NewSearchAttributeKeyInt64(a.Name).ValueSet(1))
		case enumspb.INDEXED_VALUE_TYPE_DOUBLE:
			updates = append(updates, temporal.NewSearchAttributeKeyFloat64(a.Name).ValueSet(0.5))
		case enumspb.INDEXED_VALUE_TYPE_BOOL:
			updates = append(updates, temporal.NewSearchAttributeKeyBool(a.Name).ValueSet(true))
		case enumspb.INDEXED_VALUE_TYPE_DATETIME:
			updates = append(updates, temporal.NewSearchAttributeKeyTime(a.Name).ValueSet(workflow.Now(ctx)))
		case enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST:
			updates = append(updates, temporal.NewSearchAttributeKeyKeywordList(a.Name).ValueSet([]string{"fleettest-probe"}))
		default:
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("search attribute %s: type %v", a.Name, a.Type), "BadInput", nil)
		}
	}
	if len(updates) == 0 {
		return nil
	}
	return workflow.UpsertTypedSearchAttributes(ctx, updates...)
}

type probeAttr struct {
	Name string
	Type enumspb.IndexedValueType
}

const probeWorkflowName = "fleettest-readiness-probe"

// WaitReady waits until namespace is ready for workflows: it is visible,
// lists attrs with their types, and a probe workflow, run by a worker in
// the test process on host from, completes after upserting every one of
// them in its first task. A probe whose first task the server fails is
// terminated and reported (the server would retry it with a growing
// backoff, which is how a run can sit silently for minutes), and
// another is tried until ctx ends. The probe is deleted afterwards.
func (tp *Temporal) WaitReady(ctx context.Context, from *Host, namespace string, attrs map[string]enumspb.IndexedValueType) error {
	c, err := tp.Dial(ctx, from, namespace)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", namespace, err)
	}
	defer c.Close()
	if err := tp.retry(ctx, "namespace "+namespace+" search attributes", func(ctx context.Context) error {
		missing, err := missingSearchAttributes(ctx, c, namespace, attrs)
		if err == nil && len(missing) > 0 {
			err = fmt.Errorf("not registered: %v", slices.Sorted(maps.Keys(missing)))
		}
		return err
	}); err != nil {
		return err
	}
	probe := make([]probeAttr, 0, len(attrs))
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		probe = append(probe, probeAttr{name, attrs[name]})
	}
	queue := fmt.Sprintf("fleettest-probe-%d", time.Now().UnixNano())
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(probeWorkflow, workflow.RegisterOptions{Name: probeWorkflowName})
	if err := w.Start(); err != nil {
		return fmt.Errorf("namespace %s: probe worker: %w", namespace, err)
	}
	defer w.Stop()
	var last error
	for attempt := 1; ; attempt++ {
		last = tp.probeOnce(ctx, c, namespace, queue, fmt.Sprintf("%s-%d", queue, attempt), probe)
		if last == nil {
			return nil
		}
		if errors.As(last, new(permanent)) {
			return fmt.Errorf("namespace %s: %w", namespace, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s is not ready for workflows after %d probes: %w", namespace, attempt, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// probeOnce runs one probe workflow and deletes it.
func (tp *Temporal) probeOnce(ctx context.Context, c client.Client, namespace, queue, id string, attrs []probeAttr) error {
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, probeWorkflowName, attrs)
	if err != nil {
		return fmt.Errorf("start probe: %w", err)
	}
	defer func() {
		del, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = c.TerminateWorkflow(del, id, run.GetRunID(), "fleettest readiness probe")
		_, _ = c.WorkflowService().DeleteWorkflowExecution(del, &workflowservice.DeleteWorkflowExecutionRequest{
			Namespace:         namespace,
			WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: run.GetRunID()},
		})
	}()
	for {
		desc, err := c.DescribeWorkflowExecution(ctx, id, run.GetRunID())
		if err != nil {
			return fmt.Errorf("describe probe: %w", err)
		}
		info := desc.GetWorkflowExecutionInfo()
		if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			return nil
		}
		if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return permanent{fmt.Errorf("probe ended %v", info.GetStatus())}
		}
		if pending := desc.GetPendingWorkflowTask(); pending.GetAttempt() > 1 {
			return fmt.Errorf("the probe's first workflow task failed: %s", taskFailure(ctx, c, id, run.GetRunID()))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe still running: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// permanent marks a probe failure that another probe would repeat.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// taskFailure finds why the server failed a workflow task, in its history.
func taskFailure(ctx context.Context, c client.Client, id, runID string) string {
	it := c.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return err.Error()
		}
		if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil {
			return fmt.Sprintf("%v: %s", a.GetCause(), a.GetFailure().GetMessage())
		}
	}
	return "no WorkflowTaskFailed event in its history"
}
