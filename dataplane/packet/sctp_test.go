package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// crcBitwise is CRC32c computed one bit at a time from the polynomial's definition
// (reflected 0x82F63B78, initial value and final inversion all ones): a reference that
// shares nothing with the table code.
func crcBitwise(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0x82F63B78
			} else {
				c >>= 1
			}
		}
	}
	return ^c
}

// TestCRC32cVectors checks CRC32c against RFC 3720 appendix B.4 (the iSCSI vectors,
// whose CRC bytes the RFC lists in transmission order, least significant first) and
// against the bitwise reference.
func TestCRC32cVectors(t *testing.T) {
	inc, dec := make([]byte, 32), make([]byte, 32)
	for i := range 32 {
		inc[i], dec[i] = byte(i), byte(31-i)
	}
	ones := make([]byte, 32)
	for i := range ones {
		ones[i] = 0xff
	}
	// The iSCSI SCSI Read (10) command PDU of B.4.
	pdu := []byte{
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
		0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	}
	for _, v := range []struct {
		name string
		in   []byte
		wire [4]byte // the RFC's "CRC:" bytes
	}{
		{"32 bytes of zeros", make([]byte, 32), [4]byte{0xaa, 0x36, 0x91, 0x8a}},
		{"32 bytes of ones", ones, [4]byte{0x43, 0xab, 0xa8, 0x62}},
		{"32 incrementing bytes", inc, [4]byte{0x4e, 0x79, 0xdd, 0x46}},
		{"32 decrementing bytes", dec, [4]byte{0x5c, 0xdb, 0x3f, 0x11}},
		{"an iSCSI read command", pdu, [4]byte{0x56, 0x3a, 0x96, 0xd9}},
	} {
		want := binary.LittleEndian.Uint32(v.wire[:])
		if got := CRC32c(v.in); got != want {
			t.Errorf("%s: CRC32c %#08x, RFC 3720 %#08x", v.name, got, want)
		}
		if got := crcBitwise(v.in); got != want {
			t.Errorf("%s: bitwise reference %#08x, RFC 3720 %#08x (the reference is wrong)", v.name, got, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if CRC32c(b) != crcBitwise(b) {
			t.Fatalf("%d random bytes: CRC32c %#x, reference %#x", n, CRC32c(b), crcBitwise(b))
		}
	}
}

// sctpLayer is one chunk for buildSCTP.
type sctpChunks []gopacket.SerializableLayer

// buildSCTP crafts an Ethernet + IPv4/IPv6 + SCTP frame with gopacket and sets its
// checksum with the bitwise reference.
func buildSCTP(t testing.TB, v6 bool, src, dst netip.Addr, sport, dport uint16, chunks sctpChunks) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ls := []gopacket.SerializableLayer{eth}
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ls = append(ls, &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolSCTP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()})
	} else {
		ls = append(ls, &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolSCTP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()})
	}
	ls = append(ls, &layers.SCTP{SrcPort: layers.SCTPPort(sport), DstPort: layers.SCTPPort(dport), VerificationTag: 0x0badcafe})
	ls = append(ls, chunks...)
	buf := gopacket.NewSerializeBuffer()
	must(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	b := append([]byte(nil), buf.Bytes()...)
	l4, end := 14+20, 14+int(binary.BigEndian.Uint16(b[14+2:]))
	if v6 {
		l4, end = 14+40, 14+40+int(binary.BigEndian.Uint16(b[14+4:]))
	}
	seg := b[l4:end] // gopacket pads short frames to 60 bytes
	binary.LittleEndian.PutUint32(seg[8:], 0)
	binary.LittleEndian.PutUint32(seg[8:], crcBitwise(seg))
	return b
}

func sctpInit(typ layers.SCTPChunkType) *layers.SCTPInit {
	return &layers.SCTPInit{SCTPChunk: layers.SCTPChunk{Type: typ}, InitiateTag: 0x11223344, AdvertisedReceiverWindowCredit: 65536, OutboundStreams: 10, InboundStreams: 10, InitialTSN: 1}
}

