//go:build debtest

package packaging

// The installed-package test: go test -tags debtest ./packaging/ with XLVS_DEB set to
// the .deb (make deb). It changes the machine (dpkg -i, then dpkg --purge), so it is not
// part of `go test ./...`; .ci/run runs it.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

const unitPath = "/lib/systemd/system/xlvsd.service"

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the installed-package test installs a package and runs xlvsd: run it as root")
	}
}

// sh runs a command and returns its combined output, failing the test on an error.
func sh(ctx context.Context, t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestInstalledPackage(t *testing.T) {
	needRoot(t)
	deb := os.Getenv("XLVS_DEB")
	if deb == "" {
		t.Fatal("set XLVS_DEB to the package to test (make deb: dist/xlvs_<version>_<arch>.deb)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t0 := time.Now()
	sh(ctx, t, "dpkg", "-i", deb)
	purged := false
	defer func() {
		if !purged {
			exec.Command("dpkg", "--purge", "xlvs").Run()
		}
	}()
	t.Logf("installed %s in %v", filepath.Base(deb), time.Since(t0).Round(time.Millisecond))

	t.Run("files", func(t *testing.T) { checkFiles(ctx, t) })
	t.Run("units", func(t *testing.T) { checkUnits(ctx, t) })
	t.Run("man", func(t *testing.T) { checkMan(ctx, t) })
	t.Run("daemon", func(t *testing.T) { checkDaemon(ctx, t) })
	t.Run("xlvs-decap", func(t *testing.T) { checkDecap(ctx, t) })
	t.Run("purge", func(t *testing.T) {
		purged = true
		checkPurge(ctx, t)
	})
}

func checkFiles(ctx context.Context, t *testing.T) {
	for _, f := range []string{"/usr/sbin/xlvsd", "/usr/sbin/xlvsadm", "/usr/sbin/xlvs-decap", "/usr/bin/xlvs-bench",
		unitPath, "/lib/systemd/system/xlvs-decap@.service", "/etc/xlvs/xlvsd.conf", "/etc/xlvs/xlvs-decap.conf",
		"/usr/share/bash-completion/completions/xlvsadm", "/usr/share/xlvs/grafana-dashboard.json",
		"/usr/share/xlvs/prometheus-alerts.yml", "/usr/share/man/man8/xlvsd.8.gz", "/usr/share/man/man8/xlvsadm.8.gz",
		"/usr/share/man/man8/xlvs-decap.8.gz", "/usr/share/man/man1/xlvs-bench.1.gz", "/usr/share/doc/xlvs/bare-metal.md"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	conf := sh(ctx, t, "dpkg-query", "--control-show", "xlvs", "conffiles")
	for _, c := range []string{"/etc/xlvs/xlvsd.conf", "/etc/xlvs/xlvs-decap.conf"} {
		if !strings.Contains(conf, c) {
			t.Errorf("%s is not a conffile: %q", c, conf)
		}
	}
	pw := sh(ctx, t, "getent", "passwd", "xlvs")
	if f := strings.Split(strings.TrimSpace(pw), ":"); len(f) != 7 || f[5] != "/var/lib/xlvs" || f[6] != "/usr/sbin/nologin" {
		t.Errorf("user xlvs: %q", pw)
	} else if uid, _ := strconv.Atoi(f[2]); uid >= 1000 || uid == 0 {
		t.Errorf("user xlvs is not a system user: uid %d", uid)
	}
	sh(ctx, t, "getent", "group", "xlvsadm")

	// Every command prints the same version, the one the package was built from.
	var versions []string
	for _, c := range []string{"/usr/sbin/xlvsd", "/usr/sbin/xlvsadm", "/usr/sbin/xlvs-decap", "/usr/bin/xlvs-bench"} {
		out := strings.TrimSpace(sh(ctx, t, c, "--version"))
		f := strings.Fields(out)
		if len(f) < 2 || f[0] != filepath.Base(c) {
			t.Errorf("%s --version: %q", c, out)
			continue
		}
		versions = append(versions, f[1])
	}
	pkgVersion := strings.TrimSpace(sh(ctx, t, "dpkg-query", "-W", "-f", "${Version}", "xlvs"))
	for _, v := range versions {
		if v != versions[0] || !strings.HasPrefix(strings.TrimPrefix(v, "v"), strings.SplitN(pkgVersion, "+", 2)[0]) {
			t.Errorf("versions %v, package %s", versions, pkgVersion)
			break
		}
	}
}

// checkUnits runs systemd-analyze verify, which must say nothing (it also warns of
// unknown keys, exiting 0).
func checkUnits(ctx context.Context, t *testing.T) {
	for _, u := range []string{unitPath, "xlvs-decap@eth0.service"} {
		cmd := exec.CommandContext(ctx, "systemd-analyze", "verify", u)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
		}
	}
}

// checkMan renders every installed page with man -l; groff must not warn.
func checkMan(ctx context.Context, t *testing.T) {
	for _, p := range []string{"man8/xlvsd.8.gz", "man8/xlvsadm.8.gz", "man8/xlvs-decap.8.gz", "man1/xlvs-bench.1.gz"} {
		cmd := exec.CommandContext(ctx, "man", "--warnings", "-l", "/usr/share/man/"+p)
		cmd.Env = append(os.Environ(), "MANWIDTH=80")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil || errb.Len() > 0 {
			t.Errorf("man -l %s: %v\n%s", p, err, errb.String())
			continue
		}
		name := strings.SplitN(filepath.Base(p), ".", 2)[0]
		if !strings.Contains(out.String(), "NAME") || !regexp.MustCompile(regexp.QuoteMeta(name)+`\s+-\s`).MatchString(out.String()) {
			t.Errorf("man -l %s rendered:\n%.400s", p, out.String())
		}
	}
}

func checkPurge(ctx context.Context, t *testing.T) {
	sh(ctx, t, "dpkg", "--purge", "xlvs")
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "xlvs").CombinedOutput(); err == nil && strings.Contains(string(out), "installed") {
		t.Errorf("xlvs still known to dpkg: %s", out)
	}
	for _, db := range []string{"passwd", "group"} {
		for _, name := range []string{"xlvs", "xlvsadm"} {
			if out, err := exec.Command("getent", db, name).Output(); err == nil {
				t.Errorf("purge left %s entry %q", db, strings.TrimSpace(string(out)))
			}
		}
	}
	for _, f := range []string{"/etc/xlvs", "/var/lib/xlvs", "/run/xlvs", "/usr/sbin/xlvsd", "/usr/sbin/xlvsadm",
		"/usr/sbin/xlvs-decap", "/usr/bin/xlvs-bench", unitPath, "/lib/systemd/system/xlvs-decap@.service",
		"/usr/share/xlvs", "/usr/share/doc/xlvs", "/usr/share/bash-completion/completions/xlvsadm",
		"/usr/share/man/man8/xlvsd.8.gz"} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("purge left %s", f)
		}
	}
}

