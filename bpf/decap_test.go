//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// tc return code TC_ACT_OK.
const tcActOK = 0

// Real-server addresses the decap tests install (the tunnel endpoints), and their GUE
// ports (the directors' --tun-port); noGUEPort is not one of them.
var (
	decapAddrs    = []netip.Addr{rip4, rip6}
	decapGUEPorts = []uint16{6080, 5555}
)

const noGUEPort = 6081

func newDecap(tb testing.TB) *Decap {
	tb.Helper()
	requirePrivileged(tb)
	d, err := LoadDecap()
	if err != nil {
		tb.Fatalf("LoadDecap: %v", err)
	}
	tb.Cleanup(func() { d.Close() })
	if err := d.SetAddrs(decapAddrs); err != nil {
		tb.Fatalf("SetAddrs: %v", err)
	}
	if err := d.SetGUEPorts(decapGUEPorts); err != nil {
		tb.Fatalf("SetGUEPorts: %v", err)
	}
	return d
}

func decapSlots(c DecapCounters) [dstatCount]uint64 {
	return [dstatCount]uint64{
		dstatPassed: c.Passed, dstatDecapsulated: c.Decapsulated, dstatNotLocal: c.NotLocal,
		dstatMalformed: c.Malformed, dstatFragment: c.Fragment, dstatError: c.Error,
		dstatUnsupported: c.Unsupported,
	}
}

// runDecap runs prog on frame and returns the verdict, the frame it left and the one
// counter slot that moved (failing the test unless exactly one moved by one).
func runDecap(tb testing.TB, d *Decap, prog *ebpf.Program, frame []byte) (uint32, []byte, int) {
	tb.Helper()
	ret, out, slot, ok := tryDecap(tb, d, prog, frame)
	if !ok {
		tb.Fatalf("run %v on %d-byte frame: the kernel refused the frame", prog, len(frame))
	}
	return ret, out, slot
}

// tryDecap is runDecap, except that it reports (ok false) a frame BPF_PROG_TEST_RUN
// refuses (testRunRefuses), after checking that the kernel refused it with EINVAL and
// ran every other frame.
func tryDecap(tb testing.TB, d *Decap, prog *ebpf.Program, frame []byte) (uint32, []byte, int, bool) {
	tb.Helper()
	before, err := d.Counters()
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]byte, len(frame)+256)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out}
	ret, err := prog.Run(opts)
	refused := testRunRefuses(prog.Type(), frame)
	switch {
	case refused && errors.Is(err, unix.EINVAL):
		return 0, nil, 0, false
	case refused:
		tb.Fatalf("run %v on %d-byte frame % x: err %v, want EINVAL (BPF_PROG_TEST_RUN refuses it)", prog, len(frame), frame, err)
	case err != nil:
		tb.Fatalf("run %v on %d-byte frame: %v", prog, len(frame), err)
	}
	after, err := d.Counters()
	if err != nil {
		tb.Fatal(err)
	}
	b, a := decapSlots(before), decapSlots(after)
	slot := -1
	for i := range a {
		switch a[i] - b[i] {
		case 0:
		case 1:
			if slot >= 0 {
				tb.Fatalf("frame % x: counters %d and %d both moved", frame, slot, i)
			}
			slot = i
		default:
			tb.Fatalf("frame % x: counter %d moved by %d", frame, i, a[i]-b[i])
		}
	}
	if slot < 0 {
		tb.Fatalf("frame % x: no counter moved", frame)
	}
	return ret, opts.DataOut, slot, true
}

// testRunRefuses is when BPF_PROG_TEST_RUN refuses a frame with EINVAL. Every program
// type needs an Ethernet header (net/bpf/test_run.c, bpf_test_init: size < ETH_HLEN;
// read in torvalds/linux at bd6c11bc43c4). For skb programs (tc) the kernels this runs on
// (6.18 measured, TestDecapTestRunLimits) also refuse an IPv4 or IPv6 EtherType followed
// by fewer bytes than that IP header (20 / 40); the older tree read above did not.
func testRunRefuses(typ ebpf.ProgramType, frame []byte) bool {
	const ethHLen = 14
	if len(frame) < ethHLen {
		return true
	}
	if typ != ebpf.SchedCLS {
		return false
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		return len(frame) < ethHLen+20
	case 0x86dd:
		return len(frame) < ethHLen+40
	}
	return false
}

