package validate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

// Status of a check.
type Status string

// Statuses.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is one finding, with a sentence a person can act on.
type Check struct {
	Name    string `json:"name"`
	Column  string `json:"column,omitempty"`
	Status  Status `json:"status"`
	Message string `json:"message"`
}

// Options configure Validate; zero thresholds take the defaults noted.
type Options struct {
	// Declared kinds by column name, as the pipeline declares the schema.
	Declared map[string]dataset.Kind
	// Reference is an earlier run's statistics.
	Reference *Stats
	// Eval is the evaluation data, for the time-order check.
	Eval *dataset.Dataset
	// TimestampColumn orders rows in time (numbers, or RFC 3339 / ISO dates).
	TimestampColumn string

	LeakageAUC       float64 // single-feature ROC AUC that fails, default 0.98
	LeakageCorr      float64 // |correlation| with the label that fails, default 0.95
	DuplicateCorr    float64 // |correlation| between two features that warns, default 0.99
	WarnMissingRate  float64 // default 0.1
	MaxMissingRate   float64 // fails above, default 0.5
	MaxDuplicateRate float64 // duplicate rows fail above this share, default 0.05
	// RangeTolerance is how far, as a share of the reference range, a value
	// may fall outside the reference minimum and maximum, default 0.05; at
	// least two reference standard deviations are always allowed.
	RangeTolerance float64
	// Strict fails on warnings too.
	Strict bool
	Seed   uint64
}

func (o Options) withDefaults() Options {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.LeakageAUC, 0.98)
	def(&o.LeakageCorr, 0.95)
	def(&o.DuplicateCorr, 0.99)
	def(&o.WarnMissingRate, 0.1)
	def(&o.MaxMissingRate, 0.5)
	def(&o.MaxDuplicateRate, 0.05)
	def(&o.RangeTolerance, 0.05)
	return o
}

// Report is the outcome of Validate.
type Report struct {
	Passed    bool      `json:"passed"`
	Warnings  int       `json:"warnings"`
	Failures  int       `json:"failures"`
	Checks    []Check   `json:"checks"`
	Imbalance Imbalance `json:"imbalance"`
}

// Failed returns the sentences of the failed checks.
func (r *Report) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == Fail {
			out = append(out, c.Message)
		}
	}
	return out
}

type checker struct {
	o      Options
	checks []Check
}

func (c *checker) add(name, column string, st Status, format string, args ...any) {
	c.checks = append(c.checks, Check{Name: name, Column: column, Status: st, Message: fmt.Sprintf(format, args...)})
}

// Validate runs every check on d (the training data, loaded with inferred
// kinds so that a type change shows rather than failing the load) and
// returns the report with d's statistics.
func Validate(d *dataset.Dataset, o Options) (*Report, *Stats, error) {
	o = o.withDefaults()
	if d.Len() == 0 {
		return nil, nil, fmt.Errorf("validate: %s has no rows", d.Source)
	}
	if !(o.LeakageAUC > 0.5 && o.LeakageAUC <= 1) || !(o.LeakageCorr > 0 && o.LeakageCorr <= 1) || !(o.DuplicateCorr > 0 && o.DuplicateCorr <= 1) {
		return nil, nil, fmt.Errorf("validate: leakage AUC must be in (0.5, 1] and correlations in (0, 1]")
	}
	st := ComputeStats(d)
	c := &checker{o: o}
	c.schema(d)
	c.reference(st)
	c.quality(st)
	c.leakage(d)
	c.redundancy(d)
	if err := c.timeOrder(d); err != nil {
		return nil, nil, err
	}
	imb := MeasureImbalance(d.Y)
	status := Pass
	if imb.Severity == Moderate || imb.Severity == Severe {
		status = Warn
	}
	c.add("class_imbalance", d.Schema.Label, status, "%s", imb.sentence())

	r := &Report{Checks: c.checks, Imbalance: imb}
	for i, ch := range r.Checks {
		if o.Strict && ch.Status == Warn {
			r.Checks[i].Status = Fail
		}
		switch r.Checks[i].Status {
		case Warn:
			r.Warnings++
		case Fail:
			r.Failures++
		}
	}
	r.Passed = r.Failures == 0
	return r, st, nil
}

func family(k dataset.Kind) string {
	switch k {
	case dataset.Numeric:
		return "numeric"
	case dataset.Categorical, dataset.Sensitive:
		return "categorical"
	}
	return string(k)
}