// unit is what the test takes from the installed xlvsd.service.
type unit struct {
	user, group, supplementary string
	caps                       []string // AmbientCapabilities (= CapabilityBoundingSet)
	opts                       []string // XLVSD_OPTS of the EnvironmentFile
	families                   []string // RestrictAddressFamilies
	syscallFilter              []string // SystemCallFilter
}

func readUnit(t *testing.T) unit {
	t.Helper()
	k := unitKeys(t, unitPath)
	u := unit{user: k["User"], group: k["Group"], supplementary: k["SupplementaryGroups"],
		caps: strings.Fields(k["AmbientCapabilities"]), families: strings.Fields(k["RestrictAddressFamilies"]),
		syscallFilter: strings.Fields(k["SystemCallFilter"])}
	if k["CapabilityBoundingSet"] != k["AmbientCapabilities"] || len(u.caps) == 0 {
		t.Fatalf("unit: ambient %q, bounding %q", k["AmbientCapabilities"], k["CapabilityBoundingSet"])
	}
	if k["NoNewPrivileges"] != "yes" || k["LimitMEMLOCK"] != "infinity" || k["ExecStart"] != "/usr/sbin/xlvsd $XLVSD_OPTS" {
		t.Fatalf("unit: NoNewPrivileges=%q LimitMEMLOCK=%q ExecStart=%q", k["NoNewPrivileges"], k["LimitMEMLOCK"], k["ExecStart"])
	}
	b, err := os.ReadFile(k["EnvironmentFile"])
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "XLVSD_OPTS="); ok {
			u.opts = strings.Fields(strings.Trim(v, `"`))
		}
	}
	return u
}

