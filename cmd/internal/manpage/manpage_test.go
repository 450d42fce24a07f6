package manpage

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func testPage() *Page {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.String("socket", "/run/x.sock", "control socket `PATH`")
	fs.Int("queues", 0, "queues per interface")
	fs.Bool("copy", false, "force copy mode")
	fs.String("i", "", "interface")
	fs.Bool(HelpManFlag, false, "print the man page")
	fs.Bool("secret", false, "not documented")
	return &Page{
		Name: "demo", Section: 8, Summary: "a demo command",
		Synopsis:    []string{"-i IFACE [options]"},
		Description: "First paragraph\nof two lines.\n\nSecond one.\n\n\t.literal -x\n\n- a bullet\n  continued",
		Flags:       fs, Hidden: []string{"secret"}, ArgNames: map[string]string{"i": "IFACE"},
		Sections: []Section{{Title: "Files", Items: []Item{{Term: "/etc/demo.conf", Text: "flags"}}}},
		SeeAlso:  []string{"xlvsd(8)"},
	}
}

func TestHelp(t *testing.T) {
	var b bytes.Buffer
	if err := testPage().Help(&b); err != nil {
		t.Fatal(err)
	}
	h := b.String()
	for _, want := range []string{
		"Usage: demo -i IFACE [options]\n",
		"demo: a demo command.\n",
		"First paragraph of two lines.\n",
		"  --socket PATH\n        control socket PATH (default \"/run/x.sock\")\n",
		"  --queues N\n        queues per interface\n",
		"  --copy\n        force copy mode\n",
		"  -i IFACE\n        interface\n",
		"The manual: man 8 demo.",
	} {
		if !strings.Contains(h, want) {
			t.Errorf("help lacks %q:\n%s", want, h)
		}
	}
	for _, not := range []string{"Second one", "secret", HelpManFlag} {
		if strings.Contains(h, not) {
			t.Errorf("help shows %q:\n%s", not, h)
		}
	}
}

func TestMan(t *testing.T) {
	var b bytes.Buffer
	if err := testPage().Man(&b, "v1.2.3", "2026-01-02"); err != nil {
		t.Fatal(err)
	}
	m := b.String()
	for _, want := range []string{
		`.TH DEMO 8 "2026-01-02" "xlvs v1.2.3" "System Administration"`,
		".SH NAME\ndemo \\- a demo command\n",
		".SH SYNOPSIS\n\\fBdemo\\fR \\fB\\-i\\fR \\fIIFACE\\fR [\\fIoptions\\fR]\n",
		"First paragraph of two lines.\n.PP\nSecond one.\n",
		".RS 4\n.nf\n\\&.literal \\-x\n.fi\n.RE\n", // a leading dot is escaped
		".IP \\(bu 2\na bullet continued\n",
		".TP\n\\fB\\-\\-socket\\fR \\fIPATH\\fR\ncontrol socket PATH (default \"/run/x.sock\")\n",
		".TP\n\\fB\\-i\\fR \\fIIFACE\\fR\ninterface\n",
		".SH FILES\n.TP\n\\fI/etc/demo.conf\\fR\nflags\n",
		".SH SEE ALSO\n\\fBxlvsd\\fR(8)\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("page lacks %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "secret") || strings.Contains(m, "help\\-man") {
		t.Errorf("page shows a hidden flag:\n%s", m)
	}
	renders(t, m)
}

// renders checks that man(1) formats the page without a warning.
func renders(t *testing.T, page string) {
	t.Helper()
	if _, err := exec.LookPath("man"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("man not installed (CI installs man-db)")
		}
		t.Skip("man not installed")
	}
	cmd := exec.Command("man", "--warnings", "-l", "-")
	cmd.Stdin = strings.NewReader(page)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("man -l: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "a demo command") {
		t.Fatalf("rendered page:\n%s", out.String())
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		`a\b`:        `a\eb`,
		"--flag":     `\-\-flag`,
		"x,y,z":      `x,\:y,\:z`,
		"a, b":       "a, b",
		".TH":        `\&.TH`,
		"'quote":     `\&'quote`,
		"plain text": "plain text",
	} {
		if got := escapeLine(in); got != want {
			t.Errorf("escapeLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTerm(t *testing.T) {
	for in, want := range map[string]string{
		"--weight -w weight":       `\fB\-\-weight\fR \fB\-w\fR \fIweight\fR`,
		"--tcp-service|-t address": `\fB\-\-tcp\-service\fR|\fB\-t\fR \fIaddress\fR`,
		"-p [timeout]":             `\fB\-p\fR [\fItimeout\fR]`,
		"{master|backup}":          `{\fImaster\fR|\fIbackup\fR}`,
		"[-i IFACE ...]":           `[\fB\-i\fR \fIIFACE\fR ...]`,
	} {
		if got := term(in); got != want {
			t.Errorf("term(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDate(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1767312000")
	if got := Date(); got != "2026-01-02" {
		t.Errorf("Date() = %q", got)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if got := Date(); got != "" {
		t.Errorf("Date() without SOURCE_DATE_EPOCH = %q", got)
	}
}