// TestDecapTestRunLimits pins down testRunRefuses on the running kernel at every edge:
// each frame is refused with EINVAL exactly when the model says so, and run otherwise.
// If a kernel changes the rule, this names the frame that moved.
func TestDecapTestRunLimits(t *testing.T) {
	d := newDecap(t)
	for _, prog := range []*ebpf.Program{d.XDPProgram(), d.TCProgram()} {
		for _, et := range []uint16{0x0800, 0x86dd, 0x0806} {
			for n := 0; n <= 14+40+1; n++ {
				f := make([]byte, n)
				if n >= 14 {
					binary.BigEndian.PutUint16(f[12:], et)
				}
				_, err := prog.Run(&ebpf.RunOptions{Data: f, DataOut: make([]byte, n+256)})
				want := testRunRefuses(prog.Type(), f)
				if want && !errors.Is(err, unix.EINVAL) || !want && err != nil {
					t.Errorf("%v, EtherType %#04x, %d bytes: err %v; model says refused=%v", prog.Type(), et, n, err, want)
				}
			}
		}
	}
}

// tunnelFrame builds Ethernet + outer IP (outerSrc → outerDst) + the IP packet of inner
// (a frame from flow.frame, whose Ethernet header is dropped). edit, if set, changes the
// outer IP header after it is serialized (checksum not recomputed).
func tunnelFrame(tb testing.TB, outerSrc, outerDst netip.Addr, inner []byte, edit func(outer []byte)) []byte {
	tb.Helper()
	pkt := inner[14:]
	proto := layers.IPProtocolIPv4
	if pkt[0]>>4 == 6 {
		proto = layers.IPProtocolIPv6
	}
	ip, _, et := ipLayer(outerSrc, outerDst, proto, nil, layers.IPv4DontFragment)
	f := serialize(tb, append(ethernet(false, et), ip, gopacket.Payload(pkt))...)
	if edit != nil {
		edit(f[14:])
	}
	return f
}

// decapModel is decap.c's rules written again in Go, given what its maps hold.
type decapModel struct {
	addrs    map[[16]byte]bool
	guePorts map[uint16]bool
}

func newDecapModel() decapModel {
	m := decapModel{addrs: map[[16]byte]bool{}, guePorts: map[uint16]bool{}}
	for _, a := range decapAddrs {
		m.addrs[a.As16()] = true
	}
	for _, p := range decapGUEPorts {
		m.guePorts[p] = true
	}
	return m
}

// isGUE reports whether l4, what follows the outer IP header up to the frame's end,
// holds a UDP header to a GUE port.
func (m decapModel) isGUE(l4 []byte) bool {
	return len(l4) >= 8 && m.guePorts[be16(l4[2:])]
}

// decap returns the slot a frame must move and the frame the program must leave.
func (m decapModel) decap(frame []byte) (int, []byte) {
	if len(frame) < 14 {
		return dstatPassed, frame
	}
	var proto uint8
	var dst [16]byte
	var hlen, plen int
	l3 := frame[14:]
	tunnelProto := func(p uint8) bool { return p == 4 || p == 41 || p == 47 }
	switch be16(frame[12:]) {
	case 0x0800:
		if len(l3) < 20 {
			return dstatPassed, frame
		}
		proto = l3[9]
		switch {
		case proto == 17:
			// The port is looked for after a 20-byte header in a first fragment only.
			if l3[0] != 0x45 || be16(l3[6:])&0x1fff != 0 || !m.isGUE(l3[20:]) {
				return dstatPassed, frame
			}
		case !tunnelProto(proto):
			return dstatPassed, frame
		}
		if l3[0] != 0x45 || checksum(l3[:20]) != 0 {
			return dstatMalformed, frame
		}
		tot := int(be16(l3[2:]))
		if tot < 20 || tot > len(l3) {
			return dstatMalformed, frame
		}
		if be16(l3[6:])&0x3fff != 0 {
			return dstatFragment, frame
		}
		dst = netip.AddrFrom4([4]byte(l3[16:20])).As16()
		hlen, plen = 20, tot-20
	case 0x86dd:
		if len(l3) < 40 {
			return dstatPassed, frame
		}
		proto = l3[6]
		switch {
		case proto == 17:
			if !m.isGUE(l3[40:]) {
				return dstatPassed, frame
			}
		case !tunnelProto(proto):
			return dstatPassed, frame
		}
		if l3[0]>>4 != 6 {
			return dstatMalformed, frame
		}
		plen = int(be16(l3[4:]))
		if 40+plen > len(l3) {
			return dstatMalformed, frame
		}
		dst = [16]byte(l3[24:40])
		hlen = 40
	default:
		return dstatPassed, frame
	}
	p := l3[hlen : hlen+plen] // the outer payload
	inner, tlen, slot := refTunnel(proto, p, l3[hlen:])
	if slot != dstatDecapsulated {
		return slot, frame
	}
	if len(p) < tlen+1 {
		return dstatMalformed, frame
	}
	v := p[tlen] >> 4
	if (inner == 4 && (len(p)-tlen < 20 || v != 4)) || (inner == 41 && (len(p)-tlen < 40 || v != 6)) {
		return dstatMalformed, frame
	}
	if !m.addrs[dst] {
		return dstatNotLocal, frame
	}
	out := append([]byte{}, frame[:12]...)
	if inner == 4 {
		out = append(out, 0x08, 0x00)
	} else {
		out = append(out, 0x86, 0xdd)
	}
	return dstatDecapsulated, append(out, l3[hlen+tlen:]...)
}

