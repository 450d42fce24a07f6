package gen

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/dataplane/packet"
	"xlvs/dataplane/xsk"
)

// Options configure Run.
type Options struct {
	Flows []Flow // frame k of the UMEM carries Flows[k mod len(Flows)]; or:
	// Range, instead of Flows, makes flows on the fly: frame k starts with flow k mod N and,
	// when N exceeds the frames, every frame sent takes the next flow of the range.
	Range *FlowRange
	Size  int // frame length without FCS, MinFrame..MaxFrame (see WireSize)
	Batch int // descriptors per Transmit; 0 means 64
	CPU   int // CPU to pin the transmitting thread to; -1 leaves it unpinned
	// Pace, if set, limits the rate (it may change while Run runs); nil is unpaced.
	Pace *Pacer
}

// Result is what Run transmitted.
type Result struct {
	Queued    uint64        // descriptors the TX ring accepted
	Completed uint64        // descriptors the kernel finished with (sent or dropped by the device)
	Duration  time.Duration // wall time of the transmit loop
	Errors    uint64        // Transmit errors (link down); Run backs off 1 ms after each
}

// ErrBadOptions is returned (wrapped) by Run for options it cannot use.
var ErrBadOptions = errors.New("bad generator options")

// Prepare writes every frame of s's UMEM that s will hand out: it takes all free frames
// with Alloc, writes flow k mod len(flows) into the frame at address k*FrameSize, and
// gives them back. Run calls it; it is exported for tests.
func Prepare(s xsk.Socket, flows []Flow, size int) error {
	if len(flows) == 0 {
		return fmt.Errorf("prepare frames: %w: no flows", ErrBadOptions)
	}
	_, err := prepare(s, func(k uint64) Flow { return flows[k%uint64(len(flows))] }, size)
	return err
}

// prepare writes flow(k) into every free frame k and returns how many there are.
func prepare(s xsk.Socket, flow func(k uint64) Flow, size int) (int, error) {
	if size > s.FrameSize() {
		return 0, fmt.Errorf("prepare frames: %w: %d-byte frames in %d-byte UMEM frames", ErrBadOptions, size, s.FrameSize())
	}
	umem := s.Umem()
	fs := uint64(s.FrameSize())
	var taken []uint64
	defer func() {
		for _, a := range taken {
			s.Free(a)
		}
	}()
	for {
		a, ok := s.Alloc()
		if !ok {
			break
		}
		taken = append(taken, a)
		k := a / fs
		if _, err := BuildUDP4(umem[a:a+fs], flow(k), size); err != nil {
			return 0, fmt.Errorf("prepare frames: %w", err)
		}
	}
	if len(taken) == 0 {
		return 0, fmt.Errorf("prepare frames: %w: the socket has no free frame (all in the fill ring?)", ErrBadOptions)
	}
	return len(taken), nil
}

// Run prepares the frames and transmits them on s as fast as the socket takes them until
// ctx ends. It allocates nothing per packet. When the TX ring is full it waits in poll(2)
// for room (at most 1 ms), so it does not starve softirq work sharing its CPU.
func Run(ctx context.Context, s xsk.Socket, o Options) (Result, error) {
	var res Result
	if o.Batch == 0 {
		o.Batch = 64
	}
	if o.Batch < 1 || o.Batch > 4096 {
		return res, fmt.Errorf("run generator: %w: batch %d, want 1 to 4096", ErrBadOptions, o.Batch)
	}
	rotate, nflows := false, len(o.Flows)
	if o.Range != nil {
		if o.Flows != nil {
			return res, fmt.Errorf("run generator: %w: both Flows and Range given", ErrBadOptions)
		}
		if err := o.Range.Check(); err != nil {
			return res, fmt.Errorf("run generator: %w", err)
		}
		r := *o.Range
		frames, err := prepare(s, func(k uint64) Flow { return r.At(int(k % uint64(r.N))) }, o.Size)
		if err != nil {
			return res, err
		}
		rotate, nflows = r.N > frames, r.N
	} else if err := Prepare(s, o.Flows, o.Size); err != nil {
		return res, err
	}
	q, parked := takeFrames(s, nflows, rotate)
	defer func() {
		for _, a := range parked {
			s.Free(a)
		}
		for {
			a, ok := q.pop()
			if !ok {
				break
			}
			s.Free(a)
		}
	}()
	var info packet.Info
	next := 0
	umem := s.Umem()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if o.CPU >= 0 {
		var old, set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			return res, fmt.Errorf("run generator: read cpu affinity: %w", err)
		}
		set.Set(o.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return res, fmt.Errorf("run generator: pin to cpu %d: %w", o.CPU, err)
		}
		defer unix.SchedSetaffinity(0, &old)
	}
	descs := make([]xsk.Desc, o.Batch)
	var tb bucket
	pfd := []unix.PollFd{{Fd: int32(s.FD()), Events: unix.POLLOUT}}
	start := time.Now()
	before := s.Stats()
	done := ctx.Done()
