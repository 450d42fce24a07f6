//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Port is one instance of the program, with its own xsks (queue -> AF_XDP socket) and
// stats maps, usually attached to one interface. Its methods are safe for concurrent use.
type Port struct {
	objs    xlvsObjects
	link    link.Link // nil until attached
	ifindex int
	mode    Mode
	pending bool // adopted (handoff.go), not yet activated: the link runs another program

	mu     sync.Mutex // guards closed against Close racing the other methods
	closed bool
}

// attach links p's program to ifindex in mode and records the mode that worked.
func (p *Port) attach(ifindex int, mode Mode) error {
	try := func(m Mode) error {
		flags := link.XDPDriverMode
		if m == ModeGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: p.objs.XlvsClassify, Interface: ifindex, Flags: flags})
		if err != nil {
			return attachError(ifindex, m, err)
		}
		p.link, p.ifindex, p.mode = l, ifindex, m
		return nil
	}
	if mode != ModeAuto {
		return try(mode)
	}
	errNative := try(ModeNative)
	if errNative == nil {
		return nil
	}
	if errGeneric := try(ModeGeneric); errGeneric != nil {
		return fmt.Errorf("attach xdp to ifindex %d in auto mode: %w; %w", ifindex, errNative, errGeneric)
	}
	return nil
}

// attachError turns an attach failure into a message that says what to try.
func attachError(ifindex int, m Mode, err error) error {
	var hint string
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("attach xdp to ifindex %d in %v mode: %w: %w", ifindex, m, ErrNoXDP, err)
	case !interfaceExists(ifindex):
		// The kernel says EINVAL (or ENODEV) for a missing interface: look it up.
		hint = "no such interface in this network namespace (check ip link show)"
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
		hint = "another XDP program is attached (see ip link show; remove it with ip link set dev DEV xdp off)"
	case m == ModeNative && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)):
		hint = "the driver lacks native XDP or refuses it with the current MTU or settings; try generic or auto mode"
	default:
		hint = "check dmesg and ip link show; try generic mode"
	}
	return fmt.Errorf("attach xdp to ifindex %d in %v mode: %w (%s)", ifindex, m, err, hint)
}

// interfaceExists reports whether ifindex names an interface in the calling thread's
// network namespace. Only used to explain an attach failure.
func interfaceExists(ifindex int) bool {
	_, err := net.InterfaceByIndex(ifindex)
	return err == nil
}

// Mode returns the mode the program was attached in (ModeNative or ModeGeneric), or
// ModeAuto for a Port from Load that is not attached.
func (p *Port) Mode() Mode { return p.mode }

// Ifindex returns the interface index the program is attached to, or 0.
func (p *Port) Ifindex() int { return p.ifindex }

// RegisterSocket directs frames classified on receive queue queue to the AF_XDP socket
// fd. The socket must be bound to this Port's interface and that queue, with an RX ring;
// the kernel checks this and the error says so. Registering a queue again replaces the
// socket. The Port keeps no reference to fd beyond the kernel's own.
func (p *Port) RegisterSocket(queue int, fd int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("register socket for queue %d: %w: want 0..%d", queue, ErrInvalidQueue, MaxQueues-1)
	}
	if fd < 0 {
		return fmt.Errorf("register socket for queue %d: fd %d is not a file descriptor", queue, fd)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("register socket for queue %d: %w", queue, ErrClosed)
	}
	if err := p.objs.Xsks.Update(uint32(queue), uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("register socket for queue %d: %w (fd %d must be an AF_XDP socket with an RX ring, bound to this interface and queue)", queue, err, fd)
	}
	return nil
}

// UnregisterSocket removes queue's socket: from then on frames matched on that queue are
// passed to the kernel and counted as RedirectFailed. Removing a queue that has no socket
// is not an error.
func (p *Port) UnregisterSocket(queue int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("unregister socket for queue %d: %w: want 0..%d", queue, ErrInvalidQueue, MaxQueues-1)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("unregister socket for queue %d: %w", queue, ErrClosed)
	}
	if err := p.objs.Xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister socket for queue %d: %w", queue, err)
	}
	return nil
}

// macSet is struct mac_set of xlvs.c: the value of the macs map.
type macSet struct {
	N   uint32
	_   uint32
	MAC [MaxMACs][8]byte // 6 address bytes, 2 zero bytes
}

// SetMACs makes the program take only frames whose destination MAC is one of macs (at
// most MaxMACs unicast addresses: the interface's own and, say, a macvlan's VRRP
// virtual MAC on top of it) and pass every other frame to the kernel, counted as
// OtherHost. The kernel delivers frames to another host's MAC (PACKET_OTHERHOST) to no
// protocol, and IPVS ignores broadcast and multicast ones, so neither is the
// dataplane's (xlvs.c, macs). An empty macs turns the filter off: every frame is
// classified, as for a Port that was never given its MACs. The update is one map
// element write; a frame classified during it may see the old set.
func (p *Port) SetMACs(macs []net.HardwareAddr) error {
	if len(macs) > MaxMACs {
		return fmt.Errorf("set destination MACs: %d addresses, want at most %d", len(macs), MaxMACs)
	}
	var v macSet
	for i, m := range macs {
		if len(m) != 6 {
			return fmt.Errorf("set destination MACs: %q is not a 6-byte Ethernet address", m)
		}
		if m[0]&1 != 0 {
			return fmt.Errorf("set destination MACs: %v is a multicast address, want a unicast one", m)
		}
		copy(v.MAC[i][:], m)
	}
	v.N = uint32(len(macs))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("set destination MACs: %w", ErrClosed)
	}
	if err := p.objs.Macs.Update(uint32(0), &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set destination MACs: %w", err)
	}
	return nil
}

// Counters reads the program's counters, summed over CPUs. Concurrent frames may land
// between the reads of two counters: the result is not one atomic snapshot.
func (p *Port) Counters() (Counters, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Counters{}, fmt.Errorf("read counters: %w", ErrClosed)
	}
	var sums [statCount]uint64
	var perCPU []uint64
	for slot := range sums {
		if err := p.objs.Stats.Lookup(uint32(slot), &perCPU); err != nil {
			return Counters{}, fmt.Errorf("read counter %d: %w", slot, err)
		}
		for _, v := range perCPU {
			sums[slot] += v
		}
	}
	return Counters{
		Passed:         sums[statPassed],
		Redirected:     sums[statRedirected],
		RedirectFailed: sums[statRedirectFailed],
		Malformed:      sums[statMalformed],
		Fragment:       sums[statFragment],
		NonIP:          sums[statNonIP],
		LocalReply:     sums[statLocalReply],
		Held:           sums[statHeld],
		FastPathTx:     sums[statFastPathTx],
		OtherHost:      sums[statOtherHost],
	}, nil
}

// Program returns the loaded program, for BPF_PROG_TEST_RUN in tests. It is owned by the
// Port: do not close it.
func (p *Port) Program() *ebpf.Program { return p.objs.XlvsClassify }

// Close detaches the program (closes the bpf_link) and frees the Port's program and maps;
// the shared services and reals maps live on in the Classifier. Close is idempotent.
func (p *Port) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errLink error
	if p.link != nil {
		if err := p.link.Close(); err != nil {
			errLink = fmt.Errorf("detach xdp from ifindex %d: %w", p.ifindex, err)
		}
	}
	return errors.Join(errLink, p.objs.Close())
}
