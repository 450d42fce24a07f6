package xsk

import (
	"fmt"
	"sync"
)

// Fake is an in-memory Socket with the real one's frame accounting, for unit tests and
// microbenchmarks. Inject plays the kernel's receive side; transmitted frames are handed to
// the OnTransmit callback (or kept for Sent) and completed at once.
//
// The dataplane side (the Socket methods) belongs to one goroutine, as with a real socket;
// Inject, Sent and Stats may be called from others.
type Fake struct {
	cfg  Config
	umem []byte
	free freeList
	c    counters

	mu   sync.Mutex
	fill []uint64 // frames the "kernel" may receive into
	rx   []Desc   // received, not yet taken by Receive
	comp []uint64 // transmitted, not yet completed
	sent [][]byte
	// OnTransmit, when set, sees each transmitted frame's bytes (valid only during the
	// call) instead of Sent keeping a copy.
	OnTransmit func(frame []byte)
	// Dropped counts injected frames refused because the fill ring was empty.
	Dropped int
	// overFreed counts frames returned to a full free list: each is a frame given back
	// twice (CheckFrames reports it).
	overFreed int
}

// NewFake returns a Fake sized by cfg (which must be valid).
func NewFake(cfg Config) (*Fake, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Fake{
		cfg:  cfg,
		umem: make([]byte, cfg.Frames*cfg.FrameSize),
		free: newFreeList(cfg.Frames, cfg.FrameSize),
		fill: make([]uint64, 0, cfg.FillRing),
		rx:   make([]Desc, 0, cfg.RxRing),
		comp: make([]uint64, 0, cfg.CompRing+cfg.TxRing),
	}
	f.Refill()
	return f, nil
}

// Inject delivers frame as the kernel would: into a frame from the fill ring, at
// XDPPacketHeadroom. It reports false (and counts a drop) when no fill frame or RX slot
// is available, as the kernel drops then.
func (f *Fake) Inject(frame []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deliver(frame)
}

// InjectBatch delivers frames as Inject does, in order, under one hold of the fake's
// lock, as the kernel's receive path fills the RX ring for a NAPI batch and publishes
// the descriptors together (one lock per frame was half the fake's cost per packet in
// the pipeline benchmarks). It returns how many were delivered; the others were dropped
// and counted, as Inject drops.
func (f *Fake) InjectBatch(frames [][]byte) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, frame := range frames {
		if f.deliver(frame) {
			n++
		}
	}
	return n
}

// deliver is Inject's work, f.mu held.
func (f *Fake) deliver(frame []byte) bool {
	if len(f.fill) == 0 || len(f.rx) == cap(f.rx) || len(frame) > f.cfg.FrameSize-XDPPacketHeadroom {
		f.Dropped++
		return false
	}
	base := f.fill[len(f.fill)-1]
	f.fill = f.fill[:len(f.fill)-1]
	addr := base + XDPPacketHeadroom
	copy(f.umem[addr:], frame)
	f.rx = append(f.rx, Desc{Addr: addr, Len: uint32(len(frame))})
	return true
}

// Sent returns copies of the frames transmitted so far and forgets them.
func (f *Fake) Sent() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sent
	f.sent = nil
	return s
}

// Receive implements Socket.
func (f *Fake) Receive(descs []Desc) int {
	f.mu.Lock()
	n := copy(descs, f.rx)
	f.rx = f.rx[:copy(f.rx, f.rx[n:])]
	f.mu.Unlock()
	f.c.add(&f.c.rx, n)
	return n
}

// Transmit implements Socket: every frame is "sent" and completes at once.
func (f *Fake) Transmit(descs []Desc) (int, error) {
	f.mu.Lock()
	room := f.cfg.TxRing
	if len(descs) > room {
		f.c.add(&f.c.txFull, len(descs)-room)
		descs = descs[:room]
	}
	for _, d := range descs {
		b := f.umem[d.Addr : d.Addr+uint64(d.Len)]
		if f.OnTransmit != nil {
			f.OnTransmit(b)
		} else {
			f.sent = append(f.sent, append([]byte(nil), b...))
		}
		f.comp = append(f.comp, d.Addr)
	}
	f.mu.Unlock()
	f.c.add(&f.c.tx, len(descs))
	f.c.add(&f.c.kicks, 1)
	return len(descs), nil
}

