package dataplane

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestWatchResubscribes: a netlink subscription the library ends on its own (it closes
// the channel at its first receive error, ENOBUFS when the kernel dropped updates) is
// renewed at once, its socket released, and the FIB marked for a reload; a failing
// renewal is retried; the end of ctx ends it all.
func TestWatchResubscribes(t *testing.T) {
	w := newFIBWatcher(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type call struct {
		ch   chan int
		done <-chan struct{}
	}
	calls := make(chan call, 8)
	fail := 0 // renewals to refuse (set before the close that asks for them)
	sub := func(ch chan int, done <-chan struct{}) error {
		if fail > 0 {
			fail--
			return errors.New("refused for the test")
		}
		calls <- call{ch, done}
		return nil
	}
	if err := watch(w, ctx, "test", 4, sub); err != nil {
		t.Fatal(err)
	}
	first := <-calls
	first.ch <- 1 // an update: the FIB is marked dirty
	waitDirty(t, w)

	fail = 2
	close(first.ch) // the library gives up after a receive error
	var second call
	select {
	case second = <-calls:
	case <-time.After(5 * time.Second):
		t.Fatal("the subscription was not renewed within 5 s")
	}
	select {
	case <-first.done:
	default:
		t.Error("the ended subscription's done channel is still open: its socket is not released")
	}
	waitDirty(t, w) // what was missed is read from the tables
	if n := w.resubscribed.Load(); n != 3 {
		t.Errorf("resubscribed %d times, want 3 (two refused, one taken)", n)
	}
	if n := w.errors.Load(); n != 2 {
		t.Errorf("%d errors counted, want the 2 refused renewals", n)
	}
	second.ch <- 2 // the renewed subscription is read
	waitDirty(t, w)

	cancel()
	close(second.ch) // as the library does once done is closed
	stopped := make(chan struct{})
	go func() { w.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not end with ctx")
	}
	if len(calls) != 0 {
		t.Error("subscribed again after ctx ended")
	}
}

func waitDirty(t *testing.T, w *fibWatcher) {
	t.Helper()
	select {
	case <-w.dirty:
	case <-time.After(5 * time.Second):
		t.Fatal("the FIB was not marked for a reload")
	}
}
