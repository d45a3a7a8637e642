// Package canary is the canary analysis: it measures the champion and the
// candidate model over an interval, judges the candidate against the checks
// of an Analysis, and counts failed and inconclusive intervals until they
// call for a rollback. It is plain Go: the workflow keeps a Tracker in its
// state and runs a Provider's Measure in an activity.
//
// # Checks
//
// A Check bounds one metric of the candidate over one interval. The bound is
// inclusive: a value passes when value <= Max.
//
//   - error_rate: non-2xx responses over all responses. Every non-2xx
//     counts: 5xx; the router's 502 when an upstream fails or the client
//     gave up on it; 408 and 429 (timed out, shed under load); and 4xx such
//     as the model server's 400 for a request that does not fit the model's
//     schema. 4xx count because the schema belongs to the model: a candidate
//     trained with a new required feature or a renamed field rejects
//     requests the champion accepts, and leaving 4xx out would promote a
//     model that rejects all its traffic. The price is that clients sending
//     bad requests raise both variants' rates; a CheckResult carries the
//     champion's value beside the candidate's so a reader can tell.
//   - p99_latency: seconds; the 0.99 quantile of the latency histogram,
//     interpolated within a bucket as PromQL's histogram_quantile does.
//   - score_shift: the population stability index (PSI) of the
//     candidate's score histogram against the champion's, over the bucket
//     boundaries the two share. PSI rather than Kolmogorov-Smirnov: a
//     Prometheus histogram gives bucket counts, which is what PSI is
//     defined on, while KS is defined on the continuous distribution and
//     can only be read at the bucket edges here; KS reports the single
//     largest gap between the two distributions where PSI adds up the
//     shift in every bucket; and PSI is the score-stability measure
//     model-risk teams already use, with thresholds they know (below 0.1
//     stable, 0.1 to 0.25 moderate, above 0.25 large). See PSI for the
//     treatment of empty buckets.
//
// # Outcomes
//
// A check is inconclusive when the candidate served fewer than MinRequests
// requests in the interval or its value is NaN (no requests, no latency
// observations, no scores on one side); it fails when its value is above
// Max, and passes otherwise. An interval fails when any check fails, is
// inconclusive when none fails and one is inconclusive (or the analysis has
// no checks), and passes otherwise.
//
// # Limits
//
// Tracker counts intervals. Failures and Inconclusives are totals over the
// analysis: a passing interval does not forgive an earlier failure, since a
// candidate that fails every other interval is still a bad candidate. This
// is how Flagger counts failedChecks and how Argo Rollouts counts a metric's
// failed and inconclusive measurements. ConsecutiveFailures and
// ConsecutiveInconclusives restart at zero on any other outcome; they
// describe how the run is going and do not decide.
//
// The decision is rollback once Failures reaches FailureLimit, else
// rollback-inconclusive once Inconclusives reaches InconclusiveLimit, else
// continue. "Reaches" is Flagger's reading of its threshold (failedChecks >=
// threshold). Argo Rollouts rolls back only when the count exceeds the limit
// (failed > failureLimit), so Argo's failureLimit N is FailureLimit N+1
// here. A limit below 1 reads as 1: the first failure rolls back. Where Argo
// pauses an inconclusive rollout for a person, this package decides
// rollback-inconclusive and leaves it to the workflow to roll back or to
// ask, because a candidate that could not be measured must not be promoted.
//
// # Providers
//
// A Provider measures both variants over a Window. ScrapeProvider, the
// embedded default, reads /metrics pages itself and measures by the change
// of counters and histograms between consecutive scrapes. PrometheusProvider
// asks a Prometheus server with PromQL over the window. Both read the same
// metrics, named by a Source: RouterSource for the router's per-variant
// metrics, ServingSource for the model servers'.
package canary
