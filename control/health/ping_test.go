package health

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/bench/testbed"
)

// pingNS makes a namespace with loopback and a veth pair pv0 (198.18.7.1/24,
// fd00:7::1/64) - pv1 (no address), so that nothing answers for the rest of those
// subnets; it is removed when the test ends.
func pingNS(t *testing.T) *testbed.NS {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set and this test needs root (network namespaces, raw sockets)")
		}
		t.Skip("needs root for network namespaces")
	}
	ns, err := testbed.NewNS("ping")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	for _, args := range [][]string{
		{"link", "add", "pv0", "type", "veth", "peer", "name", "pv1"},
		{"addr", "add", "198.18.7.1/24", "dev", "pv0"},
		{"addr", "add", "fd00:7::1/64", "dev", "pv0", "nodad"},
		{"link", "set", "pv0", "up"},
		{"link", "set", "pv1", "up"},
	} {
		ip(t, ns, args...)
	}
	return ns
}

func ip(t *testing.T, ns *testbed.NS, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", append([]string{"-n", ns.Name()}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// pingIn runs one check inside ns.
func pingIn(t *testing.T, ns *testbed.NS, c *Ping) (res Result, raw bool) {
	t.Helper()
	err := ns.Do(func() error {
		fd, r, err := c.socket()
		if err != nil {
			return err
		}
		unix.Close(fd)
		raw = r
		res = c.Check(context.Background())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return res, raw
}

func TestPing(t *testing.T) {
	ns := pingNS(t)
	for _, mode := range []struct {
		name      string
		groups    string // net.ipv4.ping_group_range
		forceRaw  bool
		wantRawFD bool
	}{
		// Root's group allowed: the unprivileged ICMP socket keepalived uses.
		{"icmp socket", "0 2147483647", false, false},
		// No group allowed (the kernel's default): xlvs falls back to a raw socket.
		{"raw fallback", "1 0", false, true},
		{"raw", "0 2147483647", true, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			if err := ns.SetSysctl("net.ipv4.ping_group_range", mode.groups); err != nil {
				t.Fatal(err)
			}
			for _, fam := range []struct {
				local, silent, later string
			}{
				{"127.0.0.1", "198.18.7.9", "203.0.113.9"},
				{"::1", "fd00:7::9", "2001:db8:9::9"},
			} {
				check := func(addr string, timeout time.Duration) (Result, bool) {
					c, err := NewPing(Ping{Addr: netip.MustParseAddr(addr), Timeout: timeout, raw: mode.forceRaw})
					if err != nil {
						t.Fatal(err)
					}
					return pingIn(t, ns, c)
				}
				res, raw := check(fam.local, time.Second)
				checkErr(t, res.Err, "")
				if raw != mode.wantRawFD {
					t.Errorf("%s: raw socket %v, want %v", fam.local, raw, mode.wantRawFD)
				}
				// A route but nobody answering: no reply within the timeout.
				start := time.Now()
				res, _ = check(fam.silent, 300*time.Millisecond)
				checkErr(t, res.Err, "no echo reply: timed out")
				if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
					t.Errorf("%s: failed after %v, want about the 300ms timeout", fam.silent, d)
				}
				if !errors.Is(res.Err, ErrPing) || !errors.Is(res.Err, ErrTimeout) {
					t.Errorf("%v is not ErrPing and ErrTimeout", res.Err)
				}
				// No route: fails at once; the address then appears: passes (recovery).
				start = time.Now()
				res, _ = check(fam.later, 2*time.Second)
				checkErr(t, res.Err, "network is unreachable")
				if d := time.Since(start); d > time.Second {
					t.Errorf("%s: no route took %v to fail", fam.later, d)
				}
				ip(t, ns, "addr", "add", fam.later, "dev", "lo", "nodad")
				// Recovery: the check passes once the address is there (a few tries: on a
				// loaded machine a first echo can be lost while the new local route settles).
				for try := 0; try < 3; try++ {
					if res, _ = check(fam.later, 2*time.Second); res.Err == nil {
						break
					}
				}
				checkErr(t, res.Err, "")
				ip(t, ns, "addr", "del", fam.later, "dev", "lo")
			}
			// bindto: the request leaves from the given address.
			c, err := NewPing(Ping{Addr: netip.MustParseAddr("198.18.7.1"), Timeout: time.Second, raw: mode.forceRaw,
				Dialer: Dialer{Bind: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)}})
			if err != nil {
				t.Fatal(err)
			}
			res, _ := pingIn(t, ns, c)
			checkErr(t, res.Err, "")
		})
	}
	if _, err := NewPing(Ping{Addr: netip.MustParseAddr("::1"), Timeout: time.Second, Dialer: Dialer{Bind: netip.MustParseAddrPort("127.0.0.1:0")}}); !errors.Is(err, ErrSpec) {
		t.Errorf("bindto of another family: %v, want ErrSpec", err)
	}
}

func TestICMPChecksum(t *testing.T) {
	// RFC 1071's example words 0001 f203 f4f5 f6f7 sum to ddf2, whose complement is 220d.
	if got := icmpChecksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0x220d {
		t.Errorf("checksum %#04x, want 0x220d", got)
	}
}
