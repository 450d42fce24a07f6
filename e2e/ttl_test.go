package e2e

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/bench/testbed"
)

// TestTimeExceeded: a client's datagram to a DR service sent with TTL (hop limit) 1 is
// answered with ICMP time exceeded from the VIP, by xlvs (drop_ttl_expired and icmp_sent
// move, the director's kernel sends none), as IPVS does in every forwarding method
// (decrement_ttl in __ip_vs_get_out_rt, net/netfilter/ipvs/ip_vs_xmit.c, Linux 4.10+);
// the client's kernel hands it to the socket's error queue (IP_RECVERR / IPV6_RECVERR).
// Datagrams with the default TTL still reach the real server and come back.
func TestTimeExceeded(t *testing.T) {
	e := setup(t, testbed.L2)
	e.eachFamily(t, func(t *testing.T, v6 bool) {
		vip := e.bed.VIPFor(v6)
		e.serveVIPEcho(vip)
		e.modeService("-u", vip, vipEchoPort, "-g")
		e.udpEcho(vip) // the default TTL passes

		k0, err := e.bed.Director.Counters()
		if err != nil {
			t.Fatal(err)
		}
		c0 := e.dataplaneCounters()
		typ, code, from := ttlOneAnswer(t, e, netip.AddrPortFrom(vip, vipEchoPort))
		wantType := uint8(11) // ICMP time exceeded, code 0: TTL exceeded in transit
		if v6 {
			wantType = 3 // ICMPv6 time exceeded, code 0: hop limit exceeded in transit
		}
		if typ != wantType || code != 0 || from != vip {
			t.Fatalf("the client got ICMP type %d code %d from %v, want type %d code 0 from the VIP %v", typ, code, from, wantType, vip)
		}
		c1 := e.dataplaneCounters()
		k1, err := e.bed.Director.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if c1["drop_ttl_expired"] == c0["drop_ttl_expired"] || c1["icmp_sent"] == c0["icmp_sent"] {
			t.Errorf("drop_ttl_expired %d -> %d, icmp_sent %d -> %d: the answer did not come from xlvs",
				c0["drop_ttl_expired"], c1["drop_ttl_expired"], c0["icmp_sent"], c1["icmp_sent"])
		}
		for _, k := range []string{"Icmp.OutTimeExcds", "Icmp6.OutTimeExcds", "Icmp.OutDestUnreachs", "Icmp6.OutDestUnreachs"} {
			if k1[k] != k0[k] {
				t.Errorf("the director's kernel counted %s %d", k, k1[k]-k0[k])
			}
		}
		e.udpEcho(vip) // and the service goes on
	})
}

// ttlOneAnswer sends datagrams with TTL (hop limit) 1 to svc from a connected UDP socket
// in the client with IP_RECVERR / IPV6_RECVERR on, until an ICMP error reaches its error
// queue (at most 5 s), and returns the error's type, code and sender (SO_EE_OFFENDER).
func ttlOneAnswer(t *testing.T, e *env, svc netip.AddrPort) (typ, code uint8, from netip.Addr) {
	t.Helper()
	conn, err := e.bed.Client.NS.DialContext(e.ctx, "udp", svc.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc, err := conn.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v6 := svc.Addr().Is6()
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if v6 {
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 1); serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
			}
		} else if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, 1); serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		}
	}); err != nil || serr != nil {
		t.Fatalf("socket options: %v %v", err, serr)
	}
	buf, oob := make([]byte, 1500), make([]byte, 512)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := conn.Write([]byte("ttl one")); err != nil && !errors.Is(err, unix.EHOSTUNREACH) {
			t.Fatalf("send: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		var oobn int
		var rerr error
		if err := rc.Control(func(fd uintptr) {
			_, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		}); err != nil {
			t.Fatal(err)
		}
		if errors.Is(rerr, unix.EAGAIN) {
			continue
		}
		if rerr != nil {
			t.Fatalf("read the error queue: %v", rerr)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if !(m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR ||
				m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR) || len(m.Data) < 16 {
				continue
			}
			// struct sock_extended_err: errno u32, origin, type, code, pad u8, info, data
			// u32; then the offender's sockaddr.
			origin, typ, code := m.Data[4], m.Data[5], m.Data[6]
			if origin != unix.SO_EE_ORIGIN_ICMP && origin != unix.SO_EE_ORIGIN_ICMP6 {
				t.Fatalf("error queue: origin %d, not ICMP", origin)
			}
			sa := m.Data[16:]
			switch fam := binary.NativeEndian.Uint16(sa); {
			case fam == unix.AF_INET && len(sa) >= 8:
				from = netip.AddrFrom4([4]byte(sa[4:8]))
			case fam == unix.AF_INET6 && len(sa) >= 24:
				from = netip.AddrFrom16([16]byte(sa[8:24]))
			}
			return typ, code, from
		}
	}
	t.Fatalf("no ICMP error in the error queue within 5 s for datagrams with TTL 1 to %v", svc)
	return 0, 0, netip.Addr{}
}
