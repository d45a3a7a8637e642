package dataset

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
)

const builtinScheme = "builtin:"

// CreditRiskParams are the knobs of builtin:credit-risk.
type CreditRiskParams struct {
	Rows int
	Seed uint64
	// Bias makes the label depend on sex (directly and through lower income
	// and more part-time work for women), so a model trained without the
	// sex column still treats the groups differently. 0 is no bias.
	Bias float64
	// Drift shifts the feature distributions (older applicants, lower income,
	// bigger loans, more debt, more business and medical loans), as a later
	// population would look to a monitor. 0 is no drift.
	Drift float64
}

// CreditRiskSchema is the schema of builtin:credit-risk.
var CreditRiskSchema = Schema{
	Columns: []Column{
		{"age", Numeric},
		{"age_group", Sensitive},
		{"sex", Sensitive},
		{"income", Numeric},
		{"employment_type", Categorical},
		{"home_ownership", Categorical},
		{"credit_history_years", Numeric},
		{"open_accounts", Numeric},
		{"late_payments", Numeric},
		{"debt_ratio", Numeric},
		{"loan_amount", Numeric},
		{"loan_term_months", Numeric},
		{"purpose", Categorical},
		{"defaulted", Label},
	},
	Label:    "defaulted",
	Positive: []string{"yes"},
}

func parseBuiltin(src string) (CreditRiskParams, error) {
	p := CreditRiskParams{Rows: 10000, Seed: 1}
	u, err := url.Parse(src)
	if err != nil {
		return p, &Error{File: src, Msg: fmt.Sprintf("bad builtin URI: %v", err)}
	}
	if u.Opaque != "credit-risk" {
		return p, &Error{File: src, Msg: fmt.Sprintf("unknown builtin source %q (known: credit-risk)", u.Opaque)}
	}
	for key, vals := range u.Query() {
		v := vals[len(vals)-1]
		bad := func(err error) error {
			return &Error{File: src, Msg: fmt.Sprintf("parameter %s=%q: %v", key, v, err)}
		}
		switch key {
		case "rows":
			n, err := strconv.Atoi(v)
			if err != nil || n < 10 || n > 10_000_000 {
				return p, bad(fmt.Errorf("want an integer in [10, 10000000]"))
			}
			p.Rows = n
		case "seed":
			s, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return p, bad(err)
			}
			p.Seed = s
		case "bias", "drift":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 10 || math.IsNaN(f) {
				return p, bad(fmt.Errorf("want a number in [0, 10]"))
			}
			if key == "bias" {
				p.Bias = f
			} else {
				p.Drift = f
			}
		default:
			return p, &Error{File: src, Msg: fmt.Sprintf("unknown parameter %q (known: rows, seed, bias, drift)", key)}
		}
	}
	return p, nil
}

// builtinGenerator versions the generator's output: the digest of a
// builtin source is computed from its parameters, and must change whenever
// the rows for the same parameters do.
const builtinGenerator = "credit-risk/1"

func loadBuiltin(src string, o *options, build bool) (*Frame, error) {
	p, err := parseBuiltin(src)
	if err != nil {
		return nil, err
	}
	user := o
	o = newOptions([]Option{WithSchema(CreditRiskSchema)})
	for n, k := range user.kinds {
		o.kinds[n] = k
	}
	if user.label != "" {
		o.label, o.positive = user.label, user.positive
	}
	if len(user.positive) > 0 {
		o.positive = user.positive
	}
	o.missing = user.missing
	names := make([]string, len(CreditRiskSchema.Columns))
	facts := make([]columnFacts, len(names))
	first := CreditRisk(CreditRiskParams{Rows: 1, Seed: p.Seed, Bias: p.Bias, Drift: p.Drift})[0]
	for i, c := range CreditRiskSchema.Columns {
		names[i] = c.Name
		facts[i] = columnFacts{present: p.Rows, natural: c.Kind}
		if c.Kind != Numeric {
			facts[i].text, facts[i].textLine = first[i], 1
		}
	}
	s, err := resolve(src, names, facts, o, build)
	if err != nil {
		return nil, err
	}
	if !build {
		return &Frame{Source: src, Schema: s}, nil
	}
	f32 := make([]bool, len(names))
	for i := range f32 {
		f32[i] = true // every generated number is an integer or has three decimals
	}
	b := newBuilder(src, s, p.Rows, f32, nil)
	r := 0
	var fail error
	generateCreditRisk(p, func(row *creditRow) bool {
		for c := range names {
			switch b.cols[c].kind {
			case Numeric:
				b.number(c, r, row.num[c])
			case Categorical, Sensitive:
				text := row.text(c)
				if slices.Contains(o.missing, text) {
					continue
				}
				if fail = b.category(c, r, text); fail != nil {
					return false
				}
			case Label:
				text := row.text(c)
				if slices.Contains(o.missing, text) {
					text = ""
				}
				if fail = b.labelValue(r, r+1, text); fail != nil {
					return false
				}
			}
		}
		r++
		return true
	})
	if fail != nil {
		return nil, fail
	}
	f, err := b.finish()
	if err != nil {
		return nil, err
	}
	h := newDigest()
	writeSchemaDigest(h, f.Schema)
	fmt.Fprintf(h, "%s rows=%d seed=%d bias=%v drift=%v missing=%q", builtinGenerator, p.Rows, p.Seed, p.Bias, p.Drift, o.missing)
	f.Digest = hex.EncodeToString(h.Sum(nil))
	return f, nil
}

