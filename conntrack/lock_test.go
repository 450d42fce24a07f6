package conntrack

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestShardLockExcludes: goroutines that each add to a plain counter under one
// shardLock lose no addition, and none ever sees another inside (with -race, the
// detector also checks that Unlock orders the holder's writes before the next Lock).
func TestShardLockExcludes(t *testing.T) {
	for _, procs := range []int{1, runtime.NumCPU(), 4} {
		prev := runtime.GOMAXPROCS(procs)
		var l shardLock
		var inside atomic.Int32
		var overlapped atomic.Bool
		n := 0 // guarded by l
		const goroutines, each = 8, 20000
		var wg sync.WaitGroup
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					l.Lock()
					if inside.Add(1) != 1 {
						overlapped.Store(true)
					}
					n++
					inside.Add(-1)
					l.Unlock()
				}
			}()
		}
		wg.Wait()
		runtime.GOMAXPROCS(prev)
		if overlapped.Load() {
			t.Fatalf("GOMAXPROCS %d: two goroutines held the lock at once", procs)
		}
		if n != goroutines*each {
			t.Fatalf("GOMAXPROCS %d: counter %d after %d locked additions", procs, n, goroutines*each)
		}
	}
}

// TestShardLockWaits: a Lock while another goroutine holds the lock returns only after
// that one's Unlock, even on one processor and with the holder asleep (the waiter yields).
func TestShardLockWaits(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var l shardLock
	var released atomic.Bool
	l.Lock()
	got := make(chan bool)
	go func() {
		l.Lock()
		got <- released.Load()
		l.Unlock()
	}()
	time.Sleep(20 * time.Millisecond)
	released.Store(true)
	l.Unlock()
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("Lock returned while another goroutine held the lock")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock did not return within 10 s of the Unlock")
	}
	if !atomic.CompareAndSwapUint32(&l.v, 0, 1) {
		t.Fatal("the lock is held after every Unlock")
	}
}

// TestAddCount: addCount's sum is what atomic loads see.
func TestAddCount(t *testing.T) {
	var c int32
	for i := range 100 {
		addCount(&c, 1)
		if got := atomic.LoadInt32(&c); got != int32(i+1) {
			t.Fatalf("after %d additions of 1: %d", i+1, got)
		}
	}
	addCount(&c, -100)
	if got := atomic.LoadInt32(&c); got != 0 {
		t.Fatalf("after subtracting 100: %d", got)
	}
}
