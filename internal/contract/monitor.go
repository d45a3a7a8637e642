package contract

import (
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/monitor"
)

// MonitorInput configures a production monitor; it also carries the state
// across continue-as-new.
type MonitorInput struct {
	// Name is the registered model (and its deployment environment).
	Name     string         `json:"name"`
	Interval time.Duration  `json:"interval"`
	Config   monitor.Config `json:"config"`
	Policy   monitor.Policy `json:"policy"`
	// Reference and Labels are passed to monitor.Check.
	Reference string `json:"reference,omitempty"`
	Labels    string `json:"labels,omitempty"`
	// Window is how far back a pass reads the sample log (never before the
	// last rollback): long enough to gather samples at low traffic, short
	// enough that old traffic does not hide new drift.
	Window time.Duration `json:"window"`
	// Until ends the monitor at this time; zero runs it until cancelled.
	Until time.Time `json:"until,omitzero"`
	// RetrainPipeline and RetrainParams start the retraining run.
	RetrainPipeline string         `json:"retrain_pipeline,omitempty"`
	RetrainParams   map[string]any `json:"retrain_params,omitempty"`
	StartedBy       string         `json:"started_by,omitempty"`
	// Target is the step's deployment target; empty: the worker's default.
	// Left out of the payload when empty, so histories recorded before it
	// replay unchanged.
	Target string `json:"target,omitempty"`

	State MonitorState `json:"state"`
}

// MonitorState is what the monitor has seen and done.
type MonitorState struct {
	Passes int `json:"passes"`
	// Since is the last rollback: samples before it were served by
	// another model.
	Since     time.Time        `json:"since,omitzero"`
	Ledger    monitor.Ledger   `json:"ledger"`
	Incidents []Incident       `json:"incidents,omitempty"`
	Last      *monitor.Report  `json:"last,omitempty"`
	Retrains  []string         `json:"retrain_runs,omitempty"`
	Rollbacks []RollbackRecord `json:"rollbacks,omitempty"`
}

// Incident is one pass whose breaches called for actions.
type Incident struct {
	At       time.Time        `json:"at"`
	Breaches []monitor.Breach `json:"breaches"`
	Actions  []monitor.Action `json:"actions"`
}

// RollbackRecord is one rollback the monitor made.
type RollbackRecord struct {
	At   time.Time `json:"at"`
	From int       `json:"from"`
	To   int       `json:"to"`
}

// MonitorCheckInput asks for one pass.
type MonitorCheckInput struct {
	Name      string         `json:"name"`
	Config    monitor.Config `json:"config"`
	Reference string         `json:"reference,omitempty"`
	Labels    string         `json:"labels,omitempty"`
	Since     time.Time      `json:"since,omitzero"`
	// Target is the step's deployment target; empty: the worker's default.
	Target string `json:"target,omitempty"`
}

// MonitorCheckResult is one pass and the champion it looked at.
type MonitorCheckResult struct {
	Champion int            `json:"champion"`
	Report   monitor.Report `json:"report"`
}

// MonitorRollbackInput rolls back from the champion the pass looked at.
type MonitorRollbackInput struct {
	Name     string `json:"name"`
	Champion int    `json:"champion"`
	Reason   string `json:"reason"`
	Actor    string `json:"actor"`
	// Target is the step's deployment target; empty: the worker's default.
	Target string `json:"target,omitempty"`
}

// MonitorRollbackResult is the champion after the rollback.
type MonitorRollbackResult struct {
	Champion int `json:"champion"`
}
