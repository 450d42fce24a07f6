package packet

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// toaCase is a TCP packet for the TOA tests, described as gopacket builds it.
type toaCase struct {
	v6      bool
	src     [16]byte
	dst     [16]byte
	sport   uint16
	dport   uint16
	seq     uint32
	flags   uint8 // SYN, ACK, PSH, FIN, RST as in the header's flag byte
	ipOpts  bool  // IPv4: a 4-byte option (NOP, NOP, NOP, EOL)
	opts    []layers.TCPOption
	payload []byte
	ttl     uint8
	tos     uint8
}

// gopacketTCP builds c's IP packet with gopacket, the TOA option for client:cport
// first among the TCP options when toa is set (the reference InsertTOA must match).
func (c toaCase) gopacketTCP(t testing.TB, toa bool, client [16]byte, cport uint16) []byte {
	t.Helper()
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(c.sport), DstPort: layers.TCPPort(c.dport), Seq: c.seq, Ack: c.seq ^ 0x5a5a5a5a,
		Window: 501, SYN: c.flags&TCPFlagSYN != 0, ACK: c.flags&TCPFlagACK != 0, PSH: c.flags&TCPFlagPSH != 0,
		FIN: c.flags&TCPFlagFIN != 0, RST: c.flags&TCPFlagRST != 0,
	}
	if toa {
		n := TOALen(4)
		data := make([]byte, 2, 18)
		binary.BigEndian.PutUint16(data, cport)
		if c.v6 {
			n = TOALen(6)
			data = append(data, client[:]...)
		} else {
			data = append(data, client[12:]...)
		}
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: TOAKind, OptionLength: uint8(n), OptionData: data})
	}
	tcp.Options = append(tcp.Options, c.opts...)
	var nl gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if c.v6 {
		ip := &layers.IPv6{Version: 6, TrafficClass: c.tos, HopLimit: c.ttl, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.IP(c.src[:]), DstIP: net.IP(c.dst[:])}
		nl, ipl = ip, ip
	} else {
		ip := &layers.IPv4{Version: 4, TOS: c.tos, TTL: c.ttl, Id: 0x1234, Flags: layers.IPv4DontFragment,
			Protocol: layers.IPProtocolTCP, SrcIP: net.IP(c.src[12:]), DstIP: net.IP(c.dst[12:])}
		if c.ipOpts {
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		}
		nl, ipl = ip, ip
	}
	must(t, tcp.SetNetworkLayerForChecksum(nl))
	buf := gopacket.NewSerializeBuffer()
	must(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ipl, tcp, gopacket.Payload(c.payload)))
	return append([]byte(nil), buf.Bytes()...)
}

// randTOACase returns a random TCP packet whose options leave room for the TOA option
// of its family (most of the time; the rest tests TOAFits).
func randTOACase(r *rand.Rand) toaCase {
	c := toaCase{v6: r.IntN(2) == 0, sport: uint16(r.Uint32()), dport: uint16(r.Uint32()), seq: r.Uint32(),
		ttl: uint8(1 + r.IntN(255)), tos: uint8(r.Uint32())}
	c.src, c.dst = as16(randAddr(r, c.v6)), as16(randAddr(r, c.v6))
	c.flags = []uint8{TCPFlagSYN, TCPFlagACK, TCPFlagACK | TCPFlagPSH, TCPFlagSYN | TCPFlagACK, TCPFlagACK | TCPFlagFIN}[r.IntN(5)]
	c.ipOpts = !c.v6 && r.IntN(4) == 0
	// Options as clients send them: MSS, SACK permitted, timestamps, window scale, NOPs.
	pool := []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}
	for range r.IntN(6) {
		c.opts = append(c.opts, pool[r.IntN(len(pool))])
	}
	c.payload = make([]byte, []int{0, 0, 1, 7, 100, 1379}[r.IntN(6)])
	for i := range c.payload {
		c.payload[i] = byte(r.Uint32())
	}
	return c
}

// TestInsertTOA: InsertTOA's packet is byte for byte what gopacket builds with the TOA
// option first among the TCP options (lengths and checksums computed afresh), for
// random TCP packets of both families, with and without IPv4 options, TCP options,
// payloads of even and odd length; where the header has no room, TOAFits says so.
func TestInsertTOA(t *testing.T) {
	r := newRand(t)
	inserted, full := 0, 0
	for i := range 5000 {
		c := randTOACase(r)
		client, cport := as16(randAddr(r, c.v6)), uint16(r.Uint32())
		fam := uint8(4)
		if c.v6 {
			fam = 6
		}
		orig := c.gopacketTCP(t, false, client, cport)
		n := TOALen(fam)
		hl := IPv6HeaderLen
		if !c.v6 {
			hl = int(orig[0]&0x0f) * 4
		}
		if !TOAFits(orig[hl:], n) {
			if TCP(orig[hl:]).DataOffset()+n <= 60 {
				t.Fatalf("case %d: TOAFits refused %d bytes to a %d-byte header", i, n, TCP(orig[hl:]).DataOffset())
			}
			full++
			continue
		}
		b := make([]byte, n+len(orig)+5) // room behind the packet: InsertTOA must not use it
		copy(b[n:], orig)
		for j := n + len(orig); j < len(b); j++ {
			b[j] = 0xee
		}
		got := InsertTOA(b, fam, hl, client, cport)
		want := c.gopacketTCP(t, true, client, cport)
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d (%+v):\n got  %x\n want %x", i, c, got, want)
		}
		if !bytes.Equal(b[len(got):], []byte{0xee, 0xee, 0xee, 0xee, 0xee}) {
			t.Fatalf("case %d: InsertTOA wrote past the packet", i)
		}
		inserted++
	}
	if inserted < 3000 || full == 0 {
		t.Fatalf("%d inserted, %d without room: the cases miss a side", inserted, full)
	}
}

// TestInsertTOAKeepsBadChecksum: the update is incremental, so a segment that arrived
// with a wrong checksum still fails the real server's check.
func TestInsertTOAKeepsBadChecksum(t *testing.T) {
	r := newRand(t)
	c := randTOACase(r)
	c.v6, c.opts = false, nil
	c.src, c.dst = as16(randAddr(r, false)), as16(randAddr(r, false))
	orig := c.gopacketTCP(t, false, [16]byte{}, 0)
	hl := int(orig[0]&0x0f) * 4
	orig[hl+tcpChecksum] ^= 0x40
	b := make([]byte, TOALen4+len(orig))
	copy(b[TOALen4:], orig)
	got := InsertTOA(b, 4, hl, c.src, 1)
	frame := append(make([]byte, EthernetHeaderLen), got...)
	binary.BigEndian.PutUint16(frame[12:], EtherTypeIPv4)
	var info Info
	if res := Parse(frame, &info); res != ResultOK {
		t.Fatalf("Parse: %v", res)
	}
	if !IPv4HeaderChecksumValid(IPv4(got)) {
		t.Fatal("IPv4 header checksum broken")
	}
	if L4ChecksumValid(frame, &info) {
		t.Fatal("a corrupt segment verifies after InsertTOA")
	}
}