// refTunnel classifies the outer payload p of a tunnel packet with outer protocol proto
// (rest: from p's start to the frame's end): the inner protocol (4 or 41) and the
// tunnel header length to strip after the outer IP header, or the slot it moves.
func refTunnel(proto uint8, p, rest []byte) (inner uint8, tlen, slot int) {
	switch proto {
	case 17: // GUE; rest holds the UDP header (isGUE)
		if int(be16(rest[4:])) != len(p) || len(p) < 8+4 {
			return 0, 0, dstatMalformed
		}
		if p[8] != 0 || be16(p[10:]) != 0 || (p[9] != 4 && p[9] != 41) {
			return 0, 0, dstatUnsupported
		}
		return p[9], 12, dstatDecapsulated
	case 47: // GRE
		if len(p) < 4 {
			return 0, 0, dstatMalformed
		}
		switch be16(p[2:]) {
		case 0x0800:
			inner = 4
		case 0x86dd:
			inner = 41
		default:
			return 0, 0, dstatUnsupported
		}
		switch be16(p) {
		case 0:
			return inner, 4, dstatDecapsulated
		case 0x8000:
			if len(p) < 8 {
				return 0, 0, dstatMalformed
			}
			return inner, 8, dstatDecapsulated
		}
		return 0, 0, dstatUnsupported
	}
	return proto, 0, dstatDecapsulated // IPIP
}

// checksum is the RFC 1071 sum of b, complemented: 0 over a header whose checksum is right.
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// decapCase is a frame, the one counter slot it must move and, when that is
// dstatDecapsulated, the inner IP packet the program must leave behind the frame's
// Ethernet addresses.
type decapCase struct {
	name  string
	frame []byte
	slot  int
	inner []byte
}

// runDecapCases runs every case through both programs and holds each to the case and
// to the reference model: verdict pass, the case's slot, the model's frame out.
func runDecapCases(t *testing.T, d *Decap, cases []decapCase) {
	t.Helper()
	m := newDecapModel()
	for _, prog := range []struct {
		name string
		p    *ebpf.Program
		ok   uint32
	}{{"xdp", d.XDPProgram(), xdpPass}, {"tc", d.TCProgram(), tcActOK}} {
		for _, c := range cases {
			t.Run(prog.name+"/"+c.name, func(t *testing.T) {
				wantSlot, wantOut := m.decap(c.frame)
				if wantSlot != c.slot {
					t.Fatalf("reference model says slot %d, case says %d", wantSlot, c.slot)
				}
				if (c.slot == dstatDecapsulated) != (c.inner != nil) {
					t.Fatalf("case with slot %d and %d inner bytes: only a decapsulated case names its inner packet", c.slot, len(c.inner))
				}
				ret, out, slot, ok := tryDecap(t, d, prog.p, c.frame)
				if !ok {
					// tryDecap checked that the kernel refused it as testRunRefuses
					// says; the XDP variant of the case ran the frame.
					t.Logf("BPF_PROG_TEST_RUN refuses this %d-byte frame for %v programs (EINVAL, as expected)", len(c.frame), prog.p.Type())
					return
				}
				if ret != prog.ok {
					t.Errorf("verdict %d, want %d", ret, prog.ok)
				}
				if slot != c.slot {
					t.Errorf("slot %d, want %d", slot, c.slot)
				}
				if !bytes.Equal(out, wantOut) {
					t.Errorf("frame out\n% x\nwant\n% x", out, wantOut)
				}
				if slot != dstatDecapsulated {
					return
				}
				// The result is the Ethernet addresses, the inner packet's EtherType
				// and the inner packet, unchanged; it parses.
				et := []byte{0x08, 0x00}
				if c.inner[0]>>4 == 6 {
					et = []byte{0x86, 0xdd}
				}
				want := slices.Concat(c.frame[:12], et, c.inner)
				if !bytes.Equal(out, want) {
					t.Errorf("frame out\n% x\nwant the inner packet\n% x", out, want)
				}
				p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
				if el := p.ErrorLayer(); el != nil {
					t.Errorf("decapsulated frame does not parse: %v", el.Error())
				}
			})
		}
	}
}

