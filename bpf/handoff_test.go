//go:build linux

package bpf

import (
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

const xdpDrop = 1

// TestHold: a matched frame without a socket is passed, except while a hold runs, when
// it is dropped and counted as held; the hold ends when told or when its time is up.
// Unmatched frames are passed either way.
func TestHold(t *testing.T) {
	h := newHarness(t)
	service := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}.frame(t)
	miss := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 81}.frame(t)
	check := func(name string, frame []byte, wantRet uint32, wantSlot int) {
		t.Helper()
		if ret, slot := classify(t, h.p, frame, nil); ret != wantRet || slot != wantSlot {
			t.Errorf("%s: verdict %d slot %d, want %d slot %d", name, ret, slot, wantRet, wantSlot)
		}
	}
	check("no hold", service, xdpPass, statRedirectFailed)
	if err := h.c.Hold(time.Minute); err != nil {
		t.Fatalf("Hold: %v", err)
	}
	check("held", service, xdpDrop, statHeld)
	check("held, unmatched", miss, xdpPass, statPassed)
	if err := h.c.Hold(0); err != nil {
		t.Fatalf("Hold(0): %v", err)
	}
	check("hold ended", service, xdpPass, statRedirectFailed)
	if err := h.c.Hold(time.Millisecond); err != nil {
		t.Fatalf("Hold: %v", err)
	}
	time.Sleep(5 * time.Millisecond)
	check("hold ran out", service, xdpPass, statRedirectFailed)
	c, err := h.p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Held != 1 {
		t.Errorf("Held %d, want 1", c.Held)
	}
	h.c.Close()
	if err := h.c.Hold(time.Second); err == nil {
		t.Error("Hold on a closed classifier: no error")
	}
}

// TestAdoptActivate plays a restart: the predecessor attaches, its link outlives it in
// a duplicate fd (as in systemd's fd store), and the successor adopts the link, which
// keeps running the predecessor's program until Activate swaps in the successor's.
func TestAdoptActivate(t *testing.T) {
	ns := testNetns(t)
	requireNetns(t, ns)
	xa, xb := ifaceByName(t, "xa"), ifaceByName(t, "xb")

	progID := func(p *Port) uint32 {
		t.Helper()
		info, err := p.Program().Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		return uint32(id)
	}

	old, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	op, err := old.Attach(xa.Index, ModeNative)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	oldID := progID(op)
	kept, err := unix.FcntlInt(uintptr(op.LinkFD()), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatalf("dup link fd: %v", err)
	}
	if err := old.Hold(time.Minute); err != nil {
		t.Fatal(err)
	}
	op.Close()
	old.Close()
	if st := linkXDP(t, ns, "xa"); st == nil || st.Prog.ID != oldID {
		t.Fatalf("after the predecessor closed: xdp %+v, want its program %d still attached", st, oldID)
	}

	c, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })

	// Refusals leave the fd to the caller.
	if _, err := c.Adopt(xb.Index, kept, ModeNative); err == nil || !strings.Contains(err.Error(), "attached to ifindex") {
		t.Fatalf("Adopt on the wrong interface: %v, want an error naming the link's interface", err)
	}
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[1])
	if _, err := c.Adopt(xa.Index, pipe[0], ModeNative); err == nil || !strings.Contains(err.Error(), "not a bpf link") {
		t.Fatalf("Adopt of a pipe: %v, want 'not a bpf link'", err)
	}
	unix.Close(pipe[0])

	// A program instance loaded beforehand (AdoptLoaded, as a successor's dataplane
	// does): a refusal leaves it unattached, for another try.
	p, err := c.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	if err := c.AdoptLoaded(p, xb.Index, kept, ModeNative); err == nil || !strings.Contains(err.Error(), "attached to ifindex") {
		t.Fatalf("AdoptLoaded on the wrong interface: %v, want an error naming the link's interface", err)
	}
	if err := c.AdoptLoaded(p, xa.Index, kept, ModeNative); err != nil {
		t.Fatalf("AdoptLoaded: %v", err)
	}
	if err := c.AdoptLoaded(p, xa.Index, kept, ModeNative); err == nil || !strings.Contains(err.Error(), "already attached") {
		t.Fatalf("AdoptLoaded twice: %v, want a refusal", err)
	}
	if p.Mode() != ModeNative || p.Ifindex() != xa.Index {
		t.Errorf("adopted port: mode %v ifindex %d, want native %d", p.Mode(), p.Ifindex(), xa.Index)
	}
	if st := linkXDP(t, ns, "xa"); st == nil || st.Prog.ID != oldID {
		t.Fatalf("adopted, not activated: xdp %+v, want the predecessor's program %d", st, oldID)
	}
	if err := p.Activate(); err != nil {
		t.Fatalf("Activate: %v", err)
	}
	newID := progID(p)
	if st := linkXDP(t, ns, "xa"); st == nil || st.Prog.ID != newID || st.Mode != 1 {
		t.Fatalf("activated: xdp %+v, want program %d in driver mode", st, newID)
	}
	if err := p.Activate(); err != nil {
		t.Fatalf("Activate again: %v", err)
	}
	// The successor's own hold map is not the predecessor's: nothing is held.
	if err := c.SetServices(testServices); err != nil {
		t.Fatal(err)
	}
	service := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 40000, dport: 80}.frame(t)
	if ret, slot := classify(t, p, service, nil); ret != xdpPass || slot != statRedirectFailed {
		t.Errorf("successor without socket: verdict %d slot %d, want pass, redirect_failed", ret, slot)
	}
	unix.Close(kept) // the caller's own copy
	if st := linkXDP(t, ns, "xa"); st == nil || st.Prog.ID != newID {
		t.Fatalf("after the caller closed its fd: xdp %+v, want program %d (the Port holds the link)", st, newID)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if st := linkXDP(t, ns, "xa"); st != nil {
		t.Fatalf("after the successor closed: xdp %+v, want none", st)
	}
}

