package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

func parseOK(t testing.TB, frame []byte) Info {
	t.Helper()
	var info Info
	if r := Parse(frame, &info); r != ResultOK {
		t.Fatalf("Parse = %v, want ok", r)
	}
	return info
}

// recomputed returns a copy of frame with every checksum recomputed from
// scratch (UDP over IPv4 without checksum keeps none).
func recomputed(frame []byte, info *Info) []byte {
	c := append([]byte(nil), frame...)
	if info.Family == 4 {
		IPv4(c[info.L3Off:]).ComputeChecksum()
	}
	if info.Proto == ProtoUDP && info.Family == 4 && UDP(c[info.L4Off:]).Checksum() == 0 {
		return c
	}
	ComputeL4Checksum(c, info)
	return c
}

// TestRewriteDifferential applies random rewrites to random packets and
// compares the result byte for byte with the same packet serialized by
// gopacket (ComputeChecksums) and with a full recomputation.
func TestRewriteDifferential(t *testing.T) {
	r := newRand(t)
	ops := []string{"dst", "src", "src+dst", "dst+ttl"}
	for i := 0; i < 3000; i++ {
		s := randSpec(r)
		frame := build(t, s)
		info := parseOK(t, frame)
		if !checksumsValid(frame, &info) {
			t.Fatalf("packet %d: input checksums do not verify", i)
		}
		addr := randAddr(r, s.v6)
		port := uint16(r.IntN(1 << 16))
		switch r.IntN(8) {
		case 0:
			addr = s.dst // same address, new port
		case 1:
			port = s.dport // new address, same port
		case 2:
			port = 0
		case 3:
			port = 0xFFFF
		}
		op := ops[r.IntN(len(ops))]
		exp := s
		switch op {
		case "dst":
			RewriteDst(frame, &info, as16(addr), port)
			exp.dst, exp.dport = addr, port
		case "src":
			RewriteSrc(frame, &info, as16(addr), port)
			exp.src, exp.sport = addr, port
		case "src+dst":
			RewriteSrc(frame, &info, as16(addr), port)
			addr2, port2 := randAddr(r, s.v6), uint16(r.IntN(1<<16))
			RewriteDst(frame, &info, as16(addr2), port2)
			exp.src, exp.sport, exp.dst, exp.dport = addr, port, addr2, port2
		case "dst+ttl":
			RewriteDst(frame, &info, as16(addr), port)
			exp.dst, exp.dport = addr, port
			ok := DecrementTTL(frame, &info)
			if ok != (s.ttl > 1) {
				t.Fatalf("packet %d: DecrementTTL(ttl %d) = %v", i, s.ttl, ok)
			}
			if ok {
				exp.ttl = s.ttl - 1
			}
		}
		want := build(t, exp)
		if !bytes.Equal(frame, want) {
			t.Fatalf("packet %d (%s, v6=%v proto=%d udpNoCk=%v opts=%v vlan=%v payload %d): rewrite differs from gopacket\n got %x\nwant %x",
				i, op, s.v6, s.proto, s.udpNoCk, s.ipOpts, s.vlan, len(s.payload), frame, want)
		}
		if wi := wantInfo(exp); info != wi {
			t.Fatalf("packet %d (%s): info %+v, want %+v", i, op, info, wi)
		}
		if full := recomputed(frame, &info); !bytes.Equal(full, frame) {
			t.Fatalf("packet %d (%s): incremental checksums differ from full recomputation", i, op)
		}
		if again := parseOK(t, frame); again != info {
			t.Fatalf("packet %d (%s): reparse %+v, want %+v", i, op, again, info)
		}
	}
}

