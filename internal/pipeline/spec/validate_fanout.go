package spec

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl"
)

// axisPattern keeps a matrix axis readable as ${{ item.NAME }}.
var axisPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// fanOut checks for_each, matrix, max_parallel and min_success.
func (v *validator) fanOut(path, name string, r stepRef, up map[string]bool, st *Step) {
	hasFor, hasMatrix := st.ForEach != nil, len(st.Matrix) > 0
	if !hasFor && !hasMatrix {
		if st.MaxParallel != 0 {
			v.atKey(path+".max_parallel", "%s sets max_parallel, which bounds the items of a fan-out, but has no for_each or matrix; the pipeline's max_parallel bounds steps", name)
		}
		if st.MinSuccess != 0 {
			v.atKey(path+".min_success", "%s sets min_success but has no for_each or matrix, so it has no items", name)
		}
		return
	}
	key := path + ".for_each"
	if !hasFor {
		key = path + ".matrix"
	}
	if hasFor && hasMatrix {
		v.atKey(path+".matrix", "%s has both for_each and matrix; give one (a matrix of one list is a for_each)", name)
	}
	switch {
	case st.Uses == ProvisionType:
		v.atKey(key, "%s uses %s, which cannot fan out: a node is one per step", name, ProvisionType)
	case st.Uses != "" && v.cat != nil:
		if t, ok := v.cat.Lookup(st.Uses); ok && t.Workflow {
			v.atKey(key, "%s uses %q, which runs in workflow code and cannot fan out", name, st.Uses)
		}
	}
	if st.MaxParallel < 0 {
		v.at(path+".max_parallel", "%s: max_parallel must be at least 1, got %d", name, st.MaxParallel)
	}
	bound := v.s.FanOutBound()
	n := -1
	if hasFor {
		n = v.listSource(path+".for_each", name, "for_each", r, up, st.ForEach)
		if n > bound {
			v.at(path+".for_each", "%s: for_each lists %d items, more than max_fan_out (%d)", name, n, bound)
		}
	}
	if hasMatrix {
		n = v.matrix(path+".matrix", name, r, up, st.Matrix, bound)
	}
	v.minSuccess(path+".min_success", name, st.MinSuccess, n)
}

// matrix checks each axis and the size of their product when every axis is
// a literal list; it returns the product, or -1 when a template decides it.
func (v *validator) matrix(path, name string, r stepRef, up map[string]bool, axes []Axis, bound int) int {
	n := 1
	sizes := make([]string, 0, len(axes))
	for i, a := range axes {
		ap := join(path, a.Name)
		if !axisPattern.MatchString(a.Name) {
			v.atKey(ap, "%s: matrix axis %q must be a name readable as ${{ item.NAME }}: a letter or underscore, then letters, digits or underscores", name, a.Name)
		}
		if slices.IndexFunc(axes, func(b Axis) bool { return b.Name == a.Name }) < i {
			v.atKey(ap, "%s: matrix axis %q is given twice", name, a.Name)
		}
		k := v.listSource(ap, name, fmt.Sprintf("matrix axis %q", a.Name), r, up, a.Values)
		sizes = append(sizes, fmt.Sprint(k))
		if k < 0 || n < 0 {
			n = -1
			continue
		}
		n = int(math.Min(float64(n)*float64(k), math.MaxInt32))
	}
	if n > bound {
		v.at(path, "%s: matrix has %s = %d items, more than max_fan_out (%d)", name, strings.Join(sizes, " × "), n, bound)
	}
	return n
}

// listSource checks a for_each value or matrix axis: a literal list, or one
// template. It returns the list's length, or -1 when a template decides it.
func (v *validator) listSource(path, name, what string, r stepRef, up map[string]bool, val any) int {
	if l, ok := List(val); ok {
		for i, e := range l {
			v.noItem(index(path, i), name, r, up, e)
		}
		return len(l)
	}
	s, isText := val.(string)
	if !isText {
		v.at(path, "%s: %s must be a list, or one ${{ }} template that gives a list; got %s", name, what, describeValue(val))
		return -1
	}
	src, ok := tmpl.Whole(s)
	if !ok {
		if _, err := tmpl.Split(s); err != nil {
			v.at(path, "%s: %s: invalid template: %v", name, what, err)
		} else if tmpl.HasTemplate(s) {
			v.at(path, "%s: %s must be exactly one ${{ }} template that gives a list, with no text around it", name, what)
		} else {
			v.at(path, "%s: %s must be a list, or one ${{ }} template that gives a list; got the string %q", name, what, s)
		}
		return -1
	}
	v.fanSource = true
	v.expr(path, name, r, up, src)
	v.fanSource = false
	// A param is typed: one that cannot hold a list is wrong before any run.
	if refs, err := tmpl.Analyze(src); err == nil && len(refs) == 1 && refs[0].Root == tmpl.RootParams &&
		len(refs[0].Path) == 1 && strings.TrimSpace(src) == refs[0].String() {
		if p, ok := v.s.Param(refs[0].Path[0]); ok && p.Type != TypeList {
			v.at(path, "%s: %s reads params.%s, a %s param, which is not a list; declare it type: list", name, what, p.Name, p.Type)
		}
	}
	return -1
}

// noItem checks the templates inside a literal for_each or matrix list,
// which are resolved before there is an item.
func (v *validator) noItem(path, name string, r stepRef, up map[string]bool, val any) {
	v.fanSource = true
	v.values(path, name, r, up, val)
	v.fanSource = false
}

func (v *validator) minSuccess(path, name string, m float64, items int) {
	switch {
	case m == 0:
	case m < 0 || math.IsNaN(m):
		v.at(path, "%s: min_success must be more than 0, got %g", name, m)
	case m >= 1 && m != math.Trunc(m):
		v.at(path, "%s: min_success %g is neither a share below 1 (0.9) nor a whole count (9)", name, m)
	case m >= 1 && items >= 0 && int(m) > items:
		v.at(path, "%s: min_success %d is more than the %d items it fans out to", name, int(m), items)
	}
}

// itemRef returns what is wrong with a reference to the current item.
func (v *validator) itemRef(st *Step, ref tmpl.Ref) string {
	switch {
	case v.fanSource:
		return "but for_each and matrix are resolved before there is an item"
	case !st.FansOut():
		return "but the step has no for_each or matrix, so there is no item"
	case len(st.Matrix) > 0 && st.ForEach == nil && len(ref.Path) > 0:
		names := make([]string, len(st.Matrix))
		for i, a := range st.Matrix {
			names[i] = a.Name
		}
		if !slices.Contains(names, ref.Path[0]) {
			return fmt.Sprintf("but its matrix has no axis %q (it has %s)%s", ref.Path[0], strings.Join(names, ", "), didYouMean(ref.Path[0], names))
		}
	}
	return ""
}
