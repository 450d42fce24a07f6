package bpf

import (
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
