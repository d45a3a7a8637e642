package dataset

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

var nan = math.NaN()

func newCSVReader(r io.Reader) *csv.Reader {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<20))
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	// UCI files mark comment lines with '|' (adult.test's "|1x3 Cross validator").
	cr.Comment = '|'
	return cr
}

// csvScan is the first pass's findings: the column names, the row count,
// and per column what settles its kind and storage.
type csvScan struct {
	names []string
	rows  int
	facts []columnFacts
	f64   []bool // a numeric value needs float64
}

// eachRecord calls fn for every data row (fields trimmed, line number),
// after taking the header as the file's own or the options'.
func eachRecord(r io.Reader, file string, o *options, header func([]string) error, fn func(rec []string, line int) error) error {
	cr := newCSVReader(r)
	hasHeader := len(o.names) == 0
	if o.header != nil {
		hasHeader = *o.header
	}
	seenHeader := false
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return &Error{File: file, Row: pe.Line, Msg: pe.Err.Error()}
			}
			return fmt.Errorf("dataset: read %s: %w", file, err)
		}
		line, _ := cr.FieldPos(0)
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		if hasHeader && !seenHeader {
			seenHeader = true
			if err := header(slices.Clone(rec)); err != nil {
				return err
			}
			continue
		}
		if err := fn(rec, line); err != nil {
			return err
		}
	}
	if hasHeader && !seenHeader {
		return &Error{File: file, Msg: "empty file"}
	}
	if !hasHeader {
		return header(o.names)
	}
	return nil
}

// scanCSV is the first pass: names, row count, the first ragged row, and
// for each column whether every present value is a number and fits float32.
func scanCSV(r io.Reader, file string, o *options) (*csvScan, error) {
	sc := &csvScan{}
	raggedLine, raggedFields, firstLine := 0, 0, 0
	var stats []columnFacts
	var notNum []bool
	err := eachRecord(r, file, o, func(names []string) error {
		sc.names = names
		return nil
	}, func(rec []string, line int) error {
		sc.rows++
		if stats == nil {
			firstLine = line
			stats = make([]columnFacts, len(rec))
			notNum = make([]bool, len(rec))
			sc.f64 = make([]bool, len(rec))
		}
		if len(rec) != len(stats) || (sc.names != nil && len(rec) != len(sc.names)) {
			if raggedLine == 0 {
				raggedLine, raggedFields = line, len(rec)
			}
			return nil
		}
		for c, f := range rec {
			if slices.Contains(o.missing, f) {
				continue
			}
			st := &stats[c]
			st.present++
			if notNum[c] {
				continue
			}
			v, ok := parseNumber(f)
			if !ok {
				notNum[c] = true
				st.text, st.textLine = f, line
				continue
			}
			if !sc.f64[c] && !fits32(v, f) {
				sc.f64[c] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	names := sc.names
	if sc.rows == 0 {
		return nil, &Error{File: file, Msg: "no data rows"}
	}
	if len(names) == 0 {
		return nil, &Error{File: file, Msg: "no column names: the file has no header and none were supplied"}
	}
	if err := checkNames(file, names); err != nil {
		return nil, err
	}
	if len(stats) != len(names) {
		return nil, &Error{File: file, Row: firstLine, Msg: fmt.Sprintf("%d fields, want %d", len(stats), len(names))}
	}
	if raggedLine > 0 {
		return nil, &Error{File: file, Row: raggedLine, Msg: fmt.Sprintf("%d fields, want %d", raggedFields, len(names))}
	}
	for c := range stats {
		stats[c].natural = Numeric
		if notNum[c] {
			stats[c].natural = Categorical
		}
	}
	sc.facts = stats
	return sc, nil
}

// readCSV loads CSV from rs (at offset start) in two passes.
func readCSV(rs seekable, start int64, file string, o *options, build bool) (*Frame, error) {
	sc, err := scanCSV(rs, file, o)
	if err != nil {
		return nil, err
	}
	s, err := resolve(file, sc.names, sc.facts, o, build)
	if err != nil {
		return nil, err
	}
	if !build {
		return &Frame{Source: file, Schema: s}, nil
	}
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return nil, fmt.Errorf("dataset: read %s: %w", file, err)
	}
	f32 := make([]bool, len(sc.f64))
	for c, wide := range sc.f64 {
		f32[c] = !wide
	}
	b := newBuilder(file, s, sc.rows, f32, newDigest())
	row := 0
	err = eachRecord(rs, file, o, func([]string) error { return nil }, func(rec []string, line int) error {
		if row >= sc.rows || len(rec) != len(s.Columns) {
			return fmt.Errorf("dataset: %s changed while it was read", file)
		}
		for c, f := range rec {
			if slices.Contains(o.missing, f) {
				f = ""
			}
			b.digestField(f)
			switch b.cols[c].kind {
			case Numeric:
				v := nan
				if f != "" {
					v, _ = parseNumber(f)
				}
				b.number(c, row, v)
			case Categorical, Sensitive:
				if err := b.category(c, row, f); err != nil {
					return err
				}
			case Label:
				if err := b.labelValue(row, line, f); err != nil {
					return err
				}
			}
		}
		b.endRow()
		row++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if row != sc.rows {
		return nil, fmt.Errorf("dataset: %s changed while it was read", file)
	}
	return b.finish()
}
