//go:build !amd64

package conntrack

// hintsWork: no prefetching on this platform; LookupBatch gives the same
// results as on amd64 without overlapping the cache misses of its keys.
const hintsWork = false

func prefetchLines(addrs *uintptr, n int) {}

func peek32(p *uint32) uint32 { return noIdx }

func hintSlot(home uintptr, mask, want, valid uint32) (uint32, uint32, bool) { return 0, 0, false }

func prefetchWindow(home uintptr) {}
