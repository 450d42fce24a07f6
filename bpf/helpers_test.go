//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// XDP return codes (enum xdp_action).
const (
	xdpPass     = 2
	xdpRedirect = 4
)

// requirePrivileged skips a test that needs root (BPF, XDP, netns), or fails it when CI
// is set: in CI a skipped privileged test would hide a broken classifier.
func requirePrivileged(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatal("this test needs root (BPF, XDP, network namespaces) and CI is set: run the tests as root")
	}
	tb.Skip("needs root (BPF, XDP, network namespaces); run as root or set CI to make this a failure")
}

// Addresses of the test services and reals (198.18.0.0/15 and 2001:db8::/32).
var (
	vip4  = netip.MustParseAddr("198.18.0.10")
	vip6  = netip.MustParseAddr("2001:db8::10")
	rip4  = netip.MustParseAddr("198.18.1.2")
	rip6  = netip.MustParseAddr("2001:db8:1::2")
	cip4  = netip.MustParseAddr("198.18.2.7")
	cip6  = netip.MustParseAddr("2001:db8:2::7")
	other = netip.MustParseAddr("198.18.0.11")
	any4  = netip.MustParseAddr("198.18.0.12") // a port-0 (every port) TCP service
	anyr4 = netip.MustParseAddr("198.18.1.3")  // its NAT real server, port 0
	// The director's own addresses on the real servers' side (locals), two of which are
	// FULLNAT local addresses (laddrs) as well.
	dir4 = netip.MustParseAddr("198.18.1.1")
	dir6 = netip.MustParseAddr("2001:db8:1::1")
	lip4 = netip.MustParseAddr("198.18.1.50")
	lip6 = netip.MustParseAddr("2001:db8:1::50")

	testServices = []Key{
		{vip4, 80, ProtoTCP}, {vip4, 53, ProtoUDP},
		{vip6, 443, ProtoTCP}, {vip6, 53, ProtoUDP}, {any4, 0, ProtoTCP},
		{vip4, 38412, ProtoSCTP}, {vip6, 38412, ProtoSCTP},
	}
	testReals = []Key{
		{rip4, 8080, ProtoTCP}, {rip4, 5353, ProtoUDP},
		{rip6, 8080, ProtoTCP}, {rip6, 5353, ProtoUDP}, {anyr4, 0, ProtoTCP},
		{rip4, 38412, ProtoSCTP},
	}
	testLocals = []netip.Addr{dir4, dir6, lip4, lip6}
	testLaddrs = []netip.Addr{lip4, lip6}
)

