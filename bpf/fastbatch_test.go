//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// batchEntries returns n distinct keys (TCP flows from 10.<i> port i) and DR values.
func batchEntries(n int) ([]FastKey, []FastVal) {
	keys, vals := make([]FastKey, n), make([]FastVal, n)
	for i := range keys {
		k := &keys[i]
		k.Src[10], k.Src[11], k.Src[12], k.Src[13], k.Src[14] = 0xff, 0xff, 10, byte(i>>8), byte(i)
		k.Dst[10], k.Dst[11], k.Dst[12], k.Dst[15] = 0xff, 0xff, 198, 10
		k.SPort = [2]byte{byte(i >> 8), byte(i)}
		k.DPort = [2]byte{0, 80}
		k.Proto = 6
		vals[i] = FastVal{Ifindex: 1, MTU: 1500, Cookie: uint32(i), CsumL3: FastTTLDelta}
	}
	return keys, vals
}

// fastTestMap is a fastpath map of entries entries, as EnableFastPath makes it.
func fastTestMap(tb testing.TB, entries int) (*Classifier, *ebpf.Map) {
	tb.Helper()
	h := newHarness(tb)
	if err := h.c.EnableFastPath(entries); err != nil {
		tb.Fatal(err)
	}
	m, err := h.c.fastMap("test")
	if err != nil {
		tb.Fatal(err)
	}
	return h.c, m
}

// TestFastBatch: the batched update and delete (BPF_MAP_UPDATE_BATCH, _DELETE_BATCH) do
// what one call per entry does — every entry installed with its value; deletes counted,
// missing keys skipped (the kernel's batch delete stops at one), the rest removed; a full
// map stops the update at the entry that does not fit, E2BIG (kernel/bpf/hashtab.c,
// alloc_htab_elem: E2BIG once max_entries are in use).
func TestFastBatch(t *testing.T) {
	for _, batch := range []bool{true, false} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			_, m := fastTestMap(t, 300)
			keys, vals := batchEntries(310)
			n, err := fastUpdate(m, keys[:300], vals[:300], batch)
			if n != 300 || err != nil {
				t.Fatalf("update of 300: %d, %v", n, err)
			}
			for i := range 300 {
				var v FastVal
				if err := m.Lookup(&keys[i], &v); err != nil || v != vals[i] {
					t.Fatalf("entry %d: %+v %v, want %+v", i, v, err, vals[i])
				}
			}
			// Full: the existing entries can be replaced, a new one cannot.
			vals[5].Cookie = 9999
			n, err = fastUpdate(m, []FastKey{keys[5], keys[300], keys[301]}, []FastVal{vals[5], vals[300], vals[301]}, batch)
			if n != 1 || !errors.Is(err, unix.E2BIG) {
				t.Fatalf("update of a full map: %d, %v; want 1 (the replacement) and E2BIG", n, err)
			}
			var v FastVal
			if err := m.Lookup(&keys[5], &v); err != nil || v.Cookie != 9999 {
				t.Fatalf("replaced entry: %+v %v", v, err)
			}
			// Delete every other entry and some that are not there, in between.
			var del []FastKey
			for i := 0; i < 300; i += 2 {
				del = append(del, keys[i])
				if i%50 == 0 {
					del = append(del, keys[300+i/50])
				}
			}
			del = append(del, keys[309])
			n, err = fastDelete(m, del, batch)
			if n != 150 || err != nil {
				t.Fatalf("delete: %d, %v; want 150 removed", n, err)
			}
			for i := range 300 {
				err := m.Lookup(&keys[i], &v)
				if i%2 == 0 && !errors.Is(err, ebpf.ErrKeyNotExist) || i%2 == 1 && err != nil {
					t.Fatalf("entry %d after the delete: %v", i, err)
				}
			}
			if n, err := fastDelete(m, nil, batch); n != 0 || err != nil {
				t.Fatalf("delete of nothing: %d %v", n, err)
			}
		})
	}
}

// BenchmarkFastInstall: installing (and then removing) n entries in the fastpath map, one
// system call per entry against one batch, as the fast path's goroutine does after a
// drain (install) and a sweep (remove). ns/entry is the figure to compare.
func BenchmarkFastInstall(b *testing.B) {
	for _, n := range []int{1, 16, 256, 4096} {
		keys, vals := batchEntries(n)
		for _, batch := range []bool{false, true} {
			name := "per-entry"
			if batch {
				name = "batch"
			}
			b.Run(fmt.Sprintf("update/%s/n=%d", name, n), func(b *testing.B) {
				_, m := fastTestMap(b, 8192)
				b.ReportAllocs()
				for b.Loop() {
					if got, err := fastUpdate(m, keys, vals, batch); got != n || err != nil {
						b.Fatalf("update: %d %v", got, err)
					}
					b.StopTimer()
					if got, err := fastDelete(m, keys, true); got != n || err != nil {
						b.Fatalf("delete: %d %v", got, err)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
			})
			b.Run(fmt.Sprintf("delete/%s/n=%d", name, n), func(b *testing.B) {
				_, m := fastTestMap(b, 8192)
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					if got, err := fastUpdate(m, keys, vals, true); got != n || err != nil {
						b.Fatalf("update: %d %v", got, err)
					}
					b.StartTimer()
					if got, err := fastDelete(m, keys, batch); got != n || err != nil {
						b.Fatalf("delete: %d %v", got, err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
			})
		}
	}
}
