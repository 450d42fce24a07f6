//go:build linux

package bpf

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func markPrefix(tb testing.TB, proto Proto, s string) MarkPrefix {
	tb.Helper()
	p := netip.MustParsePrefix(s).Masked()
	fam := uint8(6)
	if p.Addr().Is4() {
		fam = 4
	}
	return MarkPrefix{Proto: proto, Family: fam, Addr: p.Addr().As16(), Bits: uint8(p.Bits())}
}

// markModel is the program's firewall-mark rule written plainly: the longest installed
// prefix of the packet's protocol and family that contains its destination decides; the
// packet is redirected when one of that prefix's port ranges holds its port.
func markModel(pre []MarkPrefix, ports []MarkPorts, proto Proto, dst netip.Addr, port uint16) bool {
	best := -1
	var bp MarkPrefix
	for _, p := range pre {
		if p.Proto != proto || (p.Family == 4) != dst.Is4() {
			continue
		}
		a := netip.AddrFrom16(p.Addr)
		if p.Family == 4 {
			a = a.Unmap()
		}
		if netip.PrefixFrom(a, int(p.Bits)).Contains(dst) && int(p.Bits) > best {
			best, bp = int(p.Bits), p
		}
	}
	if best < 0 {
		return false
	}
	for _, r := range ports {
		if r.MarkPrefix == bp && r.Lo <= port && port <= r.Hi {
			return true
		}
	}
	return false
}

