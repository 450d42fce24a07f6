package vrrpfifo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Event is one line of the FIFO.
type Event struct {
	Group    bool   // a vrrp_sync_group's line (GROUP), else an instance's (INSTANCE)
	Name     string // the instance or group
	State    string // MASTER, BACKUP, FAULT, STOP, or an event name
	Priority int    // effective priority (0 for a group)
}

// States keepalived reports (its events are reported too, under their own names).
const (
	Master = "MASTER"
	Backup = "BACKUP"
	Fault  = "FAULT"
	Stop   = "STOP"
)

// ErrNotVRRP is returned (wrapped) by ParseLine for a line that is not a VRRP line.
var ErrNotVRRP = errors.New("not a VRRP notification")

// ParseLine reads one line (without its newline) as keepalived writes it.
func ParseLine(line string) (Event, error) {
	var ev Event
	typ, rest, ok := strings.Cut(line, " ")
	switch {
	case !ok:
		return ev, fmt.Errorf("%w: %q: want TYPE \"NAME\" STATE PRIORITY", ErrNotVRRP, line)
	case typ == "GROUP":
		ev.Group = true
	case typ != "INSTANCE":
		return ev, fmt.Errorf("%w: %q: type %q, want INSTANCE or GROUP", ErrNotVRRP, line, typ)
	}
	// The name is quoted and may hold spaces; the state and priority follow the closing
	// quote.
	if !strings.HasPrefix(rest, `"`) {
		return ev, fmt.Errorf("%w: %q: the name is not in double quotes", ErrNotVRRP, line)
	}
	end := strings.LastIndexByte(rest, '"')
	if end == 0 {
		return ev, fmt.Errorf("%w: %q: the name's closing quote is missing", ErrNotVRRP, line)
	}
	ev.Name = rest[1:end]
	f := strings.Fields(rest[end+1:])
	if len(f) != 2 || ev.Name == "" {
		return ev, fmt.Errorf("%w: %q: want TYPE \"NAME\" STATE PRIORITY", ErrNotVRRP, line)
	}
	ev.State = f[0]
	p, err := strconv.Atoi(f[1])
	if err != nil || p < 0 || p > 255 {
		return ev, fmt.Errorf("%w: %q: priority %q, want 0..255", ErrNotVRRP, line, f[1])
	}
	ev.Priority = p
	return ev, nil
}

// CheckEvery is how often a Watcher checks that its FIFO is still the one at its path.
const CheckEvery = time.Second

// maxLine bounds a line; longer ones (no keepalived line is) are dropped.
const maxLine = 4096

// Watcher reads one FIFO.
type Watcher struct {
	path string
	f    func(Event)
	log  *slog.Logger

	mu   sync.Mutex
	file *os.File // nil once closed
	quit chan struct{}
	done chan struct{}
}

// Watch opens the FIFO at path — creating it (mode 0600, and its directory) when nothing
// is there — and calls f with each VRRP line keepalived writes, until Close. A path that
// exists and is not a FIFO is an error, as is one that cannot be created or opened.
func Watch(path string, log *slog.Logger, f func(Event)) (*Watcher, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &Watcher{path: path, f: f, log: log.With("component", "vrrp-fifo", "path", path), quit: make(chan struct{}), done: make(chan struct{})}
	file, err := open(path)
	if err != nil {
		return nil, err
	}
	w.file = file
	go w.run()
	return w, nil
}

// open creates the FIFO when the path is free and opens it read-write (so that opening
// never waits for a writer, and keepalived's going away is no end of file).
func open(path string) (*os.File, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("notify FIFO %s: %w", path, err)
		}
		if err := unix.Mkfifo(path, 0o600); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("notify FIFO %s: create it: %w", path, err)
		}
	case err != nil:
		return nil, fmt.Errorf("notify FIFO %s: %w", path, err)
	case st.Mode()&os.ModeNamedPipe == 0:
		return nil, fmt.Errorf("notify FIFO %s: exists and is not a FIFO (%v): give keepalived's vrrp_notify_fifo a path of its own", path, st.Mode().Type())
	}
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("notify FIFO %s: open: %w", path, err)
	}
	return file, nil
}

// same tells whether the FIFO at the path is still the open one.
func same(file *os.File, path string) bool {
	a, err1 := file.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

func (w *Watcher) current() *os.File {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.file
}

func (w *Watcher) run() {
	defer close(w.done)
	buf := make([]byte, 4096)
	var pending []byte
	for {
		file := w.current()
		if file == nil {
			return
		}
		_ = file.SetReadDeadline(time.Now().Add(CheckEvery))
		n, err := file.Read(buf)
		if n > 0 {
			pending = w.lines(append(pending, buf[:n]...))
		}
		if err == nil {
			continue
		}
		select {
		case <-w.quit:
			return
		default:
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			w.log.Warn("read the notify FIFO", "err", err)
			time.Sleep(100 * time.Millisecond)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || !same(file, w.path) {
			w.reopen(file)
			pending = pending[:0]
		}
	}
}

// lines hands every complete line of b to the callback and returns the rest.
func (w *Watcher) lines(b []byte) []byte {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(b) > maxLine {
				w.log.Warn("notify FIFO: line too long, dropped", "bytes", len(b))
				return b[:0]
			}
			return b
		}
		line := string(b[:i])
		b = b[i+1:]
		ev, err := ParseLine(line)
		if err != nil {
			w.log.Debug("notify FIFO: line skipped", "err", err)
			continue
		}
		w.f(ev)
	}
}

// reopen replaces old by whatever FIFO is at the path now (created when missing); on
// failure it keeps old and tries again at the next check.
func (w *Watcher) reopen(old *os.File) {
	file, err := open(w.path)
	if err != nil {
		w.log.Warn("reopen the notify FIFO", "err", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file == nil { // closed meanwhile
		file.Close()
		return
	}
	w.log.Info("notify FIFO replaced (keepalived restarted?): reopened")
	old.Close()
	w.file = file
}

// Close stops the watcher and closes the FIFO (which stays in place).
func (w *Watcher) Close() error {
	close(w.quit)
	w.mu.Lock()
	file := w.file
	w.file = nil
	w.mu.Unlock()
	err := file.Close()
	<-w.done
	return err
}