// TestDetachLink: a predecessor's link that is not taken over is detached at once, even
// while another process (here: another fd) still holds it.
func TestDetachLink(t *testing.T) {
	ns := testNetns(t)
	requireNetns(t, ns)
	xa := ifaceByName(t, "xa")
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p, err := c.Attach(xa.Index, ModeAuto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	fd, err := unix.FcntlInt(uintptr(p.LinkFD()), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := DetachLink(fd); err != nil {
		t.Fatalf("DetachLink: %v", err)
	}
	if st := linkXDP(t, ns, "xa"); st != nil {
		t.Fatalf("after DetachLink: xdp %+v, want none", st)
	}
	// The interface is free again.
	q, err := c.Attach(xa.Index, ModeAuto)
	if err != nil {
		t.Fatalf("Attach after DetachLink: %v", err)
	}
	q.Close()
}

// TestMapsNotPreallocated: the hash maps only the control plane writes are made without
// preallocated elements (quicker to create at every start, a restart's above all), the
// program instances load with them, and they hold what is put in them.
func TestMapsNotPreallocated(t *testing.T) {
	h := newHarness(t)
	for name, m := range map[string]*ebpf.Map{
		xlvsMapServices: h.c.services, xlvsMapReals: h.c.reals, xlvsMapLocals: h.c.locals,
		xlvsMapLaddrs: h.c.laddrs, xlvsMapVaddrs: h.c.vaddrs,
	} {
		info, err := m.Info()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if info.Flags&unix.BPF_F_NO_PREALLOC == 0 {
			t.Errorf("map %s has flags %#x, want BPF_F_NO_PREALLOC", name, info.Flags)
		}
	}
	if n := countEntries(t, h.c.services); n != len(testServices) {
		t.Errorf("services map holds %d entries, want the %d set", n, len(testServices))
	}
}

func countEntries(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	var k, v []byte
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
