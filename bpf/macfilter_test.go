//go:build linux

package bpf

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

// The destination MAC filter (xlvs.c, macs). The expected verdicts follow the kernel's
// receive path (torvalds/linux v6.12): eth_type_trans marks a frame PACKET_HOST when its
// destination is the device's address, PACKET_BROADCAST / PACKET_MULTICAST when the
// group bit is set, PACKET_OTHERHOST otherwise (net/ethernet/eth.c); ip_rcv_core and
// ip6_rcv_core drop PACKET_OTHERHOST; ip_vs_in leaves everything but PACKET_HOST alone
// ("remote client: only PACKET_HOST", net/netfilter/ipvs/ip_vs_core.c), and ip_forward /
// ip6_forward drop it. So only a frame to one of the interface's own MACs is the
// dataplane's, whatever the family; every other frame goes to the kernel untouched.

var (
	macOwn   = macB // ethernet() addresses every classify frame to macB
	macVRRP  = net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x01, 0x07}
	macPeer  = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x09} // the master's, flooded here
	macBcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	macMc4   = net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x12}
	macMc6   = net.HardwareAddr{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}
)

// withDst returns frame with its destination MAC replaced.
func withDst(frame []byte, dst net.HardwareAddr) []byte {
	b := append([]byte(nil), frame...)
	copy(b, dst)
	return b
}

func TestMACFilterClassify(t *testing.T) {
	h := newHarness(t)
	frames := map[string][]byte{
		"tcp4 service":        flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}.frame(t),
		"udp6 service":        flow{proto: ProtoUDP, src: cip6, dst: vip6, sport: 40000, dport: 53}.frame(t),
		"tcp4 nat reply":      flow{proto: ProtoTCP, src: rip4, dst: cip4, sport: 8080, dport: 40000}.frame(t),
		"udp4 later fragment": laterFrag(cip4, vip4)(t),
	}
	// Without SetMACs (n == 0) every destination is classified, as before the filter.
	for name, f := range frames {
		for _, dst := range []net.HardwareAddr{macOwn, macPeer, macBcast} {
			if ret, slot := classify(t, h.p, withDst(f, dst), nil); ret != xdpPass || slot != statRedirectFailed {
				t.Errorf("%s to %v, no MACs set: verdict %d slot %d, want pass and redirect_failed (matched, no socket)", name, dst, ret, slot)
			}
		}
	}
	if err := h.p.SetMACs([]net.HardwareAddr{macOwn, macVRRP}); err != nil {
		t.Fatalf("SetMACs: %v", err)
	}
	cases := []struct {
		dst  net.HardwareAddr
		slot int
	}{
		{macOwn, statRedirectFailed},  // PACKET_HOST: matched as ever
		{macVRRP, statRedirectFailed}, // a macvlan's address on this interface: PACKET_HOST there
		{macPeer, statOtherHost},      // PACKET_OTHERHOST: the kernel drops it
		{macBcast, statOtherHost},     // PACKET_BROADCAST: IPVS ignores it
		{macMc4, statOtherHost},       // PACKET_MULTICAST
		{macMc6, statOtherHost},
	}
	for name, f := range frames {
		for _, c := range cases {
			if ret, slot := classify(t, h.p, withDst(f, c.dst), nil); ret != xdpPass || slot != c.slot {
				t.Errorf("%s to %v: verdict %d slot %d, want pass and slot %d", name, c.dst, ret, slot, c.slot)
			}
		}
	}
	// Non-IP to another host: other_host too (the filter comes first).
	arp := withDst(serialize(t, ethernet(false, 0x0806)[0]), macPeer)
	if _, slot := classify(t, h.p, append(arp, make([]byte, 28)...), nil); slot != statOtherHost {
		t.Errorf("ARP to another MAC: slot %d, want other_host (%d)", slot, statOtherHost)
	}
	c, err := h.p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(len(frames)*4 + 1); c.OtherHost != want {
		t.Errorf("OtherHost = %d, want %d", c.OtherHost, want)
	}
	// Emptying the set turns the filter off again.
	if err := h.p.SetMACs(nil); err != nil {
		t.Fatalf("SetMACs(nil): %v", err)
	}
	if _, slot := classify(t, h.p, withDst(frames["tcp4 service"], macPeer), nil); slot != statRedirectFailed {
		t.Errorf("filter off: slot %d, want redirect_failed", slot)
	}
}

