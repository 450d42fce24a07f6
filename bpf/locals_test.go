package bpf

import (
	"errors"
	"net/netip"
	"testing"
)

// TestLocalReply: a NAT real server's packet to one of the director's own addresses (a
// health check's answer) goes to the kernel; the same server's packet to a client goes to
// the dataplane. Clearing the locals map restores the redirect.
func TestLocalReply(t *testing.T) {
	h := newHarness(t)
	dir4 := netip.MustParseAddr("198.18.2.1")
	dir6 := netip.MustParseAddr("fd00:2::1")
	if err := h.c.SetLocals([]netip.Addr{dir4, dir6, netip.AddrFrom16(dir4.As16())}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    flow
		want int
	}{
		{"v4 real to director", flow{proto: ProtoTCP, src: rip4, dst: dir4, sport: 8080, dport: 40000}, statLocalReply},
		{"v6 real to director", flow{proto: ProtoTCP, src: rip6, dst: dir6, sport: 8080, dport: 40000}, statLocalReply},
		{"v4 real to client", flow{proto: ProtoTCP, src: rip4, dst: cip4, sport: 8080, dport: 40000}, statRedirectFailed},
		{"v4 client to director", flow{proto: ProtoTCP, src: cip4, dst: dir4, sport: 40000, dport: 22}, statPassed},
	} {
		verdict, slot := classify(t, h.p, tc.f.frame(t), nil)
		if slot != tc.want || verdict != xdpPass {
			t.Errorf("%s: verdict %d slot %d, want pass and slot %d", tc.name, verdict, slot, tc.want)
		}
	}
	if err := h.c.SetLocals(nil); err != nil {
		t.Fatal(err)
	}
	if _, slot := classify(t, h.p, flow{proto: ProtoTCP, src: rip4, dst: dir4, sport: 8080, dport: 40000}.frame(t), nil); slot != statRedirectFailed {
		t.Fatalf("after clearing the locals: slot %d, want redirect (failed: no socket)", slot)
	}
	if err := h.c.SetLocals([]netip.Addr{{}}); err == nil {
		t.Fatal("an invalid address was accepted")
	}
}

// TestFullNATLocalAddress: a FULLNAT local address is on the director's interface (so in
// locals) and in laddrs. A real server's packet to it is a FULLNAT reply for the
// dataplane; once the address leaves laddrs it is the director's own again (passed), and
// SetLaddrs keeps exactly the set it is given.
func TestFullNATLocalAddress(t *testing.T) {
	h := newHarness(t) // locals: dir4, dir6, lip4, lip6; laddrs: lip4, lip6
	reply4 := flow{proto: ProtoTCP, src: rip4, dst: lip4, sport: 8080, dport: 1024}.frame(t)
	reply6 := flow{proto: ProtoUDP, src: rip6, dst: lip6, sport: 5353, dport: 65535}.frame(t)
	for _, tc := range []struct {
		name     string
		laddrs   []netip.Addr
		want4    int
		want6    int
		wantKeys int
	}{
		{"both", []netip.Addr{lip4, lip6}, statRedirectFailed, statRedirectFailed, 2},
		{"v6 only", []netip.Addr{lip6}, statLocalReply, statRedirectFailed, 1},
		{"v4 mapped, duplicates", []netip.Addr{netip.AddrFrom16(lip4.As16()), lip4}, statRedirectFailed, statLocalReply, 1},
		{"none", nil, statLocalReply, statLocalReply, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.c.SetLaddrs(tc.laddrs); err != nil {
				t.Fatal(err)
			}
			if _, slot := classify(t, h.p, reply4, nil); slot != tc.want4 {
				t.Errorf("v4 reply to %v: slot %d, want %d", lip4, slot, tc.want4)
			}
			if _, slot := classify(t, h.p, reply6, nil); slot != tc.want6 {
				t.Errorf("v6 reply to %v: slot %d, want %d", lip6, slot, tc.want6)
			}
			var k [16]byte
			var v uint32
			n := 0
			for it := h.c.laddrs.Iterate(); it.Next(&k, &v); {
				n++
			}
			if n != tc.wantKeys {
				t.Errorf("laddrs holds %d addresses, want %d", n, tc.wantKeys)
			}
		})
	}
	for _, bad := range [][]netip.Addr{{{}}, {netip.MustParseAddr("fe80::1%eth0")}} {
		if err := h.c.SetLaddrs(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("SetLaddrs(%v): %v, want ErrInvalidKey", bad, err)
		}
	}
	many := make([]netip.Addr, MaxLaddrs+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
	}
	if err := h.c.SetLaddrs(many); err == nil {
		t.Errorf("SetLaddrs with %d addresses: accepted, want an error (at most %d)", len(many), MaxLaddrs)
	}
}
