//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// DecapHook says where a Decap's program runs.
type DecapHook int

const (
	// DecapAuto attaches in native XDP and falls back to tc ingress when the driver
	// refuses native XDP.
	DecapAuto DecapHook = iota
	// DecapXDP attaches in XDP: native, else generic.
	DecapXDP
	// DecapTC attaches at tc ingress (tcx, Linux 6.6 or later).
	DecapTC
)

// String returns "auto", "xdp" or "tc".
func (h DecapHook) String() string {
	switch h {
	case DecapAuto:
		return "auto"
	case DecapXDP:
		return "xdp"
	case DecapTC:
		return "tc"
	}
	return fmt.Sprintf("hook(%d)", int(h))
}

// ParseDecapHook is the inverse of DecapHook.String.
func ParseDecapHook(s string) (DecapHook, error) {
	switch s {
	case "auto":
		return DecapAuto, nil
	case "xdp":
		return DecapXDP, nil
	case "tc":
		return DecapTC, nil
	}
	return 0, fmt.Errorf("parse decap mode %q: want auto, xdp or tc", s)
}

// MaxDecapAddrs is the capacity of the decapsulator's addrs map (decap.c).
const MaxDecapAddrs = 256

// MaxDecapGUEPorts is the capacity of the decapsulator's gue_ports map (decap.c): the
// distinct UDP ports it takes GUE packets on.
const MaxDecapGUEPorts = 16

// ErrNoAddrs means a Decap was given no address to decapsulate for.
var ErrNoAddrs = errors.New("no local address to decapsulate for")

// DecapCounters are a Decap's counters, summed over CPUs. Every frame its program sees
// increments exactly one of them; every frame is passed to the kernel.
type DecapCounters struct {
	Passed       uint64 // not an IPIP, ip6ip6, GRE or GUE packet (UDP to another port): untouched
	Decapsulated uint64 // outer headers stripped
	NotLocal     uint64 // a tunnel packet for an address not in the set: untouched
	Malformed    uint64 // a tunnel packet with a bad outer, tunnel or inner header: untouched
	Fragment     uint64 // a fragmented outer IPv4 packet: untouched
	Error        uint64 // the kernel helper that strips the header failed: untouched
	// Unsupported counts GUE packets with options, flags, a version or a payload other
	// than IPVS's plain GUE, and GRE packets with a key, a sequence number, another
	// version or payload type: untouched.
	Unsupported uint64
}

// Total is the number of frames the program saw.
func (c DecapCounters) Total() uint64 {
	return c.Passed + c.Decapsulated + c.NotLocal + c.Malformed + c.Fragment + c.Error + c.Unsupported
}

// Slots of decap.c's stats map; ABI shared with decap.c.
const (
	dstatPassed = iota
	dstatDecapsulated
	dstatNotLocal
	dstatMalformed
	dstatFragment
	dstatError
	dstatUnsupported
	dstatCount
)

// Decap is the real-server decapsulator (decap.c): both its programs (XDP and tc), its
// address set, GUE ports and counters, attached to at most one interface. Its methods
// are safe for concurrent use.
type Decap struct {
	objs    decapObjects
	link    link.Link // nil until attached
	hook    DecapHook // DecapXDP or DecapTC once attached
	mode    Mode      // XDP mode once attached in XDP
	ifindex int

	mu     sync.Mutex // guards closed and link
	closed bool
}

// LoadDecap loads the decapsulator's programs and maps without attaching them; its
// address set is empty, so it decapsulates nothing until SetAddrs, and so is its GUE
// port set, so it takes no GUE packet until SetGUEPorts. It fails with an error wrapping
// ErrNoXDP when the kernel refuses BPF.
func LoadDecap() (*Decap, error) {
	spec, err := loadDecap()
	if err != nil {
		return nil, fmt.Errorf("load embedded decap spec: %w", err)
	}
	if err := checkDecapSpec(spec); err != nil {
		return nil, err
	}
	d := &Decap{}
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("load decap programs: %w: %w", ErrNoXDP, err)
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) && len(ve.Log) > 0 {
			tail := ve.Log[max(0, len(ve.Log)-20):]
			return nil, fmt.Errorf("load decap programs: %w; end of the verifier log:\n%s", err, strings.Join(tail, "\n"))
		}
		return nil, fmt.Errorf("load decap programs: %w", err)
	}
	return d, nil
}

