//go:build linux

package bpf

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var netnsSeq atomic.Int64

// command runs a short command, bounded by a timeout, and returns its output.
func command(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func mustCommand(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := command(args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// testNetns creates a network namespace holding a veth pair xa <-> xb (both up) and
// moves the test's goroutine, locked to its thread, into it until the test ends. The
// namespace is deleted at cleanup, after everything the test registered later.
func testNetns(t *testing.T) string {
	t.Helper()
	requirePrivileged(t)
	name := fmt.Sprintf("xlvsbpf-%d-%d", os.Getpid(), netnsSeq.Add(1))
	mustCommand(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if _, err := command("ip", "netns", "del", name); err != nil {
			t.Errorf("remove test namespace: %v", err)
		}
	})
	mustCommand(t, "ip", "-n", name, "link", "add", "xa", "type", "veth", "peer", "name", "xb")
	mustCommand(t, "ip", "-n", name, "link", "set", "xa", "up")
	mustCommand(t, "ip", "-n", name, "link", "set", "xb", "up")

	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open own network namespace: %v", err)
	}
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("open test namespace: %v", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("enter test namespace: %v", err)
	}
	t.Cleanup(func() {
		defer orig.Close()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with the goroutine instead of carrying the
			// test namespace into other tests.
			t.Errorf("return to the original network namespace: %v", err)
			return
		}
		runtime.UnlockOSThread()
	})
	return name
}

// requireNetns stops the test unless its thread is in namespace ns: an Attach made
// anywhere else would touch the host's interfaces.
func requireNetns(t *testing.T, ns string) {
	t.Helper()
	var want, got unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns, &want); err != nil {
		t.Fatalf("stat test namespace: %v", err)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &got); err != nil {
		t.Fatalf("stat own namespace: %v", err)
	}
	if got.Ino != want.Ino || got.Dev != want.Dev {
		t.Fatalf("test thread is not in namespace %s", ns)
	}
}

func ifaceByName(t *testing.T, name string) *net.Interface {
	t.Helper()
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	return ifc
}

// xdpState is what `ip -j link show` reports about a device's XDP program.
type xdpState struct {
	Mode int `json:"mode"` // 1 driver, 2 generic (XDP_ATTACHED_*)
	Prog struct {
		ID uint32 `json:"id"`
	} `json:"prog"`
}