func TestMACFilterSetErrors(t *testing.T) {
	h := newHarness(t)
	many := make([]net.HardwareAddr, MaxMACs+1)
	for i := range many {
		many[i] = net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}
	}
	for name, macs := range map[string][]net.HardwareAddr{
		"too many":  many,
		"short":     {{2, 0, 0, 0, 0}},
		"multicast": {macOwn, macMc4},
		"broadcast": {macBcast},
	} {
		if err := h.p.SetMACs(macs); err == nil {
			t.Errorf("%s: SetMACs succeeded", name)
		}
	}
	if err := h.p.SetMACs(many[:MaxMACs]); err != nil {
		t.Errorf("SetMACs with %d addresses: %v", MaxMACs, err)
	}
	h.p.Close()
	if err := h.p.SetMACs([]net.HardwareAddr{macOwn}); !errors.Is(err, ErrClosed) {
		t.Errorf("SetMACs after Close: %v, want ErrClosed", err)
	}
}

// TestMACFilterFastPath: an established flow's entry is used only for frames to the
// interface's own MAC; a copy flooded to this standby is passed and the entry's
// counters do not move.
func TestMACFilterFastPath(t *testing.T) {
	h, p, xa, _ := fastRig(t, false)
	if err := p.SetMACs([]net.HardwareAddr{macDirIn}); err != nil {
		t.Fatalf("SetMACs: %v", err)
	}
	in := fpPkt{src: cip4, dst: vip4, sport: 40100, dport: 80, ttl: 64, dmac: macDirIn, smac: macClient, payload: 20}
	k := fastKeyOf(in)
	if _, err := h.c.FastUpdate([]FastKey{k}, []FastVal{fastEntry(in, FastDR, netip.Addr{}, 0, xa, 1500)}); err != nil {
		t.Fatalf("FastUpdate: %v", err)
	}
	flooded := in
	flooded.dmac = macPeer
	if ret, _, slot := runFast(t, p, flooded.frame(t), xa); ret != xdpPass || slot != statOtherHost {
		t.Fatalf("frame to another MAC: verdict %d slot %d, want pass and other_host", ret, slot)
	}
	var got FastVal
	if ok, err := h.c.FastLookup(&k, &got); !ok || err != nil || got.Packets != 0 {
		t.Fatalf("entry after a frame to another MAC: %v %v packets %d, want 0", ok, err, got.Packets)
	}
	if ret, _, slot := runFast(t, p, in.frame(t), xa); ret != xdpTx || slot != statFastPathTx {
		t.Fatalf("frame to the own MAC: verdict %d slot %d, want XDP_TX and fastpath_tx", ret, slot)
	}
	if ok, err := h.c.FastLookup(&k, &got); !ok || err != nil || got.Packets != 1 {
		t.Fatalf("entry after a frame to the own MAC: %v %v packets %d, want 1", ok, err, got.Packets)
	}
}

// BenchmarkMACFilterProgram: the program's time per packet (BPF_PROG_TEST_RUN with
// repeat) for a service's packet without a MAC set, with the own MAC first in a set of
// one and last in a full set, and for a frame to another MAC (passed at once).
func BenchmarkMACFilterProgram(b *testing.B) {
	frame := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}.frame(b)
	full := make([]net.HardwareAddr, MaxMACs)
	for i := range full {
		full[i] = net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}
	}
	full[MaxMACs-1] = macOwn
	for _, c := range []struct {
		name string
		macs []net.HardwareAddr
		dst  net.HardwareAddr
	}{
		{"no-filter", nil, macOwn},
		{"own-of-1", []net.HardwareAddr{macOwn}, macOwn},
		{"own-last-of-8", full, macOwn},
		{"other-of-8", full, macPeer},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := newHarness(b)
			if err := h.p.SetMACs(c.macs); err != nil {
				b.Fatal(err)
			}
			ret, d, err := h.p.Program().Benchmark(withDst(frame, c.dst), b.N, b.ResetTimer)
			if err != nil || ret != xdpPass {
				b.Fatalf("verdict %d, %v", ret, err)
			}
			b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
		})
	}
}