// checkDecapSpec makes sure decap_bpfel.o and this file agree on the map layouts.
func checkDecapSpec(spec *ebpf.CollectionSpec) error {
	want := []struct {
		name       string
		typ        ebpf.MapType
		key, value uint32
		max        uint32
	}{
		{decapMapAddrs, ebpf.Hash, 16, 4, MaxDecapAddrs},
		{decapMapGuePorts, ebpf.Hash, 2, 4, MaxDecapGUEPorts},
		{decapMapStats, ebpf.PerCPUArray, 4, 8, dstatCount},
	}
	for _, w := range want {
		m, ok := spec.Maps[w.name]
		if !ok {
			return fmt.Errorf("check decap spec: map %s is missing (regenerate with go generate ./bpf)", w.name)
		}
		if m.Type != w.typ || m.KeySize != w.key || m.ValueSize != w.value || m.MaxEntries != w.max {
			return fmt.Errorf("check decap spec: map %s is %v key %d value %d max %d, want %v key %d value %d max %d (regenerate with go generate ./bpf)",
				w.name, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, w.typ, w.key, w.value, w.max)
		}
	}
	for _, p := range []string{decapProgDecapXdp, decapProgDecapTc} {
		if _, ok := spec.Programs[p]; !ok {
			return fmt.Errorf("check decap spec: program %s is missing (regenerate with go generate ./bpf)", p)
		}
	}
	return nil
}

// AttachDecap loads the decapsulator, makes addrs its address set and guePorts its GUE
// ports (none: IPIP, ip6ip6 and GRE only; see SetGUEPorts) and attaches it to the
// interface with index ifindex (in the calling thread's network namespace) through a
// bpf_link: it is detached when the Decap is closed or the process exits. Bad ports are
// refused before anything is loaded.
func AttachDecap(ifindex int, hook DecapHook, addrs []netip.Addr, guePorts ...uint16) (*Decap, error) {
	if ifindex < 1 {
		return nil, fmt.Errorf("attach decap to ifindex %d: interface indexes start at 1", ifindex)
	}
	if hook != DecapAuto && hook != DecapXDP && hook != DecapTC {
		return nil, fmt.Errorf("attach decap to ifindex %d: unknown %v; want DecapAuto, DecapXDP or DecapTC", ifindex, hook)
	}
	if _, err := guePortSet(guePorts); err != nil {
		return nil, fmt.Errorf("attach decap to ifindex %d: %w", ifindex, err)
	}
	d, err := LoadDecap()
	if err != nil {
		return nil, fmt.Errorf("attach decap to ifindex %d: %w", ifindex, err)
	}
	if err := d.SetAddrs(addrs); err != nil {
		d.Close()
		return nil, fmt.Errorf("attach decap to ifindex %d: %w", ifindex, err)
	}
	if err := d.SetGUEPorts(guePorts); err != nil {
		d.Close()
		return nil, fmt.Errorf("attach decap to ifindex %d: %w", ifindex, err)
	}
	if err := d.attach(ifindex, hook); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Decap) attach(ifindex int, hook DecapHook) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	xdp := func(m Mode) error {
		flags := link.XDPDriverMode
		if m == ModeGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: d.objs.DecapXdp, Interface: ifindex, Flags: flags})
		if err != nil {
			return attachError(ifindex, m, err)
		}
		d.link, d.hook, d.mode, d.ifindex = l, DecapXDP, m, ifindex
		return nil
	}
	tc := func() error {
		l, err := link.AttachTCX(link.TCXOptions{Program: d.objs.DecapTc, Interface: ifindex, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("attach tc ingress to ifindex %d: %w: %w", ifindex, ErrNoXDP, err)
			}
			hint := "tcx needs Linux 6.6 or later; check dmesg"
			if !interfaceExists(ifindex) {
				hint = "no such interface in this network namespace (check ip link show)"
			}
			return fmt.Errorf("attach tc ingress to ifindex %d: %w (%s)", ifindex, err, hint)
		}
		d.link, d.hook, d.ifindex = l, DecapTC, ifindex
		return nil
	}
	switch hook {
	case DecapTC:
		return tc()
	case DecapXDP:
		errNative := xdp(ModeNative)
		if errNative == nil {
			return nil
		}
		if errGeneric := xdp(ModeGeneric); errGeneric != nil {
			return fmt.Errorf("attach decap: %w; %w", errNative, errGeneric)
		}
		return nil
	default:
		errNative := xdp(ModeNative)
		if errNative == nil {
			return nil
		}
		if errTC := tc(); errTC != nil {
			return fmt.Errorf("attach decap: %w; falling back to tc: %w", errNative, errTC)
		}
		return nil
	}
}

