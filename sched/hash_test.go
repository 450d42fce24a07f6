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

// hash32Vectors are hash_32(val, bits) worked out apart from both Go functions, with
//
//	python3 -c 'print(((v * 0x61C88647) & 0xffffffff) >> (32 - bits))'
//
// for each (v, bits): the kernel's definition typed in again.
var hash32Vectors = []struct {
	val  uint32
	bits int
	want uint32
}{
	{1, 32, 0x61c88647},
	{0xc0000201, 32, 0x32d51447}, // 192.0.2.1
	{0xc0000201, 8, 50},
	{0xc0000201, 10, 203}, // IP_VS_LBLC_TAB_BITS
	{0xc6120102, 8, 231},  // 198.18.1.2
	{0xc6120102 + 1000, 8, 222},
	{0xc6120102 + 1001, 8, 64},
	{0xffffffff, 8, 158},
	{0x20010db8 ^ 1, 8, 63}, // 2001:db8::1 folded
	{0, 8, 0},
}

func TestHash32Vectors(t *testing.T) {
	for _, v := range hash32Vectors {
		if got := refHash32(v.val, v.bits); got != v.want {
			t.Errorf("reference hash_32(%#x, %d) = %d, want %d", v.val, v.bits, got, v.want)
		}
		if got := hash32(v.val, uint(v.bits)); got != v.want {
			t.Errorf("hash32(%#x, %d) = %d, want %d", v.val, v.bits, got, v.want)
		}
	}
	// The kernel's bucket for 192.0.2.1 is 50; the low-bits formula of old kernels
	// (0xc0000201 * 2654435761 mod 256) gives 177.
	if a := v4("192.0.2.1"); shBucket(fold(&a), 0, 0) != 50 || dhBucket(fold(&a)) != 50 {
		t.Errorf("192.0.2.1: sh bucket %d, dh bucket %d, want 50", shBucket(fold(&a), 0, 0), dhBucket(fold(&a)))
	}
}

// TestSHBucketMatchesKernel compares the package's sh and dh bucket functions with the
// reference written from ip_vs_sh_hashkey and ip_vs_dh_hashkey, over random IPv4 and
// IPv6 addresses, ports and sh-fallback offsets.
func TestSHBucketMatchesKernel(t *testing.T) {
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
			t.Fatalf("sh bucket of %v port %d offset %d: %d, kernel %d", a, port, off, got, want)
		}
		if got, want := dhBucket(fold(&a)), dhKey(a); got != want {
			t.Fatalf("dh bucket of %v: %d, kernel %d", a, got, want)
		}
	}
}

// TestSHKernelExample is issue 14's example: four servers of weight 1, the 256 clients
// of 192.0.2.0/24. Each must get the server the kernel model picks (with the old
// low-bits hash 190 of them did not). 192.0.2.1 hashes to bucket 50, and with four
// servers tiled one bucket each the bucket's server is 50 mod 4 = 2, the third.
func TestSHKernelExample(t *testing.T) {
	d := dests(1, 1, 1, 1)
	for _, flags := range []Flags{0, FlagSHPort, FlagSHFallback} {
		s := mustNew(t, "sh", d, flags)
		m := newModel("sh", d, flags, newSim(), nil)
		differ := 0
		for host := 0; host < 256; host++ {
			f := &Flow{Src: v4("192.0.2.0"), SrcPort: 40000, Proto: 6}
			f.Src[15] = byte(host)
			got, want := s.Schedule(zeroCounts{}, f), m.schedule(f)
			if got != want {
				differ++
				if differ <= 5 {
					t.Errorf("flags %v: client 192.0.2.%d: server %d, kernel model %d", flags, host, got, want)
				}
			}
		}
		if differ > 0 {
			t.Errorf("flags %v: %d of 256 clients on another server than the kernel's", flags, differ)
		}
	}
	f := &Flow{Src: v4("192.0.2.1"), Proto: 6}
	if got := mustNew(t, "sh", d, 0).Schedule(zeroCounts{}, f); got != 2 {
		t.Errorf("192.0.2.1: server %d, want 2 (bucket 50)", got)
	}
	// The sh-fallback probes: with the second server quiesced, its clients are sent on
	// through the probe sequence (offset (k + first bucket) mod 256, rehashed).
	q := dests(1, 0, 1, 1)
	for _, flags := range []Flags{FlagSHFallback, FlagSHFallback | FlagSHPort} {
		s := mustNew(t, "sh", q, flags)
		m := newModel("sh", q, flags, newSim(), nil)
		probed := 0
		for host := 0; host < 256; host++ {
			f := &Flow{Src: v4("192.0.2.0"), SrcPort: uint16(40000 + host), Proto: 17}
			f.Src[15] = byte(host)
			got, want := s.Schedule(zeroCounts{}, f), m.schedule(f)
			if got != want {
				t.Fatalf("flags %v: client 192.0.2.%d: server %d, kernel model %d", flags, host, got, want)
			}
			var port uint16
			if flags&FlagSHPort != 0 {
				port = f.SrcPort
			}
			if shKey(f.Src, port, 0)%4 == 1 {
				probed++
			}
		}
		if probed == 0 {
			t.Errorf("flags %v: no client hashed to the quiesced server; the probes went untested", flags)
		}
	}
}

// TestDHKernel: dh over many destination addresses and list sizes against the model.
func TestDHKernel(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := 1; n <= 9; n++ {
		d := dests(make([]int32, n)...)
		for i := range d {
			d[i].Weight = 1
		}
		s := mustNew(t, "dh", d, 0)
		m := newModel("dh", d, 0, newSim(), nil)
		for k := 0; k < 2000; k++ {
			f := &Flow{Src: v4("198.18.1.1"), Dst: v4("0.0.0.0"), Proto: 6}
			if k%3 == 0 {
				f.Dst = v4("2001:db8::")
				f.Dst[14], f.Dst[15] = byte(r.Uint32()), byte(r.Uint32())
			} else {
				f.Dst[12], f.Dst[13], f.Dst[14], f.Dst[15] = byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())
			}
			if got, want := s.Schedule(zeroCounts{}, f), m.schedule(f); got != want {
				t.Fatalf("%d servers, destination %v: server %d, kernel model %d", n, f.Dst, got, want)
			}
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
