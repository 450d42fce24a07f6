package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"xlvs/control/ipvsadm"
)

// TestManual: the man page documents every option -h lists, in ipvsadm(8)'s sections,
// and says more only about options -h has.
func TestManual(t *testing.T) {
	u, err := parseUsage()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	n := 0
	for _, s := range u.order {
		for _, e := range u.sections[s] {
			keys[e.key] = true
			n++
		}
	}
	if n < 60 || len(u.synopsis) < 10 || len(u.sections["Commands"]) < 20 {
		t.Fatalf("parsed %d entries, %d synopsis lines, %d commands", n, len(u.synopsis), len(u.sections["Commands"]))
	}
	for k := range elaboration {
		if !keys[k] {
			t.Errorf("elaboration of %s, which -h does not list", k)
		}
	}

	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help-man"}, nil, &out, &errb, "/nonexistent"); code != exitOK {
		t.Fatalf("--help-man: status %d: %s", code, errb.String())
	}
	page := out.String()
	for _, s := range []string{".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH COMMANDS", ".SH PARAMETERS", ".SH EXIT STATUS", ".SH SEE ALSO"} {
		if !strings.Contains(page, s+"\n") {
			t.Errorf("page lacks %s", s)
		}
	}
	// Every option word of -h ("--weight", "-w") is on the page.
	var help strings.Builder
	if err := ipvsadm.Usage(&help, ipvsadm.Program); err != nil {
		t.Fatal(err)
	}
	opts := regexp.MustCompile(`(?:^|[ |])(--?[A-Za-z0-9][A-Za-z0-9-]*)`).FindAllStringSubmatch(help.String(), -1)
	if len(opts) < 100 {
		t.Fatalf("only %d option words in -h", len(opts))
	}
	for _, m := range opts {
		if esc := strings.ReplaceAll(m[1], "-", `\-`); !strings.Contains(page, `\fB`+esc+`\fR`) {
			t.Errorf("the man page does not show %s", m[1])
		}
	}
}
