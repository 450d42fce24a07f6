package conntrack

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

const mapSupported = true

// TestArenaMapping: a large table's arena is a mapping aligned to a huge
// page and advised for transparent huge pages (VmFlags "hg"), counted in
// offHeap, gone from the address space after Close.
func TestArenaMapping(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI machines have transparent huge pages: %v", err)
		}
		t.Skip("kernel without transparent huge pages")
	}
	tb := mustNew(t, Config{MaxEntries: 100000})
	if tb.mem.mapped == nil {
		t.Fatal("a 100000-entry table's arena is not mapped")
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(tb.mem.mem)))
	if start%hugePage != 0 {
		t.Fatalf("arena at %#x, want %d-byte alignment", start, hugePage)
	}
	if got, want := tb.mem.offHeap(), (len(tb.mem.mem)+hugePage-1)&^(hugePage-1); got != want {
		t.Fatalf("offHeap %d, want %d", got, want)
	}
	flags, ok := vmFlags(t, start)
	if !ok {
		t.Fatalf("no mapping at %#x in /proc/self/smaps", start)
	}
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Fatalf("arena mapping flags %q lack hg (MADV_HUGEPAGE)", flags)
	}
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := vmFlags(t, start); ok {
		t.Fatalf("mapping at %#x still there after Close", start)
	}
}

// vmFlags returns the VmFlags of the mapping of /proc/self/smaps that
// contains addr.
func vmFlags(t *testing.T, addr uintptr) (string, bool) {
	return smapsField(t, addr, "VmFlags:")
}

// TestPrefault: a table made with Prefault has all of its arena resident
// when New returns (Rss of the mapping covers it), one made without has
// next to nothing resident.
func TestPrefault(t *testing.T) {
	for _, pre := range []bool{false, true} {
		tb := mustNew(t, Config{MaxEntries: 200000, Prefault: pre})
		start := uintptr(unsafe.Pointer(unsafe.SliceData(tb.mem.mem)))
		v, ok := smapsField(t, start, "Rss:")
		var rss int
		if _, err := fmt.Sscanf(v, "%d kB", &rss); !ok || err != nil {
			t.Fatalf("Rss of the mapping at %#x in /proc/self/smaps: %q, %v", start, v, err)
		}
		size := len(tb.mem.mem)
		t.Logf("prefault %v: arena %d KiB, resident %d KiB", pre, size>>10, rss)
		if pre && rss*1024 < size {
			t.Errorf("prefaulted table: %d KiB resident of a %d KiB arena, want all of it", rss, size>>10)
		}
		if !pre && rss*1024 > size/2 {
			t.Errorf("table without prefault: %d KiB resident of a %d KiB arena at New, want pages faulted on use", rss, size>>10)
		}
		if err := tb.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// The heap path (arenas below mmapMin) prefaults by touching pages.
	a := newArena(64<<10, false)
	a.prefault()
	if a.mapped != nil || len(a.mem) != 64<<10 {
		t.Fatalf("small arena: mapped %v, %d bytes", a.mapped != nil, len(a.mem))
	}
}

// smapsField returns the value of field (such as "Rss:") of the mapping of
// /proc/self/smaps that contains addr.
func smapsField(t *testing.T, addr uintptr, field string) (string, bool) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); n == 2 && strings.Contains(line, " ") {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, field) {
			return strings.TrimSpace(strings.TrimPrefix(line, field)), true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return "", false
}

// TestBasePagesSettle: a table made with BasePages is mapped without the huge-page
// advice (VmFlags without "hg") and with next to nothing resident; it takes entries at
// once; Settle then advises huge pages and makes the whole arena resident without
// changing what the table holds.
func TestBasePagesSettle(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI machines have transparent huge pages: %v", err)
		}
		t.Skip("kernel without transparent huge pages")
	}
	tb := mustNew(t, Config{MaxEntries: 200000, BasePages: true})
	defer tb.Close()
	start := uintptr(unsafe.Pointer(unsafe.SliceData(tb.mem.mem)))
	size := len(tb.mem.mem)
	rss := func() int {
		t.Helper()
		v, ok := smapsField(t, start, "Rss:")
		var kb int
		if _, err := fmt.Sscanf(v, "%d kB", &kb); !ok || err != nil {
			t.Fatalf("Rss of the mapping at %#x in /proc/self/smaps: %q, %v", start, v, err)
		}
		return kb * 1024
	}
	flags, ok := vmFlags(t, start)
	if !ok {
		t.Fatalf("no mapping at %#x in /proc/self/smaps", start)
	}
	if strings.Contains(" "+flags+" ", " hg ") {
		t.Fatalf("BasePages arena mapping flags %q have hg (MADV_HUGEPAGE) before Settle", flags)
	}
	if r := rss(); r > size/2 {
		t.Fatalf("BasePages table: %d KiB resident of %d KiB at New, want pages faulted on use", r>>10, size>>10)
	}
	const n = 100
	for i := 0; i < n; i++ {
		e := Entry{Orig: Key{Src: [16]byte{10, 0, byte(i >> 8), byte(i)}, Dst: [16]byte{10, 9, 0, 1}, SrcPort: uint16(1000 + i), DstPort: 80, Proto: ProtoTCP}, State: StateEstablished, Method: MethodDR}
		if _, err := tb.Apply(&e, 900, 0); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	tb.Settle()
	flags, _ = vmFlags(t, start)
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Errorf("after Settle the arena mapping flags %q lack hg (MADV_HUGEPAGE)", flags)
	}
	if r := rss(); r < size {
		t.Errorf("after Settle %d KiB resident of a %d KiB arena, want all of it", r>>10, size>>10)
	}
	if got := tb.Len(); got != n {
		t.Errorf("after Settle the table holds %d entries, want the %d applied", got, n)
	}
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	tb.Settle() // closed: returns at once
}