func TestDecap(t *testing.T) {
	d := newDecap(t)
	tcp4 := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, payloadLen: 100}.frame(t)
	udp6 := flow{proto: ProtoUDP, src: cip6, dst: vip6, sport: 40000, dport: 9999, payloadLen: 33}.frame(t)
	runDecapCases(t, d, []decapCase{
		{"ipip", tunnelFrame(t, dir4, rip4, tcp4, nil), dstatDecapsulated, tcp4[14:]},
		{"ip6ip6", tunnelFrame(t, dir6, rip6, udp6, nil), dstatDecapsulated, udp6[14:]},
		{"ipv6 in ipv4", tunnelFrame(t, dir4, rip4, udp6, nil), dstatDecapsulated, udp6[14:]},
		{"ipv4 in ipv6", tunnelFrame(t, dir6, rip6, tcp4, nil), dstatDecapsulated, tcp4[14:]},
		{"plain tcp", tcp4, dstatPassed, nil},
		{"plain udp6", udp6, dstatPassed, nil},
		{"arp", serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeARP}, gopacket.Payload(make([]byte, 28))), dstatPassed, nil},
		{"ethernet only", tcp4[:14], dstatPassed, nil},
		{"truncated ipv4", tcp4[:30], dstatPassed, nil},
		{"not local v4", tunnelFrame(t, dir4, other, tcp4, nil), dstatNotLocal, nil},
		{"not local v6", tunnelFrame(t, dir6, cip6, udp6, nil), dstatNotLocal, nil},
		{"bad checksum", tunnelFrame(t, dir4, rip4, tcp4, func(o []byte) { o[10] ^= 1 }), dstatMalformed, nil},
		{"outer options", tunnelFrame(t, dir4, rip4, tcp4, func(o []byte) { o[0] = 0x46 }), dstatMalformed, nil},
		{"total length beyond frame", tunnelFrame(t, dir4, rip4, tcp4, func(o []byte) {
			binary.BigEndian.PutUint16(o[2:], 2000)
			fixIPv4Checksum(o)
		}), dstatMalformed, nil},
		{"fragment", tunnelFrame(t, dir4, rip4, tcp4, func(o []byte) {
			o[6] |= 0x20 // MF
			fixIPv4Checksum(o)
		}), dstatFragment, nil},
		{"inner version mismatch", tunnelFrame(t, dir4, rip4, tcp4, func(o []byte) {
			o[9] = 41
			fixIPv4Checksum(o)
		}), dstatMalformed, nil},
		{"ipv6 payload beyond frame", tunnelFrame(t, dir6, rip6, udp6, func(o []byte) { binary.BigEndian.PutUint16(o[4:], 4000) }), dstatMalformed, nil},
		{"ipv6 payload too short for inner", tunnelFrame(t, dir6, rip6, udp6, func(o []byte) { binary.BigEndian.PutUint16(o[4:], 39) }), dstatMalformed, nil},
	})
}

// gueHeader is the GUE header ipvs_gue_encap writes without remote checksum offload:
// version 0, C 0, hlen 0, no flags, proto_ctype 4 or 41 by the version of inner (an IP
// packet), followed by inner.
func gueHeader(inner []byte) []byte {
	ctype := byte(4)
	if inner[0]>>4 == 6 {
		ctype = 41
	}
	return append([]byte{0, ctype, 0, 0}, inner...)
}

// udpFrame builds Ethernet + outer IP (src → dst) + UDP to dport carrying payload, with
// the UDP checksum computed when csum is set, else 0 (what IPVS sends without
// --tun-csum, over IPv6 too). edit, if set, changes the outer IP packet afterwards
// (checksums not recomputed).
func udpFrame(tb testing.TB, src, dst netip.Addr, dport uint16, csum bool, payload []byte, edit func(outer []byte)) []byte {
	tb.Helper()
	ip, nl, et := ipLayer(src, dst, layers.IPProtocolUDP, nil, layers.IPv4DontFragment)
	udp := &layers.UDP{SrcPort: 49152, DstPort: layers.UDPPort(dport)}
	if err := udp.SetNetworkLayerForChecksum(nl); err != nil {
		tb.Fatal(err)
	}
	f := serialize(tb, append(ethernet(false, et), ip, udp, gopacket.Payload(payload))...)
	l4 := 14 + 20
	if src.Is6() {
		l4 = 14 + 40
	}
	if !csum {
		f[l4+6], f[l4+7] = 0, 0
	} else if be16(f[l4+6:]) == 0 {
		tb.Fatalf("UDP checksum of % x is 0: pick another payload", f)
	}
	if edit != nil {
		edit(f[14:])
	}
	return f
}

// ipFrame builds Ethernet + IP (src → dst, protocol proto) + payload.
func ipFrame(tb testing.TB, src, dst netip.Addr, proto layers.IPProtocol, payload []byte) []byte {
	tb.Helper()
	ip, _, et := ipLayer(src, dst, proto, nil, layers.IPv4DontFragment)
	return serialize(tb, append(ethernet(false, et), ip, gopacket.Payload(payload))...)
}

