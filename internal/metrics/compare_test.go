package metrics

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// gatherAndCompare does what testutil.GatherAndCompare does. testutil itself
// cannot be used: it imports github.com/kylelemons/godebug, which go.sum
// does not hold. want is in the text exposition format; families in want are
// compared after both sides are parsed and re-encoded, so order and
// whitespace do not matter. With names, only those families are compared.
func gatherAndCompare(g prometheus.Gatherer, want string, names ...string) error {
	got, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gather: %w", err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	wantFams, err := p.TextToMetricFamilies(strings.NewReader(want))
	if err != nil {
		return fmt.Errorf("parse expected metrics: %w", err)
	}
	keep := func(name string) bool { return len(names) == 0 || slices.Contains(names, name) }
	var wantList []*dto.MetricFamily
	for _, mf := range wantFams {
		if keep(mf.GetName()) {
			wantList = append(wantList, mf)
		}
	}
	slices.SortFunc(wantList, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	var gotList []*dto.MetricFamily
	for _, mf := range got {
		if keep(mf.GetName()) {
			gotList = append(gotList, mf)
		}
	}
	// Re-parse what was gathered so that both sides lose the same details
	// the text format does not carry (created timestamps).
	gs, err := encode(gotList)
	if err != nil {
		return err
	}
	reparsed, err := p.TextToMetricFamilies(strings.NewReader(gs))
	if err != nil {
		return fmt.Errorf("re-parse gathered metrics: %w", err)
	}
	gotList = gotList[:0]
	for _, mf := range reparsed {
		gotList = append(gotList, mf)
	}
	slices.SortFunc(gotList, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	gs, err = encode(gotList)
	if err != nil {
		return err
	}
	ws, err := encode(wantList)
	if err != nil {
		return err
	}
	if gs != ws {
		return fmt.Errorf("metrics differ\n--- got\n%s--- want\n%s", gs, ws)
	}
	return nil
}

func encode(fams []*dto.MetricFamily) (string, error) {
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range fams {
		if err := enc.Encode(mf); err != nil {
			return "", fmt.Errorf("encode %s: %w", mf.GetName(), err)
		}
	}
	return buf.String(), nil
}

// gatherAndCount counts the series of the named families.
func gatherAndCount(g prometheus.Gatherer, names ...string) (int, error) {
	fams, err := g.Gather()
	if err != nil {
		return 0, fmt.Errorf("gather: %w", err)
	}
	n := 0
	for _, mf := range fams {
		if slices.Contains(names, mf.GetName()) {
			n += len(mf.GetMetric())
		}
	}
	return n, nil
}
