package steps

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/drift"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// DriftFile is the report drift writes into its step directory.
const DriftFile = "drift.json"

// missingCategory stands for a missing categorical value, so that a rise in
// missing values shows up as drift like any other new category.
const missingCategory = "<missing>"

func init() {
	th := drift.DefaultThresholds()
	Register(Define(Type{
		Name: "drift",
		Doc: "Compares current data with a reference sample column by column (PSI, Kolmogorov–Smirnov, chi-square) and " +
			"decides per feature and for the data set whether it drifted. Publishes " + DriftFile + " to the artifact store.",
		Kind: Activity,
	}, driftInputs{PSI: th.PSI, Alpha: th.Alpha, KSMinEffect: th.KSMinEffect, CramersVMinEffect: th.CramersVMinEffect,
		DatasetShare: th.DatasetShare, Bins: th.Bins}, runDrift))
}

type driftInputs struct {
	Reference         string   `json:"reference" required:"true" doc:"CSV: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI"`
	Current           string   `json:"current" required:"true" doc:"CSV, given as reference is"`
	Columns           []string `json:"columns" doc:"columns to compare (list or comma-separated; default: all but the label and exclude)"`
	Exclude           []string `json:"exclude" doc:"columns not to compare, e.g. an id or the label of a CSV"`
	PSI               float64  `json:"psi" doc:"PSI at or above which a feature drifted (default 0.2)"`
	Alpha             float64  `json:"alpha" doc:"significance level of the KS and chi-square tests (default 0.05)"`
	KSMinEffect       float64  `json:"ks_min_effect" doc:"smallest KS statistic that counts as drift (default 0.1)"`
	CramersVMinEffect float64  `json:"cramers_v_min_effect" doc:"smallest Cramér's V that counts as drift (default 0.1)"`
	DatasetShare      float64  `json:"dataset_share" doc:"share of drifted features at which the data set drifted (default 0.5)"`
	Bins              int      `json:"bins" doc:"PSI quantile bins (default 10)"`
}

// DriftOutputs are the outputs of a drift step.
type DriftOutputs struct {
	Features        map[string]FeatureDrift `json:"features" doc:"by column: its statistics, whether it drifted and why"`
	Drifted         bool                    `json:"drifted" doc:"the data set drifted: at least dataset_share of its features did"`
	DriftedFeatures []string                `json:"drifted_features" doc:"the columns that drifted"`
	DriftedCount    int                     `json:"drifted_count" doc:"how many columns drifted"`
	Share           float64                 `json:"share" doc:"share of the columns that drifted"`
	Report          string                  `json:"report" doc:"drift.json: an artifact pointer"`
}

// FeatureDrift is one column's comparison; the KS numbers are there for
// numeric columns, the chi-square ones for categorical columns.
type FeatureDrift struct {
	Kind            string        `json:"kind"`
	PSI             stepio.Float  `json:"psi"`
	JSDistance      stepio.Float  `json:"js_distance"`
	Drifted         bool          `json:"drifted"`
	Reason          string        `json:"reason"`
	KSStatistic     *stepio.Float `json:"ks_statistic,omitempty"`
	KSPValue        *stepio.Float `json:"ks_pvalue,omitempty"`
	ChiSquare       *stepio.Float `json:"chi_square,omitempty"`
	ChiSquarePValue *stepio.Float `json:"chi_square_pvalue,omitempty"`
	CramersV        *stepio.Float `json:"cramers_v,omitempty"`
}

func runDrift(ctx context.Context, env Env, _ Input, a driftInputs) (*DriftOutputs, error) {
	th := drift.DefaultThresholds()
	th.PSI, th.Alpha, th.KSMinEffect, th.CramersVMinEffect, th.DatasetShare, th.Bins = a.PSI, a.Alpha, a.KSMinEffect, a.CramersVMinEffect, a.DatasetShare, a.Bins
	columns, exclude := a.Columns, a.Exclude
	refData, err := env.Artifacts().Data(ctx, a.Reference)
	if err != nil {
		return nil, artifactErr("reference", err)
	}
	curData, err := env.Artifacts().Data(ctx, a.Current)
	if err != nil {
		return nil, artifactErr("current", err)
	}
	refSrc, curSrc := refData.Source, curData.Source
	ref, err := readTable("reference", refData, nil)
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
	cur, err := readTable("current", curData, ref)
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
	path, err := publishJSON(ctx, env, DriftFile, map[string]any{"reference": refSrc, "current": curSrc, "report": rep})
	if err != nil {
		return nil, err
	}
	out := &DriftOutputs{Features: map[string]FeatureDrift{}, DriftedFeatures: []string{}, Drifted: rep.Drifted,
		DriftedCount: rep.DriftedFeatures, Share: rep.Share, Report: path}
	float := func(f float64) *stepio.Float { v := stepio.Float(f); return &v }
	for _, f := range rep.Features {
		fo := FeatureDrift{Kind: string(f.Kind), PSI: stepio.Float(f.PSI), JSDistance: stepio.Float(f.JSDistance), Drifted: f.Drifted, Reason: f.Reason}
		if f.KS != nil {
			fo.KSStatistic, fo.KSPValue = float(f.KS.Statistic), float(f.KS.PValue)
		}
		if f.ChiSquare != nil {
			fo.ChiSquare, fo.ChiSquarePValue, fo.CramersV = float(f.ChiSquare.Statistic), float(f.ChiSquare.PValue), float(f.ChiSquare.CramersV)
		}
		out.Features[f.Name] = fo
		if f.Drifted {
			out.DriftedFeatures = append(out.DriftedFeatures, f.Name)
		}
	}
	return out, nil
}

// readTable reads the columns of src: a builtin source through its schema
// (the label excluded); a CSV need not have a label, so it is read here
// rather than through dataset.Load: a column is numeric when every present
// value parses as a number, or, for the current table, when it is numeric
// in the reference (like), so that text in it is reported rather than
// silently switching the test. Missing numbers are dropped (the tests take
// no NaN); missing categories count as a category of their own.
func readTable(key string, data workspace.Data, like drift.Table) (drift.Table, error) {
	src := data.Source
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
	f, err := os.Open(data.Path)
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
