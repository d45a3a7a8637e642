package validate

import (
	"context"
	"encoding/csv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

// table is CSV rows with a header, which tests edit to plant problems.
type table struct {
	header []string
	rows   [][]string
}

func creditRisk(rows int, seed uint64) *table {
	t := &table{}
	for _, c := range dataset.CreditRiskSchema.Columns {
		t.header = append(t.header, c.Name)
	}
	t.rows = dataset.CreditRisk(dataset.CreditRiskParams{Rows: rows, Seed: seed})
	return t
}

func (t *table) col(name string) int {
	for i, h := range t.header {
		if h == name {
			return i
		}
	}
	panic("no column " + name)
}

// addColumn appends a column computed from each row.
func (t *table) addColumn(name string, f func(row []string, i int) string) {
	t.header = append(t.header, name)
	for i, r := range t.rows {
		t.rows[i] = append(r, f(r, i))
	}
}

func (t *table) load(tb testing.TB) *dataset.Dataset {
	tb.Helper()
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write(t.header)
	w.WriteAll(t.rows)
	d, err := dataset.Read(strings.NewReader(b.String()), "planted.csv",
		dataset.WithHeader(true), dataset.WithLabel("defaulted", "yes"), dataset.WithSensitive("sex", "age_group"))
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func statusOf(r *Report, name, column string) (Status, string) {
	for _, c := range r.Checks {
		if c.Name == name && (column == "" || c.Column == column) {
			if c.Status != Pass || column != "" {
				return c.Status, c.Message
			}
		}
	}
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Status, c.Message
		}
	}
	return "", ""
}