func sctpData(payload string) sctpChunks {
	return sctpChunks{&layers.SCTPData{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeData}, BeginFragment: true, EndFragment: true, TSN: 1}, gopacket.Payload(payload)}
}

var (
	sctpC  = netip.MustParseAddr("198.18.0.1")
	sctpV  = netip.MustParseAddr("198.18.1.100")
	sctpR  = netip.MustParseAddr("198.18.2.11")
	sctpC6 = netip.MustParseAddr("2001:db8::1")
	sctpV6 = netip.MustParseAddr("2001:db8:1::100")
	sctpR6 = netip.MustParseAddr("2001:db8:2::11")
)

// TestParseSCTP: every chunk of an association parses with its ports and the chunk
// type the state machine takes (a COOKIE ECHO or COOKIE ACK bundled before an ABORT is
// the ABORT, as set_sctp_state takes it), and the checksum verifies.
func TestParseSCTP(t *testing.T) {
	abort := &layers.SCTPError{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeAbort}}
	for _, tc := range []struct {
		name   string
		chunks sctpChunks
		want   uint8
	}{
		{"INIT", sctpChunks{sctpInit(layers.SCTPChunkTypeInit)}, SCTPChunkInit},
		{"INIT ACK", sctpChunks{sctpInit(layers.SCTPChunkTypeInitAck)}, SCTPChunkInitAck},
		{"COOKIE ECHO", sctpChunks{&layers.SCTPCookieEcho{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeCookieEcho}, Cookie: []byte("cookie!")}}, SCTPChunkCookieEcho},
		{"COOKIE ECHO + DATA", append(sctpChunks{&layers.SCTPCookieEcho{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeCookieEcho}, Cookie: []byte("c")}}, sctpData("x")...), SCTPChunkCookieEcho},
		{"COOKIE ECHO + ABORT", sctpChunks{&layers.SCTPCookieEcho{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeCookieEcho}, Cookie: []byte("cookie")}, abort}, SCTPChunkAbort},
		{"COOKIE ACK", sctpChunks{&layers.SCTPEmptyLayer{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeCookieAck}}}, SCTPChunkCookieAck},
		{"COOKIE ACK + ABORT", sctpChunks{&layers.SCTPEmptyLayer{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeCookieAck}}, abort}, SCTPChunkAbort},
		{"DATA", sctpData("hello, sctp"), SCTPChunkData},
		{"SACK", sctpChunks{&layers.SCTPSack{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeSack}, CumulativeTSNAck: 1}}, SCTPChunkSack},
		{"SHUTDOWN", sctpChunks{&layers.SCTPShutdown{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeShutdown}}}, SCTPChunkShutdown},
		{"SHUTDOWN ACK", sctpChunks{&layers.SCTPShutdownAck{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeShutdownAck}}}, SCTPChunkShutdownAck},
		{"SHUTDOWN COMPLETE", sctpChunks{&layers.SCTPEmptyLayer{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeShutdownComplete}}}, SCTPChunkShutdownComplete},
		{"ABORT", sctpChunks{abort}, SCTPChunkAbort},
	} {
		for _, v6 := range []bool{false, true} {
			c, v := sctpC, sctpV
			if v6 {
				c, v = sctpC6, sctpV6
			}
			frame := buildSCTP(t, v6, c, v, 40000, 38412, tc.chunks)
			var info Info
			if r := Parse(frame, &info); r != ResultOK {
				t.Fatalf("%s (v6 %v): %v", tc.name, v6, r)
			}
			if info.Proto != ProtoSCTP || info.SrcPort != 40000 || info.DstPort != 38412 || info.TCPFlags != tc.want {
				t.Fatalf("%s (v6 %v): %+v, want chunk %d", tc.name, v6, info, tc.want)
			}
			if !L4ChecksumValid(frame, &info) {
				t.Fatalf("%s: checksum does not verify", tc.name)
			}
			// gopacket agrees on the ports and the first chunk.
			pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
			sl, _ := pkt.Layer(layers.LayerTypeSCTP).(*layers.SCTP)
			if sl == nil || uint16(sl.SrcPort) != 40000 || uint16(sl.DstPort) != 38412 {
				t.Fatalf("%s: gopacket reads %v", tc.name, sl)
			}
		}
	}
}

