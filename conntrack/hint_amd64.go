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

// hintSlot returns the first slot, from slot off of the 64-byte index line
// at line (and through the next line when n is 2) up to the first empty
// slot, whose bits under mask equal want; 0 if there is none. It reads the
// lines with plain loads, without any lock, so the slot may be stale;
// LookupBatch uses it only to choose which record to prefetch, never to
// decide anything (aligned 32-bit loads are atomic on amd64, so a slot is
// never torn). The lines must be mapped: the arena is padded for the line
// after the last shard's index.
//
//go:noescape
func hintSlot(line uintptr, n, off int, mask, want uint32) uint32
