package xsk

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A shared socket is an AF_XDP socket this package sets up itself, with its UMEM in a
// memfd mapped MAP_SHARED instead of asavie/xdp's private anonymous memory. Everything
// that makes the socket — its file descriptor (bound to its queue, its four rings
// inside), the memfd (its frames) and the free list (which frames nobody has) — can be
// handed to another process (Handover), which maps them (Adopt) and carries on at the
// rings' indices: the queue is never released, and what arrives meanwhile waits in the
// RX ring, up to what the fill ring had posted. That is what a restarting xlvsd hands
// its successor (dataplane/handoff.go).
//
// The rings are the kernel's (XDP_MMAP_OFFSETS): a producer and a consumer index, and
// the descriptors. This side produces on the fill and TX rings and consumes on the RX
// and completion rings; it keeps a cached copy of the other side's index, refreshed
// when the cache says the ring is full (producer) or empty (consumer), as libbpf's
// xsk.h does. sync/atomic's loads and stores give the acquire/release order the
// kernel's smp_load_acquire/smp_store_release pair with.

// ring is one mapped AF_XDP ring.
type ring struct {
	prod, cons *uint32
	mask       uint32
	size       uint32
	cached     uint32 // the other side's index as last read
	local      uint32 // this side's index (producer rings: prod; consumer rings: cons)
	mem        []byte // the mapping
}

// ShareInfo describes a shared socket for a successor: what Adopt needs besides the
// two file descriptors.
type ShareInfo struct {
	Ifindex, Queue int
	Config         Config
	Free           []uint64 // the frames on the free list (base addresses)
}

// Shareable is a Socket that can be handed to another process (a shared socket).
type Shareable interface {
	Socket
	// Handover returns the socket's descriptor, its UMEM's memfd and what Adopt needs.
	// Call it once nothing uses the socket any more (the worker stopped): from then on
	// the socket belongs to whoever adopts the descriptors, and Close here only releases
	// this process's mappings and descriptors.
	Handover() (sockFD, memFD int, info ShareInfo)
}

// sharedSocket is a Shareable on an AF_XDP socket set up here.
type sharedSocket struct {
	sfd, memfd     int
	ifindex, queue int
	cfg            Config
	umem           []byte
	fill, comp     ring
	rx, tx         ring
	fillAddrs      []uint64 // the fill ring's descriptors
	compAddrs      []uint64 // the completion ring's
	rxDescs        []Desc
	txDescs        []Desc
	free           freeList
	c              counters
	kstats         kernelStats
	closeOnce      sync.Once
}

// OpenShared binds an AF_XDP socket to (ifindex, queue) as Open does, with its UMEM in a
// memfd so that it can be handed over (Shareable).
func OpenShared(ifindex, queue int, cfg Config) (Socket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open xsk on ifindex %d queue %d: %w", ifindex, queue, err)
	}
	s, err := openShared(ifindex, queue, cfg)
	if err != nil {
		return nil, openError(ifindex, queue, cfg, err)
	}
	return s, nil
}