// TestParseSCTPMalformed: SCTP packets gopacket or a sender could get wrong parse as
// ResultBadL4Header (the worker counts them as malformed and drops them).
func TestParseSCTPMalformed(t *testing.T) {
	good := buildSCTP(t, false, sctpC, sctpV, 1, 2, sctpData("0123456789"))
	l4 := 14 + 20
	set := func(b []byte, off int, v uint16) []byte {
		c := append([]byte(nil), b...)
		binary.BigEndian.PutUint16(c[off:], v)
		return c
	}
	// shorten cuts the IP packet to n bytes of SCTP.
	shorten := func(n int) []byte {
		c := append([]byte(nil), good[:l4+n]...)
		binary.BigEndian.PutUint16(c[14+2:], uint16(20+n))
		IPv4(c[14:]).ComputeChecksum()
		return c
	}
	dataLen := int(binary.BigEndian.Uint16(good[l4+12+2:]))
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"common header cut", shorten(8)},
		{"no chunk", shorten(12)},
		{"chunk header cut", shorten(14)},
		{"chunk length 0", set(good, l4+12+2, 0)},
		{"chunk length 3", set(good, l4+12+2, 3)},
		{"chunk longer than the packet", set(good, l4+12+2, uint16(len(good)-l4-12+1))},
		{"a second chunk cut", func() []byte {
			// The DATA chunk claims 4 bytes; after its padding 6+ bytes remain that do not
			// hold a chunk of the length they claim.
			c := set(good, l4+12+2, 4)
			binary.BigEndian.PutUint16(c[l4+12+4+2:], uint16(dataLen))
			return c
		}()},
	} {
		var info Info
		if r := Parse(tc.frame, &info); r != ResultBadL4Header {
			t.Errorf("%s: %v, want %v", tc.name, r, ResultBadL4Header)
		}
	}
	var info Info
	if r := Parse(good, &info); r != ResultOK {
		t.Fatalf("the good packet: %v", r)
	}
}

// TestSCTPNATChecksum: RewriteDst, RewriteSrc and RewriteFullNAT on SCTP packets of
// every size class give a packet whose CRC32c (the bitwise reference over the result)
// verifies, with the addresses and ports asked for; a packet whose checksum was wrong
// stays wrong by the same error.
func TestSCTPNATChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 400 {
		v6 := i%2 == 1
		c, v, rs := sctpC, sctpV, sctpR
		if v6 {
			c, v, rs = sctpC6, sctpV6, sctpR6
		}
		payload := make([]byte, r.IntN(1400))
		for j := range payload {
			payload[j] = byte(r.Uint32())
		}
		frame := buildSCTP(t, v6, c, v, uint16(r.Uint32()), uint16(r.Uint32()), sctpData(string(payload)))
		corrupt := i%5 == 0
		var info Info
		if res := Parse(frame, &info); res != ResultOK {
			t.Fatalf("packet %d: %v", i, res)
		}
		seg := func() []byte { return frame[info.L4Off : int(info.L3Off)+int(info.L3Len)] }
		var flip uint32
		if corrupt {
			flip = r.Uint32() | 1
			SCTP(seg()).SetChecksum(SCTP(seg()).Checksum() ^ flip)
		}
		nport := uint16(r.Uint32())
		switch i % 3 {
		case 0:
			RewriteDst(frame, &info, rs.As16(), nport)
		case 1:
			RewriteSrc(frame, &info, v.As16(), nport)
		case 2:
			RewriteFullNAT(frame, &info, v.As16(), nport, rs.As16(), nport^0x5a5a)
		}
		var again Info
		if res := Parse(frame, &again); res != ResultOK || again != info {
			t.Fatalf("packet %d: after rewrite %v %+v, info says %+v", i, res, again, info)
		}
		s := seg()
		z := append([]byte(nil), s...)
		binary.LittleEndian.PutUint32(z[8:], 0)
		if got, want := SCTP(s).Checksum(), crcBitwise(z)^flip; got != want {
			t.Fatalf("packet %d (%d bytes, corrupt %v): checksum %#x, want %#x", i, len(s), corrupt, got, want)
		}
		if !v6 && Fold(Checksum(frame[14:34], 0)) != 0xFFFF {
			t.Fatalf("packet %d: IPv4 header checksum", i)
		}
	}
}

