package manpage

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// HelpManFlag is the hidden flag every command answers with its man page.
const HelpManFlag = "help-man"

// Page describes one command.
type Page struct {
	Name    string // the command, e.g. "xlvsd"
	Section int    // 1 (user commands) or 8 (administration)
	Summary string // one line: the NAME section's text and --help's first line
	// Synopsis lines, each without the command name, e.g. "-i IFACE [-i IFACE ...] [options]".
	Synopsis []string
	// Description is text (see Text); --help prints its first paragraph.
	Description string
	// Flags are the options, documented in the OPTIONS section and by --help in their
	// usage strings; nil for none. Flags named in Hidden are left out.
	Flags  *flag.FlagSet
	Hidden []string
	// ArgNames name the value of a flag ("i": "IFACE"); a flag without one takes its
	// name from a back-quoted word in its usage string, else from its type.
	ArgNames map[string]string
	// Lists are definition lists rendered before Sections (xlvsadm's COMMANDS and
	// PARAMETERS); --help does not print them.
	Lists []List
	// Sections follow OPTIONS (EXIT STATUS, FILES, SIGNALS, EXAMPLES, ...).
	Sections []Section
	SeeAlso  []string // e.g. "xlvsadm(8)"
}

// Section is a titled block of Text, optionally followed by a definition list.
type Section struct {
	Title string
	Body  string
	Items []Item
}

// List is a titled definition list.
type List struct {
	Title string
	Intro string // Text before the items
	Items []Item
}

// Item is one entry of a definition list: Term is an option-like line ("--weight -w
// weight"); words starting with '-' are set in bold, the others in italics.
type Item struct {
	Term string
	Text string
}

// Text is a small markup shared by both renderings: paragraphs are separated by blank
// lines; a line starting with a tab is literal (an example), kept as is; a line starting
// with "- " starts a bullet item.

// Help writes the --help text: usage lines, the summary, the first paragraph of the
// description, and the options with their usage strings.
func (p *Page) Help(w io.Writer) error {
	var b strings.Builder
	for i, s := range p.Synopsis {
		lead := "Usage: "
		if i > 0 {
			lead = "       "
		}
		fmt.Fprintf(&b, "%s%s %s\n", lead, p.Name, s)
	}
	fmt.Fprintf(&b, "\n%s: %s.\n", p.Name, p.Summary)
	if para := firstParagraph(p.Description); para != "" {
		fmt.Fprintf(&b, "\n%s\n", wrap(para, 88))
	}
	if opts := p.options(); len(opts) > 0 {
		b.WriteString("\nOptions:\n")
		for _, o := range opts {
			fmt.Fprintf(&b, "  %s\n", o.term)
			fmt.Fprintf(&b, "%s\n", indent(wrap(o.text, 80), "        "))
		}
	}
	fmt.Fprintf(&b, "\nThe manual: man %d %s.\n", p.Section, p.Name)
	_, err := io.WriteString(w, b.String())
	return err
}

// option is a documented flag.
type option struct {
	name string
	term string // "--queues N", "-i IFACE", "--copy"
	text string // usage, with the default
}

// FlagItems documents the flags of fs (but HelpManFlag) as a definition list, for a
// command's second flag set (a subcommand's); argNames as Page.ArgNames.
func FlagItems(fs *flag.FlagSet, argNames map[string]string) []Item {
	p := &Page{Flags: fs, ArgNames: argNames}
	var out []Item
	for _, o := range p.options() {
		out = append(out, Item{Term: o.term, Text: o.text})
	}
	return out
}

// options lists the documented flags in alphabetical order, as flag.PrintDefaults does.
func (p *Page) options() []option {
	if p.Flags == nil {
		return nil
	}
	hidden := map[string]bool{HelpManFlag: true}
	for _, h := range p.Hidden {
		hidden[h] = true
	}
	var out []option
	p.Flags.VisitAll(func(f *flag.Flag) {
		if hidden[f.Name] {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		term := dash + f.Name
		if arg := p.argName(f.Name, name); arg != "" {
			term += " " + arg
		}
		if def := f.DefValue; !isZeroDefault(f, def) {
			if isStringFlag(f) {
				def = fmt.Sprintf("%q", def)
			}
			usage += " (default " + def + ")"
		}
		out = append(out, option{name: f.Name, term: term, text: usage})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// argName is the placeholder of a flag's value ("" for a boolean flag).
func (p *Page) argName(flagName, typeName string) string {
	if a, ok := p.ArgNames[flagName]; ok {
		return a
	}
	switch typeName {
	case "":
		return ""
	case "int", "uint", "int64", "uint64":
		return "N"
	case "string", "value":
		return "VALUE"
	case "duration":
		return "DURATION"
	case "float":
		return "X"
	}
	return strings.ToUpper(typeName)
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func isStringFlag(f *flag.Flag) bool {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, isStr := g.Get().(string)
	return isStr
}

// isZeroDefault reports whether the default is the zero value, which is not printed
// (flag.PrintDefaults' rule).
func isZeroDefault(f *flag.Flag, def string) bool {
	if isBoolFlag(f) {
		return def == "false"
	}
	return def == "" || def == "0" || def == "[]"
}

func firstParagraph(text string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if strings.TrimSpace(l) == "" {
			break
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	return strings.Join(lines, " ")
}

// wrap fills words into lines of at most width characters.
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(s) {
		if n > 0 && n+1+len(w) > width {
			b.WriteByte('\n')
			n = 0
		} else if n > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(s, "\n", "\n"+pre)
}