// setprivCaps is the unit's capability list in setpriv's form: -all,+net_admin,...
func setprivCaps(caps []string) string {
	s := "-all"
	for _, c := range caps {
		s += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	return s
}

// daemon is an installed xlvsd started as the unit starts it.
type daemon struct {
	cmd    *exec.Cmd
	traced bool // cmd is strace; xlvsd is its child
	out    *lockedBuffer
	done   chan struct{}
	err    error
	notify *net.UnixConn
	msgs   chan string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// launch starts /usr/sbin/xlvsd in ns as user u.user with exactly caps, the unit's
// supplementary group, no new privileges, the EnvironmentFile's flags and extra, a
// notification socket, and RLIMIT_MEMLOCK unlimited when this machine allows raising it.
// With trace, strace follows it into traceFile.
func launch(ctx context.Context, t *testing.T, ns *testbed.NS, u unit, caps []string, env []string, trace string, extra ...string) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "xlvs-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o666)
	gid := strings.Split(strings.TrimSpace(sh(ctx, t, "getent", "group", u.supplementary)), ":")[2]
	argv := []string{}
	if trace != "" {
		argv = append(argv, "strace", "-f", "-qq", "-s", "0", "-o", trace)
	}
	if memlockRaisable() {
		argv = append(argv, "prlimit", "--memlock=unlimited:unlimited")
	}
	argv = append(argv, "setpriv", "--reuid="+u.user, "--regid="+u.group, "--groups="+gid,
		"--inh-caps="+setprivCaps(caps), "--ambient-caps="+setprivCaps(caps), "--bounding-set="+setprivCaps(caps),
		"--no-new-privs", "--", "/usr/sbin/xlvsd")
	argv = append(argv, u.opts...)
	argv = append(argv, extra...)
	if !memlockRaisable() {
		// This machine cannot raise RLIMIT_MEMLOCK (no CAP_SYS_RESOURCE here): small
		// UMEMs that fit the limit systemd would lift (LimitMEMLOCK=infinity).
		argv = append(argv, "--frames", "1024", "--fill-ring", "512", "--tx-ring", "512", "--comp-ring", "512")
	}
	cmd := ns.Command(ctx, argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+sock), env...)
	d := &daemon{cmd: cmd, traced: trace != "", out: &lockedBuffer{}, done: make(chan struct{}), notify: nc, msgs: make(chan string, 16)}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = cmd.Wait(); close(d.done) }()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				close(d.msgs)
				return
			}
			d.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() {
		if d.cmd.Process != nil {
			d.signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(15 * time.Second):
				d.cmd.Process.Kill()
				<-d.done
			}
		}
		nc.Close()
	})
	return d
}

var memlockOnce struct {
	sync.Once
	ok bool
}

// memlockRaisable reports whether prlimit can lift RLIMIT_MEMLOCK here (it needs
// CAP_SYS_RESOURCE to go above the hard limit).
func memlockRaisable() bool {
	memlockOnce.Do(func() {
		memlockOnce.ok = exec.Command("prlimit", "--memlock=unlimited:unlimited", "true").Run() == nil
	})
	return memlockOnce.ok
}

// pid is xlvsd's process id: `ip netns exec`, prlimit and setpriv exec in place, strace
// forks it.
func (d *daemon) pid() int {
	pid := d.cmd.Process.Pid
	if !d.traced {
		return pid
	}
	for i := 0; i < 100; i++ {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			child, _ := strconv.Atoi(f[0])
			return child
		}
		time.Sleep(20 * time.Millisecond)
	}
	return pid
}

// signal sends sig to xlvsd itself (not to strace).
func (d *daemon) signal(sig syscall.Signal) {
	if p := d.pid(); p > 0 {
		syscall.Kill(p, sig)
	}
}

