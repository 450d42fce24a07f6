package ipvssync

import (
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/bench/testbed"
)

// pair is testbed.NewPair for a test: two namespaces joined by a veth pair "sync0"
// (198.18.9.1/24 and fd00:9::1/64 in a, .2 and ::2 in b), removed when the test ends.
func pair(t *testing.T) (a, b *testbed.NS) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set and this test needs root (network namespaces)")
		}
		t.Skip("needs root for network namespaces")
	}
	a, b, err := testbed.NewPair("sync")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); a.Close() })
	return a, b
}

// ttlProbe is a second receiver, written with plain system calls, that reports the TTL (hop
// limit) each datagram arrived with.
type ttlProbe struct{ fd int }

func openProbe(t *testing.T, ns *testbed.NS, group netip.Addr, port int) *ttlProbe {
	t.Helper()
	p := &ttlProbe{fd: -1}
	err := ns.Do(func() error {
		v6 := group.Is6()
		dom := unix.AF_INET
		if v6 {
			dom = unix.AF_INET6
		}
		fd, err := unix.Socket(dom, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		p.fd = fd
		idx, _, err := Config{Ifname: "sync0"}.Interface()
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return err
		}
		if v6 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1); err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: group.As16(), Port: port, ZoneId: uint32(idx)}); err != nil {
				return err
			}
			return unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, &unix.IPv6Mreq{Multiaddr: group.As16(), Interface: uint32(idx)})
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTTL, 1); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: group.As4(), Port: port}); err != nil {
			return err
		}
		return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, &unix.IPMreqn{Multiaddr: group.As4(), Ifindex: int32(idx)})
	})
	if p.fd >= 0 {
		t.Cleanup(func() { unix.Close(p.fd) })
	}
	if err != nil {
		t.Fatalf("ttl probe: %v", err)
	}
	if err := unix.SetsockoptTimeval(p.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3}); err != nil {
		t.Fatal(err)
	}
	return p
}

// ttl reads one datagram and returns its payload and TTL.
func (p *ttlProbe) ttl(t *testing.T) ([]byte, int) {
	t.Helper()
	buf, oob := make([]byte, 2048), make([]byte, 256)
	n, oobn, _, _, err := unix.Recvmsg(p.fd, buf, oob, 0)
	if err != nil {
		t.Fatalf("ttl probe: %v", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if (m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TTL) ||
			(m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_HOPLIMIT) {
			return buf[:n], int(m.Data[0])
		}
	}
	t.Fatal("no TTL in the control messages")
	return nil, 0
}

// TestSockets: a master's message reaches a backup in another namespace byte for byte, from
// the master's interface address, with the configured TTL, on Port+id; the master's own
// namespace does not hear it back (multicast loop off). IPv4 and IPv6 groups.
func TestSockets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		group netip.Addr
		from  netip.Addr
		ttl   int
	}{
		{"IPv4 default group, TTL 1", netip.Addr{}, netip.MustParseAddr("198.18.9.1"), 0},
		{"IPv4 TTL 3", netip.MustParseAddr("224.0.0.81"), netip.MustParseAddr("198.18.9.1"), 3},
		{"IPv6 group", netip.MustParseAddr("ff02::1:81"), netip.Addr{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t)
			cfg := Config{Ifname: "sync0", Group: tc.group, Port: 8848, TTL: tc.ttl}
			group := cfg.withDefaults().Group
			wantTTL := cfg.withDefaults().TTL
			for id := 0; id < 2; id++ {
				var rx, echo *Receiver
				if err := b.Do(func() (err error) { rx, err = OpenReceiver(cfg, id); return }); err != nil {
					t.Fatal(err)
				}
				defer rx.Close()
				if err := a.Do(func() (err error) { echo, err = OpenReceiver(cfg, id); return }); err != nil {
					t.Fatal(err)
				}
				defer echo.Close()
				probe := openProbe(t, b, group, 8848+id)
				var tx *Sender
				if err := a.Do(func() (err error) { tx, err = OpenSender(cfg, id); return }); err != nil {
					t.Fatal(err)
				}
				defer tx.Close()

				w := NewWriter(9, 1472)
				if _, err := w.Add(&wantV1v4[0]); err != nil {
					t.Fatal(err)
				}
				// The group membership may take a moment to reach the veth's peer: send
				// until the backup hears one, for at most 3 s.
				buf := make([]byte, MaxLen(1500, group.Is6(), true, 0))
				var n int
				var from netip.Addr
				deadline := time.Now().Add(3 * time.Second)
				for {
					if err := tx.Send(w.Bytes()); err != nil {
						t.Fatal(err)
					}
					var err error
					n, from, err = rx.Recv(buf, time.Now().Add(200*time.Millisecond))
					if err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("socket %d: nothing received in 3 s: %v", id, err)
					}
				}
				if !bytes.Equal(buf[:n], w.Bytes()) {
					t.Fatalf("received %x, sent %x", buf[:n], w.Bytes())
				}
				if tc.from.IsValid() && from != tc.from {
					t.Errorf("message from %v, want the master's interface address %v", from, tc.from)
				}
				got, ttl := probe.ttl(t)
				if !bytes.Equal(got, w.Bytes()) || ttl != wantTTL {
					t.Errorf("probe on port %d: %d bytes with TTL %d, want the message with TTL %d", 8848+id, len(got), ttl, wantTTL)
				}
				if n, _, err := echo.Recv(buf, time.Now().Add(300*time.Millisecond)); err == nil {
					t.Errorf("the master's namespace heard its own message (%d bytes): multicast loop must be off", n)
				}
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no multicast interface"}, // no flag named: a library error (the command names its flags)
		{Config{Ifname: "averyveryverylongname"}, "longer than 15"},
		{Config{Ifname: "eth0", Group: netip.MustParseAddr("192.0.2.1")}, "not a multicast address"},
		{Config{Ifname: "eth0", Port: 70000}, "port 70000"},
		{Config{Ifname: "eth0", TTL: 256}, "TTL 256"},
	} {
		err := tc.cfg.Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{Ifname: "eth0"}).Check(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if _, err := OpenSender(Config{Ifname: "nonexistent9"}, 0); err == nil || !strings.Contains(err.Error(), "nonexistent9") {
		t.Errorf("OpenSender on a missing interface: %v", err)
	}
}
