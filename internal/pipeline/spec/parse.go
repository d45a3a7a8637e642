package spec

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl"
)

// Keys accepted at each level of a pipeline file. The schema test checks
// pipelines/schema.json against these tables so the two cannot drift.
var (
	topKeys      = []string{"name", "description", "params", "defaults", "schedule", "max_parallel", "fail_fast", "max_fan_out", "steps", "finally"}
	paramKeys    = []string{"type", "description", "default", "required", "values"}
	defaultsKeys = []string{"retry", "timeout", "heartbeat"}
	retryKeys    = []string{"max_attempts", "initial_interval", "backoff", "max_interval", "non_retryable"}
	scheduleKeys = []string{"cron", "timezone", "overlap", "catchup_window", "params"}
	stepKeys     = []string{"id", "uses", "run", "env", "workdir", "needs", "with", "if", "retry", "timeout", "heartbeat", "runs_on", "continue_on_error", "cache",
		"for_each", "matrix", "max_parallel", "min_success"}
)

// Defaults applied when a file leaves a setting out.
const (
	DefaultMaxParallel   = 10
	DefaultTimezone      = "UTC"
	DefaultCatchupWindow = Duration(60 * 60 * 1e9)
)

// extensionPrefix starts top-level keys the parser ignores, a place for
// YAML anchors shared by several steps (as in docker-compose).
const extensionPrefix = "x-"

// maxNodes bounds the work of expanding YAML aliases, so a small file of
// nested aliases cannot exhaust memory.
const maxNodes = 100000

// Load reads a pipeline file, parses it and validates it against cat (nil
// skips step-type checks). The diagnostics are sorted; the spec is usable
// only when there are none.
func Load(path string, cat Catalog) (*Spec, Diagnostics) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Diagnostics{{Pos: Pos{File: path}, Message: fmt.Sprintf("cannot read pipeline: %v", err)}}
	}
	return ParseAndValidate(path, data, cat)
}

// ParseAndValidate is Load for bytes already in memory.
func ParseAndValidate(file string, data []byte, cat Catalog) (*Spec, Diagnostics) {
	s, diags := Parse(file, data)
	if s != nil {
		diags = append(diags, Validate(s, cat)...)
	}
	return s, diags.Sort()
}

// Parse decodes a pipeline file, reporting unknown keys and values of the
// wrong type, and applies defaults. It does not check references between
// parts of the file; Validate does. The spec is nil when the file is not
// YAML, is empty, or expands to too many nodes.
func Parse(file string, data []byte) (*Spec, Diagnostics) {
	p := &decoder{reporter: reporter{src: newSource(file)}, anchors: map[string]ast.Node{}}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		var se *yaml.SyntaxError
		pos := Pos{File: file}
		msg := err.Error()
		if errors.As(err, &se) {
			msg = se.Message
			if se.Token != nil && se.Token.Position != nil {
				pos.Line, pos.Col = se.Token.Position.Line, se.Token.Position.Column
			}
		}
		return nil, Diagnostics{{Pos: pos, Message: "invalid YAML: " + msg}}
	}
	var body ast.Node
	docs := 0
	for _, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		docs++
		if body == nil {
			body = d.Body
		} else {
			p.node("", d.Body)
			p.at("", "a pipeline file holds one YAML document; found another here")
		}
	}
	if body == nil {
		return nil, Diagnostics{{Pos: Pos{File: file, Line: 1, Col: 1}, Message: "pipeline file is empty"}}
	}
	s := &Spec{Source: p.src, MaxParallel: DefaultMaxParallel, FailFast: true}
	p.spec(body, s)
	if p.tooBig {
		// What was decoded is truncated; checking it would only add noise.
		return nil, p.diags
	}
	applyDefaults(s)
	return s, p.diags
}

