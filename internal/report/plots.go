package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
)

// The tab10 colours most readers know from matplotlib.
var (
	candidateColor = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	championColor  = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	referenceColor = color.RGBA{R: 128, G: 128, B: 128, A: 255}
	rateColors     = []color.Color{
		candidateColor,
		color.RGBA{R: 44, G: 160, B: 44, A: 255},
		color.RGBA{R: 214, G: 39, B: 40, A: 255},
	}
)

// dpi is fixed so that the PNG size does not depend on the library default.
const dpi = 96

// plots renders every PNG of the report, in a fixed order.
func plots(ev *Evidence) ([]namedFile, error) {
	type job struct {
		name string
		draw func() ([]byte, error)
	}
	jobs := []job{
		{ROCFile, func() ([]byte, error) { return rocPNG(ev) }},
		{CalibrationFile, func() ([]byte, error) { return calibrationPNG(ev) }},
		{ConfusionFile, func() ([]byte, error) { return confusionPNG(ev) }},
	}
	if ev.Fairness != nil {
		names := fairnessFileNames(ev.Fairness.Report.Features)
		for i := range ev.Fairness.Report.Features {
			before := &ev.Fairness.Report.Features[i]
			var after *fairness.FeatureReport
			if ev.Fairness.Mitigated != nil {
				after, _ = ev.Fairness.Mitigated.Feature(before.Feature)
			}
			jobs = append(jobs, job{names[i], func() ([]byte, error) { return fairnessPNG(before, after) }})
		}
	}
	if ev.Explanation != nil {
		jobs = append(jobs, job{ImportanceFile, func() ([]byte, error) { return importancePNG(ev.Explanation) }})
		if len(ev.Explanation.Records) > 0 {
			jobs = append(jobs, job{AttributionFile, func() ([]byte, error) { return attributionPNG(&ev.Explanation.Records[0]) }})
		}
	}
	out := make([]namedFile, 0, len(jobs))
	for _, j := range jobs {
		b, err := j.draw()
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", j.name, err)
		}
		out = append(out, namedFile{j.name, b})
	}
	return out, nil
}

// fairnessFileNames gives each feature a file name made of safe characters
// ("age_group&sex" becomes fairness_age_group_sex.png), numbered when two
// features would otherwise share one.
func fairnessFileNames(features []fairness.FeatureReport) []string {
	names := make([]string, len(features))
	used := map[string]bool{}
	for i, f := range features {
		base := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
				return r
			}
			return '_'
		}, f.Feature)
		if base == "" {
			base = "feature"
		}
		name := "fairness_" + base + ".png"
		for n := 2; used[name]; n++ {
			name = "fairness_" + base + "_" + strconv.Itoa(n) + ".png"
		}
		used[name] = true
		names[i] = name
	}
	return names
}

// encode draws a grid of plots (rows of panels) on one white PNG canvas of
// w × h.
func encode(w, h vg.Length, grid ...[]*plot.Plot) ([]byte, error) {
	c := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(dpi), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(c)
	if len(grid) == 1 && len(grid[0]) == 1 {
		grid[0][0].Draw(dc)
	} else {
		pad := vg.Millimeter * 2
		tiles := draw.Tiles{Rows: len(grid), Cols: len(grid[0]), PadX: vg.Centimeter, PadY: vg.Centimeter,
			PadTop: pad, PadBottom: pad, PadLeft: pad, PadRight: pad}
		canvases := plot.Align(grid, tiles, dc)
		for i, row := range grid {
			for j, p := range row {
				p.Draw(canvases[i][j])
			}
		}
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("encode png: %w", err)
	}
	return buf.Bytes(), nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	return p
}

// unitAxes fixes both axes to [0, 1], the range of every rate.
func unitAxes(p *plot.Plot) {
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	p.Add(plotter.NewGrid())
}