func openShared(ifindex, queue int, cfg Config) (_ *sharedSocket, err error) {
	s := &sharedSocket{sfd: -1, memfd: -1, ifindex: ifindex, queue: queue, cfg: cfg}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.sfd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("socket(AF_XDP): %w", err)
	}
	size := cfg.Frames * cfg.FrameSize
	if s.memfd, err = unix.MemfdCreate(fmt.Sprintf("xlvs-umem-%d-%d", ifindex, queue), unix.MFD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("memfd for the UMEM: %w", err)
	}
	if err = unix.Ftruncate(s.memfd, int64(size)); err != nil {
		return nil, fmt.Errorf("size the UMEM memfd to %d bytes: %w", size, err)
	}
	if s.umem, err = unix.Mmap(s.memfd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("map the UMEM (%d bytes): %w", size, err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&s.umem[0]))), Len: uint64(size), Size: uint32(cfg.FrameSize)}
	if err = setsockopt(s.sfd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return nil, fmt.Errorf("register the UMEM: %w", err)
	}
	for _, r := range []struct {
		opt int
		n   int
	}{{unix.XDP_UMEM_FILL_RING, cfg.FillRing}, {unix.XDP_UMEM_COMPLETION_RING, cfg.CompRing}, {unix.XDP_RX_RING, cfg.RxRing}, {unix.XDP_TX_RING, cfg.TxRing}} {
		n := int32(r.n)
		if err = setsockopt(s.sfd, r.opt, unsafe.Pointer(&n), unsafe.Sizeof(n)); err != nil {
			return nil, fmt.Errorf("size ring %d to %d: %w", r.opt, r.n, err)
		}
	}
	if err = s.mapRings(); err != nil {
		return nil, err
	}
	var flags uint16
	switch {
	case cfg.ZeroCopy:
		flags = unix.XDP_ZEROCOPY
	case cfg.Copy:
		flags = unix.XDP_COPY
	}
	if err = unix.Bind(s.sfd, &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(ifindex), QueueID: uint32(queue)}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	s.free = newFreeList(cfg.Frames, cfg.FrameSize)
	s.c.free.Store(uint64(len(s.free.addrs)))
	s.Refill()
	return s, nil
}

func setsockopt(fd, opt int, val unsafe.Pointer, size uintptr) error {
	if _, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(val), size, 0); errno != 0 {
		return errno
	}
	return nil
}

// mapRings maps the socket's four rings and points the ring views at them.
func (s *sharedSocket) mapRings() error {
	var off unix.XDPMmapOffsets
	size := uint32(unsafe.Sizeof(off))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.sfd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&size)), 0); errno != 0 {
		return fmt.Errorf("read the ring offsets: %w", errno)
	}
	m := func(r *ring, o unix.XDPRingOffset, pgoff int64, n int, desc uintptr, name string) (unsafe.Pointer, error) {
		mem, err := unix.Mmap(s.sfd, pgoff, int(uintptr(o.Desc)+uintptr(n)*desc), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("map the %s ring (%d entries): %w", name, n, err)
		}
		base := unsafe.Pointer(&mem[0])
		*r = ring{
			prod: (*uint32)(unsafe.Add(base, o.Producer)),
			cons: (*uint32)(unsafe.Add(base, o.Consumer)),
			mask: uint32(n - 1), size: uint32(n), mem: mem,
		}
		return unsafe.Add(base, o.Desc), nil
	}
	p, err := m(&s.fill, off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, s.cfg.FillRing, 8, "fill")
	if err != nil {
		return err
	}
	s.fillAddrs = unsafe.Slice((*uint64)(p), s.cfg.FillRing)
	if p, err = m(&s.comp, off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, s.cfg.CompRing, 8, "completion"); err != nil {
		return err
	}
	s.compAddrs = unsafe.Slice((*uint64)(p), s.cfg.CompRing)
	if p, err = m(&s.rx, off.Rx, unix.XDP_PGOFF_RX_RING, s.cfg.RxRing, unsafe.Sizeof(Desc{}), "rx"); err != nil {
		return err
	}
	s.rxDescs = unsafe.Slice((*Desc)(p), s.cfg.RxRing)
	if p, err = m(&s.tx, off.Tx, unix.XDP_PGOFF_TX_RING, s.cfg.TxRing, unsafe.Sizeof(Desc{}), "tx"); err != nil {
		return err
	}
	s.txDescs = unsafe.Slice((*Desc)(p), s.cfg.TxRing)
	// Carry on where the rings are: zero for a new socket, the predecessor's indices for
	// an adopted one. This side owns the fill and TX producers and the RX and completion
	// consumers.
	for _, r := range []*ring{&s.fill, &s.tx} {
		r.local, r.cached = atomic.LoadUint32(r.prod), atomic.LoadUint32(r.cons)
	}
	for _, r := range []*ring{&s.rx, &s.comp} {
		r.local, r.cached = atomic.LoadUint32(r.cons), atomic.LoadUint32(r.prod)
	}
	return nil
}