// applyDefaults fills what the file left out, and merges the pipeline's
// step defaults into every step.
func applyDefaults(s *Spec) {
	if s.Schedule != nil {
		if s.Schedule.Timezone == "" {
			s.Schedule.Timezone = DefaultTimezone
		}
		if s.Schedule.Overlap == "" {
			s.Schedule.Overlap = OverlapSkip
		}
		if s.Schedule.CatchupWindow == 0 {
			s.Schedule.CatchupWindow = DefaultCatchupWindow
		}
	}
	for _, list := range [][]Step{s.Steps, s.Finally} {
		for i := range list {
			st := &list[i]
			st.Retry = mergeRetry(st.Retry, s.Defaults.Retry)
			if st.Timeout == 0 {
				st.Timeout = s.Defaults.Timeout
			}
			if st.Heartbeat == 0 {
				st.Heartbeat = s.Defaults.Heartbeat
			}
		}
	}
}

func mergeRetry(own, def *Retry) *Retry {
	if def == nil {
		return own
	}
	out := *def
	out.NonRetryable = slices.Clone(def.NonRetryable)
	if own == nil {
		return &out
	}
	if own.MaxAttempts != 0 {
		out.MaxAttempts = own.MaxAttempts
	}
	if own.InitialInterval != 0 {
		out.InitialInterval = own.InitialInterval
	}
	if own.Backoff != 0 {
		out.Backoff = own.Backoff
	}
	if own.MaxInterval != 0 {
		out.MaxInterval = own.MaxInterval
	}
	if own.NonRetryable != nil {
		out.NonRetryable = own.NonRetryable
	}
	return &out
}

// decoder walks the YAML AST, recording positions by path.
type decoder struct {
	reporter
	anchors map[string]ast.Node
	nodes   int
	depth   int
	tooBig  bool
}

// maxDepth bounds nesting, which a self-referencing alias makes endless.
const maxDepth = 64

// enter guards one level of nesting; every call must be paired with leave.
func (p *decoder) enter(path string) bool {
	p.depth++
	if p.depth > maxDepth && !p.tooBig {
		p.tooBig = true
		p.at(path, "value is nested more than %d levels deep (a self-referencing alias?)", maxDepth)
	}
	return !p.tooBig
}

func (p *decoder) leave() { p.depth-- }

// node resolves anchors, aliases and tags to the node holding the value,
// and records its position at path. It returns nil for null and for
// aliases it cannot follow.
func (p *decoder) node(path string, n ast.Node) ast.Node {
	for depth := 0; n != nil && depth < 64; depth++ {
		p.nodes++
		if p.nodes > maxNodes {
			if !p.tooBig {
				p.tooBig = true
				p.at(path, "document is too large after expanding aliases (more than %d nodes)", maxNodes)
			}
			return nil
		}
		if _, seen := p.src.values[path]; !seen {
			p.src.values[path] = p.pos(n)
		}
		switch v := n.(type) {
		case *ast.AnchorNode:
			if name := anchorName(v.Name); name != "" {
				p.anchors[name] = v.Value
			}
			n = v.Value
		case *ast.AliasNode:
			name := anchorName(v.Value)
			target, ok := p.anchors[name]
			if !ok {
				p.at(path, "alias *%s names no anchor defined before it", name)
				return nil
			}
			n = target
		case *ast.TagNode:
			n = v.Value
		case *ast.NullNode:
			return nil
		default:
			return n
		}
	}
	return nil
}

func anchorName(n ast.Node) string {
	if n == nil || n.GetToken() == nil {
		return ""
	}
	return n.GetToken().Value
}

func (p *decoder) pos(n ast.Node) Pos {
	pos := Pos{File: p.src.File}
	if n == nil {
		return pos
	}
	// A block mapping's own token is the first ':'; its first key reads
	// better in messages.
	if m, ok := n.(*ast.MappingNode); ok && !m.IsFlowStyle && len(m.Values) > 0 && m.Values[0] != nil {
		n = m.Values[0].Key
	}
	if mv, ok := n.(*ast.MappingValueNode); ok {
		n = mv.Key
	}
	if t := n.GetToken(); t != nil && t.Position != nil {
		pos.Line, pos.Col = t.Position.Line, t.Position.Column
	}
	return pos
}

// entry is one key of a mapping.
type entry struct {
	key   string
	path  string
	value ast.Node
}