// waitFor waits for a notification starting with prefix, or for the daemon to exit.
func (d *daemon) waitFor(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-d.msgs:
			if !ok {
				t.Fatalf("notification socket closed before %s", prefix)
			}
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-d.done:
			t.Fatalf("xlvsd exited (%v) before %s:\n%s", d.err, prefix, d.out.String())
		case <-deadline:
			t.Fatalf("no %s within %v:\n%s", prefix, timeout, d.out.String())
		}
	}
}

// stop sends SIGTERM and expects a clean exit and STOPPING=1.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("xlvsd still running 15 s after SIGTERM:\n%s", d.out.String())
	}
	if d.err != nil {
		t.Errorf("xlvsd exit: %v\n%s", d.err, d.out.String())
	}
	stopping := false
	deadline := time.After(5 * time.Second)
wait:
	for !stopping {
		select {
		case m, ok := <-d.msgs:
			if !ok {
				break wait
			}
			stopping = m == "STOPPING=1"
		case <-deadline:
			break wait
		}
	}
	if !stopping {
		t.Errorf("no STOPPING=1")
	}
}

// adm runs the installed xlvsadm as an operator: the user nobody, in the group xlvsadm
// (member) or in no group.
func adm(ctx context.Context, member bool, args ...string) (string, error) {
	groups := "--clear-groups"
	if member {
		out, err := exec.Command("getent", "group", "xlvsadm").Output()
		if err != nil {
			return "", err
		}
		groups = "--groups=" + strings.Split(strings.TrimSpace(string(out)), ":")[2]
	}
	full := append([]string{"--reuid=nobody", "--regid=nogroup", groups, "--", "/usr/sbin/xlvsadm"}, args...)
	out, err := exec.CommandContext(ctx, "setpriv", full...).CombinedOutput()
	return string(out), err
}

