package xsk

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/asavie/xdp"
	"golang.org/x/sys/unix"
)

// socket is a Socket on a real AF_XDP socket through asavie/xdp.
type socket struct {
	x         *xdp.Socket
	cfg       Config
	umem      []byte
	free      freeList
	comp      *compRing
	rings     []ringMap // unmapped by Close (unmap.go)
	fillBuf   []xdp.Desc
	txMask    int
	c         counters
	kstats    kernelStats
	closeOnce sync.Once
}

// compRing mirrors asavie/xdp v0.3.3's unexported umemRing; Open checks the layout.
type compRing struct {
	Producer *uint32
	Consumer *uint32
	Descs    []uint64
}

// bindMu serializes socket creation: asavie reads bind flags from a package variable.
var bindMu sync.Mutex

// Open binds an AF_XDP socket to (ifindex, queue) with rings and frames sized by cfg:
// a shared one (OpenShared), or asavie/xdp's with Config.Private. Register its FD in the
// XDP program's socket map to receive.
func Open(ifindex, queue int, cfg Config) (Socket, error) {
	if cfg.Private {
		return openAsavie(ifindex, queue, cfg)
	}
	return OpenShared(ifindex, queue, cfg)
}

// openAsavie opens a socket through asavie/xdp (Config.Private).
func openAsavie(ifindex, queue int, cfg Config) (Socket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open xsk on ifindex %d queue %d: %w", ifindex, queue, err)
	}
	opts := xdp.SocketOptions{
		NumFrames:              cfg.Frames,
		FrameSize:              cfg.FrameSize,
		FillRingNumDescs:       cfg.FillRing,
		CompletionRingNumDescs: cfg.CompRing,
		RxRingNumDescs:         cfg.RxRing,
		TxRingNumDescs:         cfg.TxRing,
	}
	bindMu.Lock()
	switch {
	case cfg.ZeroCopy:
		xdp.DefaultSocketFlags = unix.XDP_ZEROCOPY
	case cfg.Copy:
		xdp.DefaultSocketFlags = unix.XDP_COPY
	default:
		xdp.DefaultSocketFlags = 0
	}
	x, err := xdp.NewSocket(ifindex, queue, &opts)
	xdp.DefaultSocketFlags = 0
	bindMu.Unlock()
	if err != nil {
		return nil, openError(ifindex, queue, cfg, err)
	}
	comp, err := completionRing(x)
	if err != nil {
		x.Close()
		return nil, err
	}
	rings, err := ringMaps(x, cfg)
	if err != nil {
		x.Close()
		return nil, err
	}
	s := &socket{
		x:       x,
		cfg:     cfg,
		free:    newFreeList(cfg.Frames, cfg.FrameSize),
		comp:    comp,
		rings:   rings,
		fillBuf: make([]xdp.Desc, cfg.FillRing),
		txMask:  cfg.TxRing,
	}
	// The UMEM: asavie maps Frames*FrameSize bytes and hands out frames by offset; the
	// first frame's slice starts at the mapping, so extend it to the whole area.
	first := x.GetFrame(xdp.Desc{Addr: 0, Len: uint32(cfg.FrameSize)})
	s.umem = unsafe.Slice(&first[0], cfg.Frames*cfg.FrameSize)
	s.c.free.Store(uint64(len(s.free.addrs)))
	s.Refill()
	return s, nil
}

// completionRing finds asavie's completion ring, checking that the unexported field has
// the layout this package was written against (asavie/xdp v0.3.3).
func completionRing(x *xdp.Socket) (*compRing, error) {
	v := reflect.ValueOf(x).Elem().FieldByName("completionRing")
	if !v.IsValid() || v.Kind() != reflect.Struct || v.NumField() != 3 {
		return nil, errors.New("xsk: asavie/xdp has no completionRing of the expected shape: pin github.com/asavie/xdp v0.3.3")
	}
	want := []struct {
		name string
		typ  reflect.Type
	}{{"Producer", reflect.TypeOf((*uint32)(nil))}, {"Consumer", reflect.TypeOf((*uint32)(nil))}, {"Descs", reflect.TypeOf([]uint64(nil))}}
	for i, w := range want {
		f := v.Type().Field(i)
		if f.Name != w.name || f.Type != w.typ {
			return nil, fmt.Errorf("xsk: asavie/xdp completionRing field %d is %s %s, want %s %s: pin github.com/asavie/xdp v0.3.3", i, f.Name, f.Type, w.name, w.typ)
		}
	}
	if v.Type().Size() != unsafe.Sizeof(compRing{}) {
		return nil, errors.New("xsk: asavie/xdp completionRing size differs: pin github.com/asavie/xdp v0.3.3")
	}
	return (*compRing)(unsafe.Pointer(v.UnsafeAddr())), nil
}