// greFrame builds Ethernet + outer IP (src → dst, protocol 47) + a GRE header with flags
// and protocol type proto + payload. The header has the fields its flags announce, as
// RFC 2890 orders them: with C the checksum (over the GRE header and payload) and
// reserved1, with K a key, with S a sequence number.
func greFrame(tb testing.TB, src, dst netip.Addr, flags, proto uint16, payload []byte) []byte {
	tb.Helper()
	gre := binary.BigEndian.AppendUint16(nil, flags)
	gre = binary.BigEndian.AppendUint16(gre, proto)
	if flags&0x8000 != 0 {
		gre = append(gre, 0, 0, 0, 0)
	}
	if flags&0x2000 != 0 {
		gre = append(gre, 0, 0, 0, 42)
	}
	if flags&0x1000 != 0 {
		gre = append(gre, 0, 0, 0, 1)
	}
	gre = append(gre, payload...)
	if flags&0x8000 != 0 {
		binary.BigEndian.PutUint16(gre[4:], checksum(gre))
	}
	return ipFrame(tb, src, dst, layers.IPProtocolGRE, gre)
}

// editUDP returns an edit for udpFrame that applies fn to the UDP header and what
// follows it.
func editUDP(fn func(udp []byte)) func(outer []byte) {
	return func(outer []byte) {
		if outer[0]>>4 == 4 {
			fn(outer[20:])
		} else {
			fn(outer[40:])
		}
	}
}

func TestDecapGUE(t *testing.T) {
	d := newDecap(t)
	tcp4 := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, payloadLen: 100}.frame(t)[14:]
	udp6 := flow{proto: ProtoUDP, src: cip6, dst: vip6, sport: 40000, dport: 9999, payloadLen: 33}.frame(t)[14:]
	port := decapGUEPorts[0]
	var cases []decapCase
	for _, outer := range []struct {
		name     string
		src, dst netip.Addr
	}{{"gue4", dir4, rip4}, {"gue6", dir6, rip6}} {
		for _, inner := range []struct {
			name string
			pkt  []byte
		}{{"inner4", tcp4}, {"inner6", udp6}} {
			for _, csum := range []bool{false, true} {
				name := outer.name + " " + inner.name + " udp checksum 0"
				if csum {
					name = outer.name + " " + inner.name + " udp checksum"
				}
				cases = append(cases, decapCase{name, udpFrame(t, outer.src, outer.dst, port, csum, gueHeader(inner.pkt), nil), dstatDecapsulated, inner.pkt})
			}
		}
	}
	// ipvs_gue_encap with --tun-remcsum on a CHECKSUM_PARTIAL skb: hlen 2, the private
	// flag, the private flags word with REMCSUM, then csum_start and csum_offset.
	remcsum := append([]byte{0x02, 4, 0x00, 0x01, 0x80, 0, 0, 0, 0, 20, 0, 36}, tcp4...)
	// gueWith is a GUE header with first byte b0 (version, C, hlen), proto_ctype ctype
	// and flags, followed by inner.
	gueWith := func(b0, ctype byte, flags uint16, inner []byte) []byte {
		h := append([]byte{b0, ctype}, binary.BigEndian.AppendUint16(nil, flags)...)
		return append(h, inner...)
	}
	cases = append(cases, []decapCase{
		{"gue4 second port", udpFrame(t, dir4, rip4, decapGUEPorts[1], false, gueHeader(tcp4), nil), dstatDecapsulated, tcp4},
		{"gue4 port not configured", udpFrame(t, dir4, rip4, noGUEPort, false, gueHeader(tcp4), nil), dstatPassed, nil},
		{"gue6 port not configured", udpFrame(t, dir6, rip6, noGUEPort, true, gueHeader(udp6), nil), dstatPassed, nil},
		{"gue4 not local", udpFrame(t, dir4, other, port, false, gueHeader(tcp4), nil), dstatNotLocal, nil},
		{"gue6 not local", udpFrame(t, dir6, cip6, port, false, gueHeader(udp6), nil), dstatNotLocal, nil},
		{"gue4 remote checksum offload", udpFrame(t, dir4, rip4, port, true, remcsum, nil), dstatUnsupported, nil},
		{"gue4 hlen 1", udpFrame(t, dir4, rip4, port, false, gueWith(0x01, 4, 0, append(make([]byte, 4), tcp4...)), nil), dstatUnsupported, nil},
		{"gue6 control message", udpFrame(t, dir6, rip6, port, false, gueWith(0x20, 0, 0, udp6), nil), dstatUnsupported, nil},
		{"gue4 version 1", udpFrame(t, dir4, rip4, port, false, gueWith(0x40, 4, 0, tcp4), nil), dstatUnsupported, nil},
		{"gue6 flags", udpFrame(t, dir6, rip6, port, false, gueWith(0, 41, 0x8000, udp6), nil), dstatUnsupported, nil},
		{"gue4 proto_ctype gre", udpFrame(t, dir4, rip4, port, false, gueWith(0, 47, 0, tcp4), nil), dstatUnsupported, nil},
		{"gue4 proto_ctype 4 inner ipv6", udpFrame(t, dir4, rip4, port, false, gueWith(0, 4, 0, udp6), nil), dstatMalformed, nil},
		{"gue6 proto_ctype 41 inner ipv4", udpFrame(t, dir6, rip6, port, false, gueWith(0, 41, 0, tcp4), nil), dstatMalformed, nil},
		{"gue4 udp length short", udpFrame(t, dir4, rip4, port, false, gueHeader(tcp4), editUDP(func(u []byte) { binary.BigEndian.PutUint16(u[4:], be16(u[4:])-1) })), dstatMalformed, nil},
		{"gue6 udp length long", udpFrame(t, dir6, rip6, port, false, gueHeader(udp6), editUDP(func(u []byte) { binary.BigEndian.PutUint16(u[4:], be16(u[4:])+1) })), dstatMalformed, nil},
		{"gue4 truncated gue header", udpFrame(t, dir4, rip4, port, false, []byte{0, 4}, nil), dstatMalformed, nil},
		{"gue6 truncated gue header", udpFrame(t, dir6, rip6, port, false, []byte{0, 41, 0}, nil), dstatMalformed, nil},
		{"gue4 inner header cut short", udpFrame(t, dir4, rip4, port, false, gueHeader(tcp4[:19]), nil), dstatMalformed, nil},
		{"gue4 bad ip checksum", udpFrame(t, dir4, rip4, port, false, gueHeader(tcp4), func(o []byte) { o[10] ^= 1 }), dstatMalformed, nil},
		{"gue4 first fragment", udpFrame(t, dir4, rip4, port, false, gueHeader(tcp4), func(o []byte) {
			o[6] |= 0x20 // MF
			fixIPv4Checksum(o)
		}), dstatFragment, nil},
		// Neither has its UDP header where the program looks: they are not looked at.
		{"udp4 later fragment", udpFrame(t, dir4, rip4, port, false, gueHeader(tcp4), func(o []byte) {
			o[7] = 1 // offset 8 bytes
			fixIPv4Checksum(o)
		}), dstatPassed, nil},
		{"udp4 with options", udpFrame(t, dir4, rip4, port, false, gueHeader(tcp4), func(o []byte) {
			o[0] = 0x46
			fixIPv4Checksum(o)
		}), dstatPassed, nil},
		{"udp4 header cut short", udpFrame(t, dir4, rip4, port, false, nil, nil)[:14+20+7], dstatPassed, nil},
	}...)
	runDecapCases(t, d, cases)
}