func diagonal(p *plot.Plot, name string) error {
	l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
	if err != nil {
		return err
	}
	l.Color = referenceColor
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// series is one model on a plot.
type series struct {
	label string
	model *Model
	color color.Color
	dash  []vg.Length
}

func modelSeries(ev *Evidence) []series {
	s := []series{{label: "candidate " + modelName(&ev.Candidate), model: &ev.Candidate, color: candidateColor}}
	if ev.Champion != nil {
		s = append(s, series{label: "champion " + modelName(ev.Champion), model: ev.Champion,
			color: championColor, dash: []vg.Length{vg.Points(8), vg.Points(4)}})
	}
	return s
}

func modelName(m *Model) string {
	name := m.Name
	if name == "" {
		name = "(unnamed)"
	}
	if m.Version != "" {
		name += " v" + m.Version
	}
	return name
}

func rocPNG(ev *Evidence) ([]byte, error) {
	p := newPlot("ROC curve", "False positive rate", "True positive rate")
	unitAxes(p)
	if err := diagonal(p, "chance"); err != nil {
		return nil, err
	}
	for _, s := range modelSeries(ev) {
		label := s.label
		if len(s.model.ROC.FPR) == 0 {
			label += ": no ROC curve"
			p.Legend.Add(label)
			continue
		}
		if auc, ok := s.model.Metrics[evaluate.ROCAUC]; ok && auc.Defined() {
			label += fmt.Sprintf(" (AUC %.3f)", float64(auc))
		}
		xys := make(plotter.XYs, len(s.model.ROC.FPR))
		for i := range xys {
			xys[i] = plotter.XY{X: s.model.ROC.FPR[i], Y: s.model.ROC.TPR[i]}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width, l.Dashes = s.color, vg.Points(2), s.dash
		p.Add(l)
		p.Legend.Add(label, l)
	}
	return encode(6*vg.Inch, 5.5*vg.Inch, []*plot.Plot{p})
}

func calibrationPNG(ev *Evidence) ([]byte, error) {
	p := newPlot("Calibration (reliability diagram)", "Mean predicted probability", "Fraction of positives")
	unitAxes(p)
	p.Legend.Top, p.Legend.Left = true, true
	if err := diagonal(p, "perfectly calibrated"); err != nil {
		return nil, err
	}
	for _, s := range modelSeries(ev) {
		var xys plotter.XYs
		for _, b := range s.model.Calibration {
			if b.Count > 0 {
				xys = append(xys, plotter.XY{X: b.MeanPredicted, Y: b.FractionTrue})
			}
		}
		if len(xys) == 0 {
			p.Legend.Add(s.label + ": no calibration bins")
			continue
		}
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width, l.Dashes = s.color, vg.Points(2), s.dash
		pts.Color, pts.Shape, pts.Radius = s.color, draw.CircleGlyph{}, vg.Points(3)
		p.Add(l, pts)
		p.Legend.Add(s.label, l, pts)
	}
	return encode(6*vg.Inch, 5.5*vg.Inch, []*plot.Plot{p})
}

func confusionPNG(ev *Evidence) ([]byte, error) {
	var panels []*plot.Plot
	for _, s := range modelSeries(ev) {
		p, err := confusionPlot(s)
		if err != nil {
			return nil, err
		}
		panels = append(panels, p)
	}
	return encode(vg.Length(len(panels))*5*vg.Inch, 4.5*vg.Inch, panels)
}

// confusionPlot lays the matrix out as scikit-learn's ConfusionMatrixDisplay
// does: actual classes in rows (negative on top), predictions in columns.
func confusionPlot(s series) (*plot.Plot, error) {
	m := s.model
	p := newPlot(fmt.Sprintf("%s\nthreshold %s", s.label, formatNum(m.Threshold, 2)), "Predicted", "Actual")
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = -0.5, 1.5, -0.5, 1.5
	p.NominalX("negative", "positive")
	p.NominalY("positive", "negative")

	c := m.Confusion
	cells := []struct {
		name      string
		count     float64
		x, y      float64
		predicted bool
	}{
		{"TN", c.TN, 0, 1, false}, {"FP", c.FP, 1, 1, true},
		{"FN", c.FN, 0, 0, false}, {"TP", c.TP, 1, 0, true},
	}
	total := c.TP + c.FP + c.TN + c.FN
	largest := math.Max(math.Max(c.TP, c.FP), math.Max(c.TN, c.FN))
	labels := plotter.XYLabels{}
	var styles []draw.TextStyle
	for _, cell := range cells {
		shade := 0.0
		if largest > 0 {
			shade = cell.count / largest
		}
		poly, err := plotter.NewPolygon(plotter.XYs{
			{X: cell.x - 0.5, Y: cell.y - 0.5}, {X: cell.x + 0.5, Y: cell.y - 0.5},
			{X: cell.x + 0.5, Y: cell.y + 0.5}, {X: cell.x - 0.5, Y: cell.y + 0.5},
		})
		if err != nil {
			return nil, err
		}
		poly.Color = blend(color.White, candidateColor, shade)
		poly.LineStyle.Color = color.White
		poly.LineStyle.Width = vg.Points(2)
		p.Add(poly)

		share := "n/a"
		if total > 0 {
			share = fmt.Sprintf("%.1f%%", 100*cell.count/total)
		}
		labels.XYs = append(labels.XYs, plotter.XY{X: cell.x, Y: cell.y})
		labels.Labels = append(labels.Labels, fmt.Sprintf("%s\n%s\n%s", cell.name, formatCount(cell.count), share))
		sty := p.Legend.TextStyle
		sty.Font.Size = vg.Points(14)
		sty.XAlign, sty.YAlign = draw.XCenter, draw.YCenter
		sty.Color = color.Black
		if shade > 0.55 {
			sty.Color = color.White
		}
		styles = append(styles, sty)
	}
	l, err := plotter.NewLabels(labels)
	if err != nil {
		return nil, err
	}
	l.TextStyle = styles
	p.Add(l)
	return p, nil
}

// blend mixes a towards b by t in [0, 1].
func blend(a, b color.Color, t float64) color.Color {
	ar, ag, ab, _ := a.RGBA()
	br, bg, bb, _ := b.RGBA()
	mix := func(x, y uint32) uint8 { return uint8((float64(x)*(1-t) + float64(y)*t) / 257) }
	return color.RGBA{R: mix(ar, br), G: mix(ag, bg), B: mix(ab, bb), A: 255}
}

// fairnessPNG draws the per-group rates of one feature, with the mitigated
// model's rates in a second panel below when there are any: stacked, the bars
// of one group line up, and a feature with many groups stays readable.
func fairnessPNG(before, after *fairness.FeatureReport) ([]byte, error) {
	title := before.Feature
	if after != nil {
		title += ": before mitigation"
	}
	p, err := ratesPlot(title, before)
	if err != nil {
		return nil, err
	}
	rows := [][]*plot.Plot{{p}}
	groups := len(before.Groups)
	if after != nil {
		p, err := ratesPlot(after.Feature+": after mitigation", after)
		if err != nil {
			return nil, err
		}
		rows = append(rows, []*plot.Plot{p})
		groups = max(groups, len(after.Groups))
	}
	width := max(7*vg.Inch, vg.Length(groups)*1.2*vg.Inch+1.5*vg.Inch)
	return encode(width, vg.Length(len(rows))*4.5*vg.Inch, rows...)
}

var rateTicks = []plot.Tick{
	{Value: 0, Label: "0"}, {Value: 0.1}, {Value: 0.2, Label: "0.2"}, {Value: 0.3}, {Value: 0.4, Label: "0.4"},
	{Value: 0.5}, {Value: 0.6, Label: "0.6"}, {Value: 0.7}, {Value: 0.8, Label: "0.8"}, {Value: 0.9}, {Value: 1, Label: "1"},
}

// ratesPlot is a grouped bar chart of selection rate, TPR and FPR per group.
// An undefined rate gets no bar but an "n/a" mark, so a missing bar is never
// mistaken for a zero rate.
func ratesPlot(title string, fr *fairness.FeatureReport) (*plot.Plot, error) {
	a := fr.Aggregates
	title += fmt.Sprintf("\nDP difference %s · EO difference %s",
		formatValue(a.DemographicParityDifference), formatValue(a.EqualizedOddsDifference))
	p := newPlot(title, "Group", "Rate")
	// Headroom above 1 keeps the legend off the bars; ticks stop at 1, the
	// largest rate.
	p.Y.Min, p.Y.Max = 0, 1.3
	p.Y.Tick.Marker = plot.ConstantTicks(rateTicks)
	p.Legend.Top = true
	p.Add(plotter.NewGrid())

	names := make([]string, len(fr.Groups))
	for i, g := range fr.Groups {
		names[i] = fmt.Sprintf("%s\nn=%d", g.Group, g.Count)
		if g.Small {
			names[i] += " (small)"
		}
	}
	if len(names) == 0 {
		p.Title.Text += "\nno groups"
		p.X.Min, p.X.Max = -0.5, 0.5
		return p, nil
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5

	rates := []struct {
		name string
		get  func(fairness.GroupMetrics) fairness.Value
	}{
		{"selection rate", func(g fairness.GroupMetrics) fairness.Value { return g.SelectionRate }},
		{"true positive rate", func(g fairness.GroupMetrics) fairness.Value { return g.TPR }},
		{"false positive rate", func(g fairness.GroupMetrics) fairness.Value { return g.FPR }},
	}
	barWidth := vg.Points(18)
	for k, r := range rates {
		values := make(plotter.Values, len(fr.Groups))
		missing := plotter.XYLabels{}
		for i, g := range fr.Groups {
			v := r.get(g)
			if v.Defined() {
				values[i] = float64(v)
				continue
			}
			missing.XYs = append(missing.XYs, plotter.XY{X: float64(i), Y: 0})
			missing.Labels = append(missing.Labels, "n/a")
		}
		offset := vg.Length(k-1) * barWidth
		bars, err := plotter.NewBarChart(values, barWidth)
		if err != nil {
			return nil, err
		}
		bars.Color, bars.Offset = rateColors[k], offset
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.Legend.Add(r.name, bars)
		if len(missing.XYs) > 0 {
			l, err := plotter.NewLabels(missing)
			if err != nil {
				return nil, err
			}
			for i := range l.TextStyle {
				l.TextStyle[i].XAlign, l.TextStyle[i].YAlign = draw.XCenter, draw.YBottom
				l.TextStyle[i].Color = rateColors[k]
			}
			l.Offset = vg.Point{X: offset, Y: vg.Points(2)}
			p.Add(l)
		}
	}
	return p, nil
}

// positiveColor and negativeColor tell which way an attribution pushes the
// score: towards the positive class or away from it.
var (
	positiveColor = rateColors[2]
	negativeColor = candidateColor
)

// maxBars bounds the features one chart draws; beyond it the bars grow too
// thin to label, and the page's table lists every feature anyway.
const maxBars = 25

// barHeight sizes a horizontal bar chart by its number of bars, so that a
// model with many features keeps readable labels and one with few features
// does not get bars as thick as they are long.
func barHeight(bars int) vg.Length { return max(4*vg.Inch, vg.Length(bars)*0.32*vg.Inch+1.6*vg.Inch) }

// importancePNG draws the importances as horizontal bars, most important on
// top, with ± one standard deviation as error bars where the spread is known.
func importancePNG(e *Explanation) ([]byte, error) {
	ranked := e.Ranked()
	title := "Feature importance"
	if len(ranked) > maxBars {
		title += fmt.Sprintf(" (top %d of %d)", maxBars, len(ranked))
		ranked = ranked[:maxBars]
	}
	measure := e.Measure
	if measure == "" {
		measure = "Importance"
	}
	p := newPlot(title, measure, "")
	p.Add(plotter.NewGrid())
	n := len(ranked)
	names := make([]string, n)
	values := make(plotter.Values, n)
	var spread struct {
		plotter.XYs
		plotter.XErrors
	}
	missing := plotter.XYLabels{}
	for i, im := range ranked {
		// NominalY puts the first name at the bottom.
		y := n - 1 - i
		names[y] = im.Feature
		if !im.Mean.Defined() {
			missing.XYs = append(missing.XYs, plotter.XY{X: 0, Y: float64(y)})
			missing.Labels = append(missing.Labels, "n/a")
			continue
		}
		values[y] = float64(im.Mean)
		if im.Std.Defined() && im.Std > 0 {
			spread.XYs = append(spread.XYs, plotter.XY{X: float64(im.Mean), Y: float64(y)})
			spread.XErrors = append(spread.XErrors, struct{ Low, High float64 }{float64(im.Std), float64(im.Std)})
		}
	}
	bars, err := horizontalBars(values, candidateColor)
	if err != nil {
		return nil, err
	}
	p.Add(bars)
	if len(spread.XYs) > 0 {
		eb, err := plotter.NewXErrorBars(spread)
		if err != nil {
			return nil, err
		}
		eb.LineStyle.Color = color.Black
		p.Add(eb)
	}
	if err := addMissing(p, missing); err != nil {
		return nil, err
	}
	p.NominalY(names...)
	p.Y.Min, p.Y.Max = -0.5, float64(n)-0.5
	return encode(7*vg.Inch, barHeight(n), []*plot.Plot{p})
}

// attributionPNG draws one record's attributions as signed horizontal bars
// in the order given, the first on top.
func attributionPNG(r *Record) ([]byte, error) {
	attrs := r.Attributions
	title := fmt.Sprintf("Attributions of record %d", r.Row)
	if len(attrs) > maxBars {
		title += fmt.Sprintf(" (%d largest)", maxBars)
		attrs = attrs[:maxBars]
	}
	if r.Method != "" {
		title += "\n" + r.Method + fmt.Sprintf(", base logit %s", formatNum(r.Base, 3))
	}
	p := newPlot(title, "Contribution to the logit", "")
	p.Add(plotter.NewGrid())
	n := len(attrs)
	names := make([]string, n)
	up, down := make(plotter.Values, n), make(plotter.Values, n)
	for i, a := range attrs {
		y := n - 1 - i
		names[y] = a.Feature
		if a.Value >= 0 {
			up[y] = a.Value
		} else {
			down[y] = a.Value
		}
	}
	for _, s := range []struct {
		values plotter.Values
		color  color.Color
		label  string
	}{{up, positiveColor, "towards positive"}, {down, negativeColor, "towards negative"}} {
		bars, err := horizontalBars(s.values, s.color)
		if err != nil {
			return nil, err
		}
		p.Add(bars)
		p.Legend.Add(s.label, bars)
	}
	p.NominalY(names...)
	p.Y.Min, p.Y.Max = -0.5, float64(n)-0.5
	return encode(7*vg.Inch, barHeight(n), []*plot.Plot{p})
}

func horizontalBars(values plotter.Values, c color.Color) (*plotter.BarChart, error) {
	bars, err := plotter.NewBarChart(values, vg.Points(14))
	if err != nil {
		return nil, err
	}
	bars.Horizontal = true
	bars.Color = c
	bars.LineStyle.Width = 0
	return bars, nil
}

// addMissing marks undefined values with "n/a", so that a missing bar is
// never read as a zero.
func addMissing(p *plot.Plot, missing plotter.XYLabels) error {
	if len(missing.XYs) == 0 {
		return nil
	}
	l, err := plotter.NewLabels(missing)
	if err != nil {
		return err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign, l.TextStyle[i].YAlign = draw.XLeft, draw.YCenter
	}
	l.Offset = vg.Point{X: vg.Points(2)}
	p.Add(l)
	return nil
}