// schema compares the data with the declared kinds.
func (c *checker) schema(d *dataset.Dataset) {
	if len(c.o.Declared) == 0 {
		return
	}
	have := map[string]dataset.Kind{}
	for _, col := range d.Schema.Columns {
		have[col.Name] = col.Kind
	}
	names := make([]string, 0, len(c.o.Declared))
	for n := range c.o.Declared {
		names = append(names, n)
	}
	slices.Sort(names)
	bad := false
	for _, n := range names {
		want := c.o.Declared[n]
		got, ok := have[n]
		switch {
		case !ok:
			c.add("schema_missing_column", n, Fail, "Declared column %q is missing from %s.", n, d.Source)
			bad = true
		case want == dataset.Label || want == dataset.Ignored || got == dataset.Label || got == dataset.Ignored:
		case family(want) != family(got):
			c.add("schema_type_change", n, Fail, "Column %q is declared %s but its values read as %s.", n, want, family(got))
			bad = true
		}
	}
	if !bad {
		c.add("schema", "", Pass, "All %d declared columns are present with their declared types.", len(names))
	}
}

// reference compares statistics with an earlier run's.
func (c *checker) reference(st *Stats) {
	ref := c.o.Reference
	if ref == nil {
		return
	}
	issues := 0
	for _, rc := range ref.Columns {
		cur, ok := st.Column(rc.Name)
		if !ok {
			c.add("missing_column", rc.Name, Fail, "Column %q of the reference data is missing.", rc.Name)
			issues++
			continue
		}
		if family(cur.Kind) != family(rc.Kind) {
			c.add("type_change", rc.Name, Fail, "Column %q was %s in the reference data and is now %s.", rc.Name, family(rc.Kind), family(cur.Kind))
			issues++
			continue
		}
		if rc.Categories != nil {
			var fresh []string
			for _, v := range sortedKeys(cur.Categories) {
				if _, ok := rc.Categories[v]; !ok {
					fresh = append(fresh, v)
				}
			}
			if len(fresh) > 0 {
				rows := 0
				for _, v := range fresh {
					rows += cur.Categories[v]
				}
				shown := fresh[:min(len(fresh), 5)]
				c.add("new_categories", rc.Name, Warn, "Column %q has %d categories unseen in the reference data (%s), in %d rows.",
					rc.Name, len(fresh), strings.Join(shown, ", "), rows)
				issues++
			}
		}
		if rc.Min != nil && cur.Min != nil {
			span := math.Max(*rc.Max-*rc.Min, math.Abs(*rc.Max)*1e-9)
			// Maxima of heavy-tailed columns wander between samples; two
			// standard deviations of slack keep them from warning.
			tol := math.Max(c.o.RangeTolerance*span, 2**rc.Std)
			if *cur.Min < *rc.Min-tol || *cur.Max > *rc.Max+tol {
				c.add("range", rc.Name, Warn, "Column %q spans [%g, %g], outside the reference range [%g, %g].", rc.Name, *cur.Min, *cur.Max, *rc.Min, *rc.Max)
				issues++
			}
		}
		if cur.MissingRate > rc.MissingRate+0.05 {
			c.add("missing_rate_change", rc.Name, Warn, "Column %q is missing in %.1f%% of rows, up from %.1f%% in the reference data.", rc.Name, 100*cur.MissingRate, 100*rc.MissingRate)
			issues++
		}
	}
	for _, cur := range st.Columns {
		if _, ok := ref.Column(cur.Name); !ok {
			c.add("new_column", cur.Name, Warn, "Column %q is new since the reference data.", cur.Name)
			issues++
		}
	}
	if issues == 0 {
		c.add("reference", "", Pass, "Columns, types, categories, ranges and missing rates match the reference statistics of %d rows.", ref.Rows)
	}
}

// quality checks missing values and duplicate rows.
func (c *checker) quality(st *Stats) {
	worst := 0.0
	for _, col := range st.Columns {
		worst = math.Max(worst, col.MissingRate)
		switch {
		case col.MissingRate > c.o.MaxMissingRate:
			c.add("missing_values", col.Name, Fail, "Column %q is missing in %.1f%% of rows, more than the %.0f%% allowed.", col.Name, 100*col.MissingRate, 100*c.o.MaxMissingRate)
		case col.MissingRate > c.o.WarnMissingRate:
			c.add("missing_values", col.Name, Warn, "Column %q is missing in %.1f%% of rows.", col.Name, 100*col.MissingRate)
		}
	}
	if worst <= c.o.WarnMissingRate {
		c.add("missing_values", "", Pass, "No column is missing in more than %.0f%% of rows (worst %.1f%%).", 100*c.o.WarnMissingRate, 100*worst)
	}
	rate := float64(st.DuplicateRows) / float64(st.Rows)
	switch {
	case rate > c.o.MaxDuplicateRate:
		c.add("duplicate_rows", "", Fail, "%d rows (%.1f%%) duplicate earlier rows, more than the %.0f%% allowed.", st.DuplicateRows, 100*rate, 100*c.o.MaxDuplicateRate)
	case st.DuplicateRows > 0:
		c.add("duplicate_rows", "", Warn, "%d rows (%.2f%%) duplicate earlier rows.", st.DuplicateRows, 100*rate)
	default:
		c.add("duplicate_rows", "", Pass, "No row duplicates another.")
	}
}