// harness is an unattached Port with testServices, testReals, testLocals and testLaddrs
// installed.
type harness struct {
	c   *Classifier
	p   *Port
	ref refModel // what is installed, for the reference model
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	requirePrivileged(tb)
	c, err := New()
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	p, err := c.Load()
	if err != nil {
		tb.Fatalf("Load: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	if err := c.SetServices(testServices); err != nil {
		tb.Fatalf("SetServices: %v", err)
	}
	if err := c.SetReals(testReals); err != nil {
		tb.Fatalf("SetReals: %v", err)
	}
	if err := c.SetLocals(testLocals); err != nil {
		tb.Fatalf("SetLocals: %v", err)
	}
	if err := c.SetLaddrs(testLaddrs); err != nil {
		tb.Fatalf("SetLaddrs: %v", err)
	}
	return &harness{c: c, p: p, ref: refModel{
		services: keySet(tb, testServices), reals: keySet(tb, testReals),
		locals: addrSet(testLocals), laddrs: addrSet(testLaddrs),
	}}
}

func addrSet(addrs []netip.Addr) map[[16]byte]bool {
	m := make(map[[16]byte]bool, len(addrs))
	for _, a := range addrs {
		m[a.Unmap().As16()] = true
	}
	return m
}

func keySet(tb testing.TB, keys []Key) map[mapKey]bool {
	tb.Helper()
	m := make(map[mapKey]bool, len(keys))
	for _, k := range keys {
		mk, err := k.encode()
		if err != nil {
			tb.Fatalf("encode %v: %v", k, err)
		}
		m[mk] = true
	}
	return m
}

func slots(c Counters) [statCount]uint64 {
	return [statCount]uint64{
		statPassed:         c.Passed,
		statRedirected:     c.Redirected,
		statRedirectFailed: c.RedirectFailed,
		statMalformed:      c.Malformed,
		statFragment:       c.Fragment,
		statNonIP:          c.NonIP,
		statLocalReply:     c.LocalReply,
		statHeld:           c.Held,
		statFastPathTx:     c.FastPathTx,
		statOtherHost:      c.OtherHost,
	}
}

// classify runs the program once on frame (with ctx as its xdp_md, if not nil) and
// returns its verdict and the one counter slot it incremented; it fails the test when
// not exactly one counter moved by exactly one.
func classify(tb testing.TB, p *Port, frame []byte, ctx *xdpMD) (uint32, int) {
	tb.Helper()
	before, err := p.Counters()
	if err != nil {
		tb.Fatalf("Counters: %v", err)
	}
	opts := &ebpf.RunOptions{Data: frame}
	if ctx != nil {
		c := *ctx
		c.DataEnd = uint32(len(frame))
		opts.Context = c
	}
	ret, err := p.Program().Run(opts)
	if err != nil {
		tb.Fatalf("run program on %d-byte frame: %v", len(frame), err)
	}
	after, err := p.Counters()
	if err != nil {
		tb.Fatalf("Counters: %v", err)
	}
	b, a := slots(before), slots(after)
	slot := -1
	for i := range a {
		switch d := a[i] - b[i]; d {
		case 0:
		case 1:
			if slot >= 0 {
				tb.Fatalf("frame % x: counters %d and %d both moved", frame, slot, i)
			}
			slot = i
		default:
			tb.Fatalf("frame % x: counter %d moved by %d, want 0 or 1", frame, i, d)
		}
	}
	if slot < 0 {
		tb.Fatalf("frame % x: no counter moved", frame)
	}
	return ret, slot
}

// xdpMD is struct xdp_md, the context BPF_PROG_TEST_RUN accepts for XDP: data must be 0,
// data_end the frame length, egress_ifindex 0.
type xdpMD struct {
	Data, DataEnd, DataMeta      uint32
	IngressIfindex, RxQueueIndex uint32
	EgressIfindex                uint32
}

// Packet crafting with gopacket.

var (
	macA = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01}
	macB = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x02}
)

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("serialize packet: %v", err)
	}
	return bytes.Clone(buf.Bytes())
}

// flow describes a TCP or UDP packet; the family follows the addresses.
type flow struct {
	proto      Proto
	src, dst   netip.Addr
	sport      uint16
	dport      uint16
	vlan       bool
	ipv4Opts   []layers.IPv4Option
	ipv4Flags  layers.IPv4Flag
	payloadLen int
}

// ethernet returns the Ethernet (and 802.1Q) layers carrying EtherType et.
func ethernet(vlan bool, et layers.EthernetType) []gopacket.SerializableLayer {
	if !vlan {
		return []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}}
	}
	return []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 42, Type: et},
	}
}

// ipLayer returns the IP layer for src -> dst carrying proto.
func ipLayer(src, dst netip.Addr, proto layers.IPProtocol, opts []layers.IPv4Option, flags layers.IPv4Flag) (gopacket.SerializableLayer, gopacket.NetworkLayer, layers.EthernetType) {
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Options: opts, Flags: flags}
		return ip, ip, layers.EthernetTypeIPv4
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	return ip, ip, layers.EthernetTypeIPv6
}

