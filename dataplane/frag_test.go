package dataplane

import (
	"bytes"
	"net/netip"
	"testing"

	"xlvs/conntrack"
	"xlvs/dataplane/packet"
)

// TestFragmentsNAT: a UDP datagram fragmented by the client reaches the real server whole
// (every fragment DNATed, TTL decremented, IPv4 header checksums right; the first
// fragment's UDP checksum, fixed for the whole datagram); the real server's fragmented
// reply comes back from the VIP. Reassembling what left gives the datagram the kernel
// would have rewritten.
func TestFragmentsNAT(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 200) // 3200 bytes
	req := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40000, dport: 80, udp: true, payload: payload})
	frags := fragments(t, req, 1480, 0x7777)
	if len(frags) != 3 {
		t.Fatalf("%d fragments", len(frags))
	}
	for _, f := range frags {
		r.ext.Inject(f)
	}
	r.drain()
	out := r.int.Sent()
	if len(out) != 3 {
		t.Fatalf("int0 sent %d, want 3 (drops %v)", len(out), r.drops())
	}
	whole := reassemble(t, out)
	var info packet.Info
	if packet.Parse(whole, &info) != packet.ResultOK || !packet.L4ChecksumValid(whole, &info) {
		t.Fatal("reassembled request does not parse or its UDP checksum is wrong")
	}
	if ap(info.Dst, info.DstPort) != netip.AddrPortFrom(rs1, 8080) || ap(info.Src, info.SrcPort) != netip.AddrPortFrom(client, 40000) {
		t.Fatalf("reassembled %v → %v", ap(info.Src, info.SrcPort), ap(info.Dst, info.DstPort))
	}
	if !bytes.Equal(whole[info.L4Off+8:], payload) {
		t.Fatal("payload changed")
	}
	for _, f := range out {
		if !packet.IPv4HeaderChecksumValid(packet.IPv4(f[14:])) || f[14+8] != 63 || macOf(f[0:6]) != macRS1 {
			t.Fatalf("fragment header checksum, TTL %d or MAC %x wrong", f[14+8], f[0:6])
		}
	}

	// The reply, fragmented by the real server, in reverse order after the first.
	rep := build(t, pkt{srcMAC: macRS1, dstMAC: macDirInt, src: rs1, dst: client, sport: 8080, dport: 40000, udp: true, payload: payload})
	rf := fragments(t, rep, 1480, 0x9999)
	for _, i := range []int{0, 2, 1} {
		r.int.Inject(rf[i])
	}
	r.drain()
	back := r.ext.Sent()
	if len(back) != 3 {
		t.Fatalf("ext0 sent %d, want 3 (drops %v)", len(back), r.drops())
	}
	whole = reassemble(t, back)
	if packet.Parse(whole, &info) != packet.ResultOK || !packet.L4ChecksumValid(whole, &info) {
		t.Fatal("reassembled reply does not parse or its UDP checksum is wrong")
	}
	if ap(info.Src, info.SrcPort) != netip.AddrPortFrom(vip, 80) || ap(info.Dst, info.DstPort) != netip.AddrPortFrom(client, 40000) {
		t.Fatalf("reply %v → %v", ap(info.Src, info.SrcPort), ap(info.Dst, info.DstPort))
	}
	ws, _ := r.dp.Stats()
	if ws[0].FragmentsNoted != 2 || ws[0].Fragments != 4 || len(r.drops()) != 0 {
		t.Fatalf("noted %d, forwarded %d, drops %v", ws[0].FragmentsNoted, ws[0].Fragments, r.drops())
	}
	if s := r.dp.ServiceStats(17); s.InPkts != 3 || s.OutPkts != 3 {
		t.Fatalf("service stats %+v", s)
	}

	// A later fragment before its first, or of an unknown datagram: counted and dropped.
	r.ext.Inject(fragments(t, req, 1480, 0x1234)[1])
	r.drain()
	if r.drops()["fragment"] != 1 {
		t.Fatalf("drops %v", r.drops())
	}
	r.w.poll()
	if r.ext.FramesAccounted() != 1024 || r.int.FramesAccounted() != 1024 {
		t.Fatal("frames leaked")
	}
}