// Complete implements Socket.
func (f *Fake) Complete() int {
	f.mu.Lock()
	n := len(f.comp)
	for _, a := range f.comp {
		f.pushFree(a)
	}
	f.comp = f.comp[:0]
	f.mu.Unlock()
	f.c.add(&f.c.txDone, n)
	f.c.free.Store(uint64(len(f.free.addrs)))
	return n
}

// Refill implements Socket.
func (f *Fake) Refill() int {
	f.mu.Lock()
	n := 0
	for len(f.fill) < cap(f.fill) {
		a, ok := f.free.pop()
		if !ok {
			f.c.add(&f.c.fillEmpty, 1)
			break
		}
		f.fill = append(f.fill, a)
		n++
	}
	f.mu.Unlock()
	f.c.free.Store(uint64(len(f.free.addrs)))
	return n
}

// Alloc implements Socket.
func (f *Fake) Alloc() (uint64, bool) {
	f.mu.Lock()
	a, ok := f.free.pop()
	f.c.free.Store(uint64(len(f.free.addrs)))
	f.mu.Unlock()
	if !ok {
		f.c.add(&f.c.allocFail, 1)
	}
	return a, ok
}

// Free implements Socket.
func (f *Fake) Free(addr uint64) {
	f.mu.Lock()
	f.pushFree(addr)
	f.c.free.Store(uint64(len(f.free.addrs)))
	f.mu.Unlock()
}

// Umem implements Socket.
func (f *Fake) Umem() []byte { return f.umem }

// FrameSize implements Socket.
func (f *Fake) FrameSize() int { return f.cfg.FrameSize }

// FD implements Socket: a Fake has no descriptor.
func (f *Fake) FD() int { return -1 }

// Stats implements Socket.
func (f *Fake) Stats() Stats { return f.c.stats() }

// Close implements Socket.
func (f *Fake) Close() error { return nil }

// FramesAccounted reports free + fill + rx + completing frames; with nothing in the
// caller's hands it equals Config.Frames (a leak check for tests).
func (f *Fake) FramesAccounted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.free.addrs) + len(f.fill) + len(f.rx) + len(f.comp)
}

// pushFree returns a frame to the free list, counting one the list cannot take (a frame
// freed twice). f.mu is held.
func (f *Fake) pushFree(addr uint64) {
	if !f.free.push(addr) {
		f.overFreed++
	}
}

// CheckFrames is the leak and double-free check for tests, for a moment when the caller
// holds no frame: every frame of the UMEM must be in exactly one place (free list, fill
// ring, RX ring or completing) and none given back twice. The error names the frames
// missing (leaked: still in the caller's hands) and the ones found twice.
func (f *Fake) CheckFrames() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fs := uint64(f.cfg.FrameSize)
	seen := make([]uint8, f.cfg.Frames)
	mark := func(addr uint64) {
		if i := addr / fs; i < uint64(len(seen)) && seen[i] < 255 {
			seen[i]++
		}
	}
	for _, a := range f.free.addrs {
		mark(a)
	}
	for _, a := range f.fill {
		mark(a)
	}
	for _, d := range f.rx {
		mark(d.Addr)
	}
	for _, a := range f.comp {
		mark(a)
	}
	var missing, twice []uint64
	for i, n := range seen {
		switch {
		case n == 0:
			missing = append(missing, uint64(i)*fs)
		case n > 1:
			twice = append(twice, uint64(i)*fs)
		}
	}
	if len(missing) == 0 && len(twice) == 0 && f.overFreed == 0 {
		return nil
	}
	return fmt.Errorf("frames: %d of %d not given back (first at %v), %d in two places (first at %v), %d given back to a full free list",
		len(missing), f.cfg.Frames, first(missing), len(twice), first(twice), f.overFreed)
}

func first(a []uint64) []uint64 { return a[:min(len(a), 4)] }
