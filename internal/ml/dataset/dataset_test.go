package dataset_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
)

func read(t *testing.T, csv string, opts ...dataset.Option) (*dataset.Dataset, error) {
	t.Helper()
	return dataset.Read(strings.NewReader(csv), "mem.csv", opts...)
}

const small = ` age , job , income,  y
39, clerk , 100, yes
50, ?, NA, no
 , chef, 300, yes
41, clerk,, no
`

func TestReadTrimsInfersAndMarksMissing(t *testing.T) {
	d, err := read(t, small, dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	want := []dataset.Column{{"age", dataset.Numeric}, {"job", dataset.Categorical}, {"income", dataset.Numeric}, {"y", dataset.Label}}
	for i, c := range want {
		if d.Schema.Columns[i] != c {
			t.Errorf("column %d = %+v, want %+v", i, d.Schema.Columns[i], c)
		}
	}
	if d.Len() != 4 || d.Y[0] != 1 || d.Y[1] != 0 {
		t.Errorf("rows %d labels %v", d.Len(), d.Y)
	}
	if !math.IsNaN(d.Numeric["age"][2]) || !math.IsNaN(d.Numeric["income"][1]) || !math.IsNaN(d.Numeric["income"][3]) {
		t.Errorf("missing numerics not NaN: %v %v", d.Numeric["age"], d.Numeric["income"])
	}
	if d.Categorical["job"][0] != "clerk" || d.Categorical["job"][1] != "" {
		t.Errorf("job %q", d.Categorical["job"])
	}
	if s := d.Schema.String(); !strings.Contains(s, "job     categorical") || !strings.Contains(s, `positive ["yes"]`) {
		t.Errorf("schema text:\n%s", s)
	}
}

func TestInferWithoutLabel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.csv")
	if err := os.WriteFile(path, []byte(small), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := dataset.Infer(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Columns[3] != (dataset.Column{Name: "y", Kind: dataset.Categorical}) || s.Label != "" {
		t.Errorf("inferred %+v", s)
	}
}

func TestHeaderlessWithColumnNames(t *testing.T) {
	body := strings.SplitN(small, "\n", 2)[1]
	d, err := read(t, body, dataset.WithColumnNames("a", "b", "c", "label"), dataset.WithLabel("label", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 4 || d.Numeric["a"][0] != 39 {
		t.Errorf("rows %d a %v", d.Len(), d.Numeric["a"])
	}
	if _, err := read(t, body, dataset.WithHeader(false)); err == nil {
		t.Error("headerless file without names: no error")
	}
}

func TestDigestIsCanonical(t *testing.T) {
	a, err := read(t, small, dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	spaced := strings.ReplaceAll(small, ", ", ",    ")
	b, err := read(t, spaced, dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := read(t, strings.Replace(small, "300", "301", 1), dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Digest) != 64 || a.Digest != b.Digest || a.Digest == c.Digest {
		t.Errorf("digests %s %s %s", a.Digest, b.Digest, c.Digest)
	}
}

func TestBadData(t *testing.T) {
	cases := []struct {
		name, csv string
		opts      []dataset.Option
		row       int
		column    string
		msg       string
	}{
		{"missing column", small, []dataset.Option{dataset.WithLabel("y", "yes"), dataset.WithSensitive("sex")}, 0, "sex", "missing"},
		{"missing label column", small, []dataset.Option{dataset.WithLabel("target", "yes")}, 0, "target", "missing"},
		{"one class", small, []dataset.Option{dataset.WithLabel("y", "maybe")}, 0, "y", "one class"},
		{"text in numeric", "a,y\n1,yes\n2,no\nthree,no\n", []dataset.Option{dataset.WithLabel("y", "yes"), dataset.WithKind(dataset.Numeric, "a")}, 4, "a", `text "three"`},
		{"all missing", "a,b,y\n1,?,yes\n2,,no\n", []dataset.Option{dataset.WithLabel("y", "yes")}, 0, "b", "every value is missing"},
		{"empty file", "", []dataset.Option{dataset.WithLabel("y", "yes")}, 0, "", "empty file"},
		{"header only", "a,y\n", []dataset.Option{dataset.WithLabel("y", "yes")}, 0, "", "no data rows"},
		{"ragged", "a,y\n1,yes\n2\n", []dataset.Option{dataset.WithLabel("y", "yes")}, 3, "", "1 fields, want 2"},
		{"missing label", "a,y\n1,yes\n2,?\n3,no\n", []dataset.Option{dataset.WithLabel("y", "yes")}, 3, "y", "missing label"},
		{"no label", small, nil, 0, "", "no label"},
	}
	for _, c := range cases {
		_, err := read(t, c.csv, c.opts...)
		var de *dataset.Error
		if !errors.As(err, &de) {
			t.Errorf("%s: err = %v, want *dataset.Error", c.name, err)
			continue
		}
		if !errors.Is(err, dataset.ErrBadData) || de.Retryable() {
			t.Errorf("%s: not marked as bad, non-retryable data", c.name)
		}
		if de.File != "mem.csv" || de.Row != c.row || de.Column != c.column || !strings.Contains(de.Msg, c.msg) {
			t.Errorf("%s: got %+v", c.name, de)
		}
		msg := err.Error()
		if !strings.Contains(msg, "mem.csv") || (c.row > 0 && !strings.Contains(msg, "row ")) || (c.column != "" && !strings.Contains(msg, `"`+c.column+`"`)) {
			t.Errorf("%s: message %q does not name file, row and column", c.name, msg)
		}
	}
}

func TestEncoderUsesTrainingStatisticsOnly(t *testing.T) {
	train, err := read(t, "x,c,y\n1,a,yes\n3,b,no\n?,a,no\n", dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	test, err := read(t, "x,c,y\n100,z,yes\n?,b,no\n", dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := dataset.FitEncoder(train, dataset.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if f := enc.Numeric[0]; f.Mean != 2 || f.Std != 1 || f.Imputed != 1 {
		t.Errorf("numeric feature %+v, want mean 2 std 1 imputed 1", f)
	}
	x, err := enc.Transform(test)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(enc.FeatureNames(), " "); got != "x c=a c=b" {
		t.Errorf("features %q", got)
	}
	// 100 standardised with the training mean and std; unseen "z" all zeros;
	// the missing x imputed with the training mean, i.e. 0 after scaling.
	want := [][]float64{{98, 0, 0}, {0, 0, 1}}
	for r, row := range want {
		for c, v := range row {
			if x.At(r, c) != v {
				t.Errorf("x[%d][%d] = %v, want %v", r, c, x.At(r, c), v)
			}
		}
	}

	other, err := dataset.FitEncoder(train, dataset.EncoderOptions{Unseen: dataset.UnseenOther, MinFrequency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(other.FeatureNames(), " "); got != "x c=a c=<other>" {
		t.Fatalf("features %q", got)
	}
	x, err = other.Transform(test)
	if err != nil {
		t.Fatal(err)
	}
	if x.At(0, 2) != 1 || x.At(1, 2) != 1 || x.At(0, 1) != 0 {
		t.Errorf("unseen z and rare b should both go to <other>: %v", x.RawMatrix().Data)
	}
}

func TestSensitiveColumnsAreNotFeaturesByDefault(t *testing.T) {
	d, err := dataset.Load("builtin:credit-risk?rows=200&seed=1")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := dataset.FitEncoder(d, dataset.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	with, err := dataset.FitEncoder(d, dataset.EncoderOptions{IncludeSensitive: true})
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Join(plain.FeatureNames(), " ")
	if strings.Contains(names, "sex=") || len(d.Sensitive["sex"]) != 200 {
		t.Errorf("sex used as a feature or not carried: %s", names)
	}
	if !strings.Contains(strings.Join(with.FeatureNames(), " "), "sex=female") {
		t.Error("IncludeSensitive did not add sex")
	}
	if _, err := with.Transform(d); err != nil {
		t.Fatal(err)
	}
}

func TestStratifiedSplitIsDeterministic(t *testing.T) {
	d, err := dataset.Load("builtin:credit-risk?rows=2000&seed=9")
	if err != nil {
		t.Fatal(err)
	}
	tr1, te1, err := d.Split(0.25, 42)
	if err != nil {
		t.Fatal(err)
	}
	tr2, te2, _ := d.Split(0.25, 42)
	_, te3, _ := d.Split(0.25, 43)
	if tr1.Len()+te1.Len() != d.Len() || te1.Len() < 499 || te1.Len() > 501 {
		t.Fatalf("sizes %d + %d", tr1.Len(), te1.Len())
	}
	same := func(a, b []float64) bool {
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return len(a) == len(b)
	}
	if !same(te1.Numeric["income"], te2.Numeric["income"]) || !same(tr1.Numeric["age"], tr2.Numeric["age"]) {
		t.Error("same seed, different split")
	}
	if same(te1.Numeric["income"], te3.Numeric["income"]) {
		t.Error("different seed, same split")
	}
	rate := func(y []float64) float64 {
		var s float64
		for _, v := range y {
			s += v
		}
		return s / float64(len(y))
	}
	if math.Abs(rate(te1.Y)-rate(d.Y)) > 0.002 || math.Abs(rate(tr1.Y)-rate(d.Y)) > 0.002 {
		t.Errorf("positive rates: all %.4f train %.4f test %.4f", rate(d.Y), rate(tr1.Y), rate(te1.Y))
	}
	if _, _, err := d.Split(1.5, 1); err == nil {
		t.Error("fraction 1.5 accepted")
	}
}

func TestBuiltinDeterministicAndValidated(t *testing.T) {
	a, err := dataset.Load("builtin:credit-risk?rows=300&seed=4&bias=0.2&drift=0.5")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := dataset.Load("builtin:credit-risk?seed=4&rows=300&drift=0.5&bias=0.2")
	c, _ := dataset.Load("builtin:credit-risk?rows=300&seed=5&bias=0.2&drift=0.5")
	if a.Digest != b.Digest || a.Digest == c.Digest {
		t.Errorf("digests %s %s %s", a.Digest, b.Digest, c.Digest)
	}
	if a.Schema.Label != "defaulted" || len(a.Sensitive) != 2 {
		t.Errorf("schema %+v", a.Schema)
	}
	for _, bad := range []string{"builtin:credit-risk?rows=x", "builtin:housing", "builtin:credit-risk?bias=-1", "builtin:credit-risk?color=red"} {
		_, err := dataset.Load(bad)
		if !errors.Is(err, dataset.ErrBadData) {
			t.Errorf("%s: err = %v, want bad data", bad, err)
		}
	}
}

func TestBuiltinDrift(t *testing.T) {
	mean := func(src, col string) float64 {
		d, err := dataset.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for _, v := range d.Numeric[col] {
			s += v
		}
		return s / float64(d.Len())
	}
	for _, col := range []string{"age", "loan_amount", "debt_ratio"} {
		base, drifted := mean("builtin:credit-risk?rows=4000&seed=2", col), mean("builtin:credit-risk?rows=4000&seed=2&drift=1", col)
		if !(drifted > base*1.05) {
			t.Errorf("%s mean %.3f → %.3f under drift=1: want a clear rise", col, base, drifted)
		}
	}
}

// demographicParity trains logistic regression without the sensitive column
// and returns the gap in positive-prediction rates between the sexes.
func demographicParity(t *testing.T, bias string) float64 {
	d, err := dataset.Load("builtin:credit-risk?rows=8000&seed=21&bias=" + bias)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := dataset.FitEncoder(d, dataset.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	x, err := enc.Transform(d)
	if err != nil {
		t.Fatal(err)
	}
	net, err := model.Train(context.Background(), x, d.Y, model.Config{Kind: model.LogReg})
	if err != nil {
		t.Fatal(err)
	}
	p, err := net.PredictProba(x)
	if err != nil {
		t.Fatal(err)
	}
	var pos, n [2]float64
	for i, s := range d.Sensitive["sex"] {
		g := 0
		if s == "female" {
			g = 1
		}
		n[g]++
		if p[i] >= 0.5 {
			pos[g]++
		}
	}
	return math.Abs(pos[1]/n[1] - pos[0]/n[0])
}

func TestBuiltinBiasCreatesDisparity(t *testing.T) {
	fair, biased := demographicParity(t, "0"), demographicParity(t, "0.3")
	t.Logf("demographic parity difference: bias 0 → %.3f, bias 0.3 → %.3f", fair, biased)
	if fair > 0.05 {
		t.Errorf("bias=0 gives a parity gap of %.3f", fair)
	}
	if biased < 0.12 {
		t.Errorf("bias=0.3 gives a parity gap of only %.3f", biased)
	}
}

func TestAdultLoads(t *testing.T) {
	a := mltest.LoadAdult(t)
	if a.Train.Len() != 32561 || a.Test.Len() != 16281 {
		t.Fatalf("rows %d / %d", a.Train.Len(), a.Test.Len())
	}
	var pos float64
	for _, y := range a.Test.Y {
		pos += y
	}
	// ">50K." rows must count as positive in the test file (about 23.6%).
	if r := pos / float64(a.Test.Len()); r < 0.2 || r > 0.3 {
		t.Errorf("test positive rate %.3f", r)
	}
	if _, ok := a.Train.Numeric["fnlwgt"]; ok {
		t.Error("ignored column fnlwgt was kept")
	}
	var missing int
	for _, v := range a.Train.Categorical["workclass"] {
		if v == "" {
			missing++
		}
	}
	if missing == 0 {
		t.Error("no '?' read as missing in workclass")
	}
}
