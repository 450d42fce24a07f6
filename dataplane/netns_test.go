package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"xlvs/conntrack"
)

// needRoot skips without root, but fails when CI is set: CI must run privileged tests.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test: CI is set but not running as root")
		}
		t.Skip("privileged test: needs root")
	}
}

var nsSeq atomic.Int32

// inNetns runs f on a locked thread inside a fresh, unnamed network namespace holding a
// veth pair (rxQueues RX queues on each end; 0 = the kernel's default, one), both up.
// The thread is never unlocked, so it dies with the goroutine and the namespace with it.
func inNetns(t *testing.T, rxQueues int, f func(a netlink.Link)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		n := nsSeq.Add(1)
		la := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("dpa%d", n), NumRxQueues: rxQueues, NumTxQueues: rxQueues},
			PeerName: fmt.Sprintf("dpb%d", n)}
		if err := netlink.LinkAdd(la); err != nil {
			t.Error(err)
			return
		}
		a, err := netlink.LinkByName(la.Name)
		if err != nil {
			t.Error(err)
			return
		}
		b, err := netlink.LinkByName(la.PeerName)
		if err != nil {
			t.Error(err)
			return
		}
		if err := netlink.LinkSetUp(a); err != nil {
			t.Error(err)
			return
		}
		if err := netlink.LinkSetUp(b); err != nil {
			t.Error(err)
			return
		}
		f(a)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("netns test timed out")
	}
}

// TestNewRefusesMissingQueues: asking for more queues than the interface has is refused
// before anything is attached, with a typed error giving both counts (the kernel's own
// answer, EINVAL from bind(2), says neither).
func TestNewRefusesMissingQueues(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		queues, want, have int
		msg                string
	}{
		{0, 9, 1, "open 9 queues on %s: the interface has 1 RX queue"},
		{4, 5, 4, "open 5 queues on %s: the interface has 4 RX queues"},
	} {
		inNetns(t, tc.queues, func(a netlink.Link) {
			name := a.Attrs().Name
			d, err := New(Config{Interfaces: []string{name}, Queues: tc.want, Conntrack: conntrack.Config{MaxEntries: 4096}})
			if d != nil {
				d.Close()
			}
			var qe *QueueCountError
			if !errors.As(err, &qe) {
				t.Errorf("New with %d queues on a %d-queue veth: err = %v, want a *QueueCountError", tc.want, tc.have, err)
				return
			}
			if *qe != (QueueCountError{Interface: name, Want: tc.want, Have: tc.have}) {
				t.Errorf("error %+v, want interface %s, want %d, have %d", *qe, name, tc.want, tc.have)
			}
			if msg := fmt.Sprintf(tc.msg, name); err.Error() != msg {
				t.Errorf("message %q, want %q", err, msg)
			}
			if l, err := netlink.LinkByName(name); err != nil || l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
				t.Errorf("after the refusal: link %v, err %v; want no XDP program attached", l, err)
			}
		})
	}
}

// TestNewRefusesUnequalQueues: with every RX queue asked for (Queues 0), interfaces with
// different queue counts are refused before anything is attached: worker q sends only on
// queue q of each interface, so the second worker would have no socket on the one-queue
// interface and drop everything it should forward there.
func TestNewRefusesUnequalQueues(t *testing.T) {
	needRoot(t)
	inNetns(t, 2, func(a netlink.Link) {
		idx, err := netlink.VethPeerIndex(&netlink.Veth{LinkAttrs: *a.Attrs()})
		if err != nil {
			t.Error(err)
			return
		}
		b, err := netlink.LinkByIndex(idx)
		if err != nil {
			t.Error(err)
			return
		}
		// One RX and TX queue on b, two on a.
		if out, err := exec.Command("ethtool", "-L", b.Attrs().Name, "rx", "1", "tx", "1").CombinedOutput(); err != nil {
			t.Errorf("ethtool -L %s rx 1 tx 1: %v: %s", b.Attrs().Name, err, out)
			return
		}
		names := []string{a.Attrs().Name, b.Attrs().Name}
		d, err := New(Config{Interfaces: names, Conntrack: conntrack.Config{MaxEntries: 4096}})
		if d != nil {
			d.Close()
		}
		var me *QueueMismatchError
		if !errors.As(err, &me) || !slices.Equal(me.Interfaces, names) || !slices.Equal(me.Queues, []int{2, 1}) {
			t.Errorf("New over a 2-queue and a 1-queue veth: err = %v, want a *QueueMismatchError naming both and 2, 1", err)
		}
		for _, n := range names {
			if l, err := netlink.LinkByName(n); err != nil || l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
				t.Errorf("after the refusal: link %v, err %v; want no XDP program attached", l, err)
			}
		}
	})
}

// syncBuffer is a log destination safe for the watcher's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWatcherStopsQuietly: ending the route watcher's context ends its subscriptions
// and goroutines without a warning or a counted error. The netlink library closes each
// subscription's socket when the context ends and reports the read it was blocked in
// (EAGAIN) through the error callback; xlvsd logged that as four warnings on every stop.
func TestWatcherStopsQuietly(t *testing.T) {
	needRoot(t)
	inNetns(t, 0, func(netlink.Link) {
		var logs syncBuffer
		w := newFIBWatcher(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		ctx, cancel := context.WithCancel(context.Background())
		if err := w.start(ctx); err != nil {
			cancel()
			t.Error(err)
			return
		}
		time.Sleep(50 * time.Millisecond) // the subscriptions block in their reads
		cancel()
		stopped := make(chan struct{})
		go func() { w.wg.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("watcher goroutines still running 10 s after the context ended")
			return
		}
		out := logs.String()
		if strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") || w.errors.Load() != 0 {
			t.Errorf("stop logged a warning or counted %d errors:\n%s", w.errors.Load(), out)
		}
		if !strings.Contains(out, "netlink subscription closed") {
			t.Errorf("no subscription reported its end (the path under test did not run):\n%s", out)
		}
	})
}