// SetAddrs makes addrs the set of destination addresses whose tunnel packets are
// decapsulated (the real server's own addresses, not the VIPs). IPv4 and IPv4-mapped
// IPv6 forms are the same address. It fails with ErrNoAddrs for an empty set and
// changes nothing when an address is invalid or there are more than MaxDecapAddrs.
func (d *Decap) SetAddrs(addrs []netip.Addr) error {
	want := make(map[[16]byte]struct{}, len(addrs))
	for _, a := range addrs {
		if !a.IsValid() || a.Zone() != "" {
			return fmt.Errorf("set decap addresses: %q is not an address without a zone", a)
		}
		want[a.As16()] = struct{}{}
	}
	if len(want) == 0 {
		return fmt.Errorf("set decap addresses: %w", ErrNoAddrs)
	}
	if len(want) > MaxDecapAddrs {
		return fmt.Errorf("set decap addresses: %d distinct addresses, at most %d", len(want), MaxDecapAddrs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("set decap addresses: %w", ErrClosed)
	}
	if err := replaceKeys(d.objs.Addrs, want, func(a [16]byte) string { return netip.AddrFrom16(a).Unmap().String() }); err != nil {
		return fmt.Errorf("set decap addresses: %w", err)
	}
	return nil
}

// replaceKeys makes the keys of hash map m exactly those of want (each with value 0):
// it deletes the keys want lacks, then adds want's. show names a key in errors.
func replaceKeys[K comparable](m *ebpf.Map, want map[K]struct{}, show func(K) string) error {
	var k K
	var v uint32
	var extra []K
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate map: %w", err)
	}
	for i := range extra {
		if err := m.Delete(&extra[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete %s: %w", show(extra[i]), err)
		}
	}
	for key := range want {
		if err := m.Update(&key, uint32(0), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add %s: %w", show(key), err)
		}
	}
	return nil
}

// guePortSet returns the distinct ports of ports, or an error naming what is wrong: port
// 0 (no director sends to it) or more distinct ports than MaxDecapGUEPorts. Repeated
// ports are one port.
func guePortSet(ports []uint16) (map[uint16]struct{}, error) {
	set := make(map[uint16]struct{}, len(ports))
	for _, p := range ports {
		if p == 0 {
			return nil, errors.New("set decap GUE ports: port 0 is not a destination port; want 1-65535, the director's --tun-port")
		}
		set[p] = struct{}{}
	}
	if len(set) > MaxDecapGUEPorts {
		return nil, fmt.Errorf("set decap GUE ports: %d distinct ports, at most %d", len(set), MaxDecapGUEPorts)
	}
	return set, nil
}

// guePortKey is a gue_ports key: the port in network byte order, as the UDP header
// carries it.
func guePortKey(port uint16) [2]byte {
	var k [2]byte
	binary.BigEndian.PutUint16(k[:], port)
	return k
}

// SetGUEPorts makes ports the set of UDP destination ports whose packets are GUE
// packets to decapsulate (the directors' --tun-port); an empty set turns GUE off. A UDP
// packet to any other port passes untouched. Repeated ports are one port. It changes
// nothing when a port is 0 or there are more than MaxDecapGUEPorts distinct ports.
func (d *Decap) SetGUEPorts(ports []uint16) error {
	want, err := guePortSet(ports)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("set decap GUE ports: %w", ErrClosed)
	}
	keys := make(map[[2]byte]struct{}, len(want))
	for p := range want {
		keys[guePortKey(p)] = struct{}{}
	}
	if err := replaceKeys(d.objs.GuePorts, keys, func(k [2]byte) string { return fmt.Sprint(binary.BigEndian.Uint16(k[:])) }); err != nil {
		return fmt.Errorf("set decap GUE ports: %w", err)
	}
	return nil
}

// Hook returns where the program is attached (DecapXDP or DecapTC), or DecapAuto when
// it is not attached.
func (d *Decap) Hook() DecapHook { return d.hook }

// Mode returns the XDP mode (ModeNative or ModeGeneric) when attached in XDP, else
// ModeAuto.
func (d *Decap) Mode() Mode { return d.mode }

// Ifindex returns the interface index the program is attached to, or 0.
func (d *Decap) Ifindex() int { return d.ifindex }

// Counters reads the counters, summed over CPUs (not one atomic snapshot).
func (d *Decap) Counters() (DecapCounters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return DecapCounters{}, fmt.Errorf("read decap counters: %w", ErrClosed)
	}
	var sums [dstatCount]uint64
	var perCPU []uint64
	for slot := range sums {
		if err := d.objs.Stats.Lookup(uint32(slot), &perCPU); err != nil {
			return DecapCounters{}, fmt.Errorf("read decap counter %d: %w", slot, err)
		}
		for _, v := range perCPU {
			sums[slot] += v
		}
	}
	return DecapCounters{
		Passed:       sums[dstatPassed],
		Decapsulated: sums[dstatDecapsulated],
		NotLocal:     sums[dstatNotLocal],
		Malformed:    sums[dstatMalformed],
		Fragment:     sums[dstatFragment],
		Error:        sums[dstatError],
		Unsupported:  sums[dstatUnsupported],
	}, nil
}

// XDPProgram and TCProgram return the loaded programs, for BPF_PROG_TEST_RUN in tests.
// They are owned by the Decap: do not close them.
func (d *Decap) XDPProgram() *ebpf.Program { return d.objs.DecapXdp }

// TCProgram: see XDPProgram.
func (d *Decap) TCProgram() *ebpf.Program { return d.objs.DecapTc }

// Close detaches the program and frees the programs and maps. Close is idempotent.
func (d *Decap) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errLink error
	if d.link != nil {
		if err := d.link.Close(); err != nil {
			errLink = fmt.Errorf("detach decap (%v) from ifindex %d: %w", d.hook, d.ifindex, err)
		}
	}
	return errors.Join(errLink, d.objs.Close())
}
