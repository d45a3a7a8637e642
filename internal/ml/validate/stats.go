// Package validate checks training data before any model sees it: the
// schema and statistics against a declared schema and a previous run's
// statistics, label leakage, redundant features, rows from the future,
// and class imbalance, with the remedies for the last.
package validate

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

// ColumnStats describes one column. Numeric columns have Min, Max, Mean and
// Std (over present values); categorical and sensitive ones Categories.
type ColumnStats struct {
	Name        string         `json:"name"`
	Kind        dataset.Kind   `json:"kind"`
	Missing     int            `json:"missing"`
	MissingRate float64        `json:"missing_rate"`
	Min         *float64       `json:"min,omitempty"`
	Max         *float64       `json:"max,omitempty"`
	Mean        *float64       `json:"mean,omitempty"`
	Std         *float64       `json:"std,omitempty"`
	Categories  map[string]int `json:"categories,omitempty"`
}

// Stats is what a run records of its training data, for the next run to
// compare against.
type Stats struct {
	Rows          int           `json:"rows"`
	Label         string        `json:"label"`
	PositiveRate  float64       `json:"positive_rate"`
	DuplicateRows int           `json:"duplicate_rows"`
	Columns       []ColumnStats `json:"columns"`
}

// Column finds a column's statistics.
func (s *Stats) Column(name string) (ColumnStats, bool) {
	for _, c := range s.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return ColumnStats{}, false
}

// ReadStats reads a statistics file written by an earlier run.
func ReadStats(path string) (*Stats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("validate: read statistics: %w", err)
	}
	var s Stats
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("validate: statistics %s: %w", path, err)
	}
	if s.Rows <= 0 || len(s.Columns) == 0 {
		return nil, fmt.Errorf("validate: statistics %s describe no data", path)
	}
	return &s, nil
}

// ComputeStats summarises d.
func ComputeStats(d *dataset.Dataset) *Stats {
	n := d.Len()
	s := &Stats{Rows: n, Label: d.Schema.Label, DuplicateRows: duplicateRows(d)}
	for _, y := range d.Y {
		s.PositiveRate += y
	}
	if n > 0 {
		s.PositiveRate /= float64(n)
	}
	for _, c := range d.Schema.Columns {
		cs := ColumnStats{Name: c.Name, Kind: c.Kind}
		switch c.Kind {
		case dataset.Numeric:
			v := d.Numeric[c.Name]
			var sum, ss float64
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, x := range v {
				if math.IsNaN(x) {
					cs.Missing++
					continue
				}
				sum += x
				lo, hi = math.Min(lo, x), math.Max(hi, x)
			}
			if k := n - cs.Missing; k > 0 {
				mean := sum / float64(k)
				for _, x := range v {
					if !math.IsNaN(x) {
						ss += (x - mean) * (x - mean)
					}
				}
				std := math.Sqrt(ss / float64(k))
				cs.Min, cs.Max, cs.Mean, cs.Std = &lo, &hi, &mean, &std
			}
		case dataset.Categorical, dataset.Sensitive:
			cs.Categories = map[string]int{}
			for _, x := range stringColumn(d, c.Name) {
				if x == "" {
					cs.Missing++
				} else {
					cs.Categories[x]++
				}
			}
		default:
			continue
		}
		if n > 0 {
			cs.MissingRate = float64(cs.Missing) / float64(n)
		}
		s.Columns = append(s.Columns, cs)
	}
	return s
}

func stringColumn(d *dataset.Dataset, name string) []string {
	if v, ok := d.Categorical[name]; ok {
		return v
	}
	return d.Sensitive[name]
}

// duplicateRows counts rows identical, label included, to an earlier row.
func duplicateRows(d *dataset.Dataset) int {
	seen := make(map[[32]byte]bool, d.Len())
	dups := 0
	var buf []byte
	for r := range d.Len() {
		buf = rowKey(d, r, buf[:0])
		k := sha256.Sum256(buf)
		if seen[k] {
			dups++
		}
		seen[k] = true
	}
	return dups
}

func rowKey(d *dataset.Dataset, r int, buf []byte) []byte {
	for _, c := range d.Schema.Columns {
		switch c.Kind {
		case dataset.Numeric:
			buf = strconv.AppendFloat(buf, d.Numeric[c.Name][r], 'g', -1, 64)
		case dataset.Categorical, dataset.Sensitive:
			buf = append(buf, stringColumn(d, c.Name)[r]...)
		case dataset.Label:
			buf = strconv.AppendFloat(buf, d.Y[r], 'g', -1, 64)
		}
		buf = append(buf, 0)
	}
	return buf
}

// featureColumns are the columns a model would learn from.
func featureColumns(d *dataset.Dataset, skip string) (numeric, categorical []string) {
	for _, c := range d.Schema.Columns {
		if c.Name == skip {
			continue
		}
		switch c.Kind {
		case dataset.Numeric:
			numeric = append(numeric, c.Name)
		case dataset.Categorical:
			categorical = append(categorical, c.Name)
		}
	}
	return numeric, categorical
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
