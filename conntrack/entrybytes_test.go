package conntrack

import (
	"runtime"
	"testing"
)

// TestEntryBytes: a large table's memory per entry of capacity (Go heap and the mapping
// outside it, as the benchmarks measure it) is at most EntryBytes, and within 2 bytes of
// it: the bound users size by (xlvsd's --conn-max) is neither short nor loose.
func TestEntryBytes(t *testing.T) {
	const capacity = 1 << 22
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	tb, err := New(Config{MaxEntries: capacity})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	runtime.ReadMemStats(&m1)
	per := float64(m1.TotalAlloc-m0.TotalAlloc+uint64(tb.mem.offHeap())) / capacity
	if per > float64(EntryBytes) || per < float64(EntryBytes-2) {
		t.Errorf("%d entries take %.2f bytes each; EntryBytes is %d", capacity, per, EntryBytes)
	}
}
