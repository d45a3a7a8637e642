package steps

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/drift"
)

// DriftFile is the report drift writes into its step directory.
const DriftFile = "drift.json"

// missingCategory stands for a missing categorical value, so that a rise in
// missing values shows up as drift like any other new category.
const missingCategory = "<missing>"

func init() {
	Register(Type{
		Name: "drift",
		Doc: "Compares current data with a reference sample column by column (PSI, Kolmogorov–Smirnov, chi-square) and " +
			"decides per feature and for the data set whether it drifted. Writes " + DriftFile + " into the step directory.",
		Kind: Activity,
		Inputs: []InputSpec{
			{Name: "reference", Required: true, Doc: "CSV path or builtin: URI"},
			{Name: "current", Required: true, Doc: "CSV path or builtin: URI"},
			{Name: "columns", Doc: "columns to compare (list or comma-separated; default: all but the label and exclude)"},
			{Name: "exclude", Doc: "columns not to compare, e.g. an id or the label of a CSV"},
			{Name: "psi", Doc: "PSI at or above which a feature drifted (default 0.2)"},
			{Name: "alpha", Doc: "significance level of the KS and chi-square tests (default 0.05)"},
			{Name: "ks_min_effect", Doc: "smallest KS statistic that counts as drift (default 0.1)"},
			{Name: "cramers_v_min_effect", Doc: "smallest Cramér's V that counts as drift (default 0.1)"},
			{Name: "dataset_share", Doc: "share of drifted features at which the data set drifted (default 0.5)"},
			{Name: "bins", Doc: "PSI quantile bins (default 10)"},
		},
		Outputs: []string{"features", "drifted", "drifted_features", "drifted_count", "share", "report"},
		Run:     runDrift,
	})
}

func driftThresholds(in Input) (drift.Thresholds, error) {
	th := drift.DefaultThresholds()
	for _, f := range []struct {
		key string
		dst *float64
	}{{"psi", &th.PSI}, {"alpha", &th.Alpha}, {"ks_min_effect", &th.KSMinEffect},
		{"cramers_v_min_effect", &th.CramersVMinEffect}, {"dataset_share", &th.DatasetShare}} {
		v, err := floatOr(in, f.key, *f.dst)
		if err != nil {
			return th, err
		}
		*f.dst = v
	}
	bins, err := intOr(in, "bins", th.Bins)
	if err != nil {
		return th, err
	}
	th.Bins = bins
	return th, nil
}

func runDrift(_ context.Context, env Env, in Input) (map[string]any, error) {
	refSrc, err := requireString(in, "reference")
	if err != nil {
		return nil, err
	}
	curSrc, err := requireString(in, "current")
	if err != nil {
		return nil, err
	}
	columns, err := argList(in, "columns")
	if err != nil {
		return nil, err
	}
	exclude, err := argList(in, "exclude")
	if err != nil {
		return nil, err
	}
	th, err := driftThresholds(in)
	if err != nil {
		return nil, err
	}
	ref, err := readTable("reference", refSrc, nil)
	if err != nil {
		return nil, err
	}
	if len(columns) == 0 {
		for name := range ref {
			if !slices.Contains(exclude, name) {
				columns = append(columns, name)
			}
		}
		slices.Sort(columns)
	}
	for _, c := range columns {
		if _, ok := ref[c]; !ok {
			return nil, badInput("columns", "column %q is not in the reference %s", c, refSrc)
		}
	}
	cur, err := readTable("current", curSrc, ref)
	if err != nil {
		return nil, err
	}
	refT, curT := drift.Table{}, drift.Table{}
	for _, c := range columns {
		cc, ok := cur[c]
		if !ok {
			return nil, badInput("current", "column %q of the reference is missing from %s", c, curSrc)
		}
		refT[c], curT[c] = ref[c], cc
	}
	rep, err := drift.Compare(refT, curT, th)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("drift of %s against %s: %w", curSrc, refSrc, err))
	}
	path := filepath.Join(env.Dir(), DriftFile)
	if err := writeJSON(path, map[string]any{"reference": refSrc, "current": curSrc, "report": rep}); err != nil {
		return nil, err
	}
	features := map[string]any{}
	drifted := []string{}
	for _, f := range rep.Features {
		fo := map[string]any{"kind": f.Kind, "psi": num(f.PSI), "js_distance": num(f.JSDistance), "drifted": f.Drifted, "reason": f.Reason}
		if f.KS != nil {
			fo["ks_statistic"], fo["ks_pvalue"] = num(f.KS.Statistic), num(f.KS.PValue)
		}
		if f.ChiSquare != nil {
			fo["chi_square"], fo["chi_square_pvalue"], fo["cramers_v"] = num(f.ChiSquare.Statistic), num(f.ChiSquare.PValue), num(f.ChiSquare.CramersV)
		}
		features[f.Name] = fo
		if f.Drifted {
			drifted = append(drifted, f.Name)
		}
	}
	return map[string]any{
		"features":         features,
		"drifted":          rep.Drifted,
		"drifted_features": drifted,
		"drifted_count":    float64(rep.DriftedFeatures),
		"share":            rep.Share,
		"report":           path,
	}, nil
}

