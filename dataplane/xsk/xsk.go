package xsk

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Desc is an AF_XDP descriptor: a frame's data at Addr (a UMEM offset) of Len bytes.
// Its layout is the kernel's struct xdp_desc.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// XDPPacketHeadroom is where received data starts in a frame (the kernel's
// XDP_PACKET_HEADROOM): frames allocated for copies put their data there too.
const XDPPacketHeadroom = 256

// Config sizes a socket. Ring sizes are powers of two; frames must cover the fill ring, the
// TX ring and what the worker holds in flight, or bursts are dropped.
type Config struct {
	Frames    int // frames in the UMEM
	FrameSize int // bytes per frame: 2048 or 4096
	FillRing  int
	CompRing  int
	RxRing    int
	TxRing    int
	// ZeroCopy requests zero-copy binding; Copy forces copy mode. Neither lets the kernel
	// choose.
	ZeroCopy bool
	Copy     bool
	// Private opens the socket through asavie/xdp, whose UMEM is private memory of this
	// process: it cannot be handed to a successor (Shareable), so a restart loses the
	// frames that arrive while it hands over. Otherwise the socket is a shared one
	// (OpenShared).
	Private bool
}

// Limits of Config that Validate enforces (xlvsd's flags take their ranges from here).
const (
	MinFrameSize = 2048 // a power of two from MinFrameSize to MaxFrameSize
	MaxFrameSize = 4096
	MinRing      = 8 // ring sizes: powers of two from MinRing to MaxRing
	MaxRing      = 1 << 16
	MaxFrames    = 1 << 20 // frames in the UMEM
)

// DefaultConfig returns sizes that do not drop bursts on veth or a real NIC queue:
// rings of 2048 and 8192 frames (fill + TX + a worker's batches, with room to spare).
func DefaultConfig() Config {
	return Config{Frames: 8192, FrameSize: 2048, FillRing: 2048, CompRing: 2048, RxRing: 2048, TxRing: 2048}
}

// Validate reports the first thing wrong with c, saying what would be right.
func (c Config) Validate() error {
	pow2 := func(name string, v, lo, hi int) error {
		if v < lo || v > hi || v&(v-1) != 0 {
			return fmt.Errorf("%s %d: must be a power of two between %d and %d", name, v, lo, hi)
		}
		return nil
	}
	if err := pow2("frame size", c.FrameSize, MinFrameSize, MaxFrameSize); err != nil {
		return err
	}
	for _, r := range []struct {
		name string
		v    int
	}{{"fill ring", c.FillRing}, {"completion ring", c.CompRing}, {"rx ring", c.RxRing}, {"tx ring", c.TxRing}} {
		if err := pow2(r.name, r.v, MinRing, MaxRing); err != nil {
			return err
		}
	}
	if c.Frames < c.FillRing+c.TxRing {
		return fmt.Errorf("frames %d: must be at least fill ring + tx ring (%d) so a full fill ring and a full tx ring can coexist", c.Frames, c.FillRing+c.TxRing)
	}
	if c.Frames > MaxFrames {
		return fmt.Errorf("frames %d: at most %d", c.Frames, MaxFrames)
	}
	if c.ZeroCopy && c.Copy {
		return errors.New("zero-copy and copy mode both requested: choose one")
	}
	return nil
}

// ErrLinkDown is returned by Transmit when the kernel refused to send because the link is
// down or gone (asavie's panic on ENETDOWN/ENXIO is recovered into it).
var ErrLinkDown = errors.New("transmit: link down")

// Socket is one AF_XDP socket as the dataplane uses it. Batch methods take caller-owned
// slices; nothing allocates.
type Socket interface {
	// Receive moves up to len(descs) received frames to descs and returns how many.
	Receive(descs []Desc) int
	// Transmit queues descs (frames of this socket's UMEM) and kicks the kernel until the
	// TX ring drains or the kernel pushes back. It returns how many were queued; the rest
	// stay the caller's (to retry or Free). err is ErrLinkDown-wrapped when the link failed.
	// With no descriptors it only kicks what earlier calls left in the ring.
	Transmit(descs []Desc) (int, error)
	// Complete returns transmitted frames to the free list and reports how many.
	Complete() int
	// Refill gives free frames to the fill ring and reports how many.
	Refill() int
	// Alloc takes a free frame (its base address) for data copied in from elsewhere.
	Alloc() (addr uint64, ok bool)
	// Free returns a frame (any address inside it) to the free list.
	Free(addr uint64)
	// Umem is the frame memory: a descriptor's bytes are Umem()[d.Addr : d.Addr+d.Len].
	Umem() []byte
	// FrameSize is the size of one frame.
	FrameSize() int
	// FD is the socket's descriptor for poll(2), or -1 for a socket without one.
	FD() int
	// Stats returns the socket's counters; safe from any goroutine.
	Stats() Stats
	// Close releases the socket.
	Close() error
}