// Adopt takes over a shared socket another process handed over (Shareable.Handover):
// sockFD and memFD become the returned Socket's. The socket must not be used by its
// previous owner any more. info comes from that owner; what can be checked against the
// descriptors is (an AF_XDP socket, a UMEM of the stated size, frames in range). On an
// error the descriptors stay the caller's.
func Adopt(sockFD, memFD int, info ShareInfo) (Socket, error) {
	cfg := info.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("adopt xsk of ifindex %d queue %d: %w", info.Ifindex, info.Queue, err)
	}
	if dom, err := unix.GetsockoptInt(sockFD, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || dom != unix.AF_XDP {
		return nil, fmt.Errorf("adopt xsk of ifindex %d queue %d: descriptor %d is not an AF_XDP socket (domain %d, %v)", info.Ifindex, info.Queue, sockFD, dom, err)
	}
	size := cfg.Frames * cfg.FrameSize
	var st unix.Stat_t
	if err := unix.Fstat(memFD, &st); err != nil || st.Size != int64(size) {
		return nil, fmt.Errorf("adopt xsk of ifindex %d queue %d: the UMEM memfd has %d bytes, want %d (%d frames of %d) (%v)", info.Ifindex, info.Queue, st.Size, size, cfg.Frames, cfg.FrameSize, err)
	}
	if len(info.Free) > cfg.Frames {
		return nil, fmt.Errorf("adopt xsk of ifindex %d queue %d: %d free frames of %d", info.Ifindex, info.Queue, len(info.Free), cfg.Frames)
	}
	s := &sharedSocket{sfd: sockFD, memfd: memFD, ifindex: info.Ifindex, queue: info.Queue, cfg: cfg}
	fail := func(err error) (Socket, error) {
		s.unmap()
		return nil, fmt.Errorf("adopt xsk of ifindex %d queue %d: %w", info.Ifindex, info.Queue, err)
	}
	var err error
	if s.umem, err = unix.Mmap(memFD, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fail(fmt.Errorf("map the UMEM: %w", err))
	}
	if err := s.mapRings(); err != nil {
		return fail(err)
	}
	s.free = freeList{addrs: make([]uint64, 0, cfg.Frames), mask: ^uint64(cfg.FrameSize - 1)}
	for _, a := range info.Free {
		if a >= uint64(size) || a%uint64(cfg.FrameSize) != 0 {
			return fail(fmt.Errorf("free frame %#x is not a frame's base address in a UMEM of %d bytes", a, size))
		}
		s.free.push(a)
	}
	s.c.free.Store(uint64(len(s.free.addrs)))
	return s, nil
}

func (s *sharedSocket) Handover() (int, int, ShareInfo) {
	free := make([]uint64, len(s.free.addrs))
	copy(free, s.free.addrs)
	return s.sfd, s.memfd, ShareInfo{Ifindex: s.ifindex, Queue: s.queue, Config: s.cfg, Free: free}
}

func (s *sharedSocket) Receive(descs []Desc) int {
	r := &s.rx
	avail := r.cached - r.local
	if avail == 0 {
		r.cached = atomic.LoadUint32(r.prod)
		avail = r.cached - r.local
	}
	n := min(uint32(len(descs)), avail)
	for i := uint32(0); i < n; i++ {
		descs[i] = s.rxDescs[(r.local+i)&r.mask]
	}
	if n > 0 {
		r.local += n
		atomic.StoreUint32(r.cons, r.local)
		s.c.add(&s.c.rx, int(n))
	}
	return int(n)
}

// room returns how many entries producer ring r can take now.
func (r *ring) room() uint32 {
	r.cached = atomic.LoadUint32(r.cons)
	return r.size - (r.local - r.cached)
}

