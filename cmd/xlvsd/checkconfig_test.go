package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// xlvsd builds the daemon once, into a directory every user may read (for the
// unprivileged run).
func xlvsd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "xlvsd-bin"); buildErr != nil {
			return
		}
		if buildErr = os.Chmod(buildDir, 0o755); buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(buildDir, "xlvsd"), ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "xlvsd")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// runArgv runs argv (the binary first) with a time bound.
func runArgv(t *testing.T, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %q: %v", argv, err)
	}
	return result{code, out.String(), errb.String()}
}

// writeConf writes text to a file every user may read.
func writeConf(t *testing.T, name, text string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const checkKeepalivedConf = `global_defs {
    router_id TEST
}
virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_algo wrr
    lb_kind NAT
    persistence_timeout 0
    real_server 198.18.1.1 8080 {
        weight 3
        wieght 4
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 198.18.1.2 8080 {
        weight 2
        TCP_CHECK {
            alpha
        }
    }
}
virtual_server 198.18.0.11 53 {
    protocol UDP
    lb_algo sh
    lb_kind DR
    persistence_timeout 600
    real_server 198.18.1.3 53 {
    }
}
`

// The rules xlvsd starts with for checkKeepalivedConf, in ipvsadm -S -n's form: the alpha
// server waits for its first check; persistence_timeout 0 is not persistent.
const checkKeepalivedRules = `-A -t 198.18.0.10:80 -s wrr
-a -t 198.18.0.10:80 -r 198.18.1.1:8080 -m -w 3
-A -u 198.18.0.11:53 -s sh -p 600
-a -u 198.18.0.11:53 -r 198.18.1.3:53 -g -w 1
`

// TestCheckConfig runs the built binary with --check-config: no interface, no socket, no
// root; warnings and errors with file:line on stderr, the rules on stdout, exit status 0
// when xlvsd would start and 1 when not.
func TestCheckConfig(t *testing.T) {
	bin := xlvsd(t)
	warnLine := regexp.MustCompile(`^(.+):(\d+): warning: `)

	t.Run("keepalived with warnings", func(t *testing.T) {
		path := writeConf(t, "keepalived.conf", checkKeepalivedConf)
		r := runArgv(t, bin, "--check-config", "--keepalived-conf", path)
		if r.code != 0 || r.stdout != checkKeepalivedRules {
			t.Fatalf("exit %d, stdout\n%s\nwant 0 and\n%s\nstderr:\n%s", r.code, r.stdout, checkKeepalivedRules, r.stderr)
		}
		for _, want := range []string{
			path + ":1: warning: global_defs block ignored",
			path + ":8: warning: persistence_timeout 0: the service is not persistent",
			path + ":11: warning: real_server 198.18.1.1 8080: unknown keyword \"wieght\" ignored: did you mean \"weight\"?",
		} {
			if !strings.Contains(r.stderr, want+"") {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			if !warnLine.MatchString(l) {
				t.Errorf("stderr line without file:line: warning: %q", l)
			}
		}
	})

	t.Run("keepalived lvs_sync_daemon", func(t *testing.T) {
		conf := strings.Replace(checkKeepalivedConf, "    router_id TEST\n", "    router_id TEST\n    lvs_sync_daemon eth1 inst VI_1 maxlen 1400\n", 1) +
			"vrrp_instance VI_1 {\n    virtual_router_id 51\n}\n"
		path := writeConf(t, "keepalived.conf", conf)
		r := runArgv(t, bin, "--check-config", "--keepalived-conf", path)
		want := path + ":3: warning: lvs_sync_daemon: xlvsd starts the backup sync daemon (mcast=eth1, syncid=51); both roles run, but without vrrp_notify_fifo (or notify_fifo) in global_defs xlvsd cannot follow vrrp_instance VI_1's transitions\n"
		if r.code != 0 || r.stdout != checkKeepalivedRules || !strings.Contains(r.stderr, want) {
			t.Fatalf("exit %d, stdout\n%s\nstderr\n%s\nwant 0, the rules and %q", r.code, r.stdout, r.stderr, want)
		}
		bad := writeConf(t, "keepalived.conf", strings.Replace(conf, "maxlen 1400", "maxlen 0", 1))
		r = runArgv(t, bin, "--check-config", "--keepalived-conf", bad)
		if want := bad + ":3: Invalid lvs_sync_daemon maxlen (0): expected 1..65507"; r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Fatalf("exit %d, stderr\n%s\nwant 1 and %q", r.code, r.stderr, want)
		}
	})

	t.Run("keepalived syntax error", func(t *testing.T) {
		path := writeConf(t, "keepalived.conf", strings.Replace(checkKeepalivedConf, "lb_algo wrr", "lb_algo fastest", 1))
		r := runArgv(t, bin, "--check-config", "--keepalived-conf", path)
		if r.code != 1 || r.stdout != "" {
			t.Fatalf("exit %d, stdout %q: want 1 and nothing", r.code, r.stdout)
		}
		for _, want := range []string{
			path + ":6: lb_algo: unknown scheduler \"fastest\"",
			path + ":11: warning: real_server 198.18.1.1 8080: unknown keyword \"wieght\"", // warnings too
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
	})

	t.Run("keepalived the daemon refuses", func(t *testing.T) {
		path := writeConf(t, "keepalived.conf", checkKeepalivedConf+`local_address_group g {
    198.18.2.50
}
virtual_server 198.18.0.12 9 {
    protocol UDP
    lb_kind DR
    ops
    laddr_group_name g
    real_server 198.18.1.4 9 {
        lvs_method FNAT
    }
}
`)
		r := runArgv(t, bin, "--check-config", "--keepalived-conf", path)
		if want := path + ":39: real_server 198.18.1.4:9 of virtual_server UDP 198.18.0.12:9: "; r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, want) {
			t.Fatalf("exit %d, stdout %q, stderr\n%s\nwant 1, nothing, and %q", r.code, r.stdout, r.stderr, want)
		}
	})

	t.Run("rules file", func(t *testing.T) {
		path := writeConf(t, "rules", "# saved\n-A -t 198.18.0.10:80 -s rr\n-a -t 198.18.0.10:80 -r 198.18.1.1:80 -g -w 2\n")
		r := runArgv(t, bin, "--check-config", "--config", path)
		want := "-A -t 198.18.0.10:80 -s rr\n-a -t 198.18.0.10:80 -r 198.18.1.1:80 -g -w 2\n"
		if r.code != 0 || r.stdout != want || r.stderr != "" {
			t.Fatalf("exit %d, stdout\n%s\nstderr %q; want 0 and\n%s", r.code, r.stdout, r.stderr, want)
		}
	})

	t.Run("rules file with a bad line", func(t *testing.T) {
		path := writeConf(t, "rules", "-A -t 198.18.0.10:80 -s rr\n-a -t 198.18.0.10:80 -r 198.18.1.1:80 -g -w 2\n-a -t 198.18.0.99:80 -r 198.18.1.1:80\n")
		r := runArgv(t, bin, "--check-config", "--config", path)
		if want := path + ":3: "; r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, want) {
			t.Fatalf("exit %d, stdout %q, stderr\n%s\nwant 1, nothing, and %q", r.code, r.stdout, r.stderr, want)
		}
	})

	t.Run("nothing to check", func(t *testing.T) {
		r := runArgv(t, bin, "--check-config")
		if r.code != 1 || !strings.Contains(r.stderr, "give --keepalived-conf FILE or --config FILE") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// TestCheckConfigRealWorldShapes: the configurations written in the shape of public ones
// (control/keepalived/testdata/realworld) pass the check with warnings only.
func TestCheckConfigRealWorldShapes(t *testing.T) {
	bin := xlvsd(t)
	files, err := filepath.Glob("../../control/keepalived/testdata/realworld/*.conf")
	if err != nil || len(files) < 5 {
		t.Fatalf("real-world-shaped files: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := runArgv(t, bin, "--check-config", "--keepalived-conf", f)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "-A ") {
				t.Fatalf("exit %d, stdout\n%s\nstderr\n%s", r.code, r.stdout, r.stderr)
			}
			for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				if !strings.HasPrefix(l, f+":") || !strings.Contains(l, ": warning: ") {
					t.Errorf("stderr line is not a warning with file:line: %q", l)
				}
			}
		})
	}
}

// TestCheckConfigUnprivileged: the check needs no privilege; as root, the test runs it as
// the user nobody (setpriv).
func TestCheckConfigUnprivileged(t *testing.T) {
	bin := xlvsd(t)
	path := writeConf(t, "keepalived.conf", checkKeepalivedConf)
	argv := []string{bin, "--check-config", "--keepalived-conf", path}
	if os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("running as root and setpriv is not installed (CI installs util-linux): cannot drop privileges")
			}
			t.Skip("running as root and setpriv is not installed: cannot drop privileges")
		}
		argv = append([]string{setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"}, argv...)
	}
	r := runArgv(t, argv...)
	if r.code != 0 || r.stdout != checkKeepalivedRules {
		t.Fatalf("exit %d, stdout\n%s\nstderr\n%s\nwant 0 and\n%s", r.code, r.stdout, r.stderr, checkKeepalivedRules)
	}
}