func checkDaemon(ctx context.Context, t *testing.T) {
	u := readUnit(t)
	for _, c := range u.caps {
		if c == "CAP_SYS_ADMIN" {
			t.Fatal("the unit grants CAP_SYS_ADMIN")
		}
	}
	if !memlockRaisable() {
		t.Logf("RLIMIT_MEMLOCK cannot be raised on this machine (no CAP_SYS_RESOURCE): xlvsd runs with UMEMs that fit the %s limit instead of LimitMEMLOCK=infinity", strings.TrimSpace(sh(ctx, t, "sh", "-c", "ulimit -l"))+" KiB")
	}
	bed, err := testbed.New(testbed.Options{Layout: testbed.NATTwoArm, Reals: 2, Prefix: "deb"})
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	defer func() {
		if err := bed.Close(); err != nil {
			t.Errorf("testbed close: %v", err)
		}
	}()
	for i, rs := range bed.Reals {
		ln, err := rs.NS.Listen("tcp", ":80")
		if err != nil {
			t.Fatal(err)
		}
		srv := traffic.ServeHTTP(ln, fmt.Sprintf("rs%d", i+1))
		defer srv.Close()
	}
	// What systemd makes for the unit: StateDirectory= and RuntimeDirectory=.
	for _, d := range []string{"/var/lib/xlvs", "/run/xlvs"} {
		os.MkdirAll(d, 0o750)
		sh(ctx, t, "chown", u.user+":"+u.group, d)
		os.Chmod(d, 0o755)
	}
	ifaces := []string{"-i", bed.Ext.Iface, "-i", bed.Int.Iface, "--conn-max", "65536"}
	vip := bed.VIP.String()
	load := func(t *testing.T, n int) {
		t.Helper()
		res, err := traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{URL: "http://" + vip + "/", Requests: n, Concurrency: 8,
			Dial: bed.Client.NS.DialContext, Timeout: 5 * time.Second})
		if err != nil || res.OK != n || len(res.ByServer) != 2 {
			t.Fatalf("HTTP through the VIP: %v; %s", err, res)
		}
		t.Logf("NAT through the installed xlvsd: %s", res)
	}

	trace := filepath.Join(t.TempDir(), "xlvsd.strace")
	var version string
	t.Run("first start: rules, operators, traffic, metrics, reload", func(t *testing.T) {
		// Health checks and both sync daemons too, so that the trace covers their sockets.
		d := launch(ctx, t, bed.Director, u, u.caps, nil, trace,
			append(ifaces, "--health-check", "TCP_CHECK {\n connect_timeout 2\n delay_loop 1\n}")...)
		ready := d.waitFor(t, "READY=1", 60*time.Second)
		if !strings.Contains(ready, "STATUS=forwarding on "+bed.Ext.Iface+","+bed.Int.Iface) {
			t.Errorf("readiness %q", ready)
		}
		// READY=1 comes after the XDP program is attached.
		for _, ifc := range []string{bed.Ext.Iface, bed.Int.Iface} {
			if out, _ := bed.Director.Run(ctx, "ip", "-d", "link", "show", "dev", ifc); !strings.Contains(out, "prog/xdp") {
				t.Errorf("no XDP program on %s at READY:\n%s", ifc, out)
			}
		}
		// An operator outside the group xlvsadm is refused; a member configures.
		if out, err := adm(ctx, false, "-L", "-n"); err == nil || !strings.Contains(out, "permission denied") {
			t.Errorf("xlvsadm outside the group xlvsadm: %v %s", err, out)
		}
		for _, args := range [][]string{
			{"-A", "-t", vip + ":80", "-s", "rr"},
			{"-a", "-t", vip + ":80", "-r", bed.Reals[0].Addr.String() + ":80", "-m"},
			{"-a", "-t", vip + ":80", "-r", bed.Reals[1].Addr.String() + ":80", "-m"},
			{"--start-daemon", "master", "--mcast-interface", bed.Int.Iface, "--syncid", "5"},
			{"--start-daemon", "backup", "--mcast-interface", bed.Int.Iface, "--syncid", "5"},
		} {
			if out, err := adm(ctx, true, args...); err != nil {
				t.Fatalf("xlvsadm %v as a member of xlvsadm: %v %s", args, err, out)
			}
		}
		load(t, 200)
		time.Sleep(1500 * time.Millisecond) // a round of health checks

		// The metrics of the EnvironmentFile's --metrics-listen, with the version.
		version = strings.Fields(sh(ctx, t, "/usr/sbin/xlvsd", "--version"))[1]
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: bed.Director.DialContext}}
		resp, err := client.Get("http://127.0.0.1:9110/metrics")
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `xlvs_build_info{goversion=`) || !strings.Contains(string(body), `version="`+version+`"`) {
			t.Errorf("xlvs_build_info does not carry %s:\n%.2000s", version, body)
		}

		// SIGHUP (ExecReload=) with nothing to reload: logged, the daemon stays.
		d.signal(syscall.SIGHUP)
		time.Sleep(500 * time.Millisecond)
		if !strings.Contains(d.out.String(), "SIGHUP: nothing to reload") {
			t.Errorf("SIGHUP not handled:\n%s", d.out.String())
		}
		load(t, 20)
		d.stop(t)
	})

	t.Run("restart: rules restored before READY, exactly the unit's privileges", func(t *testing.T) {
		d := launch(ctx, t, bed.Director, u, u.caps, nil, "", ifaces...)
		d.waitFor(t, "READY=1", 60*time.Second)
		out, err := adm(ctx, true, "-S", "-n")
		if err != nil || !strings.Contains(out, "-A -t "+vip+":80 -s rr") || strings.Count(out, "-a -t "+vip+":80") != 2 {
			t.Fatalf("rules at READY: %v\n%s", err, out)
		}
		checkProcess(t, d.cmd.Process.Pid, u)
		load(t, 100)
		d.stop(t)
	})

	t.Run("each capability is needed", func(t *testing.T) {
		for i, c := range u.caps {
			fewer := append(append([]string(nil), u.caps[:i]...), u.caps[i+1:]...)
			// The kernel's refusal (the start-up check off), then xlvsd's own message.
			d := launch(ctx, t, bed.Director, u, fewer, []string{"XLVSD_CAPABILITY_CHECK=off"}, "", ifaces...)
			kernel := d.failure(t)
			if !regexp.MustCompile(`operation not permitted|prohibited for !root`).MatchString(kernel) {
				t.Errorf("without %s the kernel's refusal is not shown: %s", c, kernel)
			}
			d = launch(ctx, t, bed.Director, u, fewer, nil, "", ifaces...)
			own := d.failure(t)
			if !strings.Contains(own, "missing capabilities: "+c) {
				t.Errorf("without %s: %s", c, own)
			}
			t.Logf("without %s: %s", c, lastLine(kernel))
		}
	})

	t.Run("system calls and socket families within the unit's filters", func(t *testing.T) {
		checkTrace(ctx, t, trace, u)
	})
	for _, d := range []string{"/run/xlvs"} {
		os.RemoveAll(d)
	}
}

