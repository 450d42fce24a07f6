package packet

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// refSum is the slow reference: RFC 1071's description taken literally.
// Add big-endian 16-bit words (an odd last byte padded with zero on the
// right) with end-around carry after every addition, starting from initial
// folded the same way.
func refSum(b []byte, initial uint32) uint16 {
	s := uint64(initial)
	for s > 0xFFFF {
		s = s>>16 + s&0xFFFF
	}
	for i := 0; i < len(b); i += 2 {
		w := uint64(b[i]) << 8
		if i+1 < len(b) {
			w |= uint64(b[i+1])
		}
		s += w
		if s > 0xFFFF {
			s = s - 0x10000 + 1
		}
	}
	return uint16(s)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return b
}

// TestChecksumEveryLength compares Checksum with the reference for every
// length 0..2000, at every alignment of the start, with random, all-zero and
// all-0xFF data and random initial sums.
func TestChecksumEveryLength(t *testing.T) {
	r := newRand(t)
	backing := randBytes(r, 2000+8)
	ones := make([]byte, 2000)
	for i := range ones {
		ones[i] = 0xFF
	}
	zeros := make([]byte, 2000)
	for n := 0; n <= 2000; n++ {
		for align := 0; align < 8; align++ {
			b := backing[align : align+n]
			initial := r.Uint32()
			if got, want := Fold(Checksum(b, initial)), refSum(b, initial); got != want {
				t.Fatalf("len %d align %d initial %#x: Fold(Checksum) = %#04x, want %#04x", n, align, initial, got, want)
			}
		}
		if got, want := Fold(Checksum(backing[:n], 0)), refSum(backing[:n], 0); got != want {
			t.Fatalf("len %d: got %#04x want %#04x", n, got, want)
		}
		if got := Fold(Checksum(zeros[:n], 0)); got != 0 {
			t.Fatalf("len %d zeros: got %#04x, want 0", n, got)
		}
		if got, want := Fold(Checksum(ones[:n], 0)), refSum(ones[:n], 0); got != want {
			t.Fatalf("len %d 0xFF: got %#04x, want %#04x", n, got, want)
		}
	}
}

// TestChecksumChaining checks that summing a buffer in two pieces split at an
// even offset, chaining the partial sum, equals summing it at once.
func TestChecksumChaining(t *testing.T) {
	r := newRand(t)
	for _, n := range []int{0, 1, 2, 7, 8, 33, 64, 65, 1499, 1500, 2000} {
		b := randBytes(r, n)
		want := refSum(b, 0)
		for k := 0; k <= n; k += 2 {
			if got := Fold(Checksum(b[k:], Checksum(b[:k], 0))); got != want {
				t.Fatalf("len %d split %d: got %#04x want %#04x", n, k, got, want)
			}
		}
	}
	// A large input: carries across many 64-bit additions.
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = 0xFF
	}
	b[len(b)-1] = 0xFE
	if got, want := Fold(Checksum(b, 0xFFFFFFFF)), refSum(b, 0xFFFFFFFF); got != want {
		t.Fatalf("1 MiB: got %#04x want %#04x", got, want)
	}
}

func TestFold(t *testing.T) {
	tests := []struct {
		name string
		in   uint32
		want uint16
	}{
		{"zero", 0, 0},
		{"no carry", 0x1234, 0x1234},
		{"ffff", 0xFFFF, 0xFFFF},
		{"one carry", 0x10000, 1},
		{"carry into ffff", 0x1FFFE, 0xFFFF},
		{"double carry", 0xFFFFFFFF, 0xFFFF},
		{"high only", 0xABCD0000, 0xABCD},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Fold(tc.in); got != tc.want {
				t.Errorf("Fold(%#x) = %#x, want %#x", tc.in, got, tc.want)
			}
		})
	}
}