// pick draws an index with probability proportional to w.
func pick(rng *rand.Rand, w []float64) int {
	var total float64
	for _, x := range w {
		total += x
	}
	u := rng.Float64() * total
	for i, x := range w {
		if u < x {
			return i
		}
		u -= x
	}
	return len(w) - 1
}

func poisson(rng *rand.Rand, lambda float64) int {
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

// creditRow is one generated row: numbers for the numeric columns and text
// for the others, indexed like CreditRiskSchema.Columns.
type creditRow struct {
	num [14]float64
	str [14]string
}

// creditDecimals is how many decimals a numeric column's text has.
var creditDecimals = [14]int{9: 3}

// text is column c's value as CSV text.
func (r *creditRow) text(c int) string {
	if CreditRiskSchema.Columns[c].Kind == Numeric {
		return strconv.FormatFloat(r.num[c], 'f', creditDecimals[c], 64)
	}
	return r.str[c]
}

// CreditRisk generates the rows of builtin:credit-risk as CSV fields in
// CreditRiskSchema order. The same parameters give the same rows.
func CreditRisk(p CreditRiskParams) [][]string {
	rows := make([][]string, 0, p.Rows)
	generateCreditRisk(p, func(r *creditRow) bool {
		rec := make([]string, len(r.num))
		for c := range rec {
			rec[c] = r.text(c)
		}
		rows = append(rows, rec)
		return true
	})
	return rows
}

// generateCreditRisk calls fn with each row (the same value, refilled)
// until fn returns false.
func generateCreditRisk(p CreditRiskParams, fn func(*creditRow) bool) {
	rng := rand.New(rand.NewPCG(p.Seed, 0xc4ed17))
	employment := []string{"salaried", "self-employed", "part-time", "unemployed", "retired"}
	purposes := []string{"debt_consolidation", "home_improvement", "car", "education", "business", "medical"}
	var row creditRow
	for range p.Rows {
		female := rng.Float64() < 0.48
		sex := "male"
		if female {
			sex = "female"
		}
		age := clamp(math.Round(39+12*rng.NormFloat64()+6*p.Drift), 18, 85)
		group := "60+"
		switch {
		case age < 25:
			group = "<25"
		case age < 40:
			group = "25-39"
		case age < 60:
			group = "40-59"
		}
		ew := [5]float64{0.62, 0.12 + 0.05*p.Drift, 0.12, 0.06 + 0.04*p.Drift, 0}
		if female {
			ew[2] += p.Bias
		}
		if age >= 62 {
			ew[4] = 0.8
		}
		emp := pick(rng, ew[:])
		logIncome := 10.9 + 0.02*(age-40) - 0.0006*(age-40)*(age-40) + 0.45*rng.NormFloat64() - 0.15*p.Drift
		logIncome += [5]float64{0, 0.1, -0.6, -1.3, -0.4}[emp]
		if female {
			logIncome -= 0.9 * p.Bias
		}
		income := math.Round(math.Exp(logIncome)/100) * 100
		history := math.Round(clamp((age-18)*(0.4+0.6*rng.Float64()), 0, 60))
		accounts := poisson(rng, 2+history/6)
		late := poisson(rng, 0.35+0.3*p.Drift)
		debt := clamp(0.28+0.13*rng.NormFloat64()+0.08*p.Drift, 0, 1.5)
		loan := math.Round(math.Exp(9.2+0.35*(logIncome-10.9)+0.5*rng.NormFloat64()+0.25*p.Drift)/50) * 50
		term := 36
		if rng.Float64() < 0.35 {
			term = 60
		}
		purpose := pick(rng, []float64{0.35, 0.18, 0.2, 0.1, 0.1 + 0.1*p.Drift, 0.07 + 0.07*p.Drift})
		ownW := [3]float64{0.45, 0.35, 0.2}
		if age > 45 {
			ownW = [3]float64{0.2, 0.45, 0.35}
		}
		home := [3]string{"rent", "mortgage", "own"}[pick(rng, ownW[:])]

		logit := -0.9 + 3.5*(debt-0.28) - 0.9*(logIncome-10.9) + 0.45*float64(late) -
			0.03*history + 0.8*(loan/income-0.15) + 0.25*float64(term-36)/24
		logit += [5]float64{0, 0.3, 0.4, 0.9, 0}[emp]
		logit += [6]float64{0, -0.2, -0.1, 0.2, 0.5, 0.4}[purpose]
		if home == "own" {
			logit -= 0.3
		}
		if age < 25 {
			logit += 0.3
		}
		if female {
			logit += 2.5 * p.Bias
		}
		defaulted := "no"
		if rng.Float64() < 1/(1+math.Exp(-logit)) {
			defaulted = "yes"
		}
		// The text has three decimals; this is the float64 that text parses
		// to, so the numbers and the text agree.
		debt = math.Round(debt*1000) / 1000
		row.num = [14]float64{0: age, 3: income, 6: history, 7: float64(accounts), 8: float64(late), 9: debt, 10: loan, 11: float64(term)}
		row.str = [14]string{1: group, 2: sex, 4: employment[emp], 5: home, 12: purposes[purpose], 13: defaulted}
		if !fn(&row) {
			return
		}
	}
}
