package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"xlvs/bench/testbed"
)

// needRoot skips without root, but fails when CI is set: CI must run privileged tests.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test: CI is set but not running as root")
		}
		t.Skip("privileged test: needs root (namespaces, XDP, AF_XDP)")
	}
}

// lockedBuffer collects a process's stderr while the test reads it.
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

// TestDaemonInNamespace runs the built xlvsd against a veth (one RX queue, the kernel's
// default) in a namespace of its own, as a new user would.
func TestDaemonInNamespace(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "xlvsd")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns, err := testbed.NewNS("xlvsd-cmd")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	err = ns.Do(func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xd0"}, PeerName: "xd1"}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		for _, name := range []string{"lo", "xd0", "xd1"} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("veth in %s: %v", ns, err)
	}
	dir := t.TempDir()
	// A small table: the default takes 1/32 of RAM and prefaults it.
	base := []string{"-i", "xd0", "--state", "", "--socket", filepath.Join(dir, "x.sock"), "--conn-max", "65536"}

	t.Run("more queues than the interface has", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := ns.Command(ctx, bin, append(base, "--queues", "9")...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit: %v, want status 1; output:\n%s", err, out)
		}
		want := "xlvsd: --queues 9: open 9 queues on xd0: the interface has 1 RX queue: pass --queues 1, or 0 for every RX queue\n"
		if !strings.HasSuffix(string(out), want) {
			t.Fatalf("output:\n%s\nwant it to end with:\n%s", out, want)
		}
		if strings.Contains(string(out), "SockaddrXDP") {
			t.Errorf("the bind error leaks through:\n%s", out)
		}
	})

	t.Run("clean stop logs no warning", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		var stderr lockedBuffer
		cmd := ns.Command(ctx, bin, base...)
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(stderr.String(), "xlvsd running") {
			select {
			case err := <-exited:
				t.Fatalf("xlvsd exited before running: %v\n%s", err, stderr.String())
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("xlvsd not running after 30 s:\n%s", stderr.String())
			}
		}
		time.Sleep(200 * time.Millisecond) // the route watcher's subscriptions block in their reads
		// `ip netns exec` execs xlvsd in place: the pid is the daemon's.
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("xlvsd still running 20 s after SIGTERM:\n%s", stderr.String())
		}
		log := stderr.String()
		if !strings.Contains(log, "shutting down") {
			t.Errorf("no shutdown line:\n%s", log)
		}
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				t.Errorf("clean stop logged: %s", line)
			}
		}
	})
}