// linkXDP returns the XDP state of dev in namespace ns, nil when nothing is attached.
func linkXDP(t *testing.T, ns, dev string) *xdpState {
	t.Helper()
	out := mustCommand(t, "ip", "-n", ns, "-j", "link", "show", "dev", dev)
	var links []struct {
		XDP *xdpState `json:"xdp"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("parse ip -j link show output %q: %v", out, err)
	}
	return links[0].XDP
}

// newXSK opens a real AF_XDP socket (copy mode) bound to (ifindex, queue), with a UMEM,
// fill, completion and RX rings. The rings are not mapped: the fill ring stays empty, so
// frames redirected to the socket are counted by the kernel and dropped.
func newXSK(t *testing.T, ifindex, queue int) int {
	t.Helper()
	const frames, frameSize = 64, 4096
	umem, err := unix.Mmap(-1, 0, frames*frameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("map umem: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(umem) })
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("create AF_XDP socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&umem[0]))), Len: uint64(len(umem)), Size: frameSize}
	if _, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_UMEM_REG,
		uintptr(unsafe.Pointer(&reg)), unsafe.Sizeof(reg), 0); errno != 0 {
		t.Fatalf("register umem: %v", errno)
	}
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, frames); err != nil {
			t.Fatalf("size ring %d: %v", opt, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrXDP{Flags: unix.XDP_COPY, Ifindex: uint32(ifindex), QueueID: uint32(queue)}); err != nil {
		t.Fatalf("bind AF_XDP socket to ifindex %d queue %d: %v", ifindex, queue, err)
	}
	return fd
}

func xskStats(t *testing.T, fd int) unix.XDPStatistics {
	t.Helper()
	var st unix.XDPStatistics
	size := uint32(unsafe.Sizeof(st))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0); errno != 0 {
		t.Fatalf("read AF_XDP statistics: %v", errno)
	}
	return st
}

// sendFrame transmits frame on ifindex through a packet socket.
func sendFrame(t *testing.T, ifindex int, frame []byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("create packet socket: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		t.Fatalf("send frame on ifindex %d: %v", ifindex, err)
	}
}

func TestAttachRedirect(t *testing.T) {
	ns := testNetns(t)
	requireNetns(t, ns)
	xa, xb := ifaceByName(t, "xa"), ifaceByName(t, "xb")

	c, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetServices(testServices); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReals(testReals); err != nil {
		t.Fatal(err)
	}
	requireNetns(t, ns)
	p, err := c.Attach(xa.Index, ModeNative)
	if err != nil {
		t.Fatalf("Attach native: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	if p.Mode() != ModeNative || p.Ifindex() != xa.Index {
		t.Fatalf("port mode %v ifindex %d, want native %d", p.Mode(), p.Ifindex(), xa.Index)
	}
	info, err := p.Program().Info()
	if err != nil {
		t.Fatal(err)
	}
	progID, _ := info.ID()
	st := linkXDP(t, ns, "xa")
	if st == nil || st.Mode != 1 || st.Prog.ID != uint32(progID) {
		t.Fatalf("ip link shows xdp %+v, want driver mode (1) with program %d", st, progID)
	}

	fd := newXSK(t, xa.Index, 0)
	if err := p.RegisterSocket(0, fd); err != nil {
		t.Fatalf("RegisterSocket: %v", err)
	}

	ctx := &xdpMD{IngressIfindex: uint32(xa.Index), RxQueueIndex: 0}
	service := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}.frame(t)
	reply := flow{proto: ProtoUDP, src: rip6, dst: cip6, sport: 5353, dport: 40000}.frame(t)
	miss := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 81}.frame(t)
	// A restart's hold (sockets handed to a successor): the registered socket is used
	// until the hold runs out; after it, frames go to the kernel though it is still there.
	for _, h := range []struct {
		hold     time.Duration
		wantRet  uint32
		wantSlot int
	}{{time.Minute, xdpRedirect, statRedirected}, {time.Millisecond, xdpPass, statRedirectFailed}, {0, xdpRedirect, statRedirected}} {
		if err := c.Hold(h.hold); err != nil {
			t.Fatalf("Hold(%v): %v", h.hold, err)
		}
		time.Sleep(5 * time.Millisecond)
		if ret, slot := classify(t, p, service, ctx); ret != h.wantRet || slot != h.wantSlot {
			t.Errorf("socket registered, Hold(%v) 5 ms before: verdict %d slot %d, want %d slot %d", h.hold, ret, slot, h.wantRet, h.wantSlot)
		}
	}
	for _, tc := range []struct {
		name       string
		frame      []byte
		wantRet    uint32
		wantSlot   int
		unregister bool
	}{
		{"service redirected", service, xdpRedirect, statRedirected, false},
		{"reply redirected", reply, xdpRedirect, statRedirected, false},
		{"miss passed", miss, xdpPass, statPassed, false},
		{"service without socket passed", service, xdpPass, statRedirectFailed, true},
	} {
		if tc.unregister {
			if err := p.UnregisterSocket(0); err != nil {
				t.Fatalf("UnregisterSocket: %v", err)
			}
		}
		if ret, slot := classify(t, p, tc.frame, ctx); ret != tc.wantRet || slot != tc.wantSlot {
			t.Errorf("%s: verdict %d slot %d, want %d slot %d", tc.name, ret, slot, tc.wantRet, tc.wantSlot)
		}
	}

	// Real traffic: a service frame sent by the peer reaches the socket. Its fill ring is
	// empty, so the kernel counts the frame there (dropped for lack of a buffer).
	if err := p.RegisterSocket(0, fd); err != nil {
		t.Fatalf("RegisterSocket again: %v", err)
	}
	before, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	wire := append(append(append([]byte{}, xa.HardwareAddr...), xb.HardwareAddr...), service[12:]...)
	deadline := time.Now().Add(5 * time.Second)
	for {
		sendFrame(t, xb.Index, wire)
		time.Sleep(20 * time.Millisecond)
		s := xskStats(t, fd)
		after, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if after.Redirected > before.Redirected && s.Rx_dropped+s.Rx_fill_ring_empty_descs > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("frame sent on the peer never reached the socket: counters before %+v after %+v, socket stats %+v", before, after, s)
		}
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := linkXDP(t, ns, "xa"); st != nil {
		t.Fatalf("after Close ip link still shows xdp %+v", st)
	}
}

func TestAttachModes(t *testing.T) {
	ns := testNetns(t)
	xa := ifaceByName(t, "xa")
	c, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })

	// No subtests here: they would run on other goroutines, outside the test namespace.
	for _, tc := range []struct {
		mode     Mode
		wantMode Mode
		ipMode   int
	}{
		{ModeNative, ModeNative, 1},
		{ModeGeneric, ModeGeneric, 2},
		{ModeAuto, ModeNative, 1}, // veth has native XDP
	} {
		requireNetns(t, ns)
		p, err := c.Attach(xa.Index, tc.mode)
		if err != nil {
			t.Errorf("Attach %v: %v", tc.mode, err)
			continue
		}
		if p.Mode() != tc.wantMode {
			t.Errorf("Attach %v: mode %v, want %v", tc.mode, p.Mode(), tc.wantMode)
		}
		if st := linkXDP(t, ns, "xa"); st == nil || st.Mode != tc.ipMode {
			t.Errorf("Attach %v: ip link shows xdp %+v, want mode %d", tc.mode, st, tc.ipMode)
		}
		if err := p.Close(); err != nil {
			t.Errorf("Attach %v: Close: %v", tc.mode, err)
		}
		if st := linkXDP(t, ns, "xa"); st != nil {
			t.Errorf("Attach %v: after Close ip link still shows xdp %+v", tc.mode, st)
		}
	}
}

func TestAttachErrors(t *testing.T) {
	ns := testNetns(t)
	xa := ifaceByName(t, "xa")
	c, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })

	requireNetns(t, ns)
	first, err := c.Attach(xa.Index, ModeNative)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	t.Cleanup(func() { first.Close() })

	// No subtests here: they would run on other goroutines, outside the test namespace.
	for _, tc := range []struct {
		name    string
		ifindex int
		mode    Mode
		want    []string // substrings of the error
	}{
		{"index 0", 0, ModeAuto, []string{"ifindex 0", "start at 1"}},
		{"no such interface", 9999, ModeNative, []string{"ifindex 9999", "no such interface"}},
		{"no such interface auto", 9999, ModeAuto, []string{"ifindex 9999", "native", "generic"}},
		{"already attached", xa.Index, ModeNative, []string{fmt.Sprintf("ifindex %d", xa.Index), "another XDP program"}},
		{"unknown mode", xa.Index, Mode(9), []string{"unknown mode(9)"}},
	} {
		requireNetns(t, ns)
		p, err := c.Attach(tc.ifindex, tc.mode)
		if err == nil {
			p.Close()
			t.Errorf("%s: Attach(%d, %v) succeeded", tc.name, tc.ifindex, tc.mode)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
	}
}