func (s *sharedSocket) Transmit(descs []Desc) (int, error) {
	free := int(s.tx.room())
	if len(descs) > free {
		s.c.add(&s.c.txFull, len(descs)-free)
		descs = descs[:free]
	}
	if len(descs) == 0 {
		// Nothing new: still push what an earlier call left in the ring.
		if s.txPending() > 0 {
			return 0, s.kick()
		}
		return 0, nil
	}
	r := &s.tx
	for i := range descs {
		s.txDescs[(r.local+uint32(i))&r.mask] = descs[i]
	}
	r.local += uint32(len(descs))
	atomic.StoreUint32(r.prod, r.local)
	s.c.add(&s.c.tx, len(descs))
	return len(descs), s.kick()
}

// txPending is how many descriptors of the TX ring the kernel has not taken yet.
func (s *sharedSocket) txPending() int {
	s.tx.cached = atomic.LoadUint32(s.tx.cons)
	return int(s.tx.local - s.tx.cached)
}

func (s *sharedSocket) kick() error     { return kick(s) }
func (s *sharedSocket) fd() int         { return s.sfd }
func (s *sharedSocket) ctrs() *counters { return &s.c }

func (s *sharedSocket) Complete() int {
	r := &s.comp
	r.cached = atomic.LoadUint32(r.prod)
	n := r.cached - r.local
	if n == 0 {
		return 0
	}
	for i := uint32(0); i < n; i++ {
		s.free.push(s.compAddrs[(r.local+i)&r.mask])
	}
	r.local += n
	atomic.StoreUint32(r.cons, r.local)
	s.c.add(&s.c.txDone, int(n))
	s.c.free.Store(uint64(len(s.free.addrs)))
	return int(n)
}

func (s *sharedSocket) Refill() int {
	r := &s.fill
	room := r.room()
	n := uint32(0)
	for n < room {
		a, ok := s.free.pop()
		if !ok {
			s.c.add(&s.c.fillEmpty, 1)
			break
		}
		s.fillAddrs[(r.local+n)&r.mask] = a
		n++
	}
	if n > 0 {
		r.local += n
		atomic.StoreUint32(r.prod, r.local)
	}
	s.c.free.Store(uint64(len(s.free.addrs)))
	return int(n)
}

func (s *sharedSocket) Alloc() (uint64, bool) { return s.free.alloc(&s.c) }
func (s *sharedSocket) Free(addr uint64)      { s.free.give(&s.c, addr) }

func (s *sharedSocket) Umem() []byte   { return s.umem }
func (s *sharedSocket) FrameSize() int { return s.cfg.FrameSize }
func (s *sharedSocket) FD() int        { return s.sfd }

func (s *sharedSocket) Stats() Stats { return s.kstats.stats(s.sfd, &s.c) }

// unmap releases this process's mappings of the rings and the UMEM.
func (s *sharedSocket) unmap() error {
	var errs []error
	for _, r := range []*ring{&s.fill, &s.comp, &s.rx, &s.tx} {
		if r.mem != nil {
			errs = append(errs, unix.Munmap(r.mem))
			r.mem = nil
		}
	}
	s.fillAddrs, s.compAddrs, s.rxDescs, s.txDescs = nil, nil, nil, nil
	if s.umem != nil {
		errs = append(errs, unix.Munmap(s.umem))
		s.umem = nil
	}
	return errors.Join(errs...)
}

// Close unmaps the rings and the UMEM and closes both descriptors: the kernel releases
// the socket, and its queue, unless another process holds a descriptor of it (one
// handed over).
func (s *sharedSocket) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.unmap()
		for _, fd := range []*int{&s.sfd, &s.memfd} {
			if *fd >= 0 {
				err = errors.Join(err, unix.Close(*fd))
				*fd = -1
			}
		}
	})
	return err
}