// leakage flags a feature that predicts the label almost perfectly alone.
// A categorical column is scored by target encoding fitted on a random half
// of the rows and applied to the other half, so an identifier-like column
// with one row per category does not look perfect by memorising.
func (c *checker) leakage(d *dataset.Dataset) {
	numeric, categorical := featureColumns(d, c.o.TimestampColumn)
	found := 0
	for _, name := range numeric {
		v := imputed(d.Numeric[name])
		if constant(v) {
			continue
		}
		auc := rankAUC(d.Y, v)
		auc = math.Max(auc, 1-auc)
		r := pearson(v, d.Y)
		switch {
		case auc >= c.o.LeakageAUC:
			c.add("label_leakage", name, Fail, "Column %q alone predicts the label with ROC AUC %.3f (limit %.2f): it likely leaks the label.", name, auc, c.o.LeakageAUC)
			found++
		case math.Abs(r) >= c.o.LeakageCorr:
			c.add("label_leakage", name, Fail, "Column %q correlates with the label at %.3f (limit %.2f): it likely leaks the label.", name, r, c.o.LeakageCorr)
			found++
		}
	}
	rng := rand.New(rand.NewPCG(c.o.Seed, 0x1eac))
	fold := make([]bool, d.Len())
	for i := range fold {
		fold[i] = rng.IntN(2) == 1
	}
	for _, name := range categorical {
		scores := targetEncoded(d.Categorical[name], d.Y, fold)
		y := make([]float64, 0, len(scores))
		s := make([]float64, 0, len(scores))
		for i, v := range scores {
			if !math.IsNaN(v) {
				y, s = append(y, d.Y[i]), append(s, v)
			}
		}
		if constant(s) || constant(y) {
			continue
		}
		if auc := rankAUC(y, s); auc >= c.o.LeakageAUC {
			c.add("label_leakage", name, Fail, "Column %q alone predicts the label with ROC AUC %.3f on held-out rows (limit %.2f): it likely leaks the label.", name, auc, c.o.LeakageAUC)
			found++
		}
	}
	if found == 0 {
		c.add("label_leakage", "", Pass, "No single feature predicts the label with ROC AUC ≥ %.2f or |correlation| ≥ %.2f.", c.o.LeakageAUC, c.o.LeakageCorr)
	}
}

// rankAUC is the ROC AUC of raw scores (any scale) by the Mann–Whitney
// statistic, ties counting one half; 0.5 when a class is absent.
func rankAUC(y, s []float64) float64 {
	idx := make([]int, len(s))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case s[a] < s[b]:
			return -1
		case s[a] > s[b]:
			return 1
		}
		return 0
	})
	var pos, rankSum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && s[idx[j]] == s[idx[i]] {
			j++
		}
		mid := float64(i+j+1) / 2 // mean 1-based rank of the tie block
		for _, r := range idx[i:j] {
			if y[r] == 1 {
				pos++
				rankSum += mid
			}
		}
		i = j
	}
	neg := float64(len(y)) - pos
	if pos == 0 || neg == 0 {
		return 0.5
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}

// targetEncoded scores each row by its category's positive rate in the
// other fold; NaN where the category is missing or unseen there.
func targetEncoded(v []string, y []float64, fold []bool) []float64 {
	var rate [2]map[string][2]float64
	for f := range rate {
		rate[f] = map[string][2]float64{}
	}
	for i, s := range v {
		if s == "" {
			continue
		}
		f := 0
		if fold[i] {
			f = 1
		}
		e := rate[f][s]
		e[0] += y[i]
		e[1]++
		rate[f][s] = e
	}
	out := make([]float64, len(v))
	for i, s := range v {
		out[i] = math.NaN()
		other := 1
		if fold[i] {
			other = 0
		}
		if e, ok := rate[other][s]; ok && s != "" {
			out[i] = e[0] / e[1]
		}
	}
	return out
}

