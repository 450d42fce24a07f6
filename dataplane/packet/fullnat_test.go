package packet

import (
	"bytes"
	"net/netip"
	"testing"
)

// TestRewriteFullNATDifferential rewrites both endpoints of random packets and compares
// the result byte for byte with the same packet serialized by gopacket and with a full
// checksum recomputation, and with RewriteSrc followed by RewriteDst (the slow path it
// replaces).
func TestRewriteFullNATDifferential(t *testing.T) {
	r := newRand(t)
	for i := 0; i < 3000; i++ {
		s := randSpec(r)
		frame := build(t, s)
		info := parseOK(t, frame)
		if !checksumsValid(frame, &info) {
			t.Fatalf("packet %d: input checksums do not verify", i)
		}
		exp := s
		exp.src, exp.dst = randAddr(r, s.v6), randAddr(r, s.v6)
		exp.sport, exp.dport = uint16(r.IntN(1<<16)), uint16(r.IntN(1<<16))
		switch r.IntN(6) {
		case 0:
			exp.src, exp.sport = s.src, s.sport // only the destination changes
		case 1:
			exp.dst, exp.dport = s.dst, s.dport // only the source changes
		case 2:
			exp.src, exp.dst = s.dst, s.src // swapped addresses
		case 3:
			exp.sport, exp.dport = 0, 0xFFFF
		}
		slow := bytes.Clone(frame)
		slowInfo := info
		if !RewriteFullNAT(frame, &info, as16(exp.src), exp.sport, as16(exp.dst), exp.dport) {
			t.Fatalf("packet %d: RewriteFullNAT refused a parsed packet", i)
		}
		if want := build(t, exp); !bytes.Equal(frame, want) {
			t.Fatalf("packet %d (v6=%v proto=%d udpNoCk=%v opts=%v vlan=%v): differs from gopacket\n got %x\nwant %x",
				i, s.v6, s.proto, s.udpNoCk, s.ipOpts, s.vlan, frame, want)
		}
		if wi := wantInfo(exp); info != wi {
			t.Fatalf("packet %d: info %+v, want %+v", i, info, wi)
		}
		if full := recomputed(frame, &info); !bytes.Equal(full, frame) {
			t.Fatalf("packet %d: incremental checksums differ from a full recomputation", i)
		}
		RewriteSrc(slow, &slowInfo, as16(exp.src), exp.sport)
		RewriteDst(slow, &slowInfo, as16(exp.dst), exp.dport)
		if !bytes.Equal(slow, frame) || slowInfo != info {
			t.Fatalf("packet %d: RewriteSrc+RewriteDst give\n %x\nRewriteFullNAT\n %x", i, slow, frame)
		}
	}
}

// TestRewriteFullNATUDPChecksums: a UDP checksum computing to zero is written as
// 0xFFFF and read back as zero; UDP over IPv4 without a checksum keeps none.
func TestRewriteFullNATUDPChecksums(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			before := defaultSpec(v6, ProtoUDP)
			after := before
			if v6 {
				after.src, after.dst = netip.MustParseAddr("2001:db8:1::50"), netip.MustParseAddr("2001:db8:2::11")
			} else {
				after.src, after.dst = netip.MustParseAddr("198.18.2.50"), netip.MustParseAddr("198.18.2.11")
			}
			after.sport, after.dport = 1024, 8080
			after = zeroChecksumSpec(t, after)
			before.payload = after.payload
			frame := build(t, before)
			info := parseOK(t, frame)
			RewriteFullNAT(frame, &info, as16(after.src), after.sport, as16(after.dst), after.dport)
			if want := build(t, after); !bytes.Equal(frame, want) {
				t.Fatalf("to a zero checksum:\n got %x\nwant %x", frame, want)
			}
			if c := UDP(frame[info.L4Off:]).Checksum(); c != 0xFFFF {
				t.Fatalf("checksum %#04x, want 0xffff", c)
			}
			RewriteFullNAT(frame, &info, as16(before.src), before.sport, as16(before.dst), before.dport)
			if want := build(t, before); !bytes.Equal(frame, want) {
				t.Fatalf("from 0xffff:\n got %x\nwant %x", frame, want)
			}
		})
	}
	s := defaultSpec(false, ProtoUDP)
	s.udpNoCk = true
	frame := build(t, s)
	info := parseOK(t, frame)
	RewriteFullNAT(frame, &info, as16(netip.MustParseAddr("198.18.2.50")), 1024, as16(netip.MustParseAddr("198.18.2.11")), 8080)
	if c := UDP(frame[info.L4Off:]).Checksum(); c != 0 {
		t.Fatalf("UDP checksum %#04x, want 0 (none)", c)
	}
	if !IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:])) {
		t.Fatal("IPv4 header checksum does not verify")
	}
}