loop:
	for {
		select {
		case <-done:
			break loop
		default:
		}
		s.Complete()
		for {
			a, ok := s.Alloc()
			if !ok {
				break
			}
			q.push(a)
		}
		want := len(descs)
		if o.Pace != nil {
			tb.setRate(o.Pace.Rate(), o.Batch)
			if want = tb.allow(want, nanotime()); want == 0 {
				pause(tb.wait(1 + o.Batch/2))
				continue
			}
		}
		n := 0
		for n < want {
			a, ok := q.pop()
			if !ok {
				break
			}
			if rotate {
				// More flows than frames: this frame carries the next flow of the range.
				setSource(umem[a:a+uint64(o.Size)], &info, o.Range.At(next))
				if next++; next == o.Range.N {
					next = 0
				}
			}
			descs[n] = xsk.Desc{Addr: a, Len: uint32(o.Size)}
			n++
		}
		if tb.rate > 0 {
			tb.credit += float64(want - n) // frames that could not be had: give the credit back
		}
		if n == 0 {
			wait(pfd)
			continue
		}
		sent, err := s.Transmit(descs[:n])
		for i := n - 1; i >= sent; i-- {
			q.unpop(descs[i].Addr) // next in line again
		}
		if tb.rate > 0 {
			tb.credit += float64(n - sent)
		}
		if err != nil {
			res.Errors++
			time.Sleep(time.Millisecond)
			continue
		}
		if sent == 0 {
			wait(pfd)
		}
	}
	res.Duration = time.Since(start)
	// Let the kernel finish what is queued, briefly, so Completed is meaningful.
	for range 10 {
		if s.Complete() == 0 {
			break
		}
	}
	after := s.Stats()
	res.Queued = after.TxPackets - before.TxPackets
	res.Completed = after.TxCompleted - before.TxCompleted
	return res, nil
}

// takeFrames takes every free frame of s into a queue that Run sends from, oldest first,
// so that every frame, and so every flow, takes its turn at any rate. (The socket hands out
// frames as a stack, the most recently freed first — what a forwarder wants, its frames
// warm in the cache — and a paced generator taking from it would send the few frames of
// its last batches over and over, a handful of its flows.) Unless each frame gets the next
// flow as it is sent (rotate), frame k carries flow k mod nflows, and only as many frames
// of each flow as every flow has are queued, so that each flow is sent equally often; the
// rest are parked, to be given back when Run ends.
func takeFrames(s xsk.Socket, nflows int, rotate bool) (q frameQueue, parked []uint64) {
	var all []uint64
	for {
		a, ok := s.Alloc()
		if !ok {
			break
		}
		all = append(all, a)
	}
	slices.Sort(all) // frame order: flows 0, 1, 2, … in turn
	q.buf = make([]uint64, len(all))
	if rotate || nflows < 1 {
		for _, a := range all {
			q.push(a)
		}
		return q, nil
	}
	fs := uint64(s.FrameSize())
	per := make([]int, nflows)
	for _, a := range all {
		per[(a/fs)%uint64(nflows)]++
	}
	keep := slices.Min(per)
	if keep == 0 {
		keep = 1 // fewer frames than flows: every frame, the first flows once each
	}
	took := make([]int, nflows)
	for _, a := range all {
		k := (a / fs) % uint64(nflows)
		if took[k] < keep {
			took[k]++
			q.push(a)
		} else {
			parked = append(parked, a)
		}
	}
	return q, parked
}

// frameQueue is a ring of frame addresses, first in first out.
type frameQueue struct {
	buf     []uint64
	head, n int
}

func (q *frameQueue) push(a uint64) {
	if q.n == len(q.buf) {
		return // cannot happen: the ring holds every frame Run owns
	}
	q.buf[(q.head+q.n)%len(q.buf)] = a
	q.n++
}

func (q *frameQueue) pop() (uint64, bool) {
	if q.n == 0 {
		return 0, false
	}
	a := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return a, true
}

// unpop puts a back at the head (a frame popped but not sent).
func (q *frameQueue) unpop(a uint64) {
	if q.n == len(q.buf) {
		return
	}
	q.head = (q.head - 1 + len(q.buf)) % len(q.buf)
	q.buf[q.head] = a
	q.n++
}

// epoch is the reference of nanotime.
var epoch = time.Now()

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }

// pause sleeps for d, at least 20 µs and at most 1 ms (a rate change is noticed soon).
func pause(d time.Duration) {
	time.Sleep(min(time.Millisecond, max(20*time.Microsecond, d)))
}

// wait blocks until the socket can take more, or 1 ms passes. The fake has no FD.
func wait(pfd []unix.PollFd) {
	if pfd[0].Fd < 0 {
		runtime.Gosched()
		return
	}
	_, _ = unix.Poll(pfd, 1)
}
