package sched

import (
	"math/rand/v2"
	"testing"
)

// The kernel's siphash self-test vectors (lib/siphash_kunit.c, from the SipHash reference
// implementation): key 00 01 .. 0f, message 00 01 .. (i-1).
var (
	sipKey0, sipKey1 = uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	siphash24Vectors = map[int]uint64{0: 0x726fdb47dd0e0e31, 1: 0x74f839c593dc67fd, 4: 0xcf2794e0277187b7, 8: 0x93f5f5799a932462, 15: 0xa129ca6149be45e5, 16: 0x3f2acc7f57c29bdb}
	// hsiphash on 64-bit kernels (SipHash-1-3 truncated to 32 bits).
	hsiphashVectors = map[int]uint32{0: 0x050fc4dc, 1: 0x7d57ca93, 2: 0x4dc7d44d, 3: 0xe7ddf7fb, 4: 0x88d38328, 5: 0x49533b67, 8: 0x8d299a8e}
)

func TestSipHashVectors(t *testing.T) {
	msg := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}
	for n, want := range siphash24Vectors {
		if got := refSipHash(2, 4, sipKey0, sipKey1, msg(n)); got != want {
			t.Errorf("SipHash-2-4 of %d bytes: %#x, want %#x", n, got, want)
		}
	}
	for n, want := range hsiphashVectors {
		if got := uint32(refSipHash(1, 3, sipKey0, sipKey1, msg(n))); got != want {
			t.Errorf("hsiphash (reference) of %d bytes: %#x, want %#x", n, got, want)
		}
	}
	// The four-byte case the package computes: bytes 00 01 02 03 are v = 0x03020100 read
	// little-endian.
	if got := hsiphash32(0x03020100, hsipKey{sipKey0, sipKey1}); got != hsiphashVectors[4] {
		t.Errorf("hsiphash32: %#x, want %#x", got, hsiphashVectors[4])
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		v, k0, k1 := r.Uint32(), r.Uint64(), r.Uint64()
		if got, want := hsiphash32(v, hsipKey{k0, k1}), refHsiphash(v, k0, k1); got != want {
			t.Fatalf("hsiphash32(%#x) = %#x, reference %#x", v, got, want)
		}
	}
}

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want uint32
	}{
		{"198.18.1.2", 0xc6120102},
		{"0.0.0.0", 0},
		{"2001:db8::1", 0x20010db8 ^ 1},
		{"fd00:1::2", 0xfd000001 ^ 2},
		{"::", 0},
	} {
		a := v4(tc.addr)
		if got := fold(&a); got != tc.want || refFold(a) != tc.want {
			t.Errorf("fold(%s) = %#x (reference %#x), want %#x", tc.addr, got, refFold(a), tc.want)
		}
	}
}

// TestSHBucketWidth: the kernel multiplies in unsigned long (64 bits); the low 8 bits
// are the same in 32.
func TestSHBucketWidth(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 100000; i++ {
		var a [16]byte
		for k := range a {
			a[k] = byte(r.Uint32())
		}
		if r.IntN(2) == 0 {
			a = v4("0.0.0.0")
			a[12], a[13], a[14], a[15] = byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())
		}
		port, off := uint16(r.Uint32()), r.Uint32()%256
		if got, want := shBucket(fold(&a), port, off), shKey(a, port, off); got != want {
			t.Fatalf("bucket of %v port %d offset %d: %d, kernel arithmetic %d", a, port, off, got, want)
		}
	}
}

// TestSHWeights: the 256 buckets are shared in proportion to the weights, tiled in list
// order (weight 0 still takes one bucket per round).
func TestSHWeights(t *testing.T) {
	for _, tc := range []struct {
		weights []int32
		want    []int
	}{
		{[]int32{1, 1}, []int{128, 128}},
		{[]int32{3, 1}, []int{192, 64}},
		{[]int32{2, 1, 1}, []int{128, 64, 64}},
		{[]int32{1, 0, 1}, []int{86, 85, 85}},
		{[]int32{5, 2}, []int{184, 72}}, // 36 rounds of 7, then 4 more for the first
	} {
		s := mustNew(t, "sh", dests(tc.weights...), 0).(*sh)
		got := make([]int, len(tc.weights))
		for _, i := range s.table {
			got[i]++
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("weights %v: buckets %v, want %v", tc.weights, got, tc.want)
				break
			}
		}
	}
}
