package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// TestDaemonStartErrors: xlvsd refuses bad start-up conditions with a clear message and
// a non-zero exit, and leaves nothing attached.
func TestDaemonStartErrors(t *testing.T) {
	needRoot(t)
	ns, err := testbed.NewNS("e2e-err")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "x.sock")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing interface", []string{"-i", "nosuch0"}, `interface "nosuch0"`},
		{"bad flag value", []string{"-i", "lo", "--xdp-mode", "sideways"}, "must be native, generic or auto"},
		{"bad ring", []string{"-i", "lo", "--tx-ring", "3"}, "power of two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := ns.Command(ctx, bins.XLVSD, append([]string{"--socket", sock}, tc.args...)...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errorsAs(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("output %q does not say %q", out, tc.want)
			}
		})
	}
}

// TestSecondDaemonRefused: a second xlvsd on the same control socket is refused while the
// first runs.
func TestSecondDaemonRefused(t *testing.T) {
	e := setup(t, testbed.NATOneArm)
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	cmd := e.bed.Director.Command(ctx, bins.XLVSD, "--socket", e.d.Socket, "-i", e.bed.Ext.Iface)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another xlvsd") {
		t.Fatalf("second daemon: %v\n%s", err, out)
	}
	// The first one still answers.
	if _, err := e.d.Adm(e.ctx, "-L", "-n"); err != nil {
		t.Fatal(err)
	}
}
