// Package monitor is one monitoring pass over a model in production: it
// compares what the model servers logged (serving's sample log) with the
// data the model was trained on, reads service health a canary provider
// already measured, scores the logged predictions against delayed labels,
// and lists every threshold breached. Policy then turns breaches into
// actions (rollback, retrain) at most once per cooldown. It is plain Go: a
// workflow runs Check in an activity and calls Policy.Decide, which is
// deterministic, in its own code.
//
// # Reference
//
// A model manifest records where its training data came from
// (Lineage.DataSource, a CSV path or builtin: URI) and the digest of what was
// read (Lineage.DataDigest). Check reloads that source with the manifest's
// schema and refuses it when the digest differs: a CSV rewritten since
// training is no longer the reference, and drift against it would be
// meaningless. Input.Reference overrides the source (the data moved, or a
// deliberate other baseline); a different source is not held to the
// training digest. The reference is the whole data set the model was fitted
// from, held-out rows included, since that is what the digest names.
//
// # Features
//
// The features compared are the model's inputs, the columns of its
// preprocessing: drift in what the model does not read cannot degrade it,
// and columns a client may leave out (sensitive ones it does not use) would
// show up as a flood of missing values. Every sample must carry every one of
// them (the server logs a missing value as null); one that lacks a feature
// was written by a model with another schema and is an error naming the
// file and line.
//
// Each feature gets drift's verdict (PSI, Kolmogorov–Smirnov or chi-square,
// with drift's sample-size-aware effect floors) and each drifted feature is
// a breach of its own, named: one decisive input shifting (income, say)
// degrades a model as surely as a broad shift, and the share rule of
// drift.Thresholds is reported as DataDrifted for context. A numeric feature
// missing from every sample of the window counts as drifted: the model is
// imputing all of it.
//
// Per-feature breaches are affordable because of MinSamples. Against a
// reference much larger than the window, the KS critical value is about
// c(alpha)/sqrt(n); at the default 500 samples and alpha 0.05 it is 0.061,
// so a feature needs D >= 0.1 (drift's effect floor) to drift, which an
// undrifted sample reaches with probability about 2·exp(-2·500·0.01) ≈ 1e-4.
// PSI >= 0.2 over ten bins is then a chi-square(9) above 100, never seen by
// chance. A categorical feature needs Cramér's V >= 0.1 over both samples
// together, a chi-square of at least 0.01·(n+m), far in the tail once the
// reference is several times the window. Fewer samples make the pass
// inconclusive rather than noisy.
//
// # Window
//
// Only samples logged after Input.Since count, so a pass after a rollback
// judges the model now serving rather than re-reading the drift that caused
// it. Rotated files (samples-<UTC time>.jsonl) are renamed when the server
// moves on from them, after every sample they hold was written, so one named
// at or before Since holds nothing newer and is not read.
//
// The server appends to samples.jsonl while Check reads it, and a line may
// be flushed in two writes; a last line without its newline is skipped and
// counted in Report.PartialLines. A file that rotation removed between
// listing and opening is skipped too, and a rotation during the pass can
// leave the file it renamed unread; either way the pass counts fewer
// samples, and the next pass reads what is still in its window. Any other
// unreadable line is an error.
//
// # Where the samples are
//
// Package watch reads them through a Samples source. Dirs are the
// servers' local sample log directories, what the embedded deployment
// target's servers write beside the worker. StoreSamples reads what a
// fleet's servers shipped to the artifact store every few seconds
// (serving.SampleOptions.Store): chunks of JSON lines under
// samples/<model>/<UTC day>/, of which a pass lists only the days from
// Since on and reads only the chunks holding samples after it. Since a
// fleet's servers log the champion and a candidate in canary into the
// same model's chunks, a pass there keeps the champion's version only
// (Input.Version); a chunk is shipped as a whole, so a pass sees a server's
// samples up to one shipping interval late.
//
// # Labels
//
// The sample log carries no request or record id: a Sample is the time, the
// model and version, the features, the score and the predicted label, and
// the server drops columns the schema marks ignored (where an id would
// live). So delayed labels are joined on the record itself: the key is the
// canonical text of the model's input features (numbers in Go's shortest
// round-trip form, a missing value as empty), which is what a labels file
// made from the scored records still holds, whatever else it carries. The
// model's output depends on nothing else, so identical keys were scored
// alike. A labels file is a CSV with a header, or JSON lines of flat
// objects, holding every model feature and the schema's label column; other
// columns (an application id) are ignored. A key labelled both positive and
// negative cannot be trusted; samples matching it are left out and counted
// in Report.AmbiguousLabels.
//
// Accuracy compares the logged decision (the sample's label, which already
// applied any per-group threshold) with the delayed one, both read as
// positive or not through the schema's positive values, so the server's
// negative-label spelling does not matter. MaxAccuracyDrop is measured from
// the accuracy the manifest recorded at training (Metrics["accuracy"]).
//
// # Health
//
// Error rate and p99 latency come from a canary.Sample the caller measured
// (a canarysource.ScrapeProvider or PrometheusProvider over the same window).
// Check does not scrape itself: a scrape measures by the change between two
// scrapes, which needs state that outlives one pass.
package monitor
