package dataplane

// prefetchLine asks the CPU to bring the cache line at addr into its caches. It never
// faults and is not a memory access in the Go memory model: it changes timing only.
//
//go:noescape
func prefetchLine(addr uintptr)