// zeroChecksumSpec returns s with its first two payload bytes chosen so that
// the UDP checksum computes to zero (sent as 0xFFFF).
func zeroChecksumSpec(t *testing.T, s spec) spec {
	t.Helper()
	s.payload = append([]byte{0, 0}, s.payload...)
	frame := build(t, s)
	info := parseOK(t, frame)
	seg := frame[info.L4Off : int(info.L3Off)+int(info.L3Len)]
	binary.BigEndian.PutUint16(seg[udpChecksum:], 0)
	sum := Fold(Checksum(seg, PseudoHeaderSum(info.Family, info.Src, info.Dst, ProtoUDP, uint32(len(seg)))))
	// The payload word w must bring the folded sum to 0xFFFF.
	binary.BigEndian.PutUint16(s.payload, 0xFFFF-sum)
	frame = build(t, s)
	if c := UDP(frame[info.L4Off:]).Checksum(); c != 0xFFFF {
		t.Fatalf("crafted UDP checksum %#04x, want 0xffff", c)
	}
	return s
}

// TestRewriteUDPChecksumZero covers the one UDP value that needs care: a
// checksum computing to zero is written as 0xFFFF, and 0xFFFF read back is
// taken as the zero it stands for.
func TestRewriteUDPChecksumZero(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, dst := range []bool{false, true} {
			name := map[bool]string{false: "ipv4", true: "ipv6"}[v6] + map[bool]string{false: " src", true: " dst"}[dst]
			t.Run(name, func(t *testing.T) {
				before := defaultSpec(v6, ProtoUDP)
				after := before
				if v6 {
					after.src, after.dst = netip.MustParseAddr("2001:db8:1::7"), netip.MustParseAddr("2001:db8:2::9")
				} else {
					after.src, after.dst = netip.MustParseAddr("198.18.7.7"), netip.MustParseAddr("198.19.9.9")
				}
				after.sport, after.dport = 1234, 4321
				if dst {
					after.src, after.sport = before.src, before.sport
				} else {
					after.dst, after.dport = before.dst, before.dport
				}
				after = zeroChecksumSpec(t, after)
				before.payload = after.payload
				rw := func(frame []byte, info *Info, s spec) {
					if dst {
						RewriteDst(frame, info, as16(s.dst), s.dport)
					} else {
						RewriteSrc(frame, info, as16(s.src), s.sport)
					}
				}

				frame := build(t, before)
				info := parseOK(t, frame)
				rw(frame, &info, after)
				if want := build(t, after); !bytes.Equal(frame, want) {
					t.Fatalf("to zero checksum:\n got %x\nwant %x", frame, want)
				}
				if c := UDP(frame[info.L4Off:]).Checksum(); c != 0xFFFF {
					t.Fatalf("checksum %#04x, want 0xffff", c)
				}
				if !checksumsValid(frame, &info) {
					t.Fatal("checksum 0xffff does not verify")
				}

				// And back: from a stored 0xFFFF to an ordinary value.
				rw(frame, &info, before)
				if want := build(t, before); !bytes.Equal(frame, want) {
					t.Fatalf("from 0xffff:\n got %x\nwant %x", frame, want)
				}
			})
		}
	}
}

func TestRewriteUDPNoChecksum(t *testing.T) {
	s := defaultSpec(false, ProtoUDP)
	s.udpNoCk = true
	frame := build(t, s)
	info := parseOK(t, frame)
	RewriteDst(frame, &info, as16(netip.MustParseAddr("198.18.200.1")), 8080)
	RewriteSrc(frame, &info, as16(netip.MustParseAddr("198.18.200.2")), 9090)
	if c := UDP(frame[info.L4Off:]).Checksum(); c != 0 {
		t.Fatalf("UDP checksum %#04x, want 0 (none)", c)
	}
	if !IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:])) {
		t.Fatal("IPv4 header checksum does not verify")
	}
	again := parseOK(t, frame)
	if again != info || again.DstPort != 8080 || again.SrcPort != 9090 {
		t.Fatalf("reparse %+v, info %+v", again, info)
	}
}