// failure waits for a start that must fail: no READY, a non-zero exit within 30 s.
func (d *daemon) failure(t *testing.T) string {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("xlvsd still running 30 s after a start that must fail:\n%s", d.out.String())
	}
	for {
		select {
		case m := <-d.msgs:
			if strings.HasPrefix(m, "READY=1") {
				t.Errorf("READY=1 from a start that failed")
			}
			continue
		default:
		}
		break
	}
	if d.err == nil {
		t.Errorf("xlvsd exited 0:\n%s", d.out.String())
	}
	return d.out.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "xlvsd:") {
			return lines[i]
		}
	}
	return lines[len(lines)-1]
}

// checkProcess reads /proc/PID/status: the unit's user, exactly its capabilities (no
// more in any set), no new privileges.
func checkProcess(t *testing.T, pid int, u unit) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		st[k] = strings.TrimSpace(v)
	}
	bits := map[string]uint{"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}
	var want uint64
	for _, c := range u.caps {
		b, ok := bits[c]
		if !ok {
			t.Fatalf("unknown capability %s", c)
		}
		want |= 1 << b
	}
	for _, set := range []string{"CapEff", "CapPrm", "CapAmb", "CapBnd"} {
		v, err := strconv.ParseUint(st[set], 16, 64)
		if err != nil || v != want {
			t.Errorf("%s = %s, want %016x (%v)", set, st[set], want, u.caps)
		}
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q", st["NoNewPrivs"])
	}
	uid := strings.Split(strings.TrimSpace(sh(context.Background(), t, "id", "-u", u.user)), "\n")[0]
	if f := strings.Fields(st["Uid"]); len(f) != 4 || f[0] != uid || f[1] != uid || f[2] != uid {
		t.Errorf("Uid = %q, want %s", st["Uid"], uid)
	}
	t.Logf("xlvsd pid %d: uid %s, CapEff %s (%s), NoNewPrivs 1", pid, uid, st["CapEff"], strings.Join(u.caps, " "))
}