// Stats are one socket's counters, ethtool -S style.
type Stats struct {
	RxPackets     uint64 // frames received
	TxPackets     uint64 // frames queued for transmit
	TxCompleted   uint64 // frames the kernel finished sending
	TxRingFull    uint64 // descriptors refused because the TX ring was full
	TxKicks       uint64 // sendto calls
	TxKickBusy    uint64 // sendto answered EAGAIN/EBUSY (kernel pushed back)
	TxErrors      uint64 // transmit failures (link down, panics recovered)
	FillEmpty     uint64 // Refill found no free frame while the fill ring had room
	AllocFailed   uint64 // Alloc found no free frame
	FreeFrames    uint64 // frames on the free list now
	KernelDropped uint64 // XDP_STATISTICS rx_dropped
	RxInvalid     uint64 // rx_invalid_descs
	TxInvalid     uint64 // tx_invalid_descs
	RxRingFull    uint64 // rx_ring_full
	RxFillEmpty   uint64 // rx_fill_ring_empty_descs
	TxRingEmpty   uint64 // tx_ring_empty_descs
}

// Map returns the counters by name, for listings and metrics.
func (s Stats) Map() map[string]uint64 {
	return map[string]uint64{
		"rx_packets":         s.RxPackets,
		"tx_packets":         s.TxPackets,
		"tx_completed":       s.TxCompleted,
		"tx_ring_full":       s.TxRingFull,
		"tx_kicks":           s.TxKicks,
		"tx_kick_busy":       s.TxKickBusy,
		"tx_errors":          s.TxErrors,
		"fill_empty":         s.FillEmpty,
		"alloc_failed":       s.AllocFailed,
		"free_frames":        s.FreeFrames,
		"kernel_rx_dropped":  s.KernelDropped,
		"rx_invalid_descs":   s.RxInvalid,
		"tx_invalid_descs":   s.TxInvalid,
		"rx_ring_full":       s.RxRingFull,
		"rx_fill_ring_empty": s.RxFillEmpty,
		"tx_ring_empty":      s.TxRingEmpty,
	}
}

// counters are written by the owning worker only and read atomically by Stats.
type counters struct {
	rx, tx, txDone, txFull, kicks, kickBusy, txErr, fillEmpty, allocFail, free atomic.Uint64
}

func (c *counters) add(v *atomic.Uint64, n int) { v.Store(v.Load() + uint64(n)) }

func (c *counters) stats() Stats {
	return Stats{
		RxPackets: c.rx.Load(), TxPackets: c.tx.Load(), TxCompleted: c.txDone.Load(),
		TxRingFull: c.txFull.Load(), TxKicks: c.kicks.Load(), TxKickBusy: c.kickBusy.Load(),
		TxErrors: c.txErr.Load(), FillEmpty: c.fillEmpty.Load(), AllocFailed: c.allocFail.Load(),
		FreeFrames: c.free.Load(),
	}
}

// freeList is a LIFO stack of frame base addresses: O(1) push and pop, allocated once.
type freeList struct {
	addrs []uint64
	mask  uint64 // ^(frameSize-1)
}

func newFreeList(frames, frameSize int) freeList {
	f := freeList{addrs: make([]uint64, 0, frames), mask: ^uint64(frameSize - 1)}
	for i := frames - 1; i >= 0; i-- {
		f.addrs = append(f.addrs, uint64(i)*uint64(frameSize))
	}
	return f
}

func (f *freeList) pop() (uint64, bool) {
	n := len(f.addrs)
	if n == 0 {
		return 0, false
	}
	a := f.addrs[n-1]
	f.addrs = f.addrs[:n-1]
	return a, true
}

// alloc takes a free frame for a socket whose counters are c (Socket.Alloc).
func (f *freeList) alloc(c *counters) (uint64, bool) {
	a, ok := f.pop()
	if !ok {
		c.add(&c.allocFail, 1)
	}
	c.free.Store(uint64(len(f.addrs)))
	return a, ok
}