// readTable reads the columns of src: a builtin source through its schema
// (the label excluded); a CSV need not have a label, so it is read here
// rather than through dataset.Load: a column is numeric when every present
// value parses as a number, or, for the current table, when it is numeric
// in the reference (like), so that text in it is reported rather than
// silently switching the test. Missing numbers are dropped (the tests take
// no NaN); missing categories count as a category of their own.
func readTable(key, src string, like drift.Table) (drift.Table, error) {
	if strings.HasPrefix(src, "builtin:") {
		d, err := dataset.Load(src)
		if err != nil {
			return nil, dataError(key, src, err)
		}
		t := drift.Table{}
		for name, col := range d.Numeric {
			t[name] = drift.Column{Numeric: dropNaN(col)}
		}
		for _, m := range []map[string][]string{d.Categorical, d.Sensitive} {
			for name, col := range m {
				t[name] = drift.Column{Categorical: withMissing(col)}
			}
		}
		return t, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, dataError(key, src, err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.TrimLeadingSpace = true
	r.Comment = '|'
	header, err := r.Read()
	if err != nil {
		return nil, badInput(key, "%s: no header row: %v", src, err)
	}
	raw := make([][]string, len(header))
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, badInput(key, "%s: %v", src, err)
		}
		for i, v := range rec {
			raw[i] = append(raw[i], strings.TrimSpace(v))
		}
	}
	t := drift.Table{}
	for i, name := range header {
		name = strings.TrimSpace(name)
		col := raw[i]
		if len(col) == 0 {
			return nil, badInput(key, "%s has no rows", src)
		}
		nums := make([]float64, 0, len(col))
		numeric := true
		for _, v := range col {
			if slices.Contains(dataset.DefaultMissing, v) {
				continue
			}
			x, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				numeric = false
				if like != nil && like[name].Numeric != nil {
					return nil, badInput(key, "%s: column %q holds text %q where the reference has numbers", src, name, v)
				}
				break
			}
			nums = append(nums, x)
		}
		if like != nil && like[name].Categorical != nil {
			numeric = false
		}
		if numeric {
			if len(nums) == 0 {
				return nil, badInput(key, "%s: every value of column %q is missing", src, name)
			}
			t[name] = drift.Column{Numeric: nums}
			continue
		}
		cats := make([]string, len(col))
		for j, v := range col {
			if slices.Contains(dataset.DefaultMissing, v) {
				v = ""
			}
			cats[j] = v
		}
		t[name] = drift.Column{Categorical: withMissing(cats)}
	}
	return t, nil
}

func dropNaN(col []float64) []float64 {
	out := make([]float64, 0, len(col))
	for _, v := range col {
		if !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	return out
}

func withMissing(col []string) []string {
	out := make([]string, len(col))
	for i, v := range col {
		if v == "" {
			v = missingCategory
		}
		out[i] = v
	}
	return out
}