// mapping returns the entries of a mapping node, following merge keys ("<<")
// so explicit keys override merged ones. what names the mapping in messages.
func (p *decoder) mapping(path, what string, n ast.Node) ([]entry, bool) {
	defer p.leave()
	if !p.enter(path) {
		return nil, false
	}
	n = p.node(path, n)
	if n == nil {
		return nil, true
	}
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		p.at(path, "%s must be a mapping, got %s", what, kind(n))
		return nil, false
	}
	var out []entry
	seen := map[string]bool{}
	var merged []entry
	for _, mv := range values {
		if mv == nil {
			continue
		}
		if _, ok := mv.Key.(*ast.MergeKeyNode); ok {
			merged = append(merged, p.merge(path, what, mv.Value)...)
			continue
		}
		key, ok := keyString(mv.Key)
		if !ok {
			p.src.values[path+".?"] = p.pos(mv.Key)
			p.at(path+".?", "keys in %s must be strings, got %s", what, kind(mv.Key))
			continue
		}
		kp := join(path, key)
		if seen[key] {
			p.src.keys[kp+"#dup"] = p.pos(mv.Key)
			p.atKey(kp+"#dup", "duplicate key %q in %s", key, what)
			continue
		}
		seen[key] = true
		p.src.keys[kp] = p.pos(mv.Key)
		out = append(out, entry{key: key, path: kp, value: mv.Value})
	}
	// Merged keys come after and lose to explicit ones, as YAML's merge
	// key specifies.
	for _, e := range merged {
		if !seen[e.key] {
			seen[e.key] = true
			out = append(out, e)
		}
	}
	return out, true
}

func (p *decoder) merge(path, what string, n ast.Node) []entry {
	defer p.leave()
	if !p.enter(path) {
		return nil
	}
	n = p.node(path, n)
	if seq, ok := n.(*ast.SequenceNode); ok {
		var out []entry
		for _, v := range seq.Values {
			out = append(out, p.merge(path, what, v)...)
		}
		return out
	}
	entries, _ := p.mapping(path, "a merged value in "+what, n)
	return entries
}

func keyString(n ast.Node) (string, bool) {
	switch k := n.(type) {
	case *ast.StringNode:
		return k.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.NullNode:
		if t := k.GetToken(); t != nil {
			return t.Value, true
		}
	case *ast.TagNode:
		return keyString(k.Value)
	}
	return "", false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// fields dispatches each key of a mapping to its handler, reporting
// unknown keys with the nearest valid one.
func (p *decoder) fields(path, what string, n ast.Node, keys []string, handle func(e entry)) {
	entries, _ := p.mapping(path, what, n)
	for _, e := range entries {
		if slices.Contains(keys, extensionPrefix) && strings.HasPrefix(e.key, extensionPrefix) {
			// Extension keys hold anchors for the rest of the file; decoding
			// them registers the anchors.
			p.value(e.path, e.value)
			continue
		}
		if !slices.Contains(keys, e.key) {
			p.atKey(e.path, "unknown key %q in %s%s", e.key, what, didYouMean(e.key, keys))
			continue
		}
		handle(e)
	}
}

// kind names a node's type for messages.
func kind(n ast.Node) string {
	switch n.(type) {
	case nil, *ast.NullNode:
		return "null"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.AliasNode, *ast.AnchorNode, *ast.TagNode:
		return "an alias"
	}
	return "an unsupported YAML value"
}

func (p *decoder) str(e entry) string {
	n := p.node(e.path, e.value)
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value
	case *ast.LiteralNode:
		if v.Value != nil {
			return v.Value.Value
		}
		return ""
	}
	p.at(e.path, "%q must be a string, got %s", e.key, kind(n))
	return ""
}

func (p *decoder) boolean(e entry) bool {
	n := p.node(e.path, e.value)
	if b, ok := n.(*ast.BoolNode); ok {
		return b.Value
	}
	p.at(e.path, "%q must be true or false, got %s", e.key, kind(n))
	return false
}