func (f flow) frame(tb testing.TB) []byte {
	tb.Helper()
	ipProto := layers.IPProtocolTCP
	switch f.proto {
	case ProtoUDP:
		ipProto = layers.IPProtocolUDP
	case ProtoSCTP:
		ipProto = layers.IPProtocolSCTP
	}
	ip, nl, et := ipLayer(f.src, f.dst, ipProto, f.ipv4Opts, f.ipv4Flags)
	ls := append(ethernet(f.vlan, et), ip)
	switch f.proto {
	case ProtoTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(f.sport), DstPort: layers.TCPPort(f.dport), SYN: true, Seq: 1, Window: 1024}
		if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, tcp)
	case ProtoUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(f.sport), DstPort: layers.UDPPort(f.dport)}
		if err := udp.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, udp)
	case ProtoSCTP:
		ls = append(ls, &layers.SCTP{SrcPort: layers.SCTPPort(f.sport), DstPort: layers.SCTPPort(f.dport), VerificationTag: 0},
			&layers.SCTPInit{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeInit}, InitiateTag: 1, AdvertisedReceiverWindowCredit: 65536, OutboundStreams: 1, InboundStreams: 1, InitialTSN: 1})
	default:
		tb.Fatalf("flow with protocol %v", f.proto)
	}
	ls = append(ls, gopacket.Payload(bytes.Repeat([]byte{'x'}, f.payloadLen)))
	return serialize(tb, ls...)
}

// l3 returns the offset of the IP header in a frame built by flow.frame.
func (f flow) l3() int {
	if f.vlan {
		return 18
	}
	return 14
}

// Reference model: the classification rules of doc.go written again, plainly, in Go.

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// refModel is what the maps hold: services and reals keys, the director's own addresses
// (locals) and the FULLNAT local addresses (laddrs).
type refModel struct {
	services, reals map[mapKey]bool
	locals, laddrs  map[[16]byte]bool
}

// classify returns the verdict and counter slot the program must produce for frame,
// given the installed keys and whether the frame's queue has a socket.
func (m *refModel) classify(frame []byte, socket bool) (uint32, int) {
	if len(frame) < 14 {
		return xdpPass, statMalformed
	}
	et, off := be16(frame[12:]), 14
	if et == 0x8100 {
		if len(frame) < 18 {
			return xdpPass, statMalformed
		}
		et, off = be16(frame[16:]), 18
	}
	var src, dst [16]byte
	var proto uint8
	var l4, end int
	switch et {
	case 0x0800:
		ip := frame[off:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[0]&0x0f < 5 {
			return xdpPass, statMalformed
		}
		hlen, tlen := int(ip[0]&0x0f)*4, int(be16(ip[2:]))
		if tlen < hlen || tlen > len(ip) {
			return xdpPass, statMalformed
		}
		proto = ip[9]
		src = netip.AddrFrom4([4]byte(ip[12:16])).As16()
		dst = netip.AddrFrom4([4]byte(ip[16:20])).As16()
		if be16(ip[6:])&0x1fff != 0 {
			return m.fragment(src, dst, proto, socket)
		}
		l4, end = off+hlen, off+tlen
	case 0x86dd:
		ip := frame[off:]
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return xdpPass, statMalformed
		}
		tlen := 40 + int(be16(ip[4:]))
		if tlen > len(ip) {
			return xdpPass, statMalformed
		}
		proto = ip[6]
		src, dst = [16]byte(ip[8:24]), [16]byte(ip[24:40])
		l4, end = off+40, off+tlen
		if proto == 44 {
			if tlen < 48 {
				return xdpPass, statMalformed
			}
			proto = ip[40]
			if be16(ip[42:])&0xfff8 != 0 {
				return m.fragment(src, dst, proto, socket)
			}
			l4 += 8
		}
	default:
		return xdpPass, statNonIP
	}
	switch proto {
	case 6:
		if end-l4 < 20 {
			return xdpPass, statMalformed
		}
		if doff := int(frame[l4+12] >> 4); doff < 5 || l4+doff*4 > end {
			return xdpPass, statMalformed
		}
	case 17:
		if end-l4 < 8 {
			return xdpPass, statMalformed
		}
	case 132: // SCTP: the 12-byte common header; the chunks are the dataplane's to check
		if end-l4 < 12 {
			return xdpPass, statMalformed
		}
	case 1, 58:
		if proto == 1 && et != 0x0800 || proto == 58 && et != 0x86dd {
			return xdpPass, statPassed
		}
		return m.icmp(frame[l4:end], et == 0x86dd, dst, socket)
	default:
		return xdpPass, statPassed
	}
	dk := mapKey{Addr: dst, Port: [2]byte(frame[l4+2 : l4+4]), Proto: proto}
	sk := mapKey{Addr: src, Port: [2]byte(frame[l4 : l4+2]), Proto: proto}
	if hasKey(m.services, dk) {
		return refVerdict(socket)
	}
	if hasKey(m.reals, sk) {
		return m.realReply(dst, socket)
	}
	return xdpPass, statPassed
}

