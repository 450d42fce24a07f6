package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// seedFrames returns valid frames of every shape Parse accepts, plus a few
// broken ones, as fuzz seeds.
func seedFrames(t testing.TB) [][]byte {
	var out [][]byte
	for _, v6 := range []bool{false, true} {
		for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
			for variant := 0; variant < 4; variant++ {
				s := defaultSpec(v6, proto)
				s.vlan = variant&1 != 0
				s.vlanTCI = 0x2005
				s.tcpMSS = variant&2 != 0
				s.ipOpts = !v6 && variant&2 != 0
				s.udpNoCk = !v6 && proto == ProtoUDP && variant == 3
				if variant == 2 {
					s.payload = nil
				}
				out = append(out, build(t, s))
			}
		}
	}
	out = append(out, build(t, defaultSpec(false, ProtoICMP)), build(t, defaultSpec(true, ProtoICMPv6)))
	frag := build(t, defaultSpec(false, ProtoUDP))
	binary.BigEndian.PutUint16(frag[EthernetHeaderLen+6:], IPv4FlagMF)
	later := bytes.Clone(frag)
	binary.BigEndian.PutUint16(later[EthernetHeaderLen+6:], 100)
	out = append(out, frag, later, nil, make([]byte, 14), frag[:30])
	out = append(out, v6FragFrame(t, ProtoUDP, 0, true), v6FragFrame(t, ProtoTCP, 8, true))
	return out
}

// FuzzParse: Parse never panics, and whatever it accepts is within bounds
// and agrees with the header views.
func FuzzParse(f *testing.F) {
	for _, fr := range seedFrames(f) {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		frame = frame[:len(frame):len(frame)]
		info := Info{L3Off: 0xFFFF, Family: 7, Src: [16]byte{1}}
		r := Parse(frame, &info)
		if r >= NumResults {
			t.Fatalf("result %d out of range", r)
		}
		var again Info
		if r2 := Parse(frame, &again); r2 != r || again != info {
			t.Fatalf("Parse not deterministic: %v %+v, then %v %+v", r, info, r2, again)
		}
		switch r {
		case ResultOK:
			checkOKInvariants(t, frame, &info)
		case ResultFragment, ResultUnsupportedProto, ResultBadL4Header:
			if info.Family != 4 && info.Family != 6 {
				t.Fatalf("%v with family %d", r, info.Family)
			}
			if int(info.L3Off)+int(info.L3Len) > len(frame) || info.L4Off > info.L3Off+info.L3Len {
				t.Fatalf("%v with offsets outside the frame: %+v", r, info)
			}
			if info.SrcPort != 0 || info.DstPort != 0 || info.TCPFlags != 0 {
				t.Fatalf("%v with ports or flags set: %+v", r, info)
			}
		default:
			if info.Family != 0 || info.L3Len != 0 {
				t.Fatalf("%v left network fields set: %+v", r, info)
			}
		}
	})
}

// FuzzRewrite: parse, rewrite, parse again. The second parse must succeed
// and match the updated Info; every checksum that verified before verifies
// after; rewriting back restores every byte outside the checksum fields.
func FuzzRewrite(f *testing.F) {
	for i, fr := range seedFrames(f) {
		f.Add(fr, []byte{0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 198, 18}, uint16(8080), uint8(i))
	}
	f.Fuzz(func(t *testing.T, frame, addrBytes []byte, port uint16, op uint8) {
		var info Info
		if Parse(frame, &info) != ResultOK {
			return
		}
		var addr [16]byte
		copy(addr[:], addrBytes)
		if info.Family == 4 {
			copy(addr[:12], v4InV6Prefix[:])
		}
		ipOK := info.Family == 6 || IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:]))
		l4OK := L4ChecksumValid(frame, &info)
		orig := append([]byte(nil), frame...)
		origInfo := info

		switch op % 4 {
		case 0:
			RewriteDst(frame, &info, addr, port)
			if info.Dst != addr || info.DstPort != port {
				t.Fatalf("info not updated: %+v", info)
			}
		case 1:
			RewriteSrc(frame, &info, addr, port)
			if info.Src != addr || info.SrcPort != port {
				t.Fatalf("info not updated: %+v", info)
			}
		case 2:
			RewriteSrc(frame, &info, addr, port)
			RewriteDst(frame, &info, addr, ^port)
		case 3:
			ok := DecrementTTL(frame, &info)
			ttlOff := int(info.L3Off) + ipv4TTL
			if info.Family == 6 {
				ttlOff = int(info.L3Off) + ipv6HopLimit
			}
			if ok != (orig[ttlOff] > 1) || (ok && frame[ttlOff] != orig[ttlOff]-1) || (!ok && !bytes.Equal(frame, orig)) {
				t.Fatalf("DecrementTTL = %v: TTL %d -> %d", ok, orig[ttlOff], frame[ttlOff])
			}
		}

		var again Info
		if r := Parse(frame, &again); r != ResultOK || again != info {
			t.Fatalf("reparse after op %d: %v %+v, want ok %+v", op%4, r, again, info)
		}
		if ipOK && !(info.Family == 6 || IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:]))) {
			t.Fatalf("op %d broke the IPv4 header checksum", op%4)
		}
		if l4OK && !L4ChecksumValid(frame, &info) {
			t.Fatalf("op %d broke the %d checksum", op%4, info.Proto)
		}
		if op%4 == 3 {
			return
		}

		// Rewrite back and compare everything but the checksum fields.
		RewriteSrc(frame, &info, origInfo.Src, origInfo.SrcPort)
		RewriteDst(frame, &info, origInfo.Dst, origInfo.DstPort)
		if info != origInfo {
			t.Fatalf("info after rewriting back %+v, want %+v", info, origInfo)
		}
		if l4OK && !L4ChecksumValid(frame, &info) || ipOK && !(info.Family == 6 || IPv4HeaderChecksumValid(IPv4(frame[info.L3Off:]))) {
			t.Fatal("rewriting back broke a checksum")
		}
		masked := func(b []byte) []byte {
			c := append([]byte(nil), b...)
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