// TestPseudoHeaderSum compares with the pseudo-header laid out in bytes.
func TestPseudoHeaderSum(t *testing.T) {
	r := newRand(t)
	for i := 0; i < 2000; i++ {
		v6 := i%2 == 1
		src, dst := randAddr(r, v6).As16(), randAddr(r, v6).As16()
		proto := uint8(r.IntN(256))
		var b []byte
		var l4len uint32
		if v6 {
			l4len = r.Uint32()
			b = append(b, src[:]...)
			b = append(b, dst[:]...)
			b = binary.BigEndian.AppendUint32(b, l4len)
			b = append(b, 0, 0, 0, proto)
		} else {
			l4len = uint32(r.IntN(1 << 16))
			b = append(b, src[12:]...)
			b = append(b, dst[12:]...)
			b = append(b, 0, proto)
			b = binary.BigEndian.AppendUint16(b, uint16(l4len))
		}
		family := uint8(4)
		if v6 {
			family = 6
		}
		if got, want := Fold(PseudoHeaderSum(family, src, dst, proto, l4len)), refSum(b, 0); got != want {
			t.Fatalf("v6=%v: got %#04x want %#04x", v6, got, want)
		}
	}
}

// TestUpdateChecksum16 changes one word of random buffers and compares the
// incremental update with a full recomputation. The first word stays
// non-zero, as in every real header (RFC 1624 section 3: with all-zero data
// the two results differ between the equivalent 0x0000 and 0xFFFF).
func TestUpdateChecksum16(t *testing.T) {
	r := newRand(t)
	edge := []uint16{0x0000, 0x0001, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF}
	for i := 0; i < 20000; i++ {
		n := 2 * (2 + r.IntN(40))
		b := randBytes(r, n)
		b[0] |= 0x40
		if i%4 == 0 { // mostly 0xFF words: sums near the wrap-around
			for j := 2; j < n; j++ {
				b[j] = 0xFF
			}
		}
		hc := ^Fold(Checksum(b, 0))
		w := 2 * (1 + r.IntN(n/2-1))
		old := binary.BigEndian.Uint16(b[w:])
		nw := uint16(r.IntN(1 << 16))
		if i%3 == 0 {
			nw = edge[r.IntN(len(edge))]
		}
		binary.BigEndian.PutUint16(b[w:], nw)
		if got, want := UpdateChecksum16(hc, old, nw), ^Fold(Checksum(b, 0)); got != want {
			t.Fatalf("len %d word %d %#04x->%#04x hc %#04x: got %#04x want %#04x", n, w, old, nw, hc, got, want)
		}
	}
}

// TestUpdateChecksumAddr replaces 4- and 16-byte fields at even offsets.
func TestUpdateChecksumAddr(t *testing.T) {
	r := newRand(t)
	for i := 0; i < 20000; i++ {
		fl := 4
		if i%2 == 1 {
			fl = 16
		}
		n := fl + 2 + 2*r.IntN(30)
		b := randBytes(r, n)
		b[0] |= 0x40
		off := 2 + 2*r.IntN((n-fl-2)/2+1)
		hc := ^Fold(Checksum(b, 0))
		old := append([]byte(nil), b[off:off+fl]...)
		nw := randBytes(r, fl)
		if i%5 == 0 {
			clear(nw)
		}
		copy(b[off:], nw)
		if got, want := UpdateChecksumAddr(hc, old, nw), ^Fold(Checksum(b, 0)); got != want {
			t.Fatalf("field %d at %d: got %#04x want %#04x", fl, off, got, want)
		}
	}
}

// TestUpdateChecksumAddrOddLength covers an odd-length field at the end of
// the data, where Checksum pads with a zero byte.
func TestUpdateChecksumAddrOddLength(t *testing.T) {
	r := newRand(t)
	for i := 0; i < 2000; i++ {
		n := 2 + 2*r.IntN(10)
		fl := 1 + 2*r.IntN(3)
		b := randBytes(r, n+fl)
		b[0] |= 0x40
		hc := ^Fold(Checksum(b, 0))
		old := append([]byte(nil), b[n:]...)
		nw := randBytes(r, fl)
		copy(b[n:], nw)
		if got, want := UpdateChecksumAddr(hc, old, nw), ^Fold(Checksum(b, 0)); got != want {
			t.Fatalf("odd field %d: got %#04x want %#04x", fl, got, want)
		}
	}
}