// TestRewriteBadInfo: an Info that does not fit the frame changes nothing
// and does not panic.
func TestRewriteBadInfo(t *testing.T) {
	frame := build(t, defaultSpec(false, ProtoTCP))
	good := parseOK(t, frame)
	tests := []struct {
		name string
		mod  func(*Info)
		// ttl: DecrementTTL must refuse too (it reads only the IP header).
		ttl bool
	}{
		{"zero info", func(i *Info) { *i = Info{} }, true},
		{"family 5", func(i *Info) { i.Family = 5 }, true},
		{"icmp", func(i *Info) { i.Proto = ProtoICMP }, false},
		{"l4 beyond frame", func(i *Info) { i.L4Off = uint16(len(frame)) - 10 }, false},
		{"l4 far beyond frame", func(i *Info) { i.L4Off = 0xFFFF }, false},
		{"l4 inside ip header", func(i *Info) { i.L4Off = i.L3Off + 10 }, false},
		{"ipv6 on ipv4 offsets", func(i *Info) { i.Family = 6 }, false},
		{"l3 beyond frame", func(i *Info) { i.L3Off, i.L4Off = 0xFFF0, 0xFFFF }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := append([]byte(nil), frame...)
			info := good
			tc.mod(&info)
			before := info
			RewriteDst(frame, &info, as16(netip.MustParseAddr("198.18.1.1")), 1)
			RewriteSrc(frame, &info, as16(netip.MustParseAddr("198.18.1.2")), 2)
			if info != before || !bytes.Equal(frame, orig) {
				t.Fatalf("rewrite with bad info changed something")
			}
			if tc.ttl && (DecrementTTL(frame, &info) || !bytes.Equal(frame, orig)) {
				t.Fatalf("DecrementTTL with bad info changed something")
			}
		})
	}
	short := []byte{1, 2, 3}
	SetEthernet(short, [6]byte{9}, [6]byte{9})
	if !bytes.Equal(short, []byte{1, 2, 3}) {
		t.Fatal("SetEthernet changed a 3-byte frame")
	}
}

func TestDecrementTTL(t *testing.T) {
	tests := []struct {
		name   string
		v6     bool
		opts   bool
		ttl    uint8
		wantOK bool
	}{
		{"ipv4 64", false, false, 64, true},
		{"ipv4 255", false, false, 255, true},
		{"ipv4 2", false, false, 2, true},
		{"ipv4 1", false, false, 1, false},
		{"ipv4 options 128", false, true, 128, true},
		{"ipv6 64", true, false, 64, true},
		{"ipv6 2", true, false, 2, true},
		{"ipv6 1", true, false, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := defaultSpec(tc.v6, ProtoTCP)
			s.ipOpts, s.ttl = tc.opts, tc.ttl
			frame := build(t, s)
			orig := append([]byte(nil), frame...)
			info := parseOK(t, frame)
			if got := DecrementTTL(frame, &info); got != tc.wantOK {
				t.Fatalf("DecrementTTL = %v, want %v", got, tc.wantOK)
			}
			if !tc.wantOK {
				if !bytes.Equal(frame, orig) {
					t.Fatal("frame changed although DecrementTTL returned false")
				}
				return
			}
			s.ttl--
			if want := build(t, s); !bytes.Equal(frame, want) {
				t.Fatalf("got %x\nwant %x", frame, want)
			}
		})
	}
	t.Run("ipv4 ttl 0", func(t *testing.T) {
		frame := build(t, defaultSpec(false, ProtoUDP))
		info := parseOK(t, frame)
		frame[info.L3Off+ipv4TTL] = 0
		orig := append([]byte(nil), frame...)
		if DecrementTTL(frame, &info) || !bytes.Equal(frame, orig) {
			t.Fatal("TTL 0 decremented")
		}
	})
	t.Run("ipv6 hop limit 0", func(t *testing.T) {
		frame := build(t, defaultSpec(true, ProtoUDP))
		info := parseOK(t, frame)
		frame[info.L3Off+ipv6HopLimit] = 0
		if DecrementTTL(frame, &info) || frame[info.L3Off+ipv6HopLimit] != 0 {
			t.Fatal("hop limit 0 decremented")
		}
	})
	// Every TTL and several header contents against a full recomputation.
	r := newRand(t)
	for ttl := 2; ttl <= 255; ttl++ {
		s := randSpec(r)
		s.v6, s.ipOpts, s.ttl = false, ttl%2 == 0, uint8(ttl)
		s.src, s.dst = randAddr(r, false), randAddr(r, false)
		frame := build(t, s)
		info := parseOK(t, frame)
		if !DecrementTTL(frame, &info) {
			t.Fatalf("ttl %d: not decremented", ttl)
		}
		h := IPv4(frame[info.L3Off:])
		got := h.Checksum()
		h.ComputeChecksum()
		if h.TTL() != uint8(ttl-1) || h.Checksum() != got {
			t.Fatalf("ttl %d: checksum %#04x, full recomputation %#04x", ttl, got, h.Checksum())
		}
	}
}

