package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestNewNSBadPrefix(t *testing.T) {
	for _, p := range []string{"", "a/b", "a b", "x\x00", strings.Repeat("a", maxPrefix+1)} {
		if _, err := NewNS(p); !errors.Is(err, ErrBadPrefix) {
			t.Errorf("NewNS(%q) error %v, want ErrBadPrefix", p, err)
		}
	}
}

func TestSysctlPath(t *testing.T) {
	tests := []struct {
		key, want string
		ok        bool
	}{
		{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward", true},
		{"net/ipv4/conf/eth0.100/rp_filter", "/proc/sys/net/ipv4/conf/eth0.100/rp_filter", true},
		{"", "", false},
		{"/etc/passwd", "", false},
		{"net/../../etc", "", false},
		{".net", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			got, err := sysctlPath(tc.key)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("sysctlPath = %q, %v; want %q, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestNSLifecycle(t *testing.T) {
	requireRoot(t)
	ns, err := NewNS("life")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	want := regexp.MustCompile(`^xlvs-life-` + strconv.Itoa(os.Getpid()) + `-[0-9]+$`)
	if !want.MatchString(ns.Name()) {
		t.Fatalf("name %q, want xlvs-life-<pid>-<n>", ns.Name())
	}
	if ns.Path() != filepath.Join(NetnsDir, ns.Name()) {
		t.Fatalf("path %q", ns.Path())
	}
	// `ip netns` sees it, and commands run inside it.
	ctx := testContext(t)
	out, err := ns.Run(ctx, "ip", "-o", "link", "show", "lo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "UP") || !strings.Contains(out, "lo:") {
		t.Fatalf("lo in %s: %q, want it up", ns.Name(), out)
	}
	// It is another namespace than ours.
	var inside netns.NsHandle
	if err := ns.Do(func() error {
		var err error
		inside, err = netns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	ours, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	if inside.Equal(ours) {
		t.Fatal("Do ran in the caller's namespace")
	}

	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ns.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there after Close: %v", ns.Path(), err)
	}
	if err := ns.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := ns.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close: %v, want ErrClosed", err)
	}
	if _, _, _, _, err := ns.LinkStats("lo"); !errors.Is(err, ErrClosed) {
		t.Fatalf("LinkStats after Close: %v, want ErrClosed", err)
	}
}

func TestNSDoRestoresThreads(t *testing.T) {
	requireRoot(t)
	ns := newTestNS(t, "do")
	ours, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	// Many Do calls, then every thread the runtime has must be back in our namespace:
	// check from many goroutines locked to (likely different) threads.
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = ns.Do(func() error { time.Sleep(time.Millisecond); return nil })
		}()
	}
	wg.Wait()
	errc := make(chan error, 4*runtime.GOMAXPROCS(0)+8)
	for range cap(errc) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cur, err := netns.Get()
			if err != nil {
				errc <- err
				return
			}
			defer cur.Close()
			if !cur.Equal(ours) {
				errc <- fmt.Errorf("thread %d left in another namespace", unix.Gettid())
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func TestNSDoPanicAndGoexit(t *testing.T) {
	requireRoot(t)
	ns := newTestNS(t, "panic")
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want boom", r)
			}
		}()
		_ = ns.Do(func() error { panic("boom") })
		t.Fatal("Do returned after f panicked")
	}()
	if err := ns.Do(func() error { runtime.Goexit(); return nil }); !errors.Is(err, ErrGoexit) {
		t.Fatalf("Do with Goexit: %v, want ErrGoexit", err)
	}
	sentinel := errors.New("f failed")
	if err := ns.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("Do: %v, want f's error", err)
	}
}

func TestNSSocketsLiveInside(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	ns := newTestNS(t, "sock")
	// 127.0.0.1 inside the namespace is not ours: a listener there is reachable only
	// through the namespace.
	ln, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := ns.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v; want hi", buf, err)
	}
	c.Close()
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if c, err := d.DialContext(dctx, "tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("dialled the namespace's loopback listener from outside")
	}

	pc, err := ns.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	uc, err := ns.DialContext(ctx, "udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf[:])
	if err != nil || n != 2 {
		t.Fatalf("read %d, %v; want 2 bytes of ping", n, err)
	}

	// The namespace's counters saw that traffic; ours are separate.
	m, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Ip.InReceives", "Tcp.ActiveOpens", "Udp.InDatagrams"} {
		if m[k] == 0 {
			t.Errorf("counter %s = 0 after traffic in the namespace", k)
		}
	}
	for _, k := range []string{"Tcp.InCsumErrors", "Udp.InCsumErrors", "Udp6.InCsumErrors", "Ip6.InReceives", "TcpExt.ListenDrops"} {
		if _, ok := m[k]; !ok {
			t.Errorf("counter %s missing", k)
		}
	}
	rx, tx, _, _, err := ns.LinkStats("lo")
	if err != nil {
		t.Fatal(err)
	}
	if rx == 0 || tx == 0 {
		t.Fatalf("lo counted rx %d tx %d packets, want both > 0", rx, tx)
	}
}

