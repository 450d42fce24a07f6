package packet

import (
	"net/netip"
	"strconv"
	"testing"
)

// TestZeroAllocs asserts that the per-packet functions never allocate.
func TestZeroAllocs(t *testing.T) {
	v4 := build(t, defaultSpec(false, ProtoTCP))
	v6 := func() []byte { s := defaultSpec(true, ProtoUDP); s.vlan = true; return build(t, s) }()
	i4, i6 := parseOK(t, v4), parseOK(t, v6)
	a4, b4 := as16(netip.MustParseAddr("198.18.9.9")), as16(netip.MustParseAddr("198.18.9.10"))
	a6, b6 := as16(netip.MustParseAddr("2001:db8::9")), as16(netip.MustParseAddr("2001:db8::a"))
	ttl := func(frame []byte, info *Info) {
		if !DecrementTTL(frame, info) {
			// Reset so that every run decrements.
			if info.Family == 4 {
				IPv4(frame[info.L3Off:]).SetTTL(64)
				IPv4(frame[info.L3Off:]).ComputeChecksum()
			} else {
				IPv6(frame[info.L3Off:]).SetHopLimit(64)
			}
		}
	}
	var sink uint32
	icmp := icmpFrame(t, netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::100"), ICMPv6DestUnreach, ICMPv6PortUnreach,
		ipPacket(t, ProtoUDP, netip.MustParseAddr("fd00::100"), netip.MustParseAddr("fd00::2"), 80, 4000, []byte("hi")), 0)
	ii, ie := parseICMP(t, icmp)
	tests := []struct {
		name string
		fn   func()
	}{
		{"Parse ipv4 tcp", func() { Parse(v4, &i4) }},
		{"Parse vlan ipv6 udp", func() { Parse(v6, &i6) }},
		{"RewriteDst ipv4", func() { RewriteDst(v4, &i4, a4, 8080); RewriteDst(v4, &i4, b4, 80) }},
		{"RewriteDst ipv6", func() { RewriteDst(v6, &i6, a6, 8080); RewriteDst(v6, &i6, b6, 80) }},
		{"RewriteSrc ipv4", func() { RewriteSrc(v4, &i4, a4, 1) }},
		{"RewriteSrc ipv6", func() { RewriteSrc(v6, &i6, a6, 1) }},
		{"RewriteFullNAT ipv4", func() { RewriteFullNAT(v4, &i4, a4, 1024, b4, 8080) }},
		{"RewriteFullNAT ipv6", func() { RewriteFullNAT(v6, &i6, a6, 65535, b6, 53) }},
		{"DecrementTTL ipv4", func() { ttl(v4, &i4) }},
		{"DecrementTTL ipv6", func() { ttl(v6, &i6) }},
		{"ParseICMPError", func() { ParseICMPError(icmp, &ii, &ie) }},
		{"ICMPChecksumValid", func() { ICMPChecksumValid(icmp, &ii) }},
		{"RewriteICMPError", func() { RewriteICMPError(icmp, &ii, &ie, ii.Dst, ii.Src, ie.Dst, ie.Src, ie.DstPort, ie.SrcPort) }},
		{"RewriteDstAddr ipv4", func() { RewriteDstAddr(v4, &i4, a4); RewriteDstAddr(v4, &i4, b4) }},
		{"RewriteSrcAddr ipv6", func() { RewriteSrcAddr(v6, &i6, a6) }},
		{"SetEthernet", func() { SetEthernet(v4, [6]byte{2}, [6]byte{4}) }},
		{"Checksum", func() { sink += Checksum(v4, sink) }},
		{"UpdateChecksumAddr", func() { sink += uint32(UpdateChecksumAddr(uint16(sink), a6[:], b6[:])) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
				t.Errorf("%s: %v allocations per run, want 0", tc.name, n)
			}
		})
	}
	// The frames must still be well-formed after all that.
	for _, fr := range [][]byte{v4, v6} {
		info := parseOK(t, fr)
		if !checksumsValid(fr, &info) {
			t.Errorf("frame %x: checksums no longer verify", fr)
		}
	}
}

func benchFrames(b *testing.B) map[string][]byte {
	vlanOpts := defaultSpec(false, ProtoTCP)
	vlanOpts.vlan, vlanOpts.ipOpts, vlanOpts.tcpMSS = true, true, true
	return map[string][]byte{
		"ipv4-tcp":              build(b, defaultSpec(false, ProtoTCP)),
		"ipv4-udp":              build(b, defaultSpec(false, ProtoUDP)),
		"ipv6-tcp":              build(b, defaultSpec(true, ProtoTCP)),
		"ipv6-udp":              build(b, defaultSpec(true, ProtoUDP)),
		"vlan-ipv4-tcp-options": build(b, vlanOpts),
	}
}

func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"ipv4-tcp", "ipv4-udp", "ipv6-tcp", "ipv6-udp", "vlan-ipv4-tcp-options"} {
		frame := benchFrames(b)[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var info Info
			for b.Loop() {
				Parse(frame, &info)
			}
		})
	}
}

func BenchmarkRewriteDst(b *testing.B) {
	for _, name := range []string{"ipv4-tcp", "ipv4-udp", "ipv6-tcp", "ipv6-udp"} {
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
				RewriteDst(frame, &info, addrs[i&1], uint16(i))
				i++
			}
		})
	}
}

func BenchmarkDecrementTTL(b *testing.B) {
	frame := benchFrames(b)["ipv4-tcp"]
	var info Info
	Parse(frame, &info)
	b.ReportAllocs()
	for b.Loop() {
		if !DecrementTTL(frame, &info) {
			frame[info.L3Off+ipv4TTL] = 255
		}
	}
}

func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{20, 64, 1500, 9000} {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			var s uint32
			for b.Loop() {
				s = Checksum(buf, s)
			}
		})
	}
}
