package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that reads and writes as a string: Go's
// syntax ("90s", "1h30m") plus a leading whole number of days ("2d",
// "1d12h").
type Duration time.Duration

const day = 24 * time.Hour

// ParseDuration parses a non-negative duration in the pipeline syntax.
func ParseDuration(s string) (Duration, error) {
	rest := strings.TrimSpace(s)
	var total time.Duration
	if i := strings.IndexByte(rest, 'd'); i > 0 && isDigits(rest[:i]) {
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil || n > int64(maxDays) {
			return 0, fmt.Errorf("invalid duration %q: too many days", s)
		}
		total = time.Duration(n) * day
		rest = rest[i+1:]
		if rest == "" {
			return Duration(total), nil
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a number and unit such as 30s, 5m, 48h or 2d", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	if total > 0 && d > time.Duration(1<<63-1)-total {
		return 0, fmt.Errorf("invalid duration %q: too long", s)
	}
	return Duration(total + d), nil
}

const maxDays = (1<<63 - 1) / int64(day)

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// String writes the shortest form ParseDuration reads back: "2d", "1h30m",
// "1d6h", "250ms".
func (d Duration) String() string {
	t := time.Duration(d)
	if t == 0 {
		return "0s"
	}
	if t < 0 {
		return t.String()
	}
	var b strings.Builder
	if days := t / day; days > 0 {
		b.WriteString(strconv.FormatInt(int64(days), 10) + "d")
		t -= days * day
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}} {
		if n := t / u.unit; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10) + u.name)
			t -= n * u.unit
		}
	}
	if t > 0 {
		// time.Duration prints the sub-minute remainder exactly (e.g. "1.5s",
		// "250ms").
		b.WriteString(t.String())
	}
	return b.String()
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"30s\": %w", err)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}