func TestNSSysctl(t *testing.T) {
	requireRoot(t)
	ns := newTestNS(t, "sysctl")
	if err := ns.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := ns.Sysctl("net.ipv4.ip_forward"); err != nil || v != "1" {
		t.Fatalf("ip_forward in the namespace = %q, %v; want 1", v, err)
	}
	if v, err := ns.Run(testContext(t), "cat", "/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(v) != "1" {
		t.Fatalf("ip_forward seen by a command in the namespace = %q, %v; want 1", v, err)
	}
	if err := ns.SetSysctl("net.ipv4.no_such_thing", "1"); err == nil {
		t.Fatal("setting a missing sysctl succeeded")
	}
}

func TestNSParallelNamesUnique(t *testing.T) {
	requireRoot(t)
	var (
		mu    sync.Mutex
		names = map[string]bool{}
	)
	t.Run("group", func(t *testing.T) {
		for i := range 8 {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				for range 3 {
					ns := newTestNS(t, "par")
					if _, err := os.Stat(ns.Path()); err != nil {
						t.Error(err)
					}
					mu.Lock()
					if names[ns.Name()] {
						t.Errorf("name %s made twice", ns.Name())
					}
					names[ns.Name()] = true
					mu.Unlock()
				}
			})
		}
	})
	if len(names) != 24 {
		t.Fatalf("%d distinct names, want 24", len(names))
	}
	if left := leftovers(t, "par"); len(left) != 0 {
		t.Fatalf("namespaces left after cleanup: %v", left)
	}
}

func TestNSCommand(t *testing.T) {
	requireRoot(t)
	ns := newTestNS(t, "cmd")
	ctx := testContext(t)

	t.Run("error includes output", func(t *testing.T) {
		_, err := ns.Run(ctx, "sh", "-c", "echo something broke; exit 3")
		if err == nil || !strings.Contains(err.Error(), "something broke") || !strings.Contains(err.Error(), "exit status 3") {
			t.Fatalf("error %v, want the output and the exit status", err)
		}
	})
	t.Run("runs inside", func(t *testing.T) {
		out, err := ns.Run(ctx, "ip", "netns", "identify")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(out) != ns.Name() {
			t.Fatalf("ip netns identify = %q, want %q", out, ns.Name())
		}
	})
	t.Run("context kills the process group", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		// The shell starts a background child, prints its pid and waits.
		cmd := ns.Command(cctx, "sh", "-c", "sleep 60 & echo $!; wait")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 32)
		n, _ := stdout.Read(buf)
		child, perr := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
		werr := cmd.Wait()
		if werr == nil {
			t.Fatal("command survived its context")
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("Wait returned after %v", d)
		}
		if perr != nil {
			t.Fatalf("read child pid from %q: %v", buf[:n], perr)
		}
		// The background sleep was in the group: it must be gone (or a zombie being reaped).
		deadline := time.Now().Add(5 * time.Second)
		for {
			if !alive(child) {
				break
			}
			if time.Now().After(deadline) {
				_ = unix.Kill(child, unix.SIGKILL)
				t.Fatalf("background child %d still running after the context ended", child)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// alive reports whether pid runs (a zombie counts as dead).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Field 3 is the state; the command name (field 2) is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestRemoveStale(t *testing.T) {
	requireRoot(t)
	// A namespace named as if made by a process that has ended: a pid above pid_max.
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	dead, err := createNamed(fmt.Sprintf("xlvs-stale-%d-1", pidMax+1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Close() })
	dead.mu.Lock() // drop our handles so only the mount remains, as after a crash
	dead.nl.Close()
	dead.nl = nil
	_ = dead.fd.Close()
	dead.fd = -1
	dead.mu.Unlock()
	live := newTestNS(t, "stale") // ours: must stay

	removed, err := RemoveStale("stale")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, dead.Name()) || slices.Contains(removed, live.Name()) {
		t.Fatalf("removed %v, want %s and not %s", removed, dead.Name(), live.Name())
	}
	if _, err := os.Stat(dead.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there: %v", dead.Path(), err)
	}
	if _, err := os.Stat(live.Path()); err != nil {
		t.Fatalf("live namespace removed: %v", err)
	}
}