// TestMarksClassify: random sets of mark prefixes and port ranges, installed with
// SetMarks (each set replacing the one before), decide which packets the program
// redirects exactly as the model does; ICMP errors quoting a packet from a marked
// VIP:port are redirected too.
func TestMarksClassify(t *testing.T) {
	h := newHarness(t)
	rng := rand.New(rand.NewPCG(5, 6))
	pres := []string{"0.0.0.0/0", "203.0.113.0/24", "203.0.113.0/26", "203.0.113.7/32", "203.0.113.128/25", "::/0", "2001:db8:aa::/48", "2001:db8:aa::7/128"}
	dsts := []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("203.0.113.8"), netip.MustParseAddr("203.0.113.200"),
		netip.MustParseAddr("192.0.2.99"), netip.MustParseAddr("2001:db8:aa::7"), netip.MustParseAddr("2001:db8:aa::8"), netip.MustParseAddr("2001:db8:bb::1")}
	portsOf := []uint16{1, 21, 22, 80, 443, 1024, 5000, 65535}
	for round := 0; round < 40; round++ {
		var pre []MarkPrefix
		var ports []MarkPorts
		seen := map[MarkPrefix]bool{}
		for n := rng.IntN(6); n >= 0; n-- {
			p := markPrefix(t, []Proto{ProtoTCP, ProtoUDP, ProtoSCTP}[rng.IntN(3)], pres[rng.IntN(len(pres))])
			if seen[p] {
				continue
			}
			seen[p] = true
			pre = append(pre, p)
			next := uint32(0)
			for k := rng.IntN(3); k > 0 && next < 65536; k-- {
				lo := next + uint32(rng.IntN(3000))
				hi := lo + uint32(rng.IntN(2000))
				if hi > 65535 {
					break
				}
				ports = append(ports, MarkPorts{MarkPrefix: p, Lo: uint16(lo), Hi: uint16(hi), Mark: uint32(1 + rng.IntN(9))})
				next = hi + 1
			}
		}
		if err := h.c.SetMarks(pre, ports); err != nil {
			t.Fatal(err)
		}
		a, p, err := h.c.dumpMarks()
		if err != nil {
			t.Fatal(err)
		}
		nblocks := 0
		for _, r := range ports {
			nblocks += len(PortBlocks(r.Lo, r.Hi))
		}
		if len(a) != len(pre) || len(p) != nblocks {
			t.Fatalf("round %d: maps hold %d prefixes and %d port blocks, want %d and %d", round, len(a), len(p), len(pre), nblocks)
		}
		for _, dst := range dsts {
			for _, port := range portsOf {
				for _, proto := range []Proto{ProtoTCP, ProtoUDP, ProtoSCTP} {
					src := cip4
					if dst.Is6() {
						src = cip6
					}
					f := flow{proto: proto, src: src, dst: dst, sport: 40000, dport: port}
					want := markModel(pre, ports, proto, dst, port)
					_, slot := classify(t, h.p, f.frame(t), nil)
					if got := slot == statRedirectFailed; got != want {
						t.Fatalf("round %d: %v %v:%d: redirected %v, model %v (slot %d)", round, proto, dst, port, got, want, slot)
					}
				}
			}
		}
	}
	// An ICMP error quoting the director's packet from a marked VIP:port to the client.
	if err := h.c.SetMarks([]MarkPrefix{markPrefix(t, ProtoTCP, "203.0.113.0/24")},
		[]MarkPorts{{MarkPrefix: markPrefix(t, ProtoTCP, "203.0.113.0/24"), Lo: 443, Hi: 443, Mark: 1}}); err != nil {
		t.Fatal(err)
	}
	frame := icmpErr(cip4, netip.MustParseAddr("203.0.113.9"), 3, 4, flow{proto: ProtoTCP, src: netip.MustParseAddr("203.0.113.9"), dst: cip4, sport: 443, dport: 40000}, 0)(t)
	if _, slot := classify(t, h.p, frame, nil); slot != statRedirectFailed {
		t.Fatalf("ICMP error about a marked flow: slot %d", slot)
	}
	// SCTP (--sctp-service mark rules): its packets take the common path to fwmark_match,
	// by their own protocol: an SCTP rule redirects SCTP to its ports only, and a TCP rule
	// no SCTP; an ICMP error quoting a marked SCTP flow is redirected.
	sctpPre := markPrefix(t, ProtoSCTP, "2001:db8:aa::/48")
	if err := h.c.SetMarks([]MarkPrefix{sctpPre, markPrefix(t, ProtoTCP, "203.0.113.0/24")}, []MarkPorts{
		{MarkPrefix: sctpPre, Lo: 3868, Hi: 3868, Mark: 7},
		{MarkPrefix: markPrefix(t, ProtoTCP, "203.0.113.0/24"), Lo: 3868, Hi: 3868, Mark: 8},
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    flow
		want bool
	}{
		{flow{proto: ProtoSCTP, src: cip6, dst: netip.MustParseAddr("2001:db8:aa::9"), sport: 40000, dport: 3868}, true},
		{flow{proto: ProtoSCTP, src: cip6, dst: netip.MustParseAddr("2001:db8:aa::9"), sport: 40000, dport: 3869}, false},
		{flow{proto: ProtoSCTP, src: cip6, dst: netip.MustParseAddr("2001:db8:aa::9"), sport: 40000, dport: 3868, vlan: true}, true},
		{flow{proto: ProtoTCP, src: cip6, dst: netip.MustParseAddr("2001:db8:aa::9"), sport: 40000, dport: 3868}, false},
		{flow{proto: ProtoSCTP, src: cip4, dst: netip.MustParseAddr("203.0.113.9"), sport: 40000, dport: 3868}, false},
		{flow{proto: ProtoTCP, src: cip4, dst: netip.MustParseAddr("203.0.113.9"), sport: 40000, dport: 3868}, true},
	} {
		if _, slot := classify(t, h.p, c.f.frame(t), nil); (slot == statRedirectFailed) != c.want {
			t.Errorf("%v %v:%d (vlan %v): slot %d, want redirected %v", c.f.proto, c.f.dst, c.f.dport, c.f.vlan, slot, c.want)
		}
	}
	frame = icmpErr(cip6, netip.MustParseAddr("2001:db8:aa::9"), 1, 4, flow{proto: ProtoSCTP, src: netip.MustParseAddr("2001:db8:aa::9"), dst: cip6, sport: 3868, dport: 40000}, 0)(t)
	if _, slot := classify(t, h.p, frame, nil); slot != statRedirectFailed {
		t.Fatalf("ICMPv6 error about a marked SCTP flow: slot %d", slot)
	}
	// Cleared.
	if err := h.c.SetMarks(nil, nil); err != nil {
		t.Fatal(err)
	}
	if a, p, _ := h.c.dumpMarks(); len(a)+len(p) != 0 {
		t.Fatalf("cleared maps hold %d and %d entries", len(a), len(p))
	}
	bad := markPrefix(t, ProtoTCP, "203.0.113.0/24")
	bad.Bits = 16 // bits set after the prefix
	if err := h.c.SetMarks([]MarkPrefix{bad}, nil); err == nil {
		t.Fatal("an unmasked prefix was accepted")
	}
}