func (p *decoder) integer(e entry) (int, bool) {
	n := p.node(e.path, e.value)
	if i, ok := n.(*ast.IntegerNode); ok {
		switch v := i.Value.(type) {
		case int64:
			if v >= math.MinInt32 && v <= math.MaxInt32 {
				return int(v), true
			}
		case uint64:
			if v <= math.MaxInt32 {
				return int(v), true
			}
		}
		p.at(e.path, "%q is out of range", e.key)
		return 0, false
	}
	p.at(e.path, "%q must be an integer, got %s", e.key, kind(n))
	return 0, false
}

func (p *decoder) number(e entry) float64 {
	n := p.node(e.path, e.value)
	switch v := n.(type) {
	case *ast.IntegerNode, *ast.FloatNode:
		if f, ok := p.scalar(e.path, n).(float64); ok {
			return f
		}
		return 0
	default:
		p.at(e.path, "%q must be a number, got %s", e.key, kind(v))
		return 0
	}
}

func (p *decoder) duration(e entry) Duration {
	n := p.node(e.path, e.value)
	s, ok := n.(*ast.StringNode)
	if !ok {
		p.at(e.path, "%q must be a duration string such as \"30s\" or \"2d\", got %s", e.key, kind(n))
		return 0
	}
	d, err := ParseDuration(s.Value)
	if err != nil {
		p.at(e.path, "%q: %v", e.key, err)
	}
	return d
}

// strings accepts a list of strings, or one string as a list of one.
func (p *decoder) strings(e entry, what string) []string {
	n := p.node(e.path, e.value)
	switch v := n.(type) {
	case nil:
		return nil
	case *ast.StringNode:
		return []string{v.Value}
	case *ast.SequenceNode:
		out := []string{}
		for i, item := range v.Values {
			ip := index(e.path, i)
			it := p.node(ip, item)
			s, ok := it.(*ast.StringNode)
			if !ok {
				p.at(ip, "%q must be a list of %s, got %s in it", e.key, what, kind(it))
				continue
			}
			out = append(out, s.Value)
		}
		return out
	}
	p.at(e.path, "%q must be a list of %s, got %s", e.key, what, kind(n))
	return nil
}

// value converts arbitrary YAML to JSON-compatible Go values: maps with
// string keys, []any, string, float64, bool and nil.
func (p *decoder) value(path string, n ast.Node) any {
	defer p.leave()
	if !p.enter(path) {
		return nil
	}
	n = p.node(path, n)
	switch v := n.(type) {
	case nil:
		return nil
	case *ast.MappingNode, *ast.MappingValueNode:
		entries, _ := p.mapping(path, "this mapping", n)
		out := make(map[string]any, len(entries))
		for _, e := range entries {
			out[e.key] = p.value(e.path, e.value)
		}
		return out
	case *ast.SequenceNode:
		out := make([]any, 0, len(v.Values))
		for i, item := range v.Values {
			out = append(out, p.value(index(path, i), item))
		}
		return out
	}
	return p.scalar(path, n)
}

func (p *decoder) scalar(path string, n ast.Node) any {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value
	case *ast.LiteralNode:
		if v.Value != nil {
			return v.Value.Value
		}
		return ""
	case *ast.BoolNode:
		return v.Value
	case *ast.IntegerNode:
		switch i := v.Value.(type) {
		case int64:
			return float64(i)
		case uint64:
			return float64(i)
		}
	case *ast.FloatNode:
		if !math.IsInf(v.Value, 0) && !math.IsNaN(v.Value) {
			return v.Value
		}
	}
	p.at(path, "%s cannot be represented in JSON", kind(n))
	return nil
}

