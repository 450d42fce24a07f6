package e2e

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"golang.org/x/sys/unix"

	"xlvs/bench/testbed"
)

// TestMACFilter: a director takes only frames addressed to its own MAC (or a macvlan's
// on its interface, keepalived's use_vmac). On a bridged segment a standby director
// receives the frames a switch floods; the kernel drops those (PACKET_OTHERHOST:
// torvalds/linux v6.12 net/ipv4/ip_input.c ip_rcv_core, net/ipv6/ip6_input.c
// ip6_rcv_core) and IPVS ignores broadcast and multicast ones (ip_vs_core.c ip_vs_in:
// "remote client: only PACKET_HOST"), so the XDP program must pass them all to the
// kernel. Frames to a NAT service, crafted with gopacket and sent from the client's
// AF_PACKET socket to another host's MAC and to the broadcast address, must leave the
// dataplane's counters and the real servers untouched, while the same frame to the
// director's MAC is forwarded, and after a macvlan with a VRRP virtual MAC appears on the
// director's interface, frames to that MAC are forwarded too.
func TestMACFilter(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	e.natService("-u", e.bed.VIP, echoPort, "rr")
	e.natService("-u", e.bed.VIP6, echoPort, "rr")
	e.natService("-t", e.bed.VIP, httpPort, "rr")

	client := openRaw(t, e.bed.Client.NS, e.bed.Client.Iface)
	var reals []*rawSock
	for _, rs := range e.bed.Reals {
		reals = append(reals, openRaw(t, rs.NS, rs.Iface))
	}
	peer := net.HardwareAddr{0x02, 0x00, 0x5e, 0xee, 0x00, 0x01} // another director's
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcast := net.HardwareAddr{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}

	before := e.dataplaneCounters()
	const rounds = 10
	sent := 0
	for i := range rounds {
		for _, dst := range []net.HardwareAddr{peer, bcast, mcast} {
			sport := uint16(47000 + i)
			client.send(t, e.macFrame(dst, e.bed.VIP, layers.IPProtocolUDP, sport, echoPort))
			client.send(t, e.macFrame(dst, e.bed.VIP6, layers.IPProtocolUDP, sport, echoPort))
			client.send(t, e.macFrame(dst, e.bed.VIP, layers.IPProtocolTCP, sport, httpPort))
			sent += 3
		}
	}
	// Wait until the program has seen them all (other_host moves by at least sent: the
	// client's own broadcasts, ARP and neighbour discovery, count there too).
	deadline := time.Now().Add(10 * time.Second)
	var after map[string]uint64
	for {
		after = e.dataplaneCounters()
		if after["xdp_other_host"]-before["xdp_other_host"] >= uint64(sent) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := after["xdp_other_host"] - before["xdp_other_host"]; d < uint64(sent) {
		t.Errorf("xdp_other_host moved by %d, want at least the %d frames sent to other MACs", d, sent)
	}
	for _, k := range []string{"xdp_redirected", "xdp_redirect_failed", "xdp_fastpath_tx", "rx_packets", "tx_packets"} {
		if _, ok := after[k]; !ok {
			t.Fatalf("counter %s missing: %v", k, after)
		}
		if after[k] != before[k] {
			t.Errorf("%s moved from %d to %d on frames to other MACs, want unchanged", k, before[k], after[k])
		}
	}
	for i, r := range reals {
		if f := r.recvFrom(t, e.bed.Client.Addr, e.bed.Client.Addr6, 500*time.Millisecond); f != nil {
			t.Errorf("real server %d received % x from a frame sent to another MAC", i+1, f)
		}
	}
	if t.Failed() {
		return
	}

	// The same frame to the director's MAC is forwarded (the frames above were valid).
	e.expectForwarded(t, client, reals, e.bed.Ext.MAC, 47100)

	// A VRRP virtual MAC on a macvlan of the director's interface, created while xlvsd
	// runs: taken once the link watcher has seen it.
	vmac := net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x01, 0x33}
	if out, err := e.bed.Director.Run(e.ctx, "ip", "link", "add", "link", e.bed.Ext.Iface, "name", "vrrp.51",
		"address", vmac.String(), "type", "macvlan", "mode", "private"); err != nil {
		t.Fatalf("add macvlan: %v: %s", err, out)
	}
	if out, err := e.bed.Director.Run(e.ctx, "ip", "link", "set", "vrrp.51", "up"); err != nil {
		t.Fatalf("set macvlan up: %v: %s", err, out)
	}
	e.expectForwarded(t, client, reals, vmac, 47200)

	// Normal traffic still flows.
	if body, err := e.get(httpURL(e.bed.VIP, httpPort, "/")); err != nil || body == "" {
		t.Fatalf("GET through the VIP: %q, %v", body, err)
	}
}

