package steps

import (
	"fmt"
	"io"
	"strings"
)

// Describe writes what `gauntlet step TYPE --help` shows of t: its doc and
// the inputs and outputs it declares, from the same declarations the
// validator and the pipeline schema read.
func Describe(w io.Writer, t Type) error {
	var b strings.Builder
	kind := "runs as an activity; `gauntlet step " + t.Name + "` runs it here"
	if t.Kind == Workflow {
		kind = "carried out by the pipeline workflow; it runs only inside a pipeline"
	}
	fmt.Fprintf(&b, "%s (%s)\n\n", t.Name, kind)
	wrap(&b, t.Doc, "", 80)
	b.WriteString("\nInputs (with:)")
	if t.Inputs == nil {
		b.WriteString(": any key\n")
	} else {
		b.WriteString(":\n")
		table(&b, t.Inputs, true)
	}
	b.WriteString("\nOutputs")
	switch {
	case t.Outputs == nil:
		b.WriteString(": any key\n")
	case t.outputs != nil:
		b.WriteString(":\n")
		table(&b, t.outputs, false)
	default:
		b.WriteString(":\n")
		fields := make([]InputSpec, len(t.Outputs))
		for i, o := range t.Outputs {
			fields[i] = InputSpec{Name: o}
		}
		table(&b, fields, false)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func table(b *strings.Builder, fields []InputSpec, inputs bool) {
	width := 0
	for _, f := range fields {
		width = max(width, len(f.Name))
	}
	for _, f := range fields {
		mark := ""
		if inputs {
			mark = "          "
			if f.Required {
				mark = "required  "
			}
		}
		lead := fmt.Sprintf("  %-*s  %s", width, f.Name, mark)
		if f.Doc == "" {
			b.WriteString(strings.TrimRight(lead, " ") + "\n")
			continue
		}
		b.WriteString(lead)
		wrap(b, f.Doc, strings.Repeat(" ", len(lead)), 100-len(lead))
	}
}

// wrap writes text in lines of at most width runes, every line but the
// first after indent.
func wrap(b *strings.Builder, text, indent string, width int) {
	width = max(width, 30)
	n := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
		case n+1+len([]rune(word)) > width:
			b.WriteString("\n" + indent)
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len([]rune(word))
	}
	b.WriteByte('\n')
}
