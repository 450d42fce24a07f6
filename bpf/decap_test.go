//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// tc return code TC_ACT_OK.
const tcActOK = 0

// Real-server addresses the decap tests install (the tunnel endpoints).
var decapAddrs = []netip.Addr{rip4, rip6}

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
	return d
}

func decapSlots(c DecapCounters) [dstatCount]uint64 {
	return [dstatCount]uint64{
		dstatPassed: c.Passed, dstatDecapsulated: c.Decapsulated, dstatNotLocal: c.NotLocal,
		dstatMalformed: c.Malformed, dstatFragment: c.Fragment, dstatError: c.Error,
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

// refDecap is decap.c's rules written again in Go: the slot a frame must move and the
// frame the program must leave.
func refDecap(frame []byte, addrs map[[16]byte]bool) (int, []byte) {
	if len(frame) < 14 {
		return dstatPassed, frame
	}
	var proto uint8
	var dst [16]byte
	var hlen, plen int
	l3 := frame[14:]
	switch be16(frame[12:]) {
	case 0x0800:
		if len(l3) < 20 {
			return dstatPassed, frame
		}
		proto = l3[9]
		if proto != 4 && proto != 41 {
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
		if proto != 4 && proto != 41 {
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
	if len(l3) <= hlen {
		return dstatMalformed, frame
	}
	v := l3[hlen] >> 4
	if (proto == 4 && (plen < 20 || v != 4)) || (proto == 41 && (plen < 40 || v != 6)) {
		return dstatMalformed, frame
	}
	if !addrs[dst] {
		return dstatNotLocal, frame
	}
	out := append([]byte{}, frame[:12]...)
	if proto == 4 {
		out = append(out, 0x08, 0x00)
	} else {
		out = append(out, 0x86, 0xdd)
	}
	return dstatDecapsulated, append(out, l3[hlen:]...)
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

func decapAddrSet() map[[16]byte]bool {
	m := map[[16]byte]bool{}
	for _, a := range decapAddrs {
		m[a.As16()] = true
	}
	return m
}

func TestDecap(t *testing.T) {
	d := newDecap(t)
	tcp4 := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80, payloadLen: 100}.frame(t)
	udp6 := flow{proto: ProtoUDP, src: cip6, dst: vip6, sport: 40000, dport: 9999, payloadLen: 33}.frame(t)
	dir4, dir6 := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("2001:db8:1::1")
	cases := []struct {
		name  string
		frame []byte
		slot  int
	}{
		{"ipip", tunnelFrame(t, dir4, rip4, tcp4, nil), dstatDecapsulated},
		{"ip6ip6", tunnelFrame(t, dir6, rip6, udp6, nil), dstatDecapsulated},
		{"ipv6 in ipv4", tunnelFrame(t, dir4, rip4, udp6, nil), dstatDecapsulated},
		{"ipv4 in ipv6", tunnelFrame(t, dir6, rip6, tcp4, nil), dstatDecapsulated},
		{"plain tcp", tcp4, dstatPassed},
		{"plain udp6", udp6, dstatPassed},
		{"arp", serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeARP}, gopacket.Payload(make([]byte, 28))), dstatPassed},
		{"ethernet only", tcp4[:14], dstatPassed},
		{"truncated ipv4", tcp4[:30], dstatPassed},
		{"not local v4", tunnelFrame(t, dir4, other, tcp4, nil), dstatNotLocal},
		{"not local v6", tunnelFrame(t, dir6, cip6, udp6, nil), dstatNotLocal},
		{"bad checksum", tunnelFrame(t, dir4, rip4, tcp4, func(o []byte) { o[10] ^= 1 }), dstatMalformed},
		{"outer options", tunnelFrame(t, dir4, rip4, tcp4, func(o []byte) { o[0] = 0x46 }), dstatMalformed},
		{"total length beyond frame", tunnelFrame(t, dir4, rip4, tcp4, func(o []byte) {
			binary.BigEndian.PutUint16(o[2:], 2000)
			fixIPv4Checksum(o)
		}), dstatMalformed},
		{"fragment", tunnelFrame(t, dir4, rip4, tcp4, func(o []byte) {
			o[6] |= 0x20 // MF
			fixIPv4Checksum(o)
		}), dstatFragment},
		{"inner version mismatch", tunnelFrame(t, dir4, rip4, tcp4, func(o []byte) {
			o[9] = 41
			fixIPv4Checksum(o)
		}), dstatMalformed},
		{"ipv6 payload beyond frame", tunnelFrame(t, dir6, rip6, udp6, func(o []byte) { binary.BigEndian.PutUint16(o[4:], 4000) }), dstatMalformed},
		{"ipv6 payload too short for inner", tunnelFrame(t, dir6, rip6, udp6, func(o []byte) { binary.BigEndian.PutUint16(o[4:], 39) }), dstatMalformed},
	}
	addrs := decapAddrSet()
	for _, prog := range []struct {
		name string
		p    *ebpf.Program
		ok   uint32
	}{{"xdp", d.XDPProgram(), xdpPass}, {"tc", d.TCProgram(), tcActOK}} {
		for _, c := range cases {
			t.Run(prog.name+"/"+c.name, func(t *testing.T) {
				wantSlot, wantOut := refDecap(c.frame, addrs)
				if wantSlot != c.slot {
					t.Fatalf("reference model says slot %d, case says %d", wantSlot, c.slot)
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
				if slot == dstatDecapsulated {
					// The result is the inner packet, which still parses and verifies.
					p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
					if el := p.ErrorLayer(); el != nil {
						t.Fatalf("decapsulated frame does not parse: %v", el.Error())
					}
					if !bytes.Equal(out[14:], c.frame[len(c.frame)-len(out)+14:]) {
						t.Errorf("inner packet changed")
					}
				}
			})
		}
	}
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
	d := newDecap(f)
	addrs := decapAddrSet()
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 2048 {
			return // BPF_PROG_TEST_RUN wants an Ethernet header, and an skb within a page
		}
		wantSlot, wantOut := refDecap(frame, addrs)
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
