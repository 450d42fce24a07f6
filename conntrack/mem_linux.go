package conntrack

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapArena maps size bytes (rounded up to whole huge pages) of anonymous
// memory aligned to a huge page and advises the kernel to back it with
// transparent huge pages. The advice failing (THP disabled) is not an
// error: the memory then comes in base pages. Pages are faulted in on
// first touch, as Go heap memory is, unless the table prefaults them
// (Config.Prefault).
func mapArena(size int, huge bool) (arena, bool) {
	n := (size + hugePage - 1) &^ (hugePage - 1)
	m, err := unix.Mmap(-1, 0, n+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return arena{}, false
	}
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(m))) & (hugePage - 1))
	mem := m[off : off+n : off+n]
	a := arena{mem: mem[:size:size], mapped: m}
	if huge {
		a.adviseHuge()
	}
	return a, true
}

// whole is the arena's mapping from its start to the end of its last huge page.
func (a *arena) whole() []byte {
	n := (len(a.mem) + hugePage - 1) &^ (hugePage - 1)
	return unsafe.Slice(unsafe.SliceData(a.mem), n)
}

// adviseHuge asks for transparent huge pages for the arena's mapping (refused: THP is
// disabled, and base pages it is).
func (a *arena) adviseHuge() {
	if a.mapped != nil && len(a.mem) > 0 {
		_ = unix.Madvise(a.whole(), unix.MADV_HUGEPAGE)
	}
}

// populateRange faults in n bytes of the arena from off, rounded out to whole huge
// pages (MADV_POPULATE_WRITE leaves the contents of pages already there as they are).
func (a *arena) populateRange(off, n int) {
	if a.mapped == nil {
		return
	}
	w := a.whole()
	lo := off &^ (hugePage - 1)
	hi := min((off+n+hugePage-1)&^(hugePage-1), len(w))
	if lo < hi {
		_ = unix.Madvise(w[lo:hi], unix.MADV_POPULATE_WRITE)
	}
}

// populate asks the kernel to fault in the whole mapping now
// (MADV_POPULATE_WRITE, Linux 5.14); false if the arena is not mapped or the
// kernel refuses.
func (a *arena) populate() bool {
	if a.mapped == nil || len(a.mem) == 0 {
		return false
	}
	// The mapping runs on to the end of the arena's last huge page.
	return unix.Madvise(a.whole(), unix.MADV_POPULATE_WRITE) == nil
}

// release unmaps the arena's mapping, if it has one.
func (a *arena) release() error {
	m := a.mapped
	*a = arena{}
	if m == nil {
		return nil
	}
	if err := unix.Munmap(m); err != nil {
		return fmt.Errorf("close table: unmap %d bytes of records and index: %w", len(m), err)
	}
	return nil
}