func TestDecapGRE(t *testing.T) {
	d := newDecap(t)
	tcp4 := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, payloadLen: 100}.frame(t)[14:]
	udp6 := flow{proto: ProtoUDP, src: cip6, dst: vip6, sport: 40000, dport: 9999, payloadLen: 33}.frame(t)[14:]
	var cases []decapCase
	for _, outer := range []struct {
		name     string
		src, dst netip.Addr
	}{{"gre4", dir4, rip4}, {"gre6", dir6, rip6}} {
		for _, inner := range []struct {
			name  string
			proto uint16
			pkt   []byte
		}{{"inner4", 0x0800, tcp4}, {"inner6", 0x86dd, udp6}} {
			cases = append(cases,
				decapCase{outer.name + " " + inner.name, greFrame(t, outer.src, outer.dst, 0, inner.proto, inner.pkt), dstatDecapsulated, inner.pkt},
				decapCase{outer.name + " " + inner.name + " checksum", greFrame(t, outer.src, outer.dst, 0x8000, inner.proto, inner.pkt), dstatDecapsulated, inner.pkt})
		}
	}
	cases = append(cases, []decapCase{
		{"gre4 key", greFrame(t, dir4, rip4, 0x2000, 0x0800, tcp4), dstatUnsupported, nil},
		{"gre6 sequence", greFrame(t, dir6, rip6, 0x1000, 0x86dd, udp6), dstatUnsupported, nil},
		{"gre4 checksum and key", greFrame(t, dir4, rip4, 0xa000, 0x0800, tcp4), dstatUnsupported, nil},
		{"gre4 routing", greFrame(t, dir4, rip4, 0x4000, 0x0800, tcp4), dstatUnsupported, nil},
		{"gre4 version 1", greFrame(t, dir4, rip4, 0x0001, 0x0800, tcp4), dstatUnsupported, nil},
		{"gre6 transparent ethernet bridging", greFrame(t, dir6, rip6, 0, 0x6558, udp6), dstatUnsupported, nil},
		{"gre4 0x0800 inner ipv6", greFrame(t, dir4, rip4, 0, 0x0800, udp6), dstatMalformed, nil},
		{"gre6 0x86dd inner ipv4", greFrame(t, dir6, rip6, 0x8000, 0x86dd, tcp4), dstatMalformed, nil},
		{"gre4 truncated header", ipFrame(t, dir4, rip4, layers.IPProtocolGRE, []byte{0, 0}), dstatMalformed, nil},
		{"gre6 checksum header cut short", ipFrame(t, dir6, rip6, layers.IPProtocolGRE, []byte{0x80, 0, 0x86, 0xdd, 0, 0}), dstatMalformed, nil},
		{"gre4 not local", greFrame(t, dir4, other, 0, 0x0800, tcp4), dstatNotLocal, nil},
		{"gre6 not local", greFrame(t, dir6, cip6, 0x8000, 0x86dd, udp6), dstatNotLocal, nil},
		{"gre4 fragment", func() []byte {
			f := greFrame(t, dir4, rip4, 0, 0x0800, tcp4)
			f[14+6] |= 0x20 // MF
			fixIPv4Checksum(f[14:])
			return f
		}(), dstatFragment, nil},
	}...)
	runDecapCases(t, d, cases)
}

