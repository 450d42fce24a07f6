package conntrack

// hintsWork: this platform has prefetchLines, peek32 and hintSlot in
// assembly (hint_amd64.s).
const hintsWork = true

// prefetchLines asks the CPU to bring the cache lines at addrs[0:n] into
// its caches. A prefetch never faults and is not a memory access in the Go
// memory model: it changes timing only.
//
//go:noescape
func prefetchLines(addrs *uintptr, n int)

// peek32 reads *p with a plain load, without any lock, for a hint: the
// value may be stale and must only choose what to prefetch.
//
//go:noescape
func peek32(p *uint32) uint32

// hintSlot returns the first slot of the window of hintWindow slots that starts at
// the index slot at home, up to the first empty slot, whose bits under mask equal
// want; 0 if there is none; slot2 is the second such slot, or 0. Only the window's
// slots whose bits are set in valid count (those in the home slot's page's index, see
// hintValid). more reports that those
// slots hold neither such a slot nor an empty one: the run may go on past the window
// (see nextWindow). It reads the window with
// plain loads, without any lock, so the slot may be stale; LookupBatch uses it only to
// choose which record to prefetch, never to decide anything (aligned 32-bit loads are
// atomic on amd64, so a slot is never torn). The window's 64 bytes must be mapped:
// they lie in home's page.
//
//go:noescape
func hintSlot(home uintptr, mask, want, valid uint32) (slot, slot2 uint32, more bool)

// prefetchWindow prefetches the cache lines of the window of hintWindow index slots
// that starts at home: two lines, or one when home starts a line.
func prefetchWindow(home uintptr)
