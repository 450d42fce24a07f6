package testbed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named namespaces live, as with `ip netns add`.
const NetnsDir = "/run/netns"

// maxPrefix bounds a prefix so that a namespace name stays a short, readable file name.
const maxPrefix = 40

var (
	// ErrClosed is returned (wrapped) by methods of an NS after Close.
	ErrClosed = errors.New("namespace closed")
	// ErrBadPrefix is returned (wrapped) by NewNS for an empty or unusable prefix.
	ErrBadPrefix = errors.New("bad namespace prefix")
	// ErrGoexit is returned by Do when f ended its goroutine with runtime.Goexit (for
	// example t.FailNow called inside f).
	ErrGoexit = errors.New("function called runtime.Goexit")
)

// nsSeq numbers the namespaces of this process; with the pid it makes names unique.
var nsSeq atomic.Uint64

// netnsDirMu serialises the preparation of NetnsDir within the process.
var netnsDirMu sync.Mutex

// NS is a named network namespace made by this package (name "xlvs-<prefix>-<pid>-<n>").
// Its methods are safe for concurrent use.
type NS struct {
	name string
	path string

	mu     sync.RWMutex // guards closed, fd and nl against Close
	closed bool
	fd     netns.NsHandle
	nl     *netlink.Handle // a rtnetlink socket opened inside the namespace
	nlMu   sync.Mutex      // serialises requests on nl
}

// NewNS creates a named network namespace "xlvs-<prefix>-<pid>-<n>", mounted under
// NetnsDir as `ip netns add` does, with its loopback up.
func NewNS(prefix string) (*NS, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	if err := prepareNetnsDir(); err != nil {
		return nil, err
	}
	var (
		n   *NS
		err error
	)
	// A leftover file of an earlier process with the same pid is the only way a name can
	// be taken: skip such names.
	for range 64 {
		name := fmt.Sprintf("xlvs-%s-%d-%d", prefix, os.Getpid(), nsSeq.Add(1))
		n, err = createNamed(name)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if err := n.linkUp("lo"); err != nil {
		return nil, errors.Join(fmt.Errorf("create namespace %s: %w", n.name, err), n.Close())
	}
	return n, nil
}

func checkPrefix(prefix string) error {
	if prefix == "" || len(prefix) > maxPrefix {
		return fmt.Errorf("check prefix %q: %w: want 1 to %d characters", prefix, ErrBadPrefix, maxPrefix)
	}
	for _, c := range prefix {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("check prefix %q: %w: want only letters, digits, '-', '_' and '.'", prefix, ErrBadPrefix)
		}
	}
	return nil
}

// prepareNetnsDir makes NetnsDir exist and be a shared mount point, as `ip netns add` does,
// so that namespace mounts made here are seen by `ip netns exec` in other mount
// namespaces.
func prepareNetnsDir() error {
	netnsDirMu.Lock()
	defer netnsDirMu.Unlock()
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NetnsDir, err)
	}
	err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself, then share it.
		if err := unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s onto itself: %w", NetnsDir, err)
		}
		err = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", NetnsDir, err)
	}
	return nil
}

// createNamed makes the namespace and its mount. It returns an error wrapping
// fs.ErrExist if the name is taken.
func createNamed(name string) (*NS, error) {
	path := filepath.Join(NetnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return nil, errors.Join(fmt.Errorf("create namespace %s: %w", name, err), os.Remove(path))
	}
	n := &NS{name: name, path: path, fd: -1}

	// Unshare on a throw-away thread: the goroutine exits still locked, so the runtime
	// discards the thread and no other goroutine ever runs in the new namespace by accident.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread() // the thread is unchanged
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind mount namespace on %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		return nil, errors.Join(fmt.Errorf("create namespace %s: %w", name, err), os.Remove(path))
	}
	fd, err := netns.GetFromPath(path)
	if err != nil {
		err = fmt.Errorf("open namespace %s: %w", name, err)
		return nil, errors.Join(err, n.Close())
	}
	n.fd = fd
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		err = fmt.Errorf("open netlink socket in namespace %s: %w", name, err)
		return nil, errors.Join(err, n.Close())
	}
	n.nl = h
	return n, nil
}

// Name is the namespace's name, as `ip netns` lists it.
func (n *NS) Name() string { return n.name }

// Path is the namespace's bind mount, /run/netns/NAME.
func (n *NS) Path() string { return n.path }

func (n *NS) String() string { return n.name }

// Close deletes the namespace as `ip netns delete` does (unmount, remove the file). It kills
// no process and closes no socket made in the namespace: those keep it alive until they
// end. Close is idempotent.
func (n *NS) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	var errs []error
	if n.fd >= 0 {
		if err := n.fd.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close namespace %s: %w", n.name, err))
		}
	}
	if err := unix.Unmount(n.path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount namespace %s: %w", n.path, err))
	}
	if err := os.Remove(n.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove namespace %s: %w", n.path, err))
	}
	return errors.Join(errs...)
}

// enter switches the calling thread into the namespace.
func (n *NS) enter() error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return fmt.Errorf("enter namespace %s: %w", n.name, ErrClosed)
	}
	if err := netns.Set(n.fd); err != nil {
		return fmt.Errorf("enter namespace %s: %w", n.name, err)
	}
	return nil
}

