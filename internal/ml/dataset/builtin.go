package dataset

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
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

func loadBuiltin(src string, opts []Option) (*Dataset, error) {
	p, err := parseBuiltin(src)
	if err != nil {
		return nil, err
	}
	rows := CreditRisk(p)
	lines := make([]int, len(rows))
	for i := range lines {
		lines[i] = i + 1
	}
	o := newOptions(append([]Option{WithSchema(CreditRiskSchema)}, opts...))
	names := make([]string, len(CreditRiskSchema.Columns))
	for i, c := range CreditRiskSchema.Columns {
		names[i] = c.Name
	}
	return build(src, names, rows, lines, o, true)
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

// CreditRisk generates the rows of builtin:credit-risk as CSV fields in
// CreditRiskSchema order. The same parameters give the same rows.
func CreditRisk(p CreditRiskParams) [][]string {
	rng := rand.New(rand.NewPCG(p.Seed, 0xc4ed17))
	employment := []string{"salaried", "self-employed", "part-time", "unemployed", "retired"}
	purposes := []string{"debt_consolidation", "home_improvement", "car", "education", "business", "medical"}
	rows := make([][]string, p.Rows)
	for i := range rows {
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
		ew := []float64{0.62, 0.12 + 0.05*p.Drift, 0.12, 0.06 + 0.04*p.Drift, 0}
		if female {
			ew[2] += p.Bias
		}
		if age >= 62 {
			ew[4] = 0.8
		}
		emp := pick(rng, ew)
		logIncome := 10.9 + 0.02*(age-40) - 0.0006*(age-40)*(age-40) + 0.45*rng.NormFloat64() - 0.15*p.Drift
		logIncome += []float64{0, 0.1, -0.6, -1.3, -0.4}[emp]
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
		ownW := []float64{0.45, 0.35, 0.2}
		if age > 45 {
			ownW = []float64{0.2, 0.45, 0.35}
		}
		home := []string{"rent", "mortgage", "own"}[pick(rng, ownW)]

		logit := -0.9 + 3.5*(debt-0.28) - 0.9*(logIncome-10.9) + 0.45*float64(late) -
			0.03*history + 0.8*(loan/income-0.15) + 0.25*float64(term-36)/24
		logit += []float64{0, 0.3, 0.4, 0.9, 0}[emp]
		logit += []float64{0, -0.2, -0.1, 0.2, 0.5, 0.4}[purpose]
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
		rows[i] = []string{
			strconv.Itoa(int(age)), group, sex,
			strconv.FormatFloat(income, 'f', 0, 64),
			employment[emp], home,
			strconv.Itoa(int(history)), strconv.Itoa(accounts), strconv.Itoa(late),
			strconv.FormatFloat(debt, 'f', 3, 64),
			strconv.FormatFloat(loan, 'f', 0, 64),
			strconv.Itoa(term),
			purposes[purpose], defaulted,
		}
	}
	return rows
}