func TestComputeL4Checksum(t *testing.T) {
	tests := []struct {
		name string
		s    spec
	}{
		{"ipv4 tcp", defaultSpec(false, ProtoTCP)},
		{"ipv4 udp", defaultSpec(false, ProtoUDP)},
		{"ipv6 tcp", defaultSpec(true, ProtoTCP)},
		{"ipv6 udp", defaultSpec(true, ProtoUDP)},
		{"ipv4 udp odd payload", func() spec { s := defaultSpec(false, ProtoUDP); s.payload = []byte("odd"); return s }()},
		{"ipv6 tcp empty", func() spec { s := defaultSpec(true, ProtoTCP); s.payload = nil; return s }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := build(t, tc.s)
			frame := append([]byte(nil), want...)
			info := parseOK(t, frame)
			if !L4ChecksumValid(frame, &info) {
				t.Fatal("gopacket checksum does not verify")
			}
			cs := int(info.L4Off) + tcpChecksum
			if info.Proto == ProtoUDP {
				cs = int(info.L4Off) + udpChecksum
			}
			frame[cs] ^= 0x80
			if L4ChecksumValid(frame, &info) {
				t.Fatal("corrupted checksum verifies")
			}
			ComputeL4Checksum(frame, &info)
			if !bytes.Equal(frame, want) {
				t.Fatalf("recomputed\n got %x\nwant %x", frame, want)
			}
		})
	}
	t.Run("ipv4 udp without checksum gets one", func(t *testing.T) {
		s := defaultSpec(false, ProtoUDP)
		want := build(t, s)
		s.udpNoCk = true
		frame := build(t, s)
		info := parseOK(t, frame)
		if !L4ChecksumValid(frame, &info) {
			t.Fatal("zero UDP checksum over IPv4 must count as valid")
		}
		ComputeL4Checksum(frame, &info)
		if !bytes.Equal(frame, want) {
			t.Fatalf("got %x\nwant %x", frame, want)
		}
	})
	t.Run("bad info", func(t *testing.T) {
		frame := build(t, defaultSpec(true, ProtoTCP))
		orig := append([]byte(nil), frame...)
		for _, info := range []Info{{}, {Proto: ProtoTCP, L3Off: 14, L4Off: 54, L3Len: 0xFFFF}, {Proto: ProtoUDP, L3Off: 14, L4Off: 10, L3Len: 60}, {Proto: ProtoICMP, L3Off: 14, L4Off: 54, L3Len: 40}} {
			ComputeL4Checksum(frame, &info)
			if L4ChecksumValid(frame, &info) || !bytes.Equal(frame, orig) {
				t.Fatalf("info %+v: bad info verified or changed the frame", info)
			}
		}
	})
}

func TestSetEthernet(t *testing.T) {
	frame := build(t, defaultSpec(false, ProtoTCP))
	orig := append([]byte(nil), frame...)
	dst, src := [6]byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}, [6]byte{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	SetEthernet(frame, dst, src)
	e := Ethernet(frame)
	if e.Destination() != dst || e.Source() != src {
		t.Fatalf("MACs %x %x, want %x %x", e.Destination(), e.Source(), dst, src)
	}
	if !bytes.Equal(frame[12:], orig[12:]) {
		t.Fatal("SetEthernet wrote past the MAC addresses")
	}
}
