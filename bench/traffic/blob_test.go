package traffic

import (
	"bytes"
	"io"
	"testing"
)

// refBlobByte is the slow reference: byte i of the stream is byte i%8 (little-endian) of
// word i/8.
func refBlobByte(seed uint64, i int64) byte {
	return byte(blobWord(seed, uint64(i)/8) >> (8 * (uint64(i) % 8)))
}

func refBlob(size int, seed uint64) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = refBlobByte(seed, int64(i))
	}
	return b
}

func TestBlobMatchesReferenceEveryLength(t *testing.T) {
	for _, seed := range []uint64{0, 1, 42, 1<<64 - 1} {
		ref := refBlob(300, seed)
		for n := 0; n <= len(ref); n++ {
			if got := Blob(n, seed); !bytes.Equal(got, ref[:n]) {
				t.Fatalf("Blob(%d, %d) differs from the reference at byte %d", n, seed, firstDiffLen(got, ref[:n]))
			}
		}
	}
}

func TestFillBlobAtEveryOffset(t *testing.T) {
	const seed = 7
	ref := refBlob(64, seed)
	for off := 0; off < 32; off++ {
		for n := 0; off+n <= len(ref); n++ {
			p := make([]byte, n)
			fillBlob(p, seed, int64(off))
			if !bytes.Equal(p, ref[off:off+n]) {
				t.Fatalf("fillBlob(off %d, len %d) differs from the reference", off, n)
			}
		}
	}
}

func TestBlobProperties(t *testing.T) {
	tests := []struct {
		name string
		a, b []byte
		same bool
	}{
		{"same seed same bytes", Blob(4096, 9), Blob(4096, 9), true},
		{"other seed other bytes", Blob(4096, 9), Blob(4096, 10), false},
		{"prefix of a longer blob", Blob(100, 3), Blob(1000, 3)[:100], true},
		{"negative size is empty", Blob(-5, 1), []byte{}, true},
		{"zero size is empty", Blob(0, 1), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := bytes.Equal(tc.a, tc.b); got != tc.same {
				t.Fatalf("equal = %v, want %v", got, tc.same)
			}
		})
	}
	// Not constant: all 256 byte values appear in 64 KiB.
	var seen [256]bool
	for _, c := range Blob(64<<10, 1) {
		seen[c] = true
	}
	for v, ok := range seen {
		if !ok {
			t.Fatalf("byte value %d never appears in 64 KiB of blob", v)
		}
	}
}

// chunkReader reads with a cycle of chunk sizes.
func readInChunks(t testing.TB, r io.Reader, chunks []int) []byte {
	var out []byte
	for i := 0; ; i++ {
		n := 1
		if len(chunks) > 0 {
			n = max(chunks[i%len(chunks)], 1)
		}
		p := make([]byte, n)
		k, err := r.Read(p)
		out = append(out, p[:k]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if i > 1<<22 {
			t.Fatal("reader never ends")
		}
	}
}

func TestBlobReaderChunked(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		chunks []int
	}{
		{"empty", 0, []int{10}},
		{"one byte reads", 37, []int{1}},
		{"odd reads", 1000, []int{3, 7, 1, 13}},
		{"big reads", 100000, []int{65536}},
		{"read larger than blob", 5, []int{100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readInChunks(t, BlobReader(int64(tc.size), 5), tc.chunks)
			if want := refBlob(tc.size, 5); !bytes.Equal(got, want) {
				t.Fatalf("BlobReader gave %d bytes differing from the reference at %d", len(got), firstDiffLen(got, want))
			}
		})
	}
}

func FuzzBlobReader(f *testing.F) {
	f.Add(uint64(0), uint16(0), uint8(1), uint8(1))
	f.Add(uint64(99), uint16(1000), uint8(7), uint8(3))
	f.Add(uint64(1<<63), uint16(65535), uint8(255), uint8(0))
	f.Fuzz(func(t *testing.T, seed uint64, size uint16, c1, c2 uint8) {
		got := readInChunks(t, BlobReader(int64(size), seed), []int{int(c1), int(c2)})
		if len(got) != int(size) {
			t.Fatalf("read %d bytes, want %d", len(got), size)
		}
		for i, c := range got {
			if want := refBlobByte(seed, int64(i)); c != want {
				t.Fatalf("byte %d = %#x, want %#x", i, c, want)
			}
		}
		if !bytes.Equal(got, Blob(int(size), seed)) {
			t.Fatal("BlobReader and Blob differ")
		}
	})
}

func BenchmarkBlobReader(b *testing.B) {
	buf := make([]byte, copyBufSize)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	r := BlobReader(1<<62, 1)
	for b.Loop() {
		if _, err := r.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBlobReaderDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 4096+3)
	r := BlobReader(1<<62, 1)
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Read(buf) }); n != 0 {
		t.Fatalf("BlobReader.Read allocates %v times per call, want 0", n)
	}
}