// TestSCTPPortsDeltaLong covers the delta's tables for every length up to 64 KiB (the
// high table), against a full recomputation over zeros.
func TestSCTPPortsDeltaLong(t *testing.T) {
	buf := make([]byte, 65535)
	for _, n := range []int{4, 5, 16, 255, 256, 259, 260, 1500, 4096, 9000, 65535} {
		seg := buf[:n]
		clear(seg)
		binary.BigEndian.PutUint32(seg, 0x12345678)
		before := crcBitwise(seg)
		binary.BigEndian.PutUint32(seg, 0x9abcdef0)
		after := crcBitwise(seg)
		if got := sctpPortsDelta(0x12345678, 0x9abcdef0, n); got != before^after {
			t.Fatalf("%d bytes: delta %#x, want %#x", n, got, before^after)
		}
	}
}

// TestSCTPFirstFragment: the first fragment of a fragmented SCTP packet parses with
// only its first chunk checked, and SCTPPortsFixable refuses a port change for it.
func TestSCTPFirstFragment(t *testing.T) {
	frame := buildSCTP(t, false, sctpC, sctpV, 5000, 38412, sctpData(string(make([]byte, 200))))
	frame = frame[:14+20+100] // cut inside the DATA chunk
	binary.BigEndian.PutUint16(frame[14+2:], 120)
	binary.BigEndian.PutUint16(frame[14+6:], IPv4FlagMF)
	ip := IPv4(frame[14:])
	ip.ComputeChecksum()
	var info Info
	if r := Parse(frame, &info); r != ResultOK || !info.Frag || info.TCPFlags != SCTPChunkData {
		t.Fatalf("first fragment: %v %+v", r, info)
	}
	if !SCTPPortsFixable(&info, 5000, 38412) || SCTPPortsFixable(&info, 5000, 80) {
		t.Fatal("SCTPPortsFixable")
	}
	info.Frag = false
	if !SCTPPortsFixable(&info, 5000, 80) {
		t.Fatal("SCTPPortsFixable refused a whole packet")
	}
}

// TestSCTPAllocs: parsing and every NAT rewrite of an SCTP packet allocate nothing.
func TestSCTPAllocs(t *testing.T) {
	frame := buildSCTP(t, false, sctpC, sctpV, 40000, 38412, sctpData(string(make([]byte, 1200))))
	var info Info
	p := uint16(1)
	n := testing.AllocsPerRun(1000, func() {
		Parse(frame, &info)
		p++
		RewriteDst(frame, &info, sctpR.As16(), p)
		RewriteSrc(frame, &info, sctpV.As16(), p)
		RewriteFullNAT(frame, &info, sctpV.As16(), p, sctpR.As16(), p+1)
		_ = SCTPPortsFixable(&info, p, p)
	})
	if n != 0 {
		t.Fatalf("%v allocations per SCTP parse and rewrite", n)
	}
}

// BenchmarkSCTPPorts compares the incremental CRC32c update with a full recomputation
// (the kernel's sctp_nat_csum) on a 1400-byte packet.
func BenchmarkSCTPPorts(b *testing.B) {
	seg := make([]byte, 1400)
	binary.BigEndian.PutUint32(seg, 0x11112222)
	SCTP(seg).SetChecksum(SCTPChecksum(seg))
	b.Run("incremental", func(b *testing.B) {
		for i := range b.N {
			SetSCTPPorts(seg, uint16(i), 80)
		}
	})
	b.Run("recompute", func(b *testing.B) {
		for i := range b.N {
			binary.BigEndian.PutUint16(seg, uint16(i))
			SCTP(seg).SetChecksum(SCTPChecksum(seg))
		}
	})
}
