package e2e

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

// Ports of the services this file defines; no real server listens on them.
const (
	closedPort = 9  // UDP: the real servers answer port unreachable
	emptyPort  = 10 // a service without real servers
)

// TestICMPAndFragments, over NAT (two-armed), IPv4 and IPv6:
//   - a real server's ICMP port unreachable reaches the client translated: the client's
//     connected UDP socket reports ECONNREFUSED, xlvs counts the error forwarded
//     (icmp_forwarded) and a real server's kernel counts it sent;
//   - a service without a real server answers port unreachable itself (IPVS
//     ip_vs_leave): UDP reads and TCP connects fail with ECONNREFUSED at once, and xlvs
//     counts each answer (icmp_sent);
//   - in both, the director's own kernel answered nothing. The VIP is a local address
//     there, so with xlvsd not taking the packets the kernel itself refuses them with
//     the same ECONNREFUSED: the errno alone does not show that xlvs answered
//     (throughXLVS);
//   - UDP datagrams larger than the MTU, fragmented by the client and by the real server,
//     echo back byte-exact.
func TestICMPAndFragments(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	for _, fam := range []struct {
		name string
		vip  netip.Addr
	}{{"ipv4", e.bed.VIP}, {"ipv6", e.bed.VIP6}} {
		t.Run(fam.name, func(t *testing.T) {
			e.t = t
			e.natService("-u", fam.vip, closedPort, "rr")
			e.adm("-A", "-u", netip.AddrPortFrom(fam.vip, emptyPort).String(), "-s", "rr")
			e.adm("-A", "-t", netip.AddrPortFrom(fam.vip, emptyPort).String(), "-s", "rr")
			e.natService("-u", fam.vip, echoPort, "rr")

			t.Run("port unreachable from a real server", func(t *testing.T) {
				e.t = t
				reals := realsUnreachSent(t, e)
				throughXLVS(t, e, "icmp_forwarded", func() {
					udpRefused(t, e, netip.AddrPortFrom(fam.vip, closedPort))
				})
				if realsUnreachSent(t, e) == reals {
					t.Error("no real server's kernel counted a destination unreachable sent: where did the error come from?")
				}
			})
			t.Run("no real server", func(t *testing.T) {
				e.t = t
				start := time.Now()
				throughXLVS(t, e, "icmp_sent", func() {
					udpRefused(t, e, netip.AddrPortFrom(fam.vip, emptyPort))
				})
				throughXLVS(t, e, "icmp_sent", func() {
					ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
					defer cancel()
					c, err := e.bed.Client.NS.DialContext(ctx, "tcp", netip.AddrPortFrom(fam.vip, emptyPort).String())
					if err == nil {
						c.Close()
						t.Fatal("TCP connect to a service without real servers succeeded")
					}
					if !errors.Is(err, syscall.ECONNREFUSED) {
						t.Fatalf("TCP connect: %v, want ECONNREFUSED", err)
					}
				})
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("refusals took %v: the answer must be immediate", d)
				}
			})
			t.Run("fragmented udp echo", func(t *testing.T) {
				e.t = t
				conn, err := e.bed.Client.NS.DialContext(e.ctx, "udp", netip.AddrPortFrom(fam.vip, echoPort).String())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				const count, size = 50, 4000 // three fragments each way at MTU 1500
				res, err := traffic.UDPEcho(e.ctx, conn, count, size, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if res.Received != count || res.Mismatched != 0 {
					t.Fatalf("udp echo of %d-byte datagrams: %+v", size, res)
				}
			})
		})
	}
	e.t = t
	c := e.dataplaneCounters()
	if c["drop_no_dest"] == 0 {
		t.Errorf("drop_no_dest is 0: the refused packets were not counted (counters %v)", c)
	}
	if c["icmp_sent"] < 4 {
		t.Errorf("icmp_sent %d, want at least 4 (UDP and TCP, IPv4 and IPv6)", c["icmp_sent"])
	}
	if c["drop_fragment"] != 0 || c["xdp_fragment"] != 0 {
		t.Errorf("drop_fragment %d, xdp_fragment %d: fragments of tracked flows were dropped or passed to the kernel", c["drop_fragment"], c["xdp_fragment"])
	}
	e.noChecksumErrors()
}

// udpRefused sends datagrams to svc from a connected UDP socket in the client until a
// read fails with ECONNREFUSED (the translated ICMP error arrived), for at most 5 s.
func udpRefused(t *testing.T, e *env, svc netip.AddrPort) {
	t.Helper()
	conn, err := e.bed.Client.NS.DialContext(e.ctx, "udp", svc.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 1500)
	var last error
	for time.Now().Before(deadline) {
		if _, err := conn.Write([]byte("anyone there?")); err != nil {
			last = err
			if errors.Is(err, syscall.ECONNREFUSED) {
				return
			}
		}
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := conn.Read(buf)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		var ne net.Error
		if err == nil || !(errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("read from %v: %v, want ECONNREFUSED", svc, err)
		}
		last = err
	}
	t.Fatalf("no ECONNREFUSED from %v within 5 s (last: %v)", svc, last)
}

// kernelRefusals are the director's kernel counters of its own refusals of a packet for a
// local address without a listener: ICMP destination unreachable (v4, v6) and TCP resets.
var kernelRefusals = []string{"Icmp.OutDestUnreachs", "Icmp6.OutDestUnreachs", "Tcp.OutRsts"}

// throughXLVS runs f, which provokes refusals from the VIP, and checks that they came
// through xlvs: xlvs's counter moved, and the director's kernel refused nothing.
func throughXLVS(t *testing.T, e *env, counter string, f func()) {
	t.Helper()
	k0, err := e.bed.Director.Counters()
	if err != nil {
		t.Fatal(err)
	}
	c0 := e.dataplaneCounters()
	f()
	c1 := e.dataplaneCounters()
	k1, err := e.bed.Director.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c1[counter] == c0[counter] {
		t.Errorf("xlvs %s did not move: the answer did not come through xlvs", counter)
	}
	for _, k := range kernelRefusals {
		if k1[k] != k0[k] {
			t.Errorf("the director's kernel counted %s %d: it answered instead of xlvs", k, k1[k]-k0[k])
		}
	}
}

// realsUnreachSent sums the real servers' kernel counters of destination unreachables sent.
func realsUnreachSent(t *testing.T, e *env) uint64 {
	t.Helper()
	var n uint64
	for _, rs := range e.bed.Reals {
		c, err := rs.NS.Counters()
		if err != nil {
			t.Fatal(err)
		}
		n += c["Icmp.OutDestUnreachs"] + c["Icmp6.OutDestUnreachs"]
	}
	return n
}
