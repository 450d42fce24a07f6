package traffic

import (
	"encoding/binary"
	"io"
)

// Blob bytes are counter-based: the 8-byte little-endian word k of the stream for seed s is
// mix(s + (k+1)·γ), with mix the SplitMix64 finaliser and γ the 64-bit golden ratio. Any
// offset can be regenerated without the bytes before it.
const blobGamma = 0x9e3779b97f4a7c15

func blobWord(seed, k uint64) uint64 {
	z := seed + (k+1)*blobGamma
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// fillBlob writes the bytes at stream offsets off .. off+len(p)-1 into p.
func fillBlob(p []byte, seed uint64, off int64) {
	var w [8]byte
	for len(p) > 0 {
		k := uint64(off) / 8
		in := int(uint64(off) % 8)
		if in == 0 && len(p) >= 8 {
			binary.LittleEndian.PutUint64(p, blobWord(seed, k))
			p, off = p[8:], off+8
			continue
		}
		binary.LittleEndian.PutUint64(w[:], blobWord(seed, k))
		n := copy(p, w[in:])
		p, off = p[n:], off+int64(n)
	}
}

// Blob returns size deterministic pseudo-random bytes for seed: the body GET
// /blob?size=size&seed=seed serves. A negative size gives an empty slice.
func Blob(size int, seed uint64) []byte {
	if size < 0 {
		size = 0
	}
	b := make([]byte, size)
	fillBlob(b, seed, 0)
	return b
}

// BlobReader streams the same bytes as Blob(size, seed) without holding them in memory.
func BlobReader(size int64, seed uint64) io.Reader {
	if size < 0 {
		size = 0
	}
	return &blobReader{seed: seed, size: size}
}

type blobReader struct {
	seed      uint64
	off, size int64
}

func (r *blobReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if rem := r.size - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	fillBlob(p, r.seed, r.off)
	r.off += int64(len(p))
	return len(p), nil
}