// TestRewriteFullNATBadInfo: an Info that does not fit the frame changes nothing.
func TestRewriteFullNATBadInfo(t *testing.T) {
	frame := build(t, defaultSpec(false, ProtoTCP))
	good := parseOK(t, frame)
	for _, tc := range []struct {
		name string
		mod  func(*Info)
	}{
		{"zero info", func(i *Info) { *i = Info{} }},
		{"family 5", func(i *Info) { i.Family = 5 }},
		{"icmp", func(i *Info) { i.Proto = ProtoICMP }},
		{"l4 beyond frame", func(i *Info) { i.L4Off = uint16(len(frame)) - 10 }},
		{"l4 far beyond frame", func(i *Info) { i.L4Off = 0xFFFF }},
		{"l4 inside ip header", func(i *Info) { i.L4Off = i.L3Off + 10 }},
		{"ipv6 on ipv4 offsets", func(i *Info) { i.Family = 6 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(frame)
			info := good
			tc.mod(&info)
			before := info
			if RewriteFullNAT(frame, &info, as16(netip.MustParseAddr("198.18.1.1")), 1, as16(netip.MustParseAddr("198.18.1.2")), 2) {
				t.Fatal("RewriteFullNAT accepted a bad Info")
			}
			if info != before || !bytes.Equal(frame, orig) {
				t.Fatal("RewriteFullNAT with a bad Info changed something")
			}
		})
	}
}

// FuzzRewriteFullNAT: for any frame Parse accepts, RewriteFullNAT's output parses to the
// new endpoints, every checksum that verified before verifies after, and rewriting back
// restores every byte but the checksum fields.
func FuzzRewriteFullNAT(f *testing.F) {
	for i, fr := range seedFrames(f) {
		f.Add(fr, []byte{0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 198, 18, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50}, uint16(1024+i), uint16(8080))
	}
	f.Fuzz(func(t *testing.T, frame, addrs []byte, sport, dport uint16) {
		var info Info
		if Parse(frame, &info) != ResultOK {
			return
		}
		var src, dst [16]byte
		copy(src[:], addrs)
		if len(addrs) > 16 {
			copy(dst[:], addrs[16:])
		}
		if info.Family == 4 {
			copy(src[:12], v4InV6Prefix[:])
			copy(dst[:12], v4InV6Prefix[:])
		}
		ipOK := info.Family == 6 || IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:]))
		l4OK := L4ChecksumValid(frame, &info)
		orig := bytes.Clone(frame)
		origInfo := info

		if !RewriteFullNAT(frame, &info, src, sport, dst, dport) {
			t.Fatalf("RewriteFullNAT refused a parsed packet: %+v", info)
		}
		if info.Src != src || info.Dst != dst || info.SrcPort != sport || info.DstPort != dport {
			t.Fatalf("info not updated: %+v", info)
		}
		var again Info
		if r := Parse(frame, &again); r != ResultOK || again != info {
			t.Fatalf("reparse: %v %+v, want ok %+v", r, again, info)
		}
		if ipOK && !(info.Family == 6 || IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:]))) {
			t.Fatal("RewriteFullNAT broke the IPv4 header checksum")
		}
		if l4OK && !L4ChecksumValid(frame, &info) {
			t.Fatalf("RewriteFullNAT broke the protocol %d checksum", info.Proto)
		}

		RewriteFullNAT(frame, &info, origInfo.Src, origInfo.SrcPort, origInfo.Dst, origInfo.DstPort)
		if info != origInfo {
			t.Fatalf("info after rewriting back %+v, want %+v", info, origInfo)
		}
		if l4OK && !L4ChecksumValid(frame, &info) || ipOK && !(info.Family == 6 || IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:]))) {
			t.Fatal("rewriting back broke a checksum")
		}
		masked := func(b []byte) []byte {
			c := bytes.Clone(b)
			if info.Family == 4 {
				c[info.L3Off+ipv4Checksum], c[info.L3Off+ipv4Checksum+1] = 0, 0
			}
			cs := int(info.L4Off) + tcpChecksum
			if info.Proto == ProtoUDP {
				cs = int(info.L4Off) + udpChecksum
			}
			c[cs], c[cs+1] = 0, 0
			return c
		}
		if !bytes.Equal(masked(frame), masked(orig)) {
			t.Fatalf("rewriting back did not restore the frame\n got %x\nwant %x", frame, orig)
		}
	})
}

func BenchmarkRewriteFullNAT(b *testing.B) {
	for _, name := range []string{"ipv4-tcp", "ipv6-tcp"} {
		frame := benchFrames(b)[name]
		var info Info
		if Parse(frame, &info) != ResultOK {
			b.Fatal("bench frame does not parse")
		}
		addrs := [2][16]byte{as16(netip.MustParseAddr("198.18.1.1")), as16(netip.MustParseAddr("198.18.1.2"))}
		if info.Family == 6 {
			addrs = [2][16]byte{as16(netip.MustParseAddr("2001:db8::1")), as16(netip.MustParseAddr("2001:db8::2"))}
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				RewriteFullNAT(frame, &info, addrs[i&1], uint16(i), addrs[^i&1], uint16(i>>1))
				i++
			}
		})
	}
}