func mustValidate(t *testing.T, d *dataset.Dataset, o Options) *Report {
	t.Helper()
	r, _, err := Validate(d, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCleanDataPasses(t *testing.T) {
	ref := creditRisk(3000, 1).load(t)
	_, refStats, err := Validate(ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := mustValidate(t, creditRisk(3000, 2).load(t), Options{Reference: refStats})
	if !r.Passed || r.Failures != 0 {
		t.Fatalf("clean data failed: %v", r.Failed())
	}
	for _, name := range []string{"label_leakage", "duplicate_features", "duplicate_rows", "missing_values", "reference"} {
		if st, msg := statusOf(r, name, ""); st != Pass {
			t.Errorf("%s: %s %q", name, st, msg)
		}
	}
}

func TestLeakedLabelFails(t *testing.T) {
	tb := creditRisk(3000, 3)
	y := tb.col("defaulted")
	rng := rand.New(rand.NewPCG(1, 2))
	// A numeric echo of the label with a little noise, as a "days overdue
	// at collection" column would be.
	tb.addColumn("collections_days", func(r []string, _ int) string {
		v := rng.Float64() * 10
		if r[y] == "yes" {
			v += 30
		}
		return strconv.FormatFloat(v, 'f', 2, 64)
	})
	// A categorical one: the outcome status, recorded after the fact.
	tb.addColumn("account_status", func(r []string, i int) string {
		if r[y] == "yes" {
			return "charged_off"
		}
		return []string{"current", "closed"}[i%2]
	})
	r := mustValidate(t, tb.load(t), Options{})
	for _, col := range []string{"collections_days", "account_status"} {
		if st, msg := statusOf(r, "label_leakage", col); st != Fail {
			t.Errorf("leak in %s not caught: %s %q", col, st, msg)
		}
	}
	if r.Passed || len(r.Failed()) != 2 {
		t.Errorf("failed checks %v", r.Failed())
	}
	// A unique identifier is not a leak: the held-out target encoding
	// cannot memorise it.
	tb = creditRisk(2000, 3)
	tb.addColumn("application_id", func(_ []string, i int) string { return "app-" + strconv.Itoa(i) })
	if r := mustValidate(t, tb.load(t), Options{}); !r.Passed {
		t.Errorf("an identifier column failed: %v", r.Failed())
	}
}

func TestDuplicatedFeaturesWarn(t *testing.T) {
	tb := creditRisk(2000, 4)
	inc, purpose := tb.col("income"), tb.col("purpose")
	tb.addColumn("income_thousands", func(r []string, _ int) string {
		v, _ := strconv.ParseFloat(r[inc], 64)
		return strconv.FormatFloat(v/1000, 'g', -1, 64)
	})
	tb.addColumn("purpose_code", func(r []string, _ int) string { return "P-" + strings.ToUpper(r[purpose]) })
	r := mustValidate(t, tb.load(t), Options{})
	for _, col := range []string{"income_thousands", "purpose_code"} {
		if st, msg := statusOf(r, "duplicate_features", col); st != Warn {
			t.Errorf("duplicate %s not caught: %s %q", col, st, msg)
		}
	}
	if r := mustValidate(t, tb.load(t), Options{Strict: true}); r.Passed {
		t.Error("strict validation passed with duplicated features")
	}
}

func TestSevereImbalanceAndRemedies(t *testing.T) {
	tb := creditRisk(6000, 5)
	y := tb.col("defaulted")
	var kept [][]string
	pos := 0
	for _, r := range tb.rows {
		if r[y] == "yes" {
			pos++
			if pos%50 != 0 && pos > 1 {
				continue
			}
		}
		kept = append(kept, r)
	}
	tb.rows = kept
	d := tb.load(t)
	r := mustValidate(t, d, Options{})
	if r.Imbalance.Severity != Severe || r.Imbalance.Ratio < 40 {
		t.Fatalf("imbalance %+v", r.Imbalance)
	}
	if st, _ := statusOf(r, "class_imbalance", ""); st != Warn {
		t.Errorf("severe imbalance status %s", st)
	}
	for _, remedy := range []string{Oversample, Undersample} {
		b, err := Rebalance(d, remedy, 1)
		if err != nil {
			t.Fatal(err)
		}
		if im := MeasureImbalance(b.Y); im.Ratio != 1 {
			t.Errorf("%s: ratio %v", remedy, im.Ratio)
		}
	}
	if _, err := Rebalance(d, SMOTE, 1); err == nil || !strings.Contains(err.Error(), "numeric features only") {
		t.Errorf("smote on categorical data: %v", err)
	}
	for _, c := range [][]float64{{1, 1}, {2, 1}, {5, 1}, {20, 1}} {
		y := make([]float64, int(c[0]+c[1]))
		y[0] = 1
		if want := map[float64]string{1: None, 2: Mild, 5: Moderate, 20: Severe}[c[0]]; MeasureImbalance(y).Severity != want {
			t.Errorf("%v:1 is %s, want %s", c[0], MeasureImbalance(y).Severity, want)
		}
	}
}

func TestSMOTE(t *testing.T) {
	var b strings.Builder
	b.WriteString("x1,x2,y\n")
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 1000 {
		label := "no"
		x1, x2 := rng.NormFloat64(), rng.NormFloat64()
		if i%20 == 0 {
			label, x1, x2 = "yes", 3+rng.NormFloat64()*0.3, 3+rng.NormFloat64()*0.3
		}
		b.WriteString(strconv.FormatFloat(x1, 'g', -1, 64) + "," + strconv.FormatFloat(x2, 'g', -1, 64) + "," + label + "\n")
	}
	d, err := dataset.Read(strings.NewReader(b.String()), "numeric.csv", dataset.WithHeader(true), dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	s1, err := Rebalance(d, SMOTE, 7)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := Rebalance(d, SMOTE, 7)
	if im := MeasureImbalance(s1.Y); im.Ratio != 1 || s1.Len() != 2*950 {
		t.Fatalf("smote gave %d rows, %+v", s1.Len(), im)
	}
	// Synthetic rows lie among the minority cluster and the seed fixes them.
	for i := d.Len(); i < s1.Len(); i++ {
		x1, x2 := s1.Numeric["x1"][i], s1.Numeric["x2"][i]
		if math.Hypot(x1-3, x2-3) > 2 || x1 != s2.Numeric["x1"][i] {
			t.Fatalf("synthetic row %d at (%v, %v)", i, x1, x2)
		}
	}
}

func TestNewCategoryMissingColumnAndTypeChange(t *testing.T) {
	ref := creditRisk(2000, 6).load(t)
	_, refStats, err := Validate(ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tb := creditRisk(2000, 7)
	p, inc := tb.col("purpose"), tb.col("income")
	for i := range 40 {
		tb.rows[i][p] = "crypto"
	}
	for i := range tb.rows {
		tb.rows[i][inc] = "band-" + strconv.Itoa(i%3)
	}
	drop := tb.col("late_payments")
	tb.header = append(tb.header[:drop:drop], tb.header[drop+1:]...)
	for i, r := range tb.rows {
		tb.rows[i] = append(r[:drop:drop], r[drop+1:]...)
	}
	d := tb.load(t)
	r := mustValidate(t, d, Options{Reference: refStats, Declared: map[string]dataset.Kind{"income": dataset.Numeric, "late_payments": dataset.Numeric}})
	want := map[string][2]string{
		"new_categories":        {"purpose", "warn"},
		"type_change":           {"income", "fail"},
		"missing_column":        {"late_payments", "fail"},
		"schema_missing_column": {"late_payments", "fail"},
		"schema_type_change":    {"income", "fail"},
	}
	for name, w := range want {
		if st, msg := statusOf(r, name, w[0]); string(st) != w[1] {
			t.Errorf("%s on %s: %s %q", name, w[0], st, msg)
		} else if name == "new_categories" && !strings.Contains(msg, "crypto") {
			t.Errorf("new category message %q", msg)
		}
	}
}

func TestRangesMissingAndDuplicates(t *testing.T) {
	_, refStats, err := Validate(creditRisk(2000, 8).load(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	tb := creditRisk(2000, 9)
	age, debt := tb.col("age"), tb.col("debt_ratio")
	tb.rows[0][age] = "240"
	for i := range 1200 {
		tb.rows[i][debt] = ""
	}
	for i := 1500; i < 1700; i++ {
		tb.rows[i] = append([]string(nil), tb.rows[i-200]...)
	}
	r := mustValidate(t, tb.load(t), Options{Reference: refStats})
	for name, w := range map[string][2]string{
		"range":               {"age", "warn"},
		"missing_values":      {"debt_ratio", "fail"},
		"missing_rate_change": {"debt_ratio", "warn"},
		"duplicate_rows":      {"", "fail"},
	} {
		if st, msg := statusOf(r, name, w[0]); string(st) != w[1] {
			t.Errorf("%s on %q: %s %q", name, w[0], st, msg)
		}
	}
}

func TestTimeOrder(t *testing.T) {
	mk := func(start int) *dataset.Dataset {
		tb := creditRisk(500, uint64(start))
		tb.addColumn("applied_at", func(_ []string, i int) string {
			return "2024-" + []string{"01", "02", "03", "04", "05", "06"}[start+i%2] + "-15"
		})
		return tb.load(t)
	}
	train, eval := mk(0), mk(2)
	if st, msg := statusOf(mustValidate(t, train, Options{TimestampColumn: "applied_at", Eval: eval}), "time_order", ""); st != Pass {
		t.Errorf("ordered data: %s %q", st, msg)
	}
	st, msg := statusOf(mustValidate(t, mk(1), Options{TimestampColumn: "applied_at", Eval: mk(0)}), "time_order", "")
	if st != Fail || !strings.Contains(msg, "500 training rows") {
		t.Errorf("training rows after evaluation rows: %s %q", st, msg)
	}
}

func TestRemedyEffect(t *testing.T) {
	tb := creditRisk(4000, 10)
	y := tb.col("defaulted")
	var kept [][]string
	pos := 0
	for _, r := range tb.rows {
		if r[y] == "yes" {
			if pos++; pos%8 != 0 {
				continue
			}
		}
		kept = append(kept, r)
	}
	tb.rows = kept
	d := tb.load(t)
	eval := creditRisk(2000, 11).load(t)
	b, err := Rebalance(d, Oversample, 1)
	if err != nil {
		t.Fatal(err)
	}
	e, err := RemedyEffect(context.Background(), d, b, eval, Oversample)
	if err != nil {
		t.Fatal(err)
	}
	if !(e.Delta["recall"] > 0.1) {
		t.Errorf("oversampling a 1:%0.f imbalance raised recall by %v", MeasureImbalance(d.Y).Ratio, e.Delta["recall"])
	}
	t.Logf("effect %+v", e)
}