// TestSum20: the 20-byte header sum agrees with Checksum on random headers and on the
// extremes (all ones, all zeros, one word of ones).
func TestSum20(t *testing.T) {
	r := newRand(t)
	cases := [][]byte{make([]byte, 20), bytes.Repeat([]byte{0xFF}, 20), append(bytes.Repeat([]byte{0xFF}, 4), make([]byte, 16)...)}
	for range 10000 {
		cases = append(cases, randBytes(r, 20))
	}
	for _, b := range cases {
		if got, want := sum20(b), Fold(Checksum(b, 0)); got != want {
			t.Fatalf("%x: sum20 %#04x, Checksum %#04x", b, got, want)
		}
	}
}

func TestIPv4HeaderChecksum(t *testing.T) {
	for _, opts := range []bool{false, true} {
		s := defaultSpec(false, ProtoTCP)
		s.ipOpts = opts
		frame := build(t, s)
		h := IPv4(frame[EthernetHeaderLen:])
		if !IPv4HeaderChecksumValid(h) {
			t.Fatalf("options=%v: gopacket header does not verify", opts)
		}
		want := h.Checksum()
		h.SetChecksum(want ^ 0x0100)
		if IPv4HeaderChecksumValid(h) {
			t.Fatalf("options=%v: corrupted checksum verifies", opts)
		}
		h.ComputeChecksum()
		if got := h.Checksum(); got != want {
			t.Fatalf("options=%v: ComputeChecksum = %#04x, want %#04x", opts, got, want)
		}
	}
	ihl6 := make(IPv4, 20) // IHL says 24 bytes
	ihl6[0] = 0x46
	for _, short := range []IPv4{nil, make(IPv4, 19), ihl6} {
		short.ComputeChecksum() // must not panic
		if IPv4HeaderChecksumValid(short) {
			t.Errorf("short header %x verifies", []byte(short))
		}
	}
}

// TestAddr4Delta: addr4Delta is the one's complement sum of the complemented old
// address's words and the new one's (the reference over the 8 bytes ~old, new), for
// random addresses and the extremes; the FULLNAT and ICMP rewrites of IPv4 use it.
func TestAddr4Delta(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	pairs := [][2]uint32{{0, 0}, {0, 0xFFFFFFFF}, {0xFFFFFFFF, 0}, {0xFFFFFFFF, 0xFFFFFFFF}, {0x0000FFFF, 0xFFFF0000}, {0xC6120202, 0xC6120232}}
	for range 100000 {
		pairs = append(pairs, [2]uint32{r.Uint32(), r.Uint32()})
	}
	for _, p := range pairs {
		var old, new, ref [4]byte
		binary.BigEndian.PutUint32(old[:], p[0])
		binary.BigEndian.PutUint32(new[:], p[1])
		binary.BigEndian.PutUint32(ref[:], ^p[0])
		want := refSum(append(ref[:], new[:]...), 0)
		if got := addr4Delta(old[:], new[:]); got != uint32(want) {
			t.Fatalf("addr4Delta(%08x, %08x) = %04x, want %04x", p[0], p[1], got, want)
		}
	}
}

// TestAddr16Delta: addr16Delta is the one's complement sum of the complemented old
// IPv6 address's words and the new one's (the reference over the 32 bytes ~old, new),
// for random addresses and the extremes.
func TestAddr16Delta(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 16))
	var pairs [][2][16]byte
	var zero, ones [16]byte
	for i := range ones {
		ones[i] = 0xFF
	}
	pairs = append(pairs, [2][16]byte{zero, zero}, [2][16]byte{zero, ones}, [2][16]byte{ones, zero}, [2][16]byte{ones, ones})
	for range 100000 {
		var a, b [16]byte
		copy(a[:], randBytes(r, 16))
		copy(b[:], randBytes(r, 16))
		pairs = append(pairs, [2][16]byte{a, b})
	}
	for _, p := range pairs {
		var ref [32]byte
		for i := range 16 {
			ref[i] = ^p[0][i]
		}
		copy(ref[16:], p[1][:])
		want := refSum(ref[:], 0)
		if got := addr16Delta(p[0][:], p[1][:]); got != uint32(want) {
			t.Fatalf("addr16Delta(%x, %x) = %04x, want %04x", p[0], p[1], got, want)
		}
		if got := fieldDelta(p[0][:], p[1][:]); got != uint32(want) {
			t.Fatalf("fieldDelta(%x, %x) = %04x, want %04x", p[0], p[1], got, want)
		}
	}
}