func (s *socket) Receive(descs []Desc) int {
	if len(descs) > s.cfg.RxRing {
		descs = descs[:s.cfg.RxRing] // asavie's receive buffer holds one ring's worth
	}
	got := s.x.Receive(len(descs))
	n := copy(descs, *(*[]Desc)(unsafe.Pointer(&got)))
	s.c.add(&s.c.rx, n)
	return n
}

func (s *socket) Transmit(descs []Desc) (n int, err error) {
	free := s.x.NumFreeTxSlots()
	if len(descs) > free {
		s.c.add(&s.c.txFull, len(descs)-free)
		descs = descs[:free]
	}
	if len(descs) == 0 {
		// Nothing new: still push what an earlier call left in the ring when the
		// kernel pushed back, so a quiet moment never strands queued frames.
		if s.x.NumFreeTxSlots() < s.txMask {
			return 0, s.kick()
		}
		return 0, nil
	}
	n = len(descs)
	s.c.add(&s.c.tx, n)
	// asavie writes all n descriptors to the ring before its single sendto, so when that
	// sendto panics the frames are queued and accounted for: recover, report, carry on.
	defer func() {
		if r := recover(); r != nil {
			s.c.add(&s.c.txErr, 1)
			err = fmt.Errorf("%w: %v", ErrLinkDown, r)
		}
	}()
	s.x.Transmit(*(*[]xdp.Desc)(unsafe.Pointer(&descs)))
	s.c.add(&s.c.kicks, 1)
	return n, s.kick()
}

func (s *socket) kick() error { return kick(s) }

func (s *socket) fd() int         { return s.x.FD() }
func (s *socket) txPending() int  { return s.txMask - s.x.NumFreeTxSlots() }
func (s *socket) ctrs() *counters { return &s.c }

func (s *socket) Complete() int {
	n := s.x.NumCompleted()
	if n == 0 {
		return 0
	}
	cons := *s.comp.Consumer
	mask := uint32(len(s.comp.Descs) - 1)
	for i := 0; i < n; i++ {
		s.free.push(s.comp.Descs[(cons+uint32(i))&mask])
	}
	s.x.Complete(n)
	s.c.add(&s.c.txDone, n)
	s.c.free.Store(uint64(len(s.free.addrs)))
	return n
}

func (s *socket) Refill() int {
	room := s.x.NumFreeFillSlots()
	n := 0
	for n < room {
		a, ok := s.free.pop()
		if !ok {
			s.c.add(&s.c.fillEmpty, 1)
			break
		}
		s.fillBuf[n] = xdp.Desc{Addr: a}
		n++
	}
	if n > 0 {
		s.x.Fill(s.fillBuf[:n])
	}
	s.c.free.Store(uint64(len(s.free.addrs)))
	return n
}

func (s *socket) Alloc() (uint64, bool) { return s.free.alloc(&s.c) }
func (s *socket) Free(addr uint64)      { s.free.give(&s.c, addr) }

func (s *socket) Umem() []byte   { return s.umem }
func (s *socket) FrameSize() int { return s.cfg.FrameSize }
func (s *socket) FD() int        { return s.x.FD() }

func (s *socket) Stats() Stats { return s.kstats.stats(s.x.FD(), &s.c) }

// Close closes the socket and unmaps its rings and frames: the kernel releases it, and
// the queue can be bound again (by this process or another) once the kernel's work queue
// has freed it, a few milliseconds later.
func (s *socket) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.x.Close()
		s.comp = nil
		err = errors.Join(err, unmapRings(s.rings))
		s.rings = nil
	})
	return err
}