// macFrame is a client's TCP SYN or UDP datagram to vip:dport from sport, in an Ethernet
// frame to dst.
func (e *env) macFrame(dst net.HardwareAddr, vip netip.Addr, proto layers.IPProtocol, sport, dport uint16) []byte {
	e.t.Helper()
	c := e.bed.Client
	eth := &layers.Ethernet{SrcMAC: c.MAC, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if vip.Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: c.Addr.AsSlice(), DstIP: vip.AsSlice()}
		ip, nl = v4, v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: c.Addr6.AsSlice(), DstIP: vip.AsSlice()}
		ip, nl = v6, v6
	}
	var l4 gopacket.SerializableLayer
	if proto == layers.IPProtocolTCP {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Seq: 1, Window: 1024}
		tcp.SetNetworkLayerForChecksum(nl)
		l4 = tcp
	} else {
		udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		udp.SetNetworkLayerForChecksum(nl)
		l4 = udp
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
		eth, ip, l4, gopacket.Payload("mac filter")); err != nil {
		e.t.Fatal(err)
	}
	return buf.Bytes()
}

// expectForwarded sends UDP datagrams to the VIP in frames to dst, one every 100 ms with
// source ports from sport on, until a real server receives one from the client (NAT: to
// its own address), for at most 10 s.
func (e *env) expectForwarded(t *testing.T, client *rawSock, reals []*rawSock, dst net.HardwareAddr, sport uint16) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := uint16(0); time.Now().Before(deadline); i++ {
		client.send(t, e.macFrame(dst, e.bed.VIP, layers.IPProtocolUDP, sport+i, echoPort))
		for _, r := range reals {
			if r.recvFrom(t, e.bed.Client.Addr, e.bed.Client.Addr6, 50*time.Millisecond) != nil {
				return
			}
		}
	}
	t.Fatalf("no real server received a frame sent to %v", dst)
}

// recvFrom returns the next TCP or UDP frame from src4 or src6 the interface receives
// within wait, or nil.
func (r *rawSock) recvFrom(t *testing.T, src4, src6 netip.Addr, wait time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		f := r.recvAny(t, left)
		if f == nil {
			return nil
		}
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.NoCopy)
		if p.Layer(layers.LayerTypeTCP) == nil && p.Layer(layers.LayerTypeUDP) == nil {
			continue
		}
		switch n := p.NetworkLayer().(type) {
		case *layers.IPv4:
			if a, _ := netip.AddrFromSlice(n.SrcIP); a == src4 {
				return f
			}
		case *layers.IPv6:
			if a, _ := netip.AddrFromSlice(n.SrcIP); a == src6 {
				return f
			}
		}
	}
}

// recvAny returns the next frame the interface receives within wait (not one it sends),
// or nil.
func (r *rawSock) recvAny(t *testing.T, wait time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(wait)
	buf := make([]byte, 4096)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			t.Fatal(err)
		}
		n, from, err := unix.Recvfrom(r.fd, buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("receive on %s: %v", r.name, err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		return append([]byte(nil), buf[:n]...)
	}
}
