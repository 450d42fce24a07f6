package xsk

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// needRoot skips without root, but fails when CI is set: CI must run privileged tests.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test: CI is set but not running as root")
		}
		t.Skip("privileged test: needs root")
	}
}

var nsSeq atomic.Int32

// inNetns runs f on a locked thread inside a fresh, unnamed network namespace that holds
// a veth pair xa <-> xb, both up. The namespace goes away with its last reference.
func inNetns(t *testing.T, f func(a, b netlink.Link)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		n := nsSeq.Add(1)
		la := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("xa%d", n)}, PeerName: fmt.Sprintf("xb%d", n)}
		if err := netlink.LinkAdd(la); err != nil {
			t.Error(err)
			return
		}
		a, _ := netlink.LinkByName(la.Name)
		b, _ := netlink.LinkByName(la.PeerName)
		netlink.LinkSetUp(a)
		netlink.LinkSetUp(b)
		f(a, b)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("netns test timed out")
	}
}

func rxPackets(name string) uint64 {
	l, err := netlink.LinkByName(name)
	if err != nil || l.Attrs().Statistics == nil {
		return 0
	}
	return l.Attrs().Statistics.RxPackets
}

// TestRealSocketTransmit sends frames from a real AF_XDP socket (copy mode on veth) and
// counts them on the peer; a burst larger than one sendto's 32 descriptors must all go
// out (the kick loop), the frames must come back through completion (the own free list),
// and a transmit on a downed link must return ErrLinkDown instead of panicking.
func TestRealSocketTransmit(t *testing.T) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) { testRealSocketTransmit(t, o.open) })
	}
}

// openers are the two ways to open a socket: asavie/xdp's (Config.Private) and this package's
// own, whose UMEM can be handed over (OpenShared). The tests of a real socket run on both.
var openers = []struct {
	name string
	open func(ifindex, queue int, cfg Config) (Socket, error)
}{{"asavie", openAsavie}, {"shared", OpenShared}}

func testRealSocketTransmit(t *testing.T, open func(int, int, Config) (Socket, error)) {
	needRoot(t)
	inNetns(t, func(a, b netlink.Link) {
		cfg := Config{Frames: 512, FrameSize: 2048, FillRing: 128, CompRing: 256, RxRing: 128, TxRing: 256, Copy: true}
		s, err := open(a.Attrs().Index, 0, cfg)
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		frame := make([]byte, 60)
		copy(frame[0:6], b.Attrs().HardwareAddr)
		copy(frame[6:12], a.Attrs().HardwareAddr)
		frame[12], frame[13] = 0x88, 0xb5 // local experimental ethertype: the peer's stack ignores it
		before := rxPackets(b.Attrs().Name)
		const burst = 200
		descs := make([]Desc, burst)
		for i := range descs {
			addr, ok := s.Alloc()
			if !ok {
				t.Error("alloc failed")
				return
			}
			copy(s.Umem()[addr+XDPPacketHeadroom:], frame)
			descs[i] = Desc{Addr: addr + XDPPacketHeadroom, Len: uint32(len(frame))}
		}
		freeBefore := s.Stats().FreeFrames
		n, err := s.Transmit(descs)
		if err != nil || n != burst {
			t.Errorf("Transmit = %d, %v; want %d, nil", n, err, burst)
			return
		}
		deadline := time.Now().Add(5 * time.Second)
		for s.Stats().TxCompleted < burst && time.Now().Before(deadline) {
			s.Complete()
			time.Sleep(time.Millisecond)
		}
		if completed := s.Stats().TxCompleted; completed != burst {
			t.Errorf("completed %d of %d", completed, burst)
		}
		if got := s.Stats().FreeFrames; got != freeBefore+burst {
			t.Errorf("free frames %d after completion, want %d", got, freeBefore+burst)
		}
		// A completed frame has left the socket; the peer's counter may lag it a little.
		var got uint64
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if got = rxPackets(b.Attrs().Name) - before; got >= burst || time.Now().After(deadline) {
				break
			}
		}
		if got < burst {
			t.Errorf("peer received %d frames within 5 s, want %d", got, burst)
		}
		if k := s.Stats().TxKicks; k < burst/32 {
			t.Errorf("%d sendto kicks for %d frames: copy mode needs one per 32", k, burst)
		}

		// Link down: the kernel answers ENETDOWN, which asavie turns into a panic.
		netlink.LinkSetDown(a)
		addr, _ := s.Alloc()
		copy(s.Umem()[addr+XDPPacketHeadroom:], frame)
		_, err = s.Transmit([]Desc{{Addr: addr + XDPPacketHeadroom, Len: uint32(len(frame))}})
		if !errors.Is(err, ErrLinkDown) {
			t.Errorf("transmit on a downed link: err = %v, want ErrLinkDown", err)
		}
		if s.Stats().TxErrors == 0 {
			t.Error("link-down transmit not counted")
		}
	})
}

func TestOpenErrors(t *testing.T) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) { testOpenErrors(t, o.open) })
	}
}

func testOpenErrors(t *testing.T, open func(int, int, Config) (Socket, error)) {
	needRoot(t)
	if _, err := open(1, 0, Config{FrameSize: 100}); err == nil {
		t.Fatal("invalid config accepted")
	}
	inNetns(t, func(a, _ netlink.Link) {
		cfg := Config{Frames: 256, FrameSize: 2048, FillRing: 64, CompRing: 64, RxRing: 64, TxRing: 64, ZeroCopy: true}
		_, err := open(a.Attrs().Index, 0, cfg)
		if err == nil {
			t.Error("zero-copy bind on veth succeeded; veth supports copy mode only")
		}
	})
}

// TestCloseReleasesQueue: a closed socket's queue can be bound again in the same
// process (asavie's Close alone leaves the ring mappings, which keep the socket and its
// queue until the process exits). The kernel frees the queue from a work queue after the
// close: the reopen retries EBUSY for up to two seconds. Before Close, a second bind of
// the queue is refused with EBUSY.
func TestCloseReleasesQueue(t *testing.T) {
	for _, o := range openers {
		t.Run(o.name, func(t *testing.T) { testCloseReleasesQueue(t, o.open) })
	}
}

func testCloseReleasesQueue(t *testing.T, open func(int, int, Config) (Socket, error)) {
	needRoot(t)
	inNetns(t, func(a, b netlink.Link) {
		cfg := Config{Frames: 512, FrameSize: 2048, FillRing: 128, CompRing: 256, RxRing: 128, TxRing: 256, Copy: true}
		ifindex := a.Attrs().Index
		s, err := open(ifindex, 0, cfg)
		if err != nil {
			t.Error(err)
			return
		}
		if s2, err := open(ifindex, 0, cfg); err == nil {
			s2.Close()
			t.Error("a second socket bound a queue that has one, want EBUSY")
		} else if !containsErrno(err, unix.EBUSY) {
			t.Errorf("second bind: %v, want EBUSY", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		start := time.Now()
		for tries := 1; ; tries++ {
			s2, err := open(ifindex, 0, cfg)
			if err == nil {
				t.Logf("queue bound again %v after Close (%d tries)", time.Since(start), tries)
				s2.Close()
				return
			}
			if !containsErrno(err, unix.EBUSY) || time.Since(start) > 2*time.Second {
				t.Errorf("bind the queue again after Close: %v (after %v, %d tries)", err, time.Since(start), tries)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
}
