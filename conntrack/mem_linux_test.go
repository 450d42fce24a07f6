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
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmFlags:")), true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return "", false
}
