package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// flowMate returns a packet of s's flow (same family, protocol, addresses and ports)
// with other contents drawn from r: what follows s in a burst.
func flowMate(t *testing.T, s spec, r interface{ IntN(int) int }) spec {
	t.Helper()
	m := s
	m.ttl = uint8(1 + r.IntN(255))
	if r.IntN(10) == 0 {
		m.ttl = 1 // a packet Apply must refuse
	}
	m.tcpFlag = uint8(r.IntN(256))
	m.tcpMSS = r.IntN(2) == 0
	if !m.v6 {
		m.ipOpts = r.IntN(4) == 0
	}
	m.payload = make([]byte, r.IntN(1501))
	for i := range m.payload {
		m.payload[i] = byte(r.IntN(256))
	}
	return m
}

// TestFlowNATMatchesRewrite: a FlowNAT made from one packet of a flow leaves every other
// packet of that flow byte for byte as DecrementTTL and then RewriteDst, RewriteSrc or
// RewriteFullNAT leave it, checksums included, and refuses, changing nothing, exactly the packets
// DecrementTTL refuses. The reference is the two functions the worker's first packet of
// a flow goes through; the checksums are also verified from scratch.
func TestFlowNATMatchesRewrite(t *testing.T) {
	r := newRand(t)
	applied, refused := 0, 0
	for i := 0; i < 3000; i++ {
		first := randSpec(r)
		mode := r.IntN(3) // RewriteDst, RewriteSrc, RewriteFullNAT
		src := mode == 1
		to, port := as16(randAddr(r, first.v6)), uint16(r.IntN(1<<16))
		from, fport := as16(randAddr(r, first.v6)), uint16(r.IntN(1<<16))
		firstInfo := parseOK(t, build(t, first))
		n, ok := NewFlowNAT(&firstInfo, src, to, port)
		if mode == 2 {
			n, ok = NewFlowFullNAT(&firstInfo, from, fport, to, port)
		}
		if !ok {
			t.Fatalf("packet %d: NewFlowNAT refused a %d/%d packet", i, firstInfo.Family, firstInfo.Proto)
		}
		mate := flowMate(t, first, r)
		frame := build(t, mate)
		info := parseOK(t, frame)
		want, wantInfo := bytes.Clone(frame), info
		wantOK := DecrementTTL(want, &wantInfo)
		if wantOK {
			switch mode {
			case 0:
				RewriteDst(want, &wantInfo, to, port)
			case 1:
				RewriteSrc(want, &wantInfo, to, port)
			case 2:
				RewriteFullNAT(want, &wantInfo, from, fport, to, port)
			}
		}
		got, gotInfo := bytes.Clone(frame), info
		if gotOK := n.Apply(got, &gotInfo); gotOK != wantOK {
			t.Fatalf("packet %d (ttl %d): Apply %v, DecrementTTL %v", i, mate.ttl, gotOK, wantOK)
		}
		if !wantOK {
			refused++
			if !bytes.Equal(got, frame) || gotInfo != info {
				t.Fatalf("packet %d: a refused Apply changed the packet", i)
			}
			continue
		}
		applied++
		if !bytes.Equal(got, want) {
			t.Fatalf("packet %d (v6 %v proto %d mode %d):\n got %x\nwant %x", i, mate.v6, mate.proto, mode, got, want)
		}
		if gotInfo != wantInfo {
			t.Fatalf("packet %d: info %+v, want %+v", i, gotInfo, wantInfo)
		}
		if !mate.udpNoCk && !checksumsValid(got, &gotInfo) {
			t.Fatalf("packet %d: checksums invalid after Apply", i)
		}
	}
	if applied < 2500 || refused == 0 {
		t.Fatalf("%d packets applied, %d refused: the draw should give both", applied, refused)
	}
}

// TestFlowNATUDPZeroChecksum: a UDP-over-IPv4 packet without a checksum keeps none, and
// a UDP checksum that comes out as zero is written as 0xFFFF, as RewriteDst does.
func TestFlowNATUDPZeroChecksum(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		s := defaultSpec(v6, ProtoUDP)
		to := as16(randAddr(newRand(t), v6))
		cases := []spec{zeroChecksumSpec(t, s)}
		if !v6 {
			none := s
			none.udpNoCk = true
			cases = append(cases, none)
		}
		for _, c := range cases {
			frame := build(t, c)
			info := parseOK(t, frame)
			n, _ := NewFlowNAT(&info, false, to, 8080)
			want, wantInfo := bytes.Clone(frame), info
			DecrementTTL(want, &wantInfo)
			RewriteDst(want, &wantInfo, to, 8080)
			if !n.Apply(frame, &info) || !bytes.Equal(frame, want) {
				t.Fatalf("v6 %v noCk %v: got %x, want %x", v6, c.udpNoCk, frame, want)
			}
			if c.udpNoCk && binary.BigEndian.Uint16(frame[info.L4Off+udpChecksum:]) != 0 {
				t.Fatal("a UDP packet without a checksum got one")
			}
		}
	}
}

// TestFlowNATRefuses: packets Apply must leave to the full path (a fragment, headers cut
// short, another protocol or family) are refused and left as they were; NewFlowNAT
// refuses flows it cannot serve.
func TestFlowNATRefuses(t *testing.T) {
	to := as16(randAddr(newRand(t), false))
	tcp := build(t, defaultSpec(false, ProtoTCP))
	info := parseOK(t, tcp)
	n, ok := NewFlowNAT(&info, false, to, 8080)
	if !ok {
		t.Fatal("NewFlowNAT refused a TCP packet")
	}
	for name, mod := range map[string]func(*Info, []byte) []byte{
		"fragment":  func(i *Info, f []byte) []byte { i.Frag = true; return f },
		"cut short": func(i *Info, f []byte) []byte { return f[:int(i.L4Off)+TCPMinHeaderLen-1] },
		"udp":       func(i *Info, f []byte) []byte { i.Proto = ProtoUDP; return f },
		"family":    func(i *Info, f []byte) []byte { i.Family = 6; return f },
	} {
		i2 := info
		f := mod(&i2, bytes.Clone(tcp))
		before, beforeInfo := bytes.Clone(f), i2
		if n.Apply(f, &i2) {
			t.Errorf("%s: applied", name)
		}
		if !bytes.Equal(f, before) || i2 != beforeInfo {
			t.Errorf("%s: changed the packet", name)
		}
	}
	frag := info
	frag.Frag = true
	if _, ok := NewFlowNAT(&frag, false, to, 1); ok {
		t.Error("NewFlowNAT took a fragment")
	}
	var icmp Info
	Parse(build(t, defaultSpec(false, ProtoICMP)), &icmp)
	if _, ok := NewFlowNAT(&icmp, false, to, 1); ok {
		t.Error("NewFlowNAT took ICMP")
	}
}

// TestFlowNATAllocs: Apply allocates nothing.
func TestFlowNATAllocs(t *testing.T) {
	frame := build(t, defaultSpec(false, ProtoTCP))
	info := parseOK(t, frame)
	n, _ := NewFlowNAT(&info, false, as16(randAddr(newRand(t), false)), 8080)
	if a := testing.AllocsPerRun(100, func() {
		frame[int(info.L3Off)+ipv4TTL] = 64
		i := info
		n.Apply(frame, &i)
	}); a != 0 {
		t.Fatalf("%v allocations per Apply", a)
	}
}