func (p *decoder) spec(n ast.Node, s *Spec) {
	var stepsNode, finallyNode *entry
	p.fields("", "the pipeline", n, append(slices.Clone(topKeys), extensionPrefix), func(e entry) {
		switch e.key {
		case "name":
			s.Name = p.str(e)
		case "description":
			s.Description = p.str(e)
		case "params":
			s.Params = p.params(e)
		case "defaults":
			p.fields(e.path, "defaults", e.value, defaultsKeys, func(d entry) {
				switch d.key {
				case "retry":
					s.Defaults.Retry = p.retry(d, "defaults")
				case "timeout":
					s.Defaults.Timeout = p.duration(d)
				case "heartbeat":
					s.Defaults.Heartbeat = p.duration(d)
				}
			})
		case "schedule":
			s.Schedule = p.schedule(e)
		case "max_parallel":
			if n, ok := p.integer(e); ok {
				s.MaxParallel = n
			}
		case "fail_fast":
			s.FailFast = p.boolean(e)
		case "max_fan_out":
			if n, ok := p.integer(e); ok {
				if n < 1 || n > MaxFanOutLimit {
					p.at(e.path, "%q must be from 1 to %d, got %d", e.key, MaxFanOutLimit, n)
				}
				s.MaxFanOut = n
			}
		case "steps":
			stepsNode = &e
		case "finally":
			finallyNode = &e
		}
	})
	if stepsNode != nil {
		s.Steps = p.steps(*stepsNode)
	}
	if finallyNode != nil {
		s.Finally = p.steps(*finallyNode)
	}
}