// Do runs f on a fresh goroutine locked to an OS thread switched into the namespace, and
// returns f's error. Afterwards the thread goes back to its namespace and is unlocked; if
// that fails, the goroutine ends still locked and the Go runtime discards the thread. The
// caller's goroutine is never switched. A panic in f is re-raised in the caller; if f calls
// runtime.Goexit, Do returns ErrGoexit.
func (n *NS) Do(f func() error) error {
	type result struct {
		err      error
		finished bool
		panicVal any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("get thread's namespace: %w", err), finished: true}
			return
		}
		defer orig.Close()
		if err := n.enter(); err != nil {
			runtime.UnlockOSThread() // a failed setns leaves the thread where it was
			done <- result{err: err, finished: true}
			return
		}
		var res result
		defer func() {
			if !res.finished {
				res.panicVal = recover() // nil after runtime.Goexit
			}
			if err := netns.Set(orig); err != nil {
				res.err = errors.Join(res.err, fmt.Errorf("restore thread's namespace: %w", err))
			} else {
				runtime.UnlockOSThread()
			}
			done <- res
		}()
		res.err = f()
		res.finished = true
	}()
	res := <-done
	switch {
	case res.finished:
		return res.err
	case res.panicVal != nil:
		panic(res.panicVal)
	default:
		return errors.Join(fmt.Errorf("run in namespace %s: %w", n.name, ErrGoexit), res.err)
	}
}

// Listen is net.Listen with the socket created inside the namespace.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s in %s: %w", network, addr, n.name, err)
	}
	return ln, nil
}

// ListenPacket is net.ListenPacket with the socket created inside the namespace.
func (n *NS) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := n.Do(func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s in %s: %w", network, addr, n.name, err)
	}
	return pc, nil
}

// DialContext dials from inside the namespace; it has the signature of
// http.Transport.DialContext. Addresses are tried one after the other on the thread that
// is inside the namespace (no parallel "happy eyeballs" dialing on other threads).
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		d := net.Dialer{FallbackDelay: -1}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from %s: %w", network, addr, n.name, err)
	}
	return c, nil
}

// withNetlink runs fn with the namespace's rtnetlink handle, one request at a time.
func (n *NS) withNetlink(fn func(h *netlink.Handle) error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return fmt.Errorf("use namespace %s: %w", n.name, ErrClosed)
	}
	n.nlMu.Lock()
	defer n.nlMu.Unlock()
	return fn(n.nl)
}

func (n *NS) linkUp(ifname string) error {
	return n.withNetlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find link %s in %s: %w", ifname, n.name, err)
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set link %s up in %s: %w", ifname, n.name, err)
		}
		return nil
	})
}

// Ifindex is the index of interface ifname inside the namespace.
func (n *NS) Ifindex(ifname string) (int, error) {
	var idx int
	err := n.withNetlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find link %s in %s: %w", ifname, n.name, err)
		}
		idx = l.Attrs().Index
		return nil
	})
	return idx, err
}

// LinkStats reads an interface's packet and drop counters.
func (n *NS) LinkStats(ifname string) (rxPackets, txPackets, rxDropped, txDropped uint64, err error) {
	err = n.withNetlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find link %s in %s: %w", ifname, n.name, err)
		}
		s := l.Attrs().Statistics
		if s == nil {
			return fmt.Errorf("read statistics of link %s in %s: kernel sent none", ifname, n.name)
		}
		rxPackets, txPackets, rxDropped, txDropped = s.RxPackets, s.TxPackets, s.RxDropped, s.TxDropped
		return nil
	})
	return rxPackets, txPackets, rxDropped, txDropped, err
}

// sysctlPath maps "net.ipv4.ip_forward" to /proc/sys/net/ipv4/ip_forward. A key with a
// '/' is taken as a path below /proc/sys as is (needed for interface names with dots).
func sysctlPath(key string) (string, error) {
	if key == "" || strings.Contains(key, "..") || strings.HasPrefix(key, "/") || strings.HasPrefix(key, ".") {
		return "", fmt.Errorf("parse sysctl key %q: want a key like net.ipv4.ip_forward", key)
	}
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return "/proc/sys/" + key, nil
}

// SetSysctl writes a sysctl inside the namespace, e.g. SetSysctl("net.ipv4.ip_forward", "1").
func (n *NS) SetSysctl(key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	return n.Do(func() error {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return fmt.Errorf("set sysctl %s in %s: %w", key, n.name, err)
		}
		_, werr := f.WriteString(value)
		cerr := f.Close()
		if err := errors.Join(werr, cerr); err != nil {
			return fmt.Errorf("set sysctl %s=%q in %s: %w", key, value, n.name, err)
		}
		return nil
	})
}

// Sysctl reads a sysctl inside the namespace, without the trailing newline.
func (n *NS) Sysctl(key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var v string
	err = n.Do(func() error {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read sysctl %s in %s: %w", key, n.name, err)
		}
		v = strings.TrimRight(string(b), "\n")
		return nil
	})
	return v, err
}

// staleName matches the names NewNS makes and captures the pid.
var staleName = regexp.MustCompile(`^xlvs-.+-([0-9]+)-[0-9]+$`)

// RemoveStale deletes namespaces under NetnsDir that NewNS made, with the given prefix
// ("" for any), in processes that no longer run (a test binary killed before its cleanup,
// say) and returns their names. Namespaces of running processes, including this one, are
// left alone. Pids are looked up in this process's pid namespace: do not call it where
// namespace makers run in other pid namespaces sharing /run/netns.
func RemoveStale(prefix string) ([]string, error) {
	ents, err := os.ReadDir(NetnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", NetnsDir, err)
	}
	var (
		removed []string
		errs    []error
	)
	for _, e := range ents {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil || prefix != "" && !strings.HasPrefix(e.Name(), "xlvs-"+prefix+"-") {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); !errors.Is(err, fs.ErrNotExist) {
			continue // running, or unknown: keep it
		}
		n := &NS{name: e.Name(), path: filepath.Join(NetnsDir, e.Name()), fd: -1}
		if err := n.Close(); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}