// TestFragmentsL2: IPv4 and IPv6 fragments follow their first fragment through DR
// and TUN (each encapsulated), their TTL one lower.
func TestFragmentsL2(t *testing.T) {
	for _, method := range []conntrack.Method{conntrack.MethodDR, conntrack.MethodTUN} {
		for _, fam := range []struct {
			name        string
			client, vip netip.Addr
		}{{"v4", l2Client, l2VIP}, {"v6", l2Client6, l2VIP6}} {
			t.Run(method.String()+"/"+fam.name, func(t *testing.T) {
				r := newL2Rig(t, method)
				rp := pkt{srcMAC: macClient, dstMAC: macDir, src: fam.client, dst: fam.vip, sport: 40000, dport: 80, udp: true, payload: bytes.Repeat([]byte{7}, 2000)}
				frags := fragments(t, build(t, rp), 1232, 0xabcdef)
				// Each leaves with its TTL (hop limit) one lower, as IPVS's decrement_ttl.
				rp.ttl = 63
				want := fragments(t, build(t, rp), 1232, 0xabcdef)
				for _, f := range frags {
					r.eth.Inject(f)
				}
				r.drain()
				out := r.eth.Sent()
				if len(out) != len(frags) {
					t.Fatalf("sent %d of %d (drops %v)", len(out), len(frags), r.drops())
				}
				hl := 0
				if method == conntrack.MethodTUN {
					hl = packet.TunnelHeaderLen(map[bool]uint8{true: 4, false: 6}[fam.client.Is4()])
				}
				for i, f := range out {
					if macOf(f[0:6]) != macRS1 || !bytes.Equal(f[14+hl:], want[i][14:]) {
						t.Fatalf("fragment %d: MAC %x or packet changed", i, f[0:6])
					}
				}
				r.framesBack(t)
			})
		}
	}
}

// reassemble rebuilds the Ethernet frame of a datagram from its IPv4 or IPv6 fragments
// (any order), the slow way, for checking.
func reassemble(t testing.TB, frags [][]byte) []byte {
	t.Helper()
	var hdr []byte
	data := map[int][]byte{}
	total := 0
	for _, f := range frags {
		ip := f[14:]
		var off, hl int
		var more bool
		if ip[0]>>4 == 6 {
			hl = 48
			fo := int(ip[42])<<8 | int(ip[43])
			off, more = fo&^7, fo&1 != 0
			if off == 0 {
				hdr = append([]byte(nil), f[:14+40]...)
				hdr[14+6] = ip[40]
			}
		} else {
			hl = int(ip[0]&15) * 4
			fo := int(ip[6])<<8 | int(ip[7])
			off, more = (fo&0x1fff)*8, fo&0x2000 != 0
			if off == 0 {
				hdr = append([]byte(nil), f[:14+hl]...)
			}
		}
		n := len(ip) - hl
		if ip[0]>>4 == 4 {
			n = (int(ip[2])<<8 | int(ip[3])) - hl
		}
		data[off] = ip[hl : hl+n]
		if !more {
			total = off + n
		}
	}
	if hdr == nil || total == 0 {
		t.Fatal("first or last fragment missing")
	}
	out := append([]byte(nil), hdr...)
	for off := 0; off < total; {
		d, ok := data[off]
		if !ok {
			t.Fatalf("hole at %d", off)
		}
		out = append(out, d...)
		off += len(d)
	}
	ip := out[14:]
	if ip[0]>>4 == 6 {
		ip[4], ip[5] = byte((len(ip)-40)>>8), byte(len(ip)-40)
	} else {
		ip[2], ip[3] = byte(len(ip)>>8), byte(len(ip))
		ip[6], ip[7] = 0, 0
		packet.IPv4(ip).ComputeChecksum()
	}
	return out
}

// TestICMPFragmentAllocs: forwarding later fragments, translating ICMP errors and
// answering with port unreachable allocate nothing.
func TestICMPFragmentAllocs(t *testing.T) {
	r := newRig(t, "rr", 1, 1)
	r.ext.OnTransmit = func([]byte) {}
	r.int.OnTransmit = func([]byte) {}
	r.w.icmpLimit = newTokenBucket(-1, 0) // every answer is sent (the limit: ratelimit_test.go)
	req := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40000, dport: 80, udp: true, payload: make([]byte, 3000)})
	frags := fragments(t, req, 1480, 5)
	r.ext.Inject(frags[0])
	r.w.poll()
	q := ipOnly(build(t, pkt{src: client, dst: rs1, sport: 40000, dport: 8080, udp: true}))
	icmp := icmpErrFrame(t, macRS1, macDirInt, rs1, client, 3, 3, q, 0)
	noSvc := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40001, dport: 80, udp: true})
	n := testing.AllocsPerRun(200, func() {
		r.ext.Inject(frags[1])
		r.int.Inject(icmp)
		r.w.poll()
	})
	if n != 0 {
		t.Fatalf("%v allocations per later fragment + ICMP error", n)
	}
	// No real server: swap in a snapshot whose scheduler finds none.
	snap := r.dp.Snapshot()
	svcs := append([]Service(nil), snap.Services...)
	for i := range svcs {
		svcs[i].Sched = noneSched{}
	}
	s2, err := NewSnapshot(svcs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.dp.Publish(s2); err != nil {
		t.Fatal(err)
	}
	n = testing.AllocsPerRun(200, func() {
		r.ext.Inject(noSvc)
		r.w.poll()
	})
	if n != 0 {
		t.Fatalf("%v allocations per port unreachable", n)
	}
	ws, _ := r.dp.Stats()
	if ws[0].Fragments < 200 || ws[0].ICMPForwarded < 200 || ws[0].ICMPSent < 200 {
		t.Fatalf("stats %+v", ws[0])
	}
}
