package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMissingCaps(t *testing.T) {
	bit := func(bits ...int) uint64 {
		var v uint64
		for _, b := range bits {
			v |= 1 << uint(b)
		}
		return v
	}
	names := func(cs []capability) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.name)
		}
		return strings.Join(s, ",")
	}
	all := bit(unix.CAP_NET_ADMIN, unix.CAP_NET_RAW, unix.CAP_BPF, unix.CAP_PERFMON)
	for _, c := range []struct {
		eff  uint64
		want string
	}{
		{all, ""},
		{^uint64(0), ""},
		{0, "CAP_NET_ADMIN,CAP_NET_RAW,CAP_BPF,CAP_PERFMON"},
		{bit(unix.CAP_NET_ADMIN, unix.CAP_NET_RAW, unix.CAP_BPF), "CAP_PERFMON"},
		{bit(unix.CAP_NET_RAW, unix.CAP_BPF, unix.CAP_PERFMON), "CAP_NET_ADMIN"},
		// Before Linux 5.8 CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, not for
		// the network ones.
		{bit(unix.CAP_NET_ADMIN, unix.CAP_NET_RAW, unix.CAP_SYS_ADMIN), ""},
		{bit(unix.CAP_SYS_ADMIN), "CAP_NET_ADMIN,CAP_NET_RAW"},
	} {
		if got := names(missingCaps(c.eff)); got != c.want {
			t.Errorf("missingCaps(%#x) = %q, want %q", c.eff, got, c.want)
		}
	}
}

// listenNotify is a stand-in for systemd's notification socket.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	c := listenNotify(t)
	if err := notify("READY=1\nSTATUS=forwarding"); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, c); got != "READY=1\nSTATUS=forwarding" {
		t.Fatalf("got %q", got)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := notify("READY=1"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "none"))
	if err := notify("READY=1"); err == nil || !strings.Contains(err.Error(), "notify") {
		t.Fatalf("to a missing socket: %v", err)
	}
}

// TestNotifyAbstract: systemd may give an abstract socket ("@name").
func TestNotifyAbstract(t *testing.T) {
	name := "@xlvsd-test-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().Format("150405.000000000")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	if err := notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, c); got != "READY=1" {
		t.Fatalf("got %q", got)
	}
}

func TestHandleHUP(t *testing.T) {
	c := listenNotify(t)
	logBuf := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logBuf, nil))
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	reloads := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() { handleHUP(ctx, log, hup, func() error { reloads <- struct{}{}; return nil }); close(done) }()
	hup <- syscall.SIGHUP
	select {
	case <-reloads:
	case <-time.After(5 * time.Second):
		t.Fatal("SIGHUP did not reload")
	}
	if got := readNotify(t, c); got != "RELOADING=1" {
		t.Errorf("first notification %q", got)
	}
	if got := readNotify(t, c); got != "READY=1" {
		t.Errorf("second notification %q", got)
	}
	cancel()
	<-done

	// Without anything to reload the signal is logged, and nothing else happens.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	done = make(chan struct{})
	go func() { handleHUP(ctx, log, hup, nil); close(done) }()
	hup <- syscall.SIGHUP
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logBuf.String(), "nothing to reload") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(logBuf.String(), "SIGHUP: nothing to reload") {
		t.Errorf("log: %s", logBuf.String())
	}
}

func TestShareSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test: CI is set but not running as root")
		}
		t.Skip("needs root to give a file to another group")
	}
	path := filepath.Join(t.TempDir(), "x.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := shareSocket(path, "4242"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != 4242 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket gid %d mode %v, want 4242 and 0660", gid, fi.Mode().Perm())
	}
	if err := shareSocket(path, "no-such-group-xlvs"); err == nil || !strings.Contains(err.Error(), "--socket-group no-such-group-xlvs") {
		t.Errorf("unknown group: %v", err)
	}
}

func TestVersionAndManual(t *testing.T) {
	o, err := parseFlags([]string{"--version"}, io.Discard)
	if err != nil {
		t.Fatalf("--version needs no -i: %v", err)
	}
	var b bytes.Buffer
	if err := printVersionOrManual(o, &b); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^xlvsd \S+\n$`).MatchString(b.String()) {
		t.Errorf("--version printed %q", b.String())
	}

	o, err = parseFlags([]string{"--help-man"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := printVersionOrManual(o, &b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	// Every flag xlvsd parses is documented, under the name it is parsed by.
	n := 0
	o.flags.VisitAll(func(f *flag.Flag) {
		if f.Name == "help-man" {
			return
		}
		n++
		dash := `\-\-`
		if len(f.Name) == 1 {
			dash = `\-`
		}
		if !strings.Contains(page, ".TP\n\\fB"+dash+strings.ReplaceAll(f.Name, "-", `\-`)+`\fR`) {
			t.Errorf("the man page does not document --%s", f.Name)
		}
	})
	if n < 30 {
		t.Errorf("only %d flags", n)
	}
	for _, s := range []string{".SH SIGNALS", ".SH PRIVILEGES", "CAP_PERFMON", ".SH FILES", ".SH EXIT STATUS"} {
		if !strings.Contains(page, s) {
			t.Errorf("the man page lacks %q", s)
		}
	}

	// --help prints the same flags.
	var help bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &help); err == nil {
		t.Fatal("--help: no ErrHelp")
	}
	if !strings.Contains(help.String(), "  --conn-max N\n") || !strings.Contains(help.String(), "Usage: xlvsd -i IFACE") {
		t.Errorf("--help:\n%s", help.String())
	}
}
