package spec

import (
	"fmt"
	"strconv"
	"strings"
)

// cronMacros are the shorthands Temporal schedules accept.
var cronMacros = []string{"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}

type cronField struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	// 7 is Sunday as well as 0, as in most cron implementations.
	{name: "day of week", min: 0, max: 7, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}

// checkCron validates a standard 5-field cron expression or a macro.
func checkCron(expr string) error {
	e := strings.TrimSpace(expr)
	if strings.HasPrefix(e, "@") {
		for _, m := range cronMacros {
			if e == m {
				return nil
			}
		}
		return fmt.Errorf("unknown cron macro %q (want one of %s)", e, strings.Join(cronMacros, ", "))
	}
	parts := strings.Fields(e)
	if len(parts) != len(cronFields) {
		return fmt.Errorf("cron expression %q has %d fields, want 5 (minute hour day-of-month month day-of-week)", expr, len(parts))
	}
	for i, part := range parts {
		if err := cronFields[i].check(part); err != nil {
			return fmt.Errorf("cron expression %q: %w", expr, err)
		}
	}
	return nil
}

func (f cronField) check(field string) error {
	for _, item := range strings.Split(field, ",") {
		rng, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 || n > f.max {
				return fmt.Errorf("%s: bad step %q", f.name, step)
			}
		}
		if rng == "*" || (rng == "?" && (f.name == "day of month" || f.name == "day of week")) {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := f.value(lo)
		if err != nil {
			return err
		}
		if !isRange {
			continue
		}
		b, err := f.value(hi)
		if err != nil {
			return err
		}
		if a > b {
			return fmt.Errorf("%s: range %q runs backwards", f.name, rng)
		}
	}
	return nil
}

func (f cronField) value(s string) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < f.min || n > f.max {
		return 0, fmt.Errorf("%s: %q is not a value from %d to %d", f.name, s, f.min, f.max)
	}
	return n, nil
}