func fixIPv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], checksum(h[:20]))
}

func TestDecapSetAddrs(t *testing.T) {
	d := newDecap(t)
	inner := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 1, dport: 80}.frame(t)
	frame := tunnelFrame(t, cip4, other, inner, nil)
	if _, _, slot := runDecap(t, d, d.XDPProgram(), frame); slot != dstatNotLocal {
		t.Fatalf("before SetAddrs: slot %d, want not local", slot)
	}
	// The IPv4-mapped form is the same address.
	if err := d.SetAddrs([]netip.Addr{netip.AddrFrom16(other.As16())}); err != nil {
		t.Fatal(err)
	}
	if _, _, slot := runDecap(t, d, d.XDPProgram(), frame); slot != dstatDecapsulated {
		t.Fatalf("after SetAddrs: slot %d, want decapsulated", slot)
	}
	// The old addresses are gone.
	frame = tunnelFrame(t, cip4, rip4, inner, nil)
	if _, _, slot := runDecap(t, d, d.XDPProgram(), frame); slot != dstatNotLocal {
		t.Fatalf("replaced address: slot %d, want not local", slot)
	}
	for _, bad := range []struct {
		name  string
		addrs []netip.Addr
		is    error
	}{
		{"empty", nil, ErrNoAddrs},
		{"invalid", []netip.Addr{{}}, nil},
		{"zone", []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}, nil},
		{"too many", manyAddrs(MaxDecapAddrs + 1), nil},
	} {
		err := d.SetAddrs(bad.addrs)
		if err == nil || (bad.is != nil && !errors.Is(err, bad.is)) {
			t.Errorf("%s: SetAddrs = %v, want an error (%v)", bad.name, err, bad.is)
		}
	}
	// A refused set changed nothing.
	frame = tunnelFrame(t, cip4, other, inner, nil)
	if _, _, slot := runDecap(t, d, d.XDPProgram(), frame); slot != dstatDecapsulated {
		t.Fatalf("after refused SetAddrs: slot %d, want decapsulated", slot)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.SetAddrs(decapAddrs); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetAddrs after Close = %v, want ErrClosed", err)
	}
}

func TestDecapSetGUEPorts(t *testing.T) {
	d := newDecap(t)
	inner := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 1, dport: 80}.frame(t)[14:]
	frame := func(port uint16) []byte { return udpFrame(t, dir4, rip4, port, false, gueHeader(inner), nil) }
	check := func(when string, port uint16, want int) {
		t.Helper()
		if _, _, slot := runDecap(t, d, d.XDPProgram(), frame(port)); slot != want {
			t.Fatalf("%s: GUE to port %d: slot %d, want %d", when, port, slot, want)
		}
	}
	check("installed", decapGUEPorts[0], dstatDecapsulated)
	check("installed", noGUEPort, dstatPassed)
	// Repeated ports are one port; the old ports are gone.
	if err := d.SetGUEPorts([]uint16{noGUEPort, noGUEPort}); err != nil {
		t.Fatal(err)
	}
	check("after SetGUEPorts", noGUEPort, dstatDecapsulated)
	check("replaced", decapGUEPorts[0], dstatPassed)
	for _, bad := range []struct {
		name  string
		ports []uint16
	}{
		{"port 0", []uint16{6080, 0}},
		{"too many", manyPorts(MaxDecapGUEPorts + 1)},
	} {
		if err := d.SetGUEPorts(bad.ports); err == nil {
			t.Errorf("%s: SetGUEPorts succeeded", bad.name)
		}
	}
	check("after refused SetGUEPorts", noGUEPort, dstatDecapsulated)
	// The map holds exactly MaxDecapGUEPorts.
	if err := d.SetGUEPorts(manyPorts(MaxDecapGUEPorts)); err != nil {
		t.Fatalf("SetGUEPorts(%d ports): %v", MaxDecapGUEPorts, err)
	}
	check("full set", manyPorts(MaxDecapGUEPorts)[MaxDecapGUEPorts-1], dstatDecapsulated)
	// No port: GUE off, UDP passes.
	if err := d.SetGUEPorts(nil); err != nil {
		t.Fatal(err)
	}
	check("empty set", manyPorts(1)[0], dstatPassed)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.SetGUEPorts(decapGUEPorts); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetGUEPorts after Close = %v, want ErrClosed", err)
	}
}

