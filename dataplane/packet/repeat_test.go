package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// checkRepeat holds ParseRepeat to its contract for one pair: when it accepts frame as a
// repeat of prev, Parse accepts frame too and gives the same Info. It reports whether
// ParseRepeat accepted.
func checkRepeat(t testing.TB, prev *Info, frame []byte) bool {
	t.Helper()
	var got, want Info
	before := bytes.Clone(frame)
	ok := ParseRepeat(prev, frame, &got)
	if !bytes.Equal(frame, before) {
		t.Fatalf("ParseRepeat changed the frame")
	}
	// ParseRepeatPorts, the rest of ParseRepeat, answers alike wherever the ports match.
	if l4 := int(prev.L4Off); len(frame) >= l4+4 && binary.BigEndian.Uint32(frame[l4:]) == uint32(prev.SrcPort)<<16|uint32(prev.DstPort) {
		var rest Info
		if ok2 := ParseRepeatPorts(prev, frame, &rest); ok2 != ok || ok && rest != got {
			t.Fatalf("ParseRepeatPorts %v %+v, ParseRepeat %v %+v:\n% x", ok2, rest, ok, got, frame)
		}
	}
	if !ok {
		return false
	}
	if res := Parse(frame, &want); res != ResultOK {
		t.Fatalf("ParseRepeat accepted a frame Parse answers %v:\n% x", res, frame)
	}
	if got != want {
		t.Fatalf("ParseRepeat gave %+v, Parse %+v:\n% x", got, want, frame)
	}
	return true
}

// TestParseRepeat: the packets that follow a first one — of its flow, of another flow,
// with headers of another shape, or with random bytes broken — are either parsed by
// ParseRepeat exactly as Parse parses them or left to Parse; and every packet of the
// same flow whose header shape is the first one's (no VLAN tag, the same IPv4 header
// length) is taken, whatever its TTL, flags, options, length and payload.
func TestParseRepeat(t *testing.T) {
	r := newRand(t)
	taken, mates := 0, 0
	for range 20000 {
		first := randSpec(r)
		var prev Info
		if Parse(build(t, first), &prev) != ResultOK {
			t.Fatalf("Parse refused a built packet: %+v", first)
		}
		next := flowMate(t, first, r)
		sameShape := !first.vlan && first.ipOpts == next.ipOpts
		switch r.IntN(8) {
		case 0: // another flow
			next.sport ^= uint16(1 + r.IntN(0xFFFF))
			sameShape = false
		case 1:
			next.src = randAddr(r, next.v6)
			sameShape = next.src == first.src && sameShape
		case 2: // another family or protocol
			next.v6 = !next.v6
			next.src, next.dst, next.ipOpts = randAddr(r, next.v6), randAddr(r, next.v6), false
			sameShape = false
		case 3:
			next.proto ^= ProtoTCP ^ ProtoUDP
			sameShape = false
		case 4:
			next.vlan = !next.vlan
			sameShape = sameShape && !next.vlan
		}
		frame := build(t, next)
		broken := false
		switch r.IntN(4) {
		case 0: // a few bytes of the headers broken
			for range 1 + r.IntN(3) {
				frame[r.IntN(min(len(frame), 90))] ^= byte(1 + r.IntN(255))
			}
			broken = true
		case 1: // cut short
			frame = frame[:r.IntN(len(frame))]
			broken = true
		}
		ok := checkRepeat(t, &prev, frame)
		if sameShape && !broken {
			mates++
			if !ok {
				t.Fatalf("ParseRepeat refused a packet of the flow with its first's shape:\nfirst %+v\nnext %+v", first, next)
			}
		}
		if ok {
			taken++
		}
	}
	if mates < 1500 {
		t.Fatalf("only %d packets of the first's flow and shape: the test does not test", mates)
	}
	t.Logf("%d taken, %d of them unbroken packets of the flow", taken, mates)
}

// TestParseRepeatRefuses: what ParseRepeat leaves to Parse although the packet is of the
// flow — a fragment, a first packet that was one, a VLAN tag — and a prev that is not
// TCP or UDP.
func TestParseRepeatRefuses(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		s := defaultSpec(v6, ProtoUDP)
		frame := build(t, s)
		prev := parseOK(t, frame)
		if !checkRepeat(t, &prev, frame) {
			t.Fatalf("v6 %v: the same packet again was refused", v6)
		}
		if !v6 {
			mf := bytes.Clone(frame)
			mf[EthernetHeaderLen+ipv4FlagsFrag] |= IPv4FlagMF >> 8
			if checkRepeat(t, &prev, mf) {
				t.Fatal("a first fragment (MF) was taken as a repeat")
			}
		}
		fp := prev
		fp.Frag = true
		if checkRepeat(t, &fp, frame) {
			t.Fatalf("v6 %v: a repeat of a fragment was taken", v6)
		}
		vs := s
		vs.vlan, vs.vlanTCI = true, 7
		vf := build(t, vs)
		vp := parseOK(t, vf)
		if checkRepeat(t, &vp, vf) {
			t.Fatalf("v6 %v: a VLAN-tagged packet was taken", v6)
		}
		sp := prev
		sp.Proto = ProtoSCTP
		if checkRepeat(t, &sp, frame) {
			t.Fatalf("v6 %v: an SCTP prev was taken", v6)
		}
	}
}

// FuzzParseRepeat: for any first packet Parse takes whole and any next frame,
// ParseRepeat never panics and, when it takes the frame, agrees with Parse.
func FuzzParseRepeat(f *testing.F) {
	seeds := seedFrames(f)
	for _, a := range seeds {
		for _, b := range seeds {
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, first, next []byte) {
		var prev Info
		if Parse(first, &prev) != ResultOK || prev.Frag {
			return
		}
		checkRepeat(t, &prev, next)
	})
}