func (p *decoder) params(e entry) []Param {
	entries, _ := p.mapping(e.path, "params", e.value)
	out := make([]Param, 0, len(entries))
	for _, pe := range entries {
		prm := Param{Name: pe.key}
		what := fmt.Sprintf("param %q", pe.key)
		p.fields(pe.path, what, pe.value, paramKeys, func(f entry) {
			switch f.key {
			case "type":
				prm.Type = p.str(f)
			case "description":
				prm.Description = p.str(f)
			case "default":
				prm.Default = p.value(f.path, f.value)
			case "required":
				prm.Required = p.boolean(f)
			case "values":
				prm.Values = p.strings(f, "strings")
			}
		})
		out = append(out, prm)
	}
	slices.SortStableFunc(out, func(a, b Param) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (p *decoder) retry(e entry, owner string) *Retry {
	r := &Retry{}
	p.fields(e.path, "retry of "+owner, e.value, retryKeys, func(f entry) {
		switch f.key {
		case "max_attempts":
			r.MaxAttempts, _ = p.integer(f)
		case "initial_interval":
			r.InitialInterval = p.duration(f)
		case "backoff":
			r.Backoff = p.number(f)
		case "max_interval":
			r.MaxInterval = p.duration(f)
		case "non_retryable":
			r.NonRetryable = p.strings(f, "error type names")
		}
	})
	return r
}

func (p *decoder) schedule(e entry) *Schedule {
	sc := &Schedule{}
	p.fields(e.path, "schedule", e.value, scheduleKeys, func(f entry) {
		switch f.key {
		case "cron":
			sc.Cron = p.str(f)
		case "timezone":
			sc.Timezone = p.str(f)
		case "overlap":
			sc.Overlap = p.str(f)
		case "catchup_window":
			sc.CatchupWindow = p.duration(f)
		case "params":
			if m, ok := p.value(f.path, f.value).(map[string]any); ok {
				sc.Params = m
			} else if p.node(f.path, f.value) != nil {
				p.at(f.path, "%q must be a mapping of param names to values", f.key)
			}
		}
	})
	return sc
}

func (p *decoder) steps(e entry) []Step {
	n := p.node(e.path, e.value)
	if n == nil {
		return nil
	}
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		p.at(e.path, "%q must be a list of steps, got %s", e.key, kind(n))
		return nil
	}
	out := make([]Step, 0, len(seq.Values))
	for i, item := range seq.Values {
		out = append(out, p.step(index(e.path, i), item))
	}
	return out
}

func (p *decoder) step(path string, n ast.Node) Step {
	var st Step
	what := "step " + path
	// Name the step by its id in messages when it has one.
	if entries, _ := p.mapping(path, what, n); len(entries) > 0 {
		for _, e := range entries {
			if e.key == "id" {
				if s, ok := p.node(e.path, e.value).(*ast.StringNode); ok && s.Value != "" {
					what = fmt.Sprintf("step %q", s.Value)
				}
			}
		}
	}
	var cmd Command
	var hasRun, hasCmdOpts bool
	p.fields(path, what, n, stepKeys, func(e entry) {
		switch e.key {
		case "id":
			st.ID = p.str(e)
		case "uses":
			st.Uses = p.str(e)
		case "run":
			hasRun = true
			switch v := p.node(e.path, e.value).(type) {
			case *ast.SequenceNode:
				cmd.Argv = p.strings(e, "arguments")
				if len(cmd.Argv) == 0 {
					p.at(e.path, "%q as a list must hold at least the program name", e.key)
				}
			case *ast.StringNode, *ast.LiteralNode:
				cmd.Shell = p.str(e)
				if strings.TrimSpace(cmd.Shell) == "" {
					p.at(e.path, "%q must not be empty", e.key)
				}
			default:
				p.at(e.path, "%q must be a shell command string or a list of arguments, got %s", e.key, kind(v))
			}
		case "env":
			hasCmdOpts = true
			cmd.Env = p.env(e)
		case "workdir":
			hasCmdOpts = true
			cmd.Workdir = p.str(e)
		case "needs":
			st.Needs = p.strings(e, "step ids")
		case "with":
			if p.node(e.path, e.value) == nil {
				return
			}
			if m, ok := p.value(e.path, e.value).(map[string]any); ok {
				st.With = m
			} else {
				p.at(e.path, "%q must be a mapping of inputs, got %s", e.key, kind(p.node(e.path, e.value)))
			}
		case "if":
			switch v := p.node(e.path, e.value).(type) {
			case *ast.BoolNode:
				// A literal bool is a valid, if constant, condition.
				st.If = strconv.FormatBool(v.Value)
			default:
				st.If = p.str(e)
			}
		case "retry":
			st.Retry = p.retry(e, what)
		case "timeout":
			st.Timeout = p.duration(e)
		case "heartbeat":
			st.Heartbeat = p.duration(e)
		case "runs_on":
			st.RunsOn = p.str(e)
		case "continue_on_error":
			st.ContinueOnError = p.boolean(e)
		case "cache":
			st.Cache = p.boolean(e)
		case "for_each":
			if p.node(e.path, e.value) == nil {
				p.at(e.path, "%q must be a list, or one ${{ }} template that gives a list; got null", e.key)
				return
			}
			st.ForEach = p.value(e.path, e.value)
		case "matrix":
			st.Matrix = p.matrix(e)
		case "max_parallel":
			if n, ok := p.integer(e); ok {
				if n < 1 {
					p.at(e.path, "%q must be at least 1, got %d", e.key, n)
				}
				st.MaxParallel = n
			}
		case "min_success":
			st.MinSuccess = p.number(e)
			if st.MinSuccess <= 0 {
				p.at(e.path, "%q must be more than 0: a share of the items below 1 (0.9) or a count from 1 (9)", e.key)
			}
		}
	})
	if hasRun {
		st.Run = &cmd
	} else if hasCmdOpts {
		p.at(path, "%s sets env or workdir without run; they apply only to run commands", what)
	}
	return st
}

// matrix reads the named lists of a matrix, in the file's order.
func (p *decoder) matrix(e entry) []Axis {
	entries, ok := p.mapping(e.path, "matrix", e.value)
	if ok && len(entries) == 0 {
		p.at(e.path, "%q needs at least one named list", e.key)
	}
	out := make([]Axis, 0, len(entries))
	for _, a := range entries {
		out = append(out, Axis{Name: a.key, Values: p.value(a.path, a.value)})
	}
	return out
}

func (p *decoder) env(e entry) map[string]string {
	entries, _ := p.mapping(e.path, "env", e.value)
	if len(entries) == 0 {
		return nil
	}
	out := make(map[string]string, len(entries))
	for _, v := range entries {
		switch x := p.value(v.path, v.value).(type) {
		case string:
			out[v.key] = x
		case float64, bool:
			// Environment values are text; YAML's `PORT: 8080` means "8080".
			out[v.key], _ = tmpl.Text(x)
		default:
			p.at(v.path, "env %q must be a string, got %s", v.key, kind(p.node(v.path, v.value)))
		}
	}
	return out
}
