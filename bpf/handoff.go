//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Restart handoff: a stopping xlvsd keeps its XDP links alive by handing their file
// descriptors to a keeper (systemd's file descriptor store), sets Hold so that frames of
// its connections are dropped rather than passed to the kernel's stack while no socket
// takes them, and exits. Its successor Adopts each link, loads its own program instance
// (its own build's: the two need not be the same program), registers its sockets and
// fills the maps, then Activates: BPF_LINK_UPDATE swaps the program on the link
// atomically, so no frame meets an interface without a program.

// Hold makes every program instance loaded from c drop (counted as Counters.Held)
// instead of pass the frames that match a service or real server but whose receive
// queue has no socket, for d from now; d <= 0 ends the hold at once. Once the time is
// up they are passed again, so a successor that never comes leaves the kernel in charge
// as a stopped xlvsd always did. The sockets registered meanwhile — a predecessor's,
// handed to the successor, whose frames wait in their RX rings — are used for as long:
// after d the frames go to the kernel even if a socket is still there.
func (c *Classifier) Hold(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("hold: %w", ErrClosed)
	}
	var until uint64
	if d > 0 {
		var ts unix.Timespec
		// bpf_ktime_get_ns is CLOCK_MONOTONIC.
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return fmt.Errorf("hold: read the monotonic clock: %w", err)
		}
		until = uint64(ts.Nano()) + uint64(d)
	}
	// hold[1] first: the sockets are used until the same time (see xlvs.c).
	for _, k := range []uint32{1, 0} {
		if err := c.hold.Update(k, until, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("hold: %w", err)
		}
	}
	return nil
}

// LinkFD returns the file descriptor of p's bpf_link, for handing it to a successor
// (who gets a duplicate; p keeps its own), or -1 when p is not attached.
func (p *Port) LinkFD() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.link == nil {
		return -1
	}
	if f, ok := p.link.(interface{ FD() int }); ok {
		return f.FD()
	}
	return -1
}

// Adopt loads a program instance (as Load does) for the interface ifindex, whose XDP
// program was attached by a predecessor through the bpf_link fd. The Port holds a
// duplicate of fd (Close closes it); fd stays the caller's, to close or to detach
// (DetachLink) when the takeover fails later. The predecessor's program keeps running
// until Activate puts this instance in its place; register sockets and fill the maps
// before. mode is what the predecessor attached with (the kernel's link information
// does not say), reported by Mode.
func (c *Classifier) Adopt(ifindex, fd int, mode Mode) (*Port, error) {
	l, err := adoptLink(ifindex, fd)
	if err != nil {
		return nil, err
	}
	p, err := c.Load()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("adopt xdp link of ifindex %d: %w", ifindex, err)
	}
	p.link, p.ifindex, p.mode, p.pending = l, ifindex, mode, true
	return p, nil
}

// AdoptLoaded is Adopt with a program instance p loaded beforehand (Load: a successor
// loads its programs while it opens its sockets). p must be c's, not attached or
// adopted yet; on error p is left as it was, for the caller to close.
func (c *Classifier) AdoptLoaded(p *Port, ifindex, fd int, mode Mode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.link != nil {
		return fmt.Errorf("adopt xdp link of ifindex %d: the program instance is closed or already attached", ifindex)
	}
	l, err := adoptLink(ifindex, fd)
	if err != nil {
		return err
	}
	p.link, p.ifindex, p.mode, p.pending = l, ifindex, mode, true
	return nil
}

// adoptLink opens a duplicate of the bpf_link fd and checks that it is an XDP link on
// ifindex.
func adoptLink(ifindex, fd int) (link.Link, error) {
	if fd < 0 {
		return nil, fmt.Errorf("adopt xdp link of ifindex %d: fd %d is not a file descriptor", ifindex, fd)
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("adopt xdp link of ifindex %d: fd %d: %w", ifindex, fd, err)
	}
	l, err := link.NewFromFD(dup)
	if err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("adopt xdp link of ifindex %d: fd %d is not a bpf link: %w", ifindex, fd, err)
	}
	if err := checkXDPLink(l, ifindex); err != nil {
		l.Close()
		return nil, fmt.Errorf("adopt xdp link: fd %d: %w", fd, err)
	}
	return l, nil
}

func checkXDPLink(l link.Link, ifindex int) error {
	info, err := l.Info()
	if err != nil {
		return fmt.Errorf("read link information: %w", err)
	}
	if info.Type != link.XDPType {
		return fmt.Errorf("the link is of type %v, want an XDP link", info.Type)
	}
	x := info.XDP()
	if x == nil {
		return errors.New("the kernel gave no XDP information for the link")
	}
	if int(x.Ifindex) != ifindex {
		if x.Ifindex == 0 {
			return fmt.Errorf("the link is detached (its interface is gone), want one on ifindex %d", ifindex)
		}
		return fmt.Errorf("the link is attached to ifindex %d, want ifindex %d", x.Ifindex, ifindex)
	}
	return nil
}

// Activate puts an adopted Port's program on its link in place of the predecessor's, in
// one step (BPF_LINK_UPDATE). It does nothing for a Port attached by Attach, or one
// already activated.
func (p *Port) Activate() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("activate: %w", ErrClosed)
	}
	if !p.pending {
		return nil
	}
	if err := p.link.Update(p.objs.XlvsClassify); err != nil {
		return fmt.Errorf("activate xdp program on ifindex %d: replace the predecessor's program: %w", p.ifindex, err)
	}
	p.pending = false
	return nil
}

// DetachLink detaches the XDP program of the bpf_link fd from its interface at once,
// however many other processes hold the link (BPF_LINK_DETACH), and closes fd: for a
// predecessor's link that is not taken over, so that a fresh Attach can take the
// interface.
func DetachLink(fd int) error {
	l, err := link.NewFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("detach link fd %d: not a bpf link: %w", fd, err)
	}
	defer l.Close()
	if err := l.Detach(); err != nil {
		return fmt.Errorf("detach link fd %d: %w", fd, err)
	}
	return nil
}
