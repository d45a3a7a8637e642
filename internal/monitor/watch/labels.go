package watch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
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
)

// labelSet maps a record's join key to whether its delayed label is
// positive; ambiguous keys were labelled both ways.
type labelSet struct {
	truth     map[string]bool
	ambiguous map[string]bool
}

func (l labelSet) add(key string, positive bool) {
	if prev, ok := l.truth[key]; ok && prev != positive {
		l.ambiguous[key] = true
	}
	l.truth[key] = positive
}

func readLabels(ctx context.Context, path string, cols []column, schema dataset.Schema) (labelSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return labelSet{}, fmt.Errorf("monitor: labels: %w", err)
	}
	defer f.Close()
	l := labelSet{truth: map[string]bool{}, ambiguous: map[string]bool{}}
	ext := strings.ToLower(filepath.Ext(path))
	if ext == "" {
		// Labels fetched from the store (a pointer, an object) sit in the
		// cache under their digest, without a name: a JSON object starts
		// JSON lines, anything else is a CSV header.
		br := bufio.NewReader(f)
		ext = ".csv"
		if b, err := br.Peek(512); len(b) > 0 && (err == nil || errors.Is(err, io.EOF)) && bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n\ufeff"), []byte("{")) {
			ext = ".jsonl"
		}
		return l, readLabelsAs(ctx, br, path, ext, cols, schema, l)
	}
	return l, readLabelsAs(ctx, f, path, ext, cols, schema, l)
}

func readLabelsAs(ctx context.Context, f io.Reader, path, ext string, cols []column, schema dataset.Schema, l labelSet) error {
	var err error
	switch ext {
	case ".csv":
		err = readLabelsCSV(f, path, cols, schema, l)
	case ".jsonl", ".ndjson":
		err = readLabelsJSONL(ctx, f, path, cols, schema, l)
	default:
		err = fmt.Errorf("monitor: labels %s: want a .csv or .jsonl file, not %q", path, ext)
	}
	return err
}

func readLabelsCSV(r io.Reader, path string, cols []column, schema dataset.Schema, l labelSet) error {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("monitor: labels %s: no header row: %w", path, err)
	}
	index := map[string]int{}
	for i, name := range header {
		index[strings.TrimSpace(name)] = i
	}
	want := append(make([]string, 0, len(cols)+1), schema.Label)
	for _, c := range cols {
		want = append(want, c.name)
	}
	for _, name := range want {
		if _, ok := index[name]; !ok {
			return fmt.Errorf("monitor: labels %s: no column %q (the join needs the label and every feature of the model)", path, name)
		}
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("monitor: labels %s: %w", path, err)
		}
		line, _ := cr.FieldPos(0)
		field := func(name string) (string, bool) {
			v := strings.TrimSpace(rec[index[name]])
			return v, !slices.Contains(dataset.DefaultMissing, v)
		}
		label, ok := field(schema.Label)
		if !ok {
			return fmt.Errorf("monitor: labels %s line %d: column %q: missing label", path, line, schema.Label)
		}
		var key strings.Builder
		for _, c := range cols {
			v, present := field(c.name)
			text := ""
			if present && c.numeric {
				x, err := strconv.ParseFloat(v, 64)
				if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
					return fmt.Errorf("monitor: labels %s line %d: column %q: %q is not a number", path, line, c.name, v)
				}
				text = canonicalNumber(x)
			} else if present {
				text = v
			}
			writeKeyPart(&key, text)
		}
		l.add(key.String(), slices.Contains(schema.Positive, label))
	}
}

func readLabelsJSONL(ctx context.Context, r io.Reader, path string, cols []column, schema dataset.Schema, l labelSet) error {
	return eachLine(ctx, r, path, func(line int, b []byte, _ bool) error {
		var rec map[string]any
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("monitor: labels %s line %d: %w", path, line, err)
		}
		if rec == nil {
			return fmt.Errorf("monitor: labels %s line %d: want an object", path, line)
		}
		var label string
		switch x := rec[schema.Label].(type) {
		case string:
			label = x
		case float64:
			label = canonicalNumber(x)
		default:
			return fmt.Errorf("monitor: labels %s line %d: field %q: want the label as a string or number, got %s", path, line, schema.Label, describe(x))
		}
		var key strings.Builder
		for _, c := range cols {
			v, ok := rec[c.name]
			if !ok {
				return fmt.Errorf("monitor: labels %s line %d: no field %q (the join needs every feature of the model)", path, line, c.name)
			}
			text := ""
			switch x := v.(type) {
			case nil:
			case float64:
				if !c.numeric {
					return fmt.Errorf("monitor: labels %s line %d: field %q: want a string or null, got %s", path, line, c.name, describe(v))
				}
				text = canonicalNumber(x)
			case string:
				if c.numeric {
					return fmt.Errorf("monitor: labels %s line %d: field %q: want a number or null, got %s", path, line, c.name, describe(v))
				}
				text = x
			default:
				return fmt.Errorf("monitor: labels %s line %d: field %q: got %s", path, line, c.name, describe(v))
			}
			writeKeyPart(&key, text)
		}
		l.add(key.String(), slices.Contains(schema.Positive, label))
		return nil
	})
}
