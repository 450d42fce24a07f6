package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"xlvs/control"
)

// TestHealthCheckFlagError: control's error about bad checker blocks names no flag; xlvsd
// names --health-check in front of it (here through --check-config, in-process).
func TestHealthCheckFlagError(t *testing.T) {
	const bad = "BOGUS_CHECK {\n}"
	libErr := control.CheckRuleChecks(bad)
	if libErr == nil || strings.Contains(libErr.Error(), "--") {
		t.Fatalf("control.CheckRuleChecks(%q) = %v, want an error that names no flag", bad, libErr)
	}
	rules := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rules, []byte("-A -t 198.18.0.1:80 -s rr\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--check-config", "--config", rules, "--health-check", bad}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if err := checkConfig(o, io.Discard, &stderr); !errors.Is(err, errCheckFailed) {
		t.Fatalf("checkConfig = %v, want errCheckFailed", err)
	}
	if want := "--health-check: " + libErr.Error() + "\n"; stderr.String() != want {
		t.Fatalf("stderr %q\nwant   %q", stderr.String(), want)
	}
}
