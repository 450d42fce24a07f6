package vrrpfifo

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestParseLine: keepalived's lines (vrrp_notify.c: `%s "%s" %s %d\n`) and what is not
// one of them.
func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Event
	}{
		{`INSTANCE "VI_1" MASTER 150`, Event{Name: "VI_1", State: Master, Priority: 150}},
		{`INSTANCE "VI_1" BACKUP 100`, Event{Name: "VI_1", State: Backup, Priority: 100}},
		{`INSTANCE "with space" FAULT 0`, Event{Name: "with space", State: Fault}},
		{`GROUP "VG_1" STOP 0`, Event{Group: true, Name: "VG_1", State: Stop}},
		{`INSTANCE "VI_1" MASTER_RX_LOWER_PRI 255`, Event{Name: "VI_1", State: "MASTER_RX_LOWER_PRI", Priority: 255}},
	} {
		got, err := ParseLine(tc.line)
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.line, got, err, tc.want)
		}
	}
	for _, line := range []string{
		``, `INSTANCE`, `VS "198.18.0.1:80" UP`, `RS "[198.18.2.11]:80" "198.18.0.1:80" DOWN`,
		`INSTANCE VI_1 MASTER 100`, `INSTANCE "VI_1 MASTER 100`, `INSTANCE "" MASTER 100`,
		`INSTANCE "VI_1" MASTER`, `INSTANCE "VI_1" MASTER 256`, `INSTANCE "VI_1" MASTER -1`, `INSTANCE "VI_1" MASTER 1 2`,
	} {
		if ev, err := ParseLine(line); !errors.Is(err, ErrNotVRRP) {
			t.Errorf("%q: %+v %v, want ErrNotVRRP", line, ev, err)
		}
	}
}

// collector records the events a Watcher delivers.
type collector struct {
	mu  sync.Mutex
	evs []Event
}

func (c *collector) add(ev Event) {
	c.mu.Lock()
	c.evs = append(c.evs, ev)
	c.mu.Unlock()
}

func (c *collector) wait(t *testing.T, n int, within time.Duration) []Event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		got := append([]Event(nil), c.evs...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events within %v, want %d: %+v", len(got), within, n, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writer is keepalived's end: the FIFO opened read-write, as keepalived opens it.
func writer(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func write(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// TestWatch: Watch creates a missing FIFO (mode 0600, and its directory) and delivers the
// VRRP lines written to it in order, a line split across writes whole, other lines not;
// lines written before it watched (keepalived holds the FIFO open) are delivered too; a
// FIFO keepalived replaced, or removed, is reopened (created again) within CheckEvery;
// Close stops it and leaves the FIFO; a path that is not a FIFO is refused.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "vrrp.fifo")
	var c collector
	w, err := Watch(path, nil, c.add)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode()&os.ModeNamedPipe == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("created %v %v, want a FIFO of mode 0600", st.Mode(), err)
	}
	ka := writer(t, path)
	write(t, ka, "INSTANCE \"VI_1\" BACKUP 150\nVS \"198.18.0.1:80\" UP\nINSTANCE \"VI_1\" MAS")
	time.Sleep(20 * time.Millisecond)
	write(t, ka, "TER 150\nGROUP \"VG\" MASTER 0\n")
	want := []Event{{Name: "VI_1", State: Backup, Priority: 150}, {Name: "VI_1", State: Master, Priority: 150}, {Group: true, Name: "VG", State: Master}}
	if got := c.wait(t, 3, 2*time.Second); !reflect.DeepEqual(got, want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}

	// keepalived restarts: it removed its FIFO and made a new one, with a line in it.
	ka.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	ka2 := writer(t, path)
	write(t, ka2, "INSTANCE \"VI_1\" BACKUP 150\n")
	got := c.wait(t, 4, 3*CheckEvery)
	if got[3] != (Event{Name: "VI_1", State: Backup, Priority: 150}) {
		t.Fatalf("after the FIFO was replaced: %+v", got[3])
	}
	// Removed and not replaced: created again, and keepalived's next start finds it.
	ka2.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * CheckEvery)
	for {
		if st, err := os.Stat(path); err == nil && st.Mode()&os.ModeNamedPipe != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the removed FIFO was not created again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let it open the new one
	write(t, writer(t, path), "INSTANCE \"VI_1\" FAULT 150\n")
	if got := c.wait(t, 5, 3*CheckEvery); got[4].State != Fault {
		t.Fatalf("after the FIFO was created again: %+v", got[4])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Close removed the FIFO: %v", err)
	}

	// Lines keepalived wrote before anyone watched are there for the next watcher.
	ka3 := writer(t, path)
	write(t, ka3, "INSTANCE \"VI_1\" MASTER 150\n")
	var c2 collector
	w2, err := Watch(path, nil, c2.add)
	if err != nil {
		t.Fatal(err)
	}
	if got := c2.wait(t, 1, 2*time.Second); got[0].State != Master {
		t.Fatalf("queued line: %+v", got)
	}
	w2.Close()

	// Not a FIFO.
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Watch(plain, nil, func(Event) {}); err == nil {
		t.Fatal("watching a regular file")
	}
}
