package steps

func init() {
	// The canary is workflow code (it waits through intervals and on
	// people's signals); this entry tells the validator what it takes.
	Register(Type{
		Name: "canary-deploy",
		Doc: "Registers the candidate, serves it beside the champion behind the router, shifts traffic weight by weight " +
			"with metric analysis after each interval, then promotes it (champion moves, the old one becomes previous) or rolls back. " +
			"Signals canary-pause, canary-resume, canary-promote and canary-abort ({\"step\": ID, \"by\": NAME}) steer it.",
		Kind: Workflow,
		Inputs: []InputSpec{
			{Name: "model", Required: true, Doc: "candidate model directory"},
			{Name: "name", Doc: "registered model name (default: the pipeline name)"},
			{Name: "weights", Doc: "rising percentages of traffic for the candidate, promoted after the last (default [10, 25, 50], as Flagger steps to its maxWeight: at 100 the champion serves nothing to compare with)"},
			{Name: "interval", Doc: "traffic time per weight before analysis (default 1m)"},
			{Name: "analysis", Doc: "max_error_rate (0.01), max_p99_latency (500ms), max_score_psi (0.25), min_requests (20), failure_limit (2), inconclusive_limit (3); " +
				"prometheus_url: a Prometheus server scraping the router, asked (PromQL over each interval) for requests, errors and latency instead of the worker scraping the router; " +
				"prometheus_matchers: label matchers added to its selectors, such as job=\"gauntlet-router\""},
		},
		Outputs: []string{"decision", "reason", "version", "champion", "weight", "intervals", "failures", "router_url"},
	})
}
