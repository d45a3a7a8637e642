package steps

func init() {
	// The monitor is a workflow of its own (it lives as long as the model
	// serves); this entry tells the validator what the step takes.
	Register(Type{
		Name: "monitor",
		Doc: "Watches the model in production as the child workflow monitor-<name>: every interval it compares the served " +
			"features with the training data (PSI, KS, chi-square), checks health and, with delayed labels, accuracy. A breach " +
			"rolls back to the previous champion and/or starts one retraining run, at most once per cooldown. With duration the " +
			"step watches for that long and reports; without, the monitor keeps running after the run ends.",
		Kind: Workflow,
		Inputs: []InputSpec{
			{Name: "name", Doc: "registered model name (default: the pipeline name)"},
			{Name: "interval", Doc: "time between passes (default 5m)"},
			{Name: "window", Doc: "how far back each pass reads the served records, never before the last rollback (default 1h)"},
			{Name: "duration", Doc: "watch this long and report; unset: leave the monitor running"},
			{Name: "on_breach", Doc: "actions: rollback, retrain (default both)"},
			{Name: "cooldown", Doc: "an action is not repeated within this time (default 6h)"},
			{Name: "retrain_pipeline", Doc: "pipeline a retraining run starts (default: this one, with this run's params)"},
			{Name: "retrain_params", Doc: "params of the retraining run"},
			{Name: "psi_threshold", Doc: "PSI at or above which a feature drifted (default 0.2)"},
			{Name: "alpha", Doc: "significance level of the KS and chi-square tests (default 0.05)"},
			{Name: "min_samples", Doc: "fewest logged records a drift verdict needs (default 500)"},
			{Name: "max_error_rate", Doc: "error rate above which the service breaches (default: off)"},
			{Name: "max_p99_latency", Doc: "p99 latency above which the service breaches (default: off)"},
			{Name: "min_accuracy", Doc: "accuracy on delayed labels below which the model breaches (default: off)"},
			{Name: "max_accuracy_drop", Doc: "largest drop of accuracy below the training accuracy (default: off)"},
			{Name: "labels", Doc: "delayed labels file (CSV or JSON lines)"},
			{Name: "reference", Doc: "reference data instead of the training data the model's manifest names"},
		},
		Outputs: []string{"monitor_id", "already_running", "passes", "incidents", "rolled_back", "retrain_runs", "drifted", "samples"},
	})
}