// give returns a frame of a socket whose counters are c (Socket.Free).
func (f *freeList) give(c *counters, addr uint64) {
	f.push(addr)
	c.free.Store(uint64(len(f.addrs)))
}

// push returns a frame; a push beyond capacity means a frame was freed twice, a bug in
// the caller, and is ignored rather than corrupting the list.
func (f *freeList) push(addr uint64) bool {
	if len(f.addrs) == cap(f.addrs) {
		return false
	}
	f.addrs = append(f.addrs, addr&f.mask)
	return true
}

// txKicker is what kick needs of a socket of either kind.
type txKicker interface {
	fd() int
	txPending() int // descriptors of the TX ring the kernel has not taken yet
	Complete() int
	ctrs() *counters
}

// kick calls sendto until the kernel has consumed s's TX ring. In copy mode one sendto
// moves at most 32 descriptors and answers EAGAIN while more remain, so EAGAIN means
// "call again" — and the consumer index the kernel publishes can lag what it has already
// sent, so the ring looking unchanged after a sendto is no sign of push-back. Calls are
// bounded by the frames pending (one per 32, plus two); EBUSY or ENOBUFS (completion
// ring full, device busy) is push-back: reclaim completions and stop at the second.
func kick(s txKicker) error {
	c := s.ctrs()
	limit := s.txPending()/32 + 2
	busy := 0
	for i := 0; i < limit && s.txPending() > 0; i++ {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd()), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		c.add(&c.kicks, 1)
		switch errno {
		case 0, unix.EINTR, unix.EAGAIN:
		case unix.EBUSY, unix.ENOBUFS:
			c.add(&c.kickBusy, 1)
			if busy++; busy > 1 {
				return nil
			}
			s.Complete()
		default:
			c.add(&c.txErr, 1)
			return fmt.Errorf("%w: sendto: %v", ErrLinkDown, errno)
		}
	}
	return nil
}

// kernelStats keeps a socket's last XDP_STATISTICS, for Stats from any goroutine.
type kernelStats struct {
	mu   sync.Mutex
	last unix.XDPStatistics
}

// stats returns c's counters with socket fd's kernel counters (the last ones read when
// the socket no longer answers).
func (k *kernelStats) stats(fd int, c *counters) Stats {
	st := c.stats()
	k.mu.Lock()
	defer k.mu.Unlock()
	var x unix.XDPStatistics
	size := uint32(unsafe.Sizeof(x))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&x)), uintptr(unsafe.Pointer(&size)), 0)
	if errno == 0 {
		k.last = x
	}
	st.KernelDropped = k.last.Rx_dropped
	st.RxInvalid = k.last.Rx_invalid_descs
	st.TxInvalid = k.last.Tx_invalid_descs
	st.RxRingFull = k.last.Rx_ring_full
	st.RxFillEmpty = k.last.Rx_fill_ring_empty_descs
	st.TxRingEmpty = k.last.Tx_ring_empty_descs
	return st
}

// openError says why a socket could not be opened, with what would help.
func openError(ifindex, queue int, cfg Config, err error) error {
	hint := ""
	switch {
	case cfg.ZeroCopy:
		// The command names its own copy-mode option (xlvsd: --copy).
		return fmt.Errorf("open xsk on ifindex %d queue %d: %w (%w: veth and most virtual NICs do copy mode only)", ifindex, queue, err, ErrZeroCopyUnsupported)
	case containsErrno(err, unix.EBUSY):
		hint = " (the queue already has a socket: one xlvsd per interface, and a queue cannot be bound twice in one process)"
	case containsErrno(err, unix.EINVAL):
		hint = fmt.Sprintf(" (the kernel says so for a queue the interface does not have: does it have a queue %d? see /sys/class/net/IFACE/queues or `ethtool -l IFACE`)", queue)
	}
	return fmt.Errorf("open xsk on ifindex %d queue %d: %w%s", ifindex, queue, err, hint)
}

// ErrZeroCopyUnsupported is in the error of Open when a socket asked for zero-copy mode
// (Config.ZeroCopy) could not be bound: most often the driver does copy mode only.
var ErrZeroCopyUnsupported = errors.New("zero-copy needs driver support")

// containsErrno tells whether err is errno e or says it (asavie formats errnos with %v).
func containsErrno(err error, e syscall.Errno) bool {
	return err != nil && (errors.Is(err, e) || strings.Contains(err.Error(), e.Error()))
}