// realReply: a real server's packet to dst belongs to the dataplane unless dst is one of
// the director's own addresses that is not a FULLNAT local address.
func (m *refModel) realReply(dst [16]byte, socket bool) (uint32, int) {
	if m.locals[dst] && !m.laddrs[dst] {
		return xdpPass, statLocalReply
	}
	return refVerdict(socket)
}

// hasKey: k is in m, or k's address and protocol with port 0 ("every port") is.
func hasKey(m map[mapKey]bool, k mapKey) bool {
	if m[k] {
		return true
	}
	k.Port = [2]byte{}
	return m[k]
}

func refVerdict(socket bool) (uint32, int) {
	if socket {
		return xdpRedirect, statRedirected
	}
	return xdpPass, statRedirectFailed
}

// fragment: a later fragment is ours when its destination is the address of a service
// of its protocol, or its source that of a real server (then as realReply).
func (m *refModel) fragment(src, dst [16]byte, proto uint8, socket bool) (uint32, int) {
	for k := range m.services {
		if k.Addr == dst && k.Proto == proto {
			return refVerdict(socket)
		}
	}
	for k := range m.reals {
		if k.Addr == src && k.Proto == proto {
			return m.realReply(dst, socket)
		}
	}
	return xdpPass, statFragment
}

// icmp: an ICMP(v6) error quoting a TCP/UDP/SCTP packet from a service's address:port is
// ours; one quoting a packet to a real server's is ours as realReply says for the outer
// destination. msg is the message up to the end of the IP packet.
func (m *refModel) icmp(msg []byte, v6 bool, outerDst [16]byte, socket bool) (uint32, int) {
	if len(msg) < 8 {
		return xdpPass, statMalformed
	}
	q := msg[8:]
	var src, dst [16]byte
	var proto uint8
	var ports []byte
	if !v6 {
		if msg[0] != 3 && msg[0] != 11 || len(q) < 20 || q[0]>>4 != 4 || q[0]&15 < 5 || be16(q[6:])&0x1fff != 0 {
			return xdpPass, statPassed
		}
		proto = q[9]
		src = netip.AddrFrom4([4]byte(q[12:16])).As16()
		dst = netip.AddrFrom4([4]byte(q[16:20])).As16()
		if hl := int(q[0]&15) * 4; hl <= len(q) {
			ports = q[hl:]
		}
	} else {
		if msg[0] != 1 && msg[0] != 2 && msg[0] != 3 || len(q) < 40 || q[0]>>4 != 6 {
			return xdpPass, statPassed
		}
		proto = q[6]
		src, dst = [16]byte(q[8:24]), [16]byte(q[24:40])
		ports = q[40:]
	}
	if proto != 6 && proto != 17 && proto != 132 || len(ports) < 4 {
		return xdpPass, statPassed
	}
	if hasKey(m.services, mapKey{Addr: src, Port: [2]byte(ports[0:2]), Proto: proto}) {
		return refVerdict(socket)
	}
	if hasKey(m.reals, mapKey{Addr: dst, Port: [2]byte(ports[2:4]), Proto: proto}) {
		return m.realReply(outerDst, socket)
	}
	return xdpPass, statPassed
}