// checkTrace reads the strace of the first run: every system call xlvsd made after its
// execve must pass the unit's SystemCallFilter, every socket family its
// RestrictAddressFamilies.
func checkTrace(ctx context.Context, t *testing.T, path string, u unit) {
	allowed := syscallSet(ctx, t, u.syscallFilter)
	families := map[string]bool{}
	for _, f := range u.families {
		families[f] = true
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^\d+\s+([a-z0-9_]+)\((.*)`)
	used := map[string]int{}
	usedFamilies := map[string]bool{}
	inXlvsd := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if m[1] == "execve" && strings.Contains(m[2], `"/usr/sbin/xlvsd"`) && strings.HasSuffix(sc.Text(), "= 0") {
			inXlvsd = true
			continue
		}
		if !inXlvsd {
			continue
		}
		used[m[1]]++
		if m[1] == "socket" || m[1] == "socketpair" {
			fam, _, _ := strings.Cut(m[2], ",")
			usedFamilies[fam] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !inXlvsd || len(used) < 20 {
		t.Fatalf("the trace has %d system calls of xlvsd (execve seen: %v)", len(used), inXlvsd)
	}
	var names []string
	for s := range used {
		names = append(names, s)
		if !allowed[s] {
			t.Errorf("xlvsd called %s (%d times), which SystemCallFilter=%s refuses", s, used[s], strings.Join(u.syscallFilter, " "))
		}
	}
	for fam := range usedFamilies {
		if !families[fam] {
			t.Errorf("xlvsd opened an %s socket, which RestrictAddressFamilies=%s refuses", fam, strings.Join(u.families, " "))
		}
	}
	if !usedFamilies["AF_XDP"] || !allowed["bpf"] || used["bpf"] == 0 {
		t.Errorf("the trace lacks AF_XDP sockets or bpf(2): families %v, bpf %d", usedFamilies, used["bpf"])
	}
	t.Logf("xlvsd made %d distinct system calls, socket families %v: all within the unit's filters", len(names), keys(usedFamilies))
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// syscallSet expands a SystemCallFilter allow list (groups such as @system-service and
// names) with systemd-analyze syscall-filter, as systemd does.
func syscallSet(ctx context.Context, t *testing.T, filter []string) map[string]bool {
	t.Helper()
	groups := map[string][]string{}
	cur := ""
	for _, l := range strings.Split(sh(ctx, t, "systemd-analyze", "syscall-filter", "--no-pager"), "\n") {
		switch {
		case strings.HasPrefix(l, "@"):
			cur = strings.TrimSpace(l)
		case strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#"):
		case cur != "":
			groups[cur] = append(groups[cur], strings.TrimSpace(l))
		}
	}
	if len(groups["@system-service"]) == 0 {
		t.Fatal("systemd-analyze syscall-filter lists no @system-service")
	}
	out := map[string]bool{}
	var add func(string, int) error
	add = func(s string, depth int) error {
		if depth > 10 {
			return errors.New("groups nest too deep")
		}
		if !strings.HasPrefix(s, "@") {
			out[s] = true
			return nil
		}
		members, ok := groups[s]
		if !ok {
			return fmt.Errorf("unknown group %s", s)
		}
		for _, m := range members {
			if err := add(m, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	for _, s := range filter {
		if strings.HasPrefix(s, "~") {
			t.Fatalf("SystemCallFilter=%v is a deny list; the test expects an allow list", filter)
		}
		if err := add(s, 0); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// checkDecap runs the installed xlvs-decap as xlvs-decap@.service runs it (its user, its
// capabilities only, no new privileges) on a veth of a namespace of its own.
func checkDecap(ctx context.Context, t *testing.T) {
	k := unitKeys(t, "/lib/systemd/system/xlvs-decap@.service")
	caps := strings.Fields(k["AmbientCapabilities"])
	if k["CapabilityBoundingSet"] != k["AmbientCapabilities"] || len(caps) == 0 || k["NoNewPrivileges"] != "yes" {
		t.Fatalf("xlvs-decap@.service: ambient %q, bounding %q, NoNewPrivileges %q", k["AmbientCapabilities"], k["CapabilityBoundingSet"], k["NoNewPrivileges"])
	}
	ns, err := testbed.NewNS("debdecap")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	for _, args := range [][]string{
		{"link", "add", "dc0", "type", "veth", "peer", "name", "dc1"},
		{"link", "set", "dc0", "up"}, {"link", "set", "dc1", "up"},
		{"addr", "add", "198.18.9.11/24", "dev", "dc0"},
	} {
		if out, err := ns.Run(ctx, "ip", args...); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	start := func(caps []string) (*exec.Cmd, *lockedBuffer, chan error) {
		cmd := ns.Command(ctx, "setpriv", "--reuid="+k["User"], "--regid="+k["Group"], "--clear-groups",
			"--inh-caps="+setprivCaps(caps), "--ambient-caps="+setprivCaps(caps), "--bounding-set="+setprivCaps(caps),
			"--no-new-privs", "--", "/usr/sbin/xlvs-decap", "-i", "dc0")
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return cmd, out, done
	}
	cmd, out, done := start(caps)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "decapsulating") {
		select {
		case err := <-done:
			t.Fatalf("xlvs-decap exited (%v):\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			t.Fatalf("xlvs-decap not attached after 20 s:\n%s", out.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "detached from dc0") {
			t.Errorf("xlvs-decap stop: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("xlvs-decap still running 10 s after SIGTERM")
	}
	t.Logf("xlvs-decap with %v: %s", caps, strings.SplitN(out.String(), "\n", 2)[0])
	for i, c := range caps {
		fewer := append(append([]string(nil), caps[:i]...), caps[i+1:]...)
		cmd, out, done := start(fewer)
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("xlvs-decap without %s exited 0:\n%s", c, out.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("xlvs-decap without %s still running:\n%s", c, out.String())
		}
	}
}