// redundancy warns about features that repeat another: numeric pairs with
// |correlation| above the threshold, categorical pairs whose values map one
// to one.
func (c *checker) redundancy(d *dataset.Dataset) {
	numeric, categorical := featureColumns(d, c.o.TimestampColumn)
	found := 0
	cols := make([][]float64, len(numeric))
	for i, n := range numeric {
		cols[i] = imputed(d.Numeric[n])
	}
	for i := range numeric {
		for j := i + 1; j < len(numeric); j++ {
			if r := pearson(cols[i], cols[j]); math.Abs(r) > c.o.DuplicateCorr {
				c.add("duplicate_features", numeric[j], Warn, "Columns %q and %q are near-duplicates (correlation %.4f); keep one.", numeric[i], numeric[j], r)
				found++
			}
		}
	}
	for i := range categorical {
		for j := i + 1; j < len(categorical); j++ {
			if oneToOne(d.Categorical[categorical[i]], d.Categorical[categorical[j]]) {
				c.add("duplicate_features", categorical[j], Warn, "Columns %q and %q encode the same categories one to one; keep one.", categorical[i], categorical[j])
				found++
			}
		}
	}
	if found == 0 {
		c.add("duplicate_features", "", Pass, "No two features are near-duplicates.")
	}
}

func oneToOne(a, b []string) bool {
	ab, ba := map[string]string{}, map[string]string{}
	for i := range a {
		if a[i] == "" || b[i] == "" {
			continue
		}
		if v, ok := ab[a[i]]; ok && v != b[i] {
			return false
		}
		if v, ok := ba[b[i]]; ok && v != a[i] {
			return false
		}
		ab[a[i]], ba[b[i]] = b[i], a[i]
	}
	return len(ab) > 1
}

// timeOrder fails when training rows are later than evaluation rows: a
// model evaluated on the past of its training data looks better than it
// will be.
func (c *checker) timeOrder(d *dataset.Dataset) error {
	if c.o.TimestampColumn == "" {
		return nil
	}
	tr, err := timestamps(d, c.o.TimestampColumn)
	if err != nil {
		return err
	}
	if c.o.Eval == nil {
		c.add("time_order", c.o.TimestampColumn, Warn, "A timestamp column is set but no evaluation data was given, so time order was not checked.")
		return nil
	}
	ev, err := timestamps(c.o.Eval, c.o.TimestampColumn)
	if err != nil {
		return err
	}
	first := math.Inf(1)
	for _, t := range ev {
		first = math.Min(first, t)
	}
	later := 0
	for _, t := range tr {
		if t > first {
			later++
		}
	}
	if later > 0 {
		c.add("time_order", c.o.TimestampColumn, Fail, "%d training rows are later than the earliest evaluation row: the evaluation would test on the past.", later)
	} else {
		c.add("time_order", c.o.TimestampColumn, Pass, "Every training row precedes the evaluation rows.")
	}
	return nil
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"}

// timestamps reads a column as seconds; missing values are skipped.
func timestamps(d *dataset.Dataset, name string) ([]float64, error) {
	if v, ok := d.Numeric[name]; ok {
		out := make([]float64, 0, len(v))
		for _, x := range v {
			if !math.IsNaN(x) {
				out = append(out, x)
			}
		}
		return out, nil
	}
	v, ok := d.Categorical[name]
	if !ok {
		return nil, fmt.Errorf("validate: timestamp column %q is not a column of %s", name, d.Source)
	}
	out := make([]float64, 0, len(v))
	for i, s := range v {
		if s == "" {
			continue
		}
		var t time.Time
		var err error
		for _, l := range timeLayouts {
			if t, err = time.Parse(l, s); err == nil {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("validate: %s row %d: timestamp %q is neither a number nor an RFC 3339 date", d.Source, i+1, s)
		}
		out = append(out, float64(t.UnixNano())/1e9)
	}
	return out, nil
}

// imputed replaces missing values by the mean, as the encoder does.
func imputed(v []float64) []float64 {
	var sum float64
	n := 0
	for _, x := range v {
		if !math.IsNaN(x) {
			sum += x
			n++
		}
	}
	mean := 0.0
	if n > 0 {
		mean = sum / float64(n)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x
		if math.IsNaN(x) {
			out[i] = mean
		}
	}
	return out
}

func constant(v []float64) bool {
	for _, x := range v {
		if x != v[0] {
			return false
		}
	}
	return true
}

func pearson(a, b []float64) float64 {
	n := float64(len(a))
	var ma, mb float64
	for i := range a {
		ma += a[i]
		mb += b[i]
	}
	ma /= n
	mb /= n
	var sab, saa, sbb float64
	for i := range a {
		da, db := a[i]-ma, b[i]-mb
		sab += da * db
		saa += da * da
		sbb += db * db
	}
	if saa == 0 || sbb == 0 {
		return 0
	}
	return sab / math.Sqrt(saa*sbb)
}
