package dataplane

import (
	"net/netip"
	"testing"
	"time"
)

// persistent republishes the rig's services with persistence (timeout, mask bits).
func (r *rig) persistent(t *testing.T, timeout time.Duration, bits uint8) {
	t.Helper()
	old := r.dp.Snapshot()
	svcs := append([]Service(nil), old.Services...)
	for i := range svcs {
		svcs[i].Persist, svcs[i].PersistBits = int64(timeout), bits
	}
	snap, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) synFrom(t *testing.T, src netip.Addr, sport uint16) netip.Addr {
	t.Helper()
	r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: src, dst: vip, sport: sport, dport: 80, syn: true}))
	r.drain()
	out := r.int.Sent()
	if len(out) != 1 {
		t.Fatalf("sent %d frames, want 1 (drops %v)", len(out), r.drops())
	}
	info := check(t, out[0])
	return netip.AddrFrom16(info.Dst).Unmap()
}

// TestPersistence: with -p, rr keeps sending one client (masked by -M) to the server it
// was first given; without -p it alternates; an expired template schedules anew.
func TestPersistence(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	a, b := r.synFrom(t, client, 1000), r.synFrom(t, client, 1001)
	if a == b {
		t.Fatalf("rr without persistence sent two connections to %v", a)
	}
	r.persistent(t, time.Hour, 128)
	first := r.synFrom(t, client, 2000)
	for p := uint16(2001); p < 2010; p++ {
		if got := r.synFrom(t, client, p); got != first {
			t.Fatalf("persistent client moved from %v to %v", first, got)
		}
	}
	// A /24 mask groups the neighbours of the client with it.
	r.persistent(t, time.Hour, 120)
	first = r.synFrom(t, client, 3000)
	neighbour := netip.MustParseAddr("198.18.1.77")
	for p := uint16(3001); p < 3005; p++ {
		if got := r.synFrom(t, neighbour, p); got != first {
			t.Fatalf("client in the same /24 went to %v, want %v", got, first)
		}
	}
	if n := r.dp.PersistConns(); len(n) == 0 {
		t.Fatal("no templates counted")
	}
	// A short timeout: once it has passed, the next connection is scheduled anew (rr
	// moves on).
	r.persistent(t, time.Millisecond, 128)
	other := netip.MustParseAddr("198.18.1.200") // no template yet
	x := r.synFrom(t, other, 4000)
	time.Sleep(5 * time.Millisecond)
	if y := r.synFrom(t, other, 4001); y == x {
		t.Fatalf("expired template still pinned the client to %v", x)
	}
}

func TestPersistTableEviction(t *testing.T) {
	tb := newPersistTable(persistShards) // one slot per shard: windows overlap on one slot
	k1 := persistKey{svc: 1, addr: [16]byte{15: 1}}
	k2 := persistKey{svc: 1, addr: [16]byte{15: 2}}
	tb.set(&k1, 7, 0, 100)
	tb.set(&k2, 8, 0, 200)
	if d, ok := tb.lookup(&k2, 10, 200); !ok || d != 8 {
		t.Fatalf("k2 -> %d %v", d, ok)
	}
	if d, ok := tb.lookup(&k1, 150, 100); ok && d != 7 {
		t.Fatalf("k1 -> %d", d)
	}
	if n := testing.AllocsPerRun(100, func() { tb.set(&k1, 7, 0, 100); tb.lookup(&k1, 1, 100) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// TestPortZeroService: a persistent service on port 0 takes every port of its address;
// the real server gets the port the client asked for (whatever the destination's own
// port), one client stays on one server across ports, and replies from any port of the
// real server are translated back.
func TestPortZeroService(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	old := r.dp.Snapshot()
	svcs := append([]Service(nil), old.Services...)
	for i := range svcs {
		svcs[i].Key.Port = 0
	}
	if _, err := NewSnapshot(svcs); err == nil {
		t.Fatal("a non-persistent port-0 service was accepted")
	}
	for i := range svcs {
		svcs[i].Persist, svcs[i].PersistBits = int64(time.Hour), 128
	}
	snap, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(snap); err != nil {
		t.Fatal(err)
	}
	var server netip.Addr
	for i, port := range []uint16{22, 443, 8443} {
		r.ext.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 5000 + port, dport: port, syn: true}))
		r.drain()
		out := r.int.Sent()
		if len(out) != 1 {
			t.Fatalf("port %d: sent %d frames, want 1 (drops %v)", port, len(out), r.drops())
		}
		info := check(t, out[0])
		got := netip.AddrFrom16(info.Dst).Unmap()
		if i == 0 {
			server = got
		} else if got != server {
			t.Fatalf("port %d went to %v, the client's template says %v", port, got, server)
		}
		if info.DstPort != port {
			t.Fatalf("real server got port %d, want the client's %d", info.DstPort, port)
		}
		// The reply from that port of the real server comes back from VIP:port.
		r.int.Inject(build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: server, dst: client, sport: port, dport: 5000 + port, syn: true, ack: true}))
		r.drain()
		back := r.ext.Sent()
		if len(back) != 1 {
			t.Fatalf("port %d reply: sent %d frames, want 1 (drops %v)", port, len(back), r.drops())
		}
		bi := check(t, back[0])
		if netip.AddrFrom16(bi.Src).Unmap() != vip || bi.SrcPort != port {
			t.Fatalf("reply source %v:%d, want %v:%d", netip.AddrFrom16(bi.Src).Unmap(), bi.SrcPort, vip, port)
		}
	}
}

// TestPersistKeySet: a template key's address is the client's masked as maskAddr (the
// byte-wise mask of the routing table) masks it, for every netmask length (beyond 128
// the address is kept whole), IPv4-mapped and IPv6 addresses alike; equal is ==.
func TestPersistKeySet(t *testing.T) {
	addrs := [][16]byte{
		a16(netip.MustParseAddr("198.51.100.77")),
		a16(netip.MustParseAddr("2001:db8:85a3:8d3:1319:8a2e:370:7348")),
		a16(netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
		{},
	}
	for _, a := range addrs {
		for bits := 0; bits < 256; bits++ {
			var k persistKey
			k.set(9, &a, uint8(bits))
			if want := maskAddr(a, uint8(bits)); k.addr != want || k.svc != 9 {
				t.Fatalf("set(%x, %d): svc %d addr %x, want 9 %x", a, bits, k.svc, k.addr, want)
			}
			if maskPersist(a, uint8(bits)) != k.addr {
				t.Fatalf("maskPersist(%x, %d) differs from set", a, bits)
			}
			for _, o := range []persistKey{k, {svc: 8, addr: k.addr}, {svc: 9, addr: maskAddr(a, uint8(bits)^1)}} {
				if got := k.equal(&o); got != (k == o) {
					t.Fatalf("%+v equal %+v: %v, want %v", k, o, got, k == o)
				}
			}
		}
	}
}
