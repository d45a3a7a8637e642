package extstep

import (
	"strconv"
	"strings"
)

// Directive prefixes a command prints on stdout or stderr.
const (
	progressPrefix   = "::progress"
	outputPrefix     = "::output"
	checkpointPrefix = "::checkpoint"
)

// maxCheckpointLabel bounds the text of a ::checkpoint line kept as the
// checkpoint's label.
const maxCheckpointLabel = 200

// parseDirective recognises `::progress k=v ...`, `::output k=v ...` and
// `::checkpoint [text]`. It returns which one (or "" for an ordinary line)
// and its pairs. Values may be double-quoted with Go/JSON escapes to hold
// spaces; a token without '=' carries no pair and is skipped, so a
// malformed line never fails a run.
func parseDirective(line string) (kind string, pairs map[string]string) {
	kind, rest := directiveOf(line)
	if kind == "" {
		return "", nil
	}
	return kind, parsePairs(rest)
}

// directiveOf returns the directive a line holds and the text after it.
func directiveOf(line string) (kind, rest string) {
	line = strings.TrimRight(line, "\r")
	for _, d := range []struct{ prefix, kind string }{
		{progressPrefix, "progress"}, {outputPrefix, "output"}, {checkpointPrefix, "checkpoint"},
	} {
		if rest, ok := cutDirective(line, d.prefix); ok {
			return d.kind, rest
		}
	}
	return "", ""
}

// checkpointLabel is the text of a ::checkpoint line, which labels the
// checkpoint in the store.
func checkpointLabel(rest string) string {
	label := strings.TrimSpace(rest)
	if len(label) > maxCheckpointLabel {
		label = strings.ToValidUTF8(label[:maxCheckpointLabel], "") + "…"
	}
	return label
}

// cutDirective matches prefix as a whole word at the start of line.
func cutDirective(line, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(line, prefix)
	if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
		return "", false
	}
	return rest, true
}

func parsePairs(s string) map[string]string {
	pairs := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return pairs
		}
		end := strings.IndexAny(s, " \t=")
		if end < 0 || s[end] != '=' {
			// A bare word: skip it.
			if end < 0 {
				return pairs
			}
			s = s[end:]
			continue
		}
		key := s[:end]
		s = s[end+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				// Unterminated quote: take the rest verbatim.
				val, s = s, ""
			} else {
				val, _ = strconv.Unquote(q)
				s = s[len(q):]
			}
		} else {
			stop := strings.IndexAny(s, " \t")
			if stop < 0 {
				stop = len(s)
			}
			val, s = s[:stop], s[stop:]
		}
		if key != "" {
			pairs[key] = val
		}
	}
}
