package conntrack

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// shardLock is a shard's mutex: taken with one compare-and-swap, released with a plain
// store where that is a release (amd64 without the race detector: x86 keeps a store
// after every earlier load and store of the thread, which is how Linux releases its
// spinlocks there), else with an atomic store.
//
// sync.Mutex releases with a locked add, which on x86 waits until the store buffer
// has drained: an insert's stores into index and record lines that are still
// arriving from memory. A new connection takes two shard locks (LookupBatch's and
// Insert's), so that wait was about a tenth of a new NAT connection's time
// (BENCHMARKS.md, "Staged batch lookups, a shard lock without a locked release").
//
// A waiter polls, yielding its processor between polls, so a holder that was
// descheduled runs again; it never parks. The holds are short (one lookup or insert, a
// bounded chunk of a Reap or RemoveDest, the copy of one shard for Walk), so a waiter
// spends at most the longest hold spinning. The zero value is unlocked; it must not be copied.
type shardLock struct {
	v uint32
}

// Lock takes l, waiting for it while another goroutine holds it.
func (l *shardLock) Lock() {
	if atomic.CompareAndSwapUint32(&l.v, 0, 1) {
		return
	}
	l.lockSlow()
}

// lockSlow waits for l to be free and takes it.
func (l *shardLock) lockSlow() {
	for {
		for range 64 {
			if atomic.LoadUint32(&l.v) == 0 && atomic.CompareAndSwapUint32(&l.v, 0, 1) {
				return
			}
		}
		runtime.Gosched()
	}
}

// Unlock releases l, which the caller holds.
func (l *shardLock) Unlock() {
	storeRelease(&l.v, 0)
}

// addCount adds d to *c, a count written only under its shard's lock and read
// without it (atomic loads): the store needs no locked instruction, for the same
// reason Unlock's does not.
func addCount(c *int32, d int32) {
	storeRelease((*uint32)(unsafe.Pointer(c)), uint32(*c+d))
}
