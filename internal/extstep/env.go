package extstep

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// ReservedPrefix is the namespace of the variables Gauntlet sets. The
// worker's own GAUNTLET_* variables are not passed on, and a step may not
// declare one, so a command never sees a stale or forged contract value.
const ReservedPrefix = "GAUNTLET_"

// deniedWords mark worker variables that are likely credentials. A command
// is the user's code and sees the worker's environment, so anything the
// worker holds for itself (Temporal TLS keys, cloud credentials, an SSH
// agent) is withheld; a step that needs a secret declares it in `env:`.
var deniedWords = []string{"SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH", "PRIVATE", "COOKIE"}

// Denied reports whether the worker variable name is withheld from commands.
func Denied(name string) bool {
	up := strings.ToUpper(name)
	if strings.HasPrefix(up, ReservedPrefix) {
		return true
	}
	for _, w := range deniedWords {
		if strings.Contains(up, w) {
			return true
		}
	}
	return false
}

// attemptPaths are the per-attempt locations handed to the command.
type attemptPaths struct {
	attempt    int
	outputDir  string
	checkpoint string
	inputs     string
}

// buildEnv returns the command's environment: the filtered worker
// environment, then the step's declared env, then the contract variables.
// refs are the pointers of the inputs in.With holds local paths for.
func buildEnv(worker []string, cmd Command, in Input, refs map[string]string, p attemptPaths) ([]string, error) {
	vars := map[string]string{}
	for _, kv := range worker {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || name == "" || Denied(name) {
			continue
		}
		vars[name] = val
	}
	for name, val := range cmd.Env {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			return nil, fmt.Errorf("env: invalid variable name %q", name)
		}
		if strings.ContainsRune(val, 0) {
			return nil, fmt.Errorf("env: %s holds a NUL byte", name)
		}
		if strings.HasPrefix(strings.ToUpper(name), ReservedPrefix) {
			return nil, fmt.Errorf("env: %s is reserved: names starting with %s are set by Gauntlet", name, ReservedPrefix)
		}
		vars[name] = val
	}
	vars["GAUNTLET_RUN_ID"] = in.RunID
	vars["GAUNTLET_PIPELINE"] = in.Pipeline
	vars["GAUNTLET_STEP_ID"] = in.StepID
	vars["GAUNTLET_ATTEMPT"] = strconv.Itoa(p.attempt)
	vars["GAUNTLET_OUTPUT_DIR"] = p.outputDir
	vars["GAUNTLET_CHECKPOINT_DIR"] = p.checkpoint
	vars["GAUNTLET_INPUTS"] = p.inputs

	inputs, err := inputVars(in.With, refs)
	if err != nil {
		return nil, err
	}
	for name, val := range inputs {
		vars[name] = val
	}

	out := make([]string, 0, len(vars))
	for name, val := range vars {
		out = append(out, name+"="+val)
	}
	sort.Strings(out)
	return out, nil
}

// inputVars maps each scalar `with` input to GAUNTLET_INPUT_<KEY>, and
// the pointer of each input materialised from the store to
// GAUNTLET_INPUT_<KEY>_REF. Lists and maps have no faithful single-string
// form; they are only in the GAUNTLET_INPUTS file, as is everything else.
func inputVars(with map[string]any, refs map[string]string) (map[string]string, error) {
	out := map[string]string{}
	from := map[string]string{}
	keys := make([]string, 0, len(with))
	for k := range with {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val, ok := scalar(with[k])
		if !ok {
			continue
		}
		snake := EnvKey(k)
		if snake == "" {
			return nil, fmt.Errorf("with: input %q has no letters or digits to name a variable after", k)
		}
		name := ReservedPrefix + "INPUT_" + snake
		if strings.ContainsRune(val, 0) {
			return nil, fmt.Errorf("with: input %q holds a NUL byte", k)
		}
		if prev, dup := from[name]; dup {
			return nil, fmt.Errorf("with: inputs %q and %q both map to %s", prev, k, name)
		}
		from[name] = k
		out[name] = val
	}
	for _, k := range keys {
		ref, ok := refs[k]
		if !ok {
			continue
		}
		name := ReservedPrefix + "INPUT_" + EnvKey(k) + RefSuffix
		if prev, dup := from[name]; dup {
			return nil, fmt.Errorf("with: input %q and the pointer of input %q both map to %s", prev, k, name)
		}
		from[name] = k
		out[name] = ref
	}
	return out, nil
}

// scalar renders strings, booleans and numbers the way a command parses
// them back: numbers without exponents or trailing zeros.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int32:
		return strconv.FormatInt(int64(x), 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

// EnvKey turns an input key into UPPER_SNAKE: "learningRate", "learning-rate"
// and "learning_rate" all become LEARNING_RATE. Runs of other characters
// collapse to one underscore.
func EnvKey(key string) string {
	var b strings.Builder
	rs := []rune(key)
	pendingSep := false
	for i, r := range rs {
		ok := r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))
		if !ok {
			pendingSep = b.Len() > 0
			continue
		}
		if unicode.IsUpper(r) && i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1])) {
			pendingSep = b.Len() > 0
		}
		if pendingSep {
			b.WriteByte('_')
			pendingSep = false
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// writeInputs stores all `with` inputs as one JSON object for the command.
func writeInputs(path string, with map[string]any) error {
	if with == nil {
		with = map[string]any{}
	}
	data, err := json.MarshalIndent(with, "", "  ")
	if err != nil {
		return fmt.Errorf("encode inputs: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