// TestGUEPortSet checks the port validation SetGUEPorts and AttachDecap share; it needs
// no privilege.
func TestGUEPortSet(t *testing.T) {
	for _, c := range []struct {
		name  string
		ports []uint16
		n     int    // distinct ports, when accepted
		err   string // what the error says, when refused
	}{
		{"none", nil, 0, ""},
		{"one", []uint16{6080}, 1, ""},
		{"repeated", []uint16{6080, 5555, 6080}, 2, ""},
		{"highest", []uint16{65535}, 1, ""},
		{"full", manyPorts(MaxDecapGUEPorts), MaxDecapGUEPorts, ""},
		{"full with repeats", append(manyPorts(MaxDecapGUEPorts), manyPorts(3)...), MaxDecapGUEPorts, ""},
		{"port 0", []uint16{6080, 0}, 0, "port 0 is not a destination port; want 1-65535"},
		{"too many", manyPorts(MaxDecapGUEPorts + 1), 0, fmt.Sprintf("%d distinct ports, at most %d", MaxDecapGUEPorts+1, MaxDecapGUEPorts)},
	} {
		set, err := guePortSet(c.ports)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err == "" && len(set) != c.n:
			t.Errorf("%s: %d distinct ports, want %d", c.name, len(set), c.n)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.err)
		}
	}
	// AttachDecap refuses bad ports before it loads anything.
	if _, err := AttachDecap(1, DecapAuto, decapAddrs, 0); err == nil || !strings.Contains(err.Error(), "port 0") {
		t.Errorf("AttachDecap with port 0: %v, want a refusal naming port 0", err)
	}
}

func manyPorts(n int) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = uint16(7000 + i)
	}
	return out
}

func manyAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	}
	return out
}

func TestParseDecapHook(t *testing.T) {
	for _, h := range []DecapHook{DecapAuto, DecapXDP, DecapTC} {
		got, err := ParseDecapHook(h.String())
		if err != nil || got != h {
			t.Errorf("ParseDecapHook(%q) = %v, %v", h.String(), got, err)
		}
	}
	if _, err := ParseDecapHook("native"); err == nil {
		t.Error("ParseDecapHook(native) succeeded")
	}
}

// FuzzDecap runs both programs on arbitrary frames and holds them to the reference
// model: the same counter slot and the same resulting frame, always a pass verdict.
func FuzzDecap(f *testing.F) {
	inner4 := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 1, dport: 80, payloadLen: 8}.frame(f)
	inner6 := flow{proto: ProtoUDP, src: cip6, dst: vip6, sport: 1, dport: 53}.frame(f)
	f.Add(tunnelFrame(f, cip4, rip4, inner4, nil))
	f.Add(tunnelFrame(f, cip6, rip6, inner6, nil))
	f.Add(tunnelFrame(f, cip4, rip4, inner6, nil))
	f.Add(tunnelFrame(f, cip6, rip6, inner4, nil))
	f.Add(tunnelFrame(f, cip4, rip4, inner4, nil)[:40])
	f.Add(inner4)
	f.Add(udpFrame(f, cip4, rip4, decapGUEPorts[0], false, gueHeader(inner4[14:]), nil))
	f.Add(udpFrame(f, cip6, rip6, decapGUEPorts[1], true, gueHeader(inner4[14:]), nil))
	f.Add(greFrame(f, cip4, rip4, 0, 0x86dd, inner6[14:]))
	f.Add(greFrame(f, cip6, rip6, 0x8000, 0x0800, inner4[14:]))
	d := newDecap(f)
	m := newDecapModel()
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 2048 {
			return // BPF_PROG_TEST_RUN wants an Ethernet header, and an skb within a page
		}
		wantSlot, wantOut := m.decap(frame)
		for _, p := range []struct {
			prog *ebpf.Program
			ok   uint32
		}{{d.XDPProgram(), xdpPass}, {d.TCProgram(), tcActOK}} {
			ret, out, slot, ok := tryDecap(t, d, p.prog, frame)
			if !ok {
				continue
			}
			if ret != p.ok || slot != wantSlot || !bytes.Equal(out, wantOut) {
				t.Fatalf("%v: verdict %d slot %d out % x; want %d slot %d out % x", p.prog, ret, slot, out, p.ok, wantSlot, wantOut)
			}
		}
	})
}
