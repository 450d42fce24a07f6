//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"xlvs/dataplane/packet"
)

// Classifier owns the services and reals maps that every Port's program shares, and the
// parsed program spec Ports are loaded from.
type Classifier struct {
	spec  *ebpf.CollectionSpec
	cache *btf.Cache

	mu       sync.Mutex // serializes Set*, Load and Close
	closed   bool
	services *ebpf.Map
	reals    *ebpf.Map
	locals   *ebpf.Map
	laddrs   *ebpf.Map // FULLNAT local addresses: replies to them are ours despite locals
	vaddrs   *ebpf.Map // the addresses of services and reals, for later fragments
	hold     *ebpf.Map // until when unredirectable frames are dropped (handoff.go)
	fwmAddrs *ebpf.Map // firewall-mark rules: prefixes (marks.go)
	fwmPorts *ebpf.Map // firewall-mark rules: ports of each prefix
	fastpath *ebpf.Map // established flows the program forwards itself (fastpath.go)
	txPorts  *ebpf.Map // the fast path's egress interfaces
	fpOn     *ebpf.Map // fp_on[0]: 1 once EnableFastPath ran
	fastOn   bool      // EnableFastPath was called
}

// New parses the embedded program and creates the shared services and reals maps, both
// empty. It fails with an error wrapping ErrNoXDP when the kernel refuses BPF (not root,
// or a kernel without BPF).
func New() (*Classifier, error) {
	spec, err := loadXlvs()
	if err != nil {
		return nil, fmt.Errorf("load embedded program spec: %w", err)
	}
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	// The fast path's SCTP checksum update (xlvs.c: sctp_crc_change) reads the powers of x the
	// dataplane's own update uses.
	lo, hi := packet.CRCZeroPowers()
	var zeros [512]uint32
	copy(zeros[:256], lo[:])
	copy(zeros[256:], hi[:])
	if err := spec.Variables[xlvsVarSctpZeros].Set(zeros); err != nil {
		return nil, fmt.Errorf("load embedded program spec: set %s: %w (regenerate with go generate ./bpf)", xlvsVarSctpZeros, err)
	}
	// The hash maps only the control plane writes (the program only looks them up) are
	// made without preallocated elements: creating the preallocated ones took 10-15 ms
	// of every start, on a restart's path while packets are held (dataplane/handoff.go),
	// and held their memory whether used or not. The program instances are loaded from
	// this spec, so they agree with the maps.
	for _, name := range []string{xlvsMapServices, xlvsMapReals, xlvsMapLocals, xlvsMapLaddrs, xlvsMapVaddrs} {
		spec.Maps[name].Flags |= unix.BPF_F_NO_PREALLOC
	}
	c := &Classifier{spec: spec, cache: btf.NewCache()}
	if c.services, err = ebpf.NewMap(spec.Maps[xlvsMapServices]); err != nil {
		return nil, fmt.Errorf("create map %s: %w: %w", xlvsMapServices, ErrNoXDP, err)
	}
	if c.reals, err = ebpf.NewMap(spec.Maps[xlvsMapReals]); err != nil {
		c.services.Close()
		return nil, fmt.Errorf("create map %s: %w: %w", xlvsMapReals, ErrNoXDP, err)
	}
	if c.locals, err = ebpf.NewMap(spec.Maps[xlvsMapLocals]); err != nil {
		c.services.Close()
		c.reals.Close()
		return nil, fmt.Errorf("create map %s: %w: %w", xlvsMapLocals, ErrNoXDP, err)
	}
	if c.vaddrs, err = ebpf.NewMap(spec.Maps[xlvsMapVaddrs]); err != nil {
		c.services.Close()
		c.reals.Close()
		c.locals.Close()
		return nil, fmt.Errorf("create map %s: %w: %w", xlvsMapVaddrs, ErrNoXDP, err)
	}
	if c.laddrs, err = ebpf.NewMap(spec.Maps[xlvsMapLaddrs]); err != nil {
		c.services.Close()
		c.reals.Close()
		c.locals.Close()
		c.vaddrs.Close()
		return nil, fmt.Errorf("create map %s: %w: %w", xlvsMapLaddrs, ErrNoXDP, err)
	}
	if c.hold, err = ebpf.NewMap(spec.Maps[xlvsMapHold]); err != nil {
		c.services.Close()
		c.reals.Close()
		c.locals.Close()
		c.vaddrs.Close()
		c.laddrs.Close()
		return nil, fmt.Errorf("create map %s: %w: %w", xlvsMapHold, ErrNoXDP, err)
	}
	if c.fwmAddrs, err = ebpf.NewMap(spec.Maps[xlvsMapFwmAddrs]); err == nil {
		if c.fwmPorts, err = ebpf.NewMap(spec.Maps[xlvsMapFwmPorts]); err != nil {
			c.fwmAddrs.Close()
		}
	}
	if err != nil {
		c.services.Close()
		c.reals.Close()
		c.locals.Close()
		c.vaddrs.Close()
		c.laddrs.Close()
		c.hold.Close()
		return nil, fmt.Errorf("create the firewall-mark maps: %w: %w", ErrNoXDP, err)
	}
	// The fast path's maps: the fastpath map with one entry until EnableFastPath (the
	// program finds nothing in it), the device map empty until SetTxPorts.
	fp := spec.Maps[xlvsMapFastpath].Copy()
	fp.MaxEntries = 1
	if c.fastpath, err = ebpf.NewMap(fp); err == nil {
		if c.txPorts, err = ebpf.NewMap(spec.Maps[xlvsMapTxPorts]); err != nil {
			c.fastpath.Close()
		} else if c.fpOn, err = ebpf.NewMap(spec.Maps[xlvsMapFpOn]); err != nil {
			c.fastpath.Close()
			c.txPorts.Close()
		}
	}
	if err != nil {
		c.services.Close()
		c.reals.Close()
		c.locals.Close()
		c.vaddrs.Close()
		c.laddrs.Close()
		c.hold.Close()
		c.fwmAddrs.Close()
		c.fwmPorts.Close()
		return nil, fmt.Errorf("create the fast-path maps: %w: %w", ErrNoXDP, err)
	}
	return c, nil
}

// checkSpec makes sure the compiled object and this file agree on the map layouts, so a
// stale xlvs_bpfel.o fails loudly at start-up instead of matching nothing.
func checkSpec(spec *ebpf.CollectionSpec) error {
	want := []struct {
		name       string
		typ        ebpf.MapType
		key, value uint32
		max        uint32
	}{
		{xlvsMapServices, ebpf.Hash, uint32(unsafe.Sizeof(mapKey{})), uint32(unsafe.Sizeof(mapVal{})), MaxServices},
		{xlvsMapReals, ebpf.Hash, uint32(unsafe.Sizeof(mapKey{})), uint32(unsafe.Sizeof(mapVal{})), MaxReals},
		{xlvsMapLocals, ebpf.Hash, 16, 4, MaxLocals},
		{xlvsMapLaddrs, ebpf.Hash, 16, 4, MaxLaddrs},
		{xlvsMapVaddrs, ebpf.Hash, uint32(unsafe.Sizeof(vaddrKey{})), uint32(unsafe.Sizeof(mapVal{})), maxVaddrs},
		{xlvsMapXsks, ebpf.XSKMap, 4, 4, MaxQueues},
		{xlvsMapStats, ebpf.PerCPUArray, 4, 8, statCount},
		{xlvsMapHold, ebpf.Array, 4, 8, 2},
		{xlvsMapFwmAddrs, ebpf.LPMTrie, uint32(unsafe.Sizeof(fwmAKey{})), uint32(unsafe.Sizeof(fwmAVal{})), MaxMarkPrefixes},
		{xlvsMapFwmPorts, ebpf.LPMTrie, uint32(unsafe.Sizeof(fwmPKey{})), 4, MaxMarkPorts},
		{xlvsMapFastpath, ebpf.Hash, uint32(unsafe.Sizeof(FastKey{})), uint32(unsafe.Sizeof(FastVal{})), DefaultFastPathEntries},
		{xlvsMapTxPorts, ebpf.DevMapHash, 4, 4, MaxQueues},
		{xlvsMapFpOn, ebpf.Array, 4, 4, 1},
		{xlvsMapMacs, ebpf.Array, 4, uint32(unsafe.Sizeof(macSet{})), 1},
	}
	for _, w := range want {
		m, ok := spec.Maps[w.name]
		if !ok {
			return fmt.Errorf("check program spec: map %s is missing (regenerate with go generate ./bpf)", w.name)
		}
		if m.Type != w.typ || m.KeySize != w.key || m.ValueSize != w.value || m.MaxEntries != w.max {
			return fmt.Errorf("check program spec: map %s is %v key %d value %d max %d, want %v key %d value %d max %d (regenerate with go generate ./bpf)",
				w.name, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, w.typ, w.key, w.value, w.max)
		}
	}
	if v, ok := spec.Variables[xlvsVarSctpZeros]; !ok || v.Size() != 512*4 || !v.Constant() {
		return fmt.Errorf("check program spec: variable %s is missing or not a constant of 512 words (regenerate with go generate ./bpf)", xlvsVarSctpZeros)
	}
	if _, ok := spec.Programs[xlvsProgXlvsClassify]; !ok {
		return fmt.Errorf("check program spec: program %s is missing (regenerate with go generate ./bpf)", xlvsProgXlvsClassify)
	}
	return nil
}

// SetServices makes the services map hold exactly keys: it deletes the entries that are
// not in keys and adds the missing ones; entries in both are not touched, so traffic to
// a service that stays is never passed to the kernel during the update. Duplicates are
// allowed. Nothing is changed if a key is invalid (ErrInvalidKey) or there are more than
// MaxServices distinct keys. A kernel error can leave the map part-way; calling again
// with the same keys converges.
func (c *Classifier) SetServices(keys []Key) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("set services: %w", ErrClosed)
	}
	if err := syncMap(c.services, keys, MaxServices); err != nil {
		return fmt.Errorf("set services: %w", err)
	}
	if err := syncVaddrs(c.vaddrs, keys, roleService); err != nil {
		return fmt.Errorf("set services' addresses: %w", err)
	}
	return nil
}

// SetLocals makes the locals map hold exactly the director's own addresses: a NAT real
// server's packet to one of them answers the director itself (a health check), so the
// program passes it to the kernel instead of the dataplane. IPv4 addresses may be given
// plain or IPv4-mapped. Limit: MaxLocals.
func (c *Classifier) SetLocals(addrs []netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("set local addresses: %w", ErrClosed)
	}
	if err := syncAddrs(c.locals, addrs, MaxLocals); err != nil {
		return fmt.Errorf("set local addresses: %w", err)
	}
	return nil
}

// SetLaddrs makes the laddrs map hold exactly the FULLNAT local addresses (DPVS's
// laddrs, ipvsadm -P ... -z LIP). They are also the director's own addresses (the kernel
// must answer ARP / neighbour discovery for them), but a real server's packet to one of
// them is a FULLNAT reply for the dataplane: the program consults laddrs before locals.
// IPv4 addresses may be given plain or IPv4-mapped. Limit: MaxLaddrs.
func (c *Classifier) SetLaddrs(addrs []netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("set fullnat local addresses: %w", ErrClosed)
	}
	if err := syncAddrs(c.laddrs, addrs, MaxLaddrs); err != nil {
		return fmt.Errorf("set fullnat local addresses: %w", err)
	}
	return nil
}

// syncAddrs makes the address-keyed map m (16-byte key, __u32 value) hold exactly addrs:
// stale entries are deleted first, then missing ones added, so an address in both the old
// and the new set is never absent.
func syncAddrs(m *ebpf.Map, addrs []netip.Addr, limit int) error {
	want := make(map[[16]byte]struct{}, len(addrs))
	for _, a := range addrs {
		if !a.IsValid() {
			return fmt.Errorf("%w: invalid address", ErrInvalidKey)
		}
		if a.Zone() != "" {
			return fmt.Errorf("%w: %v: address has a zone; use the address without %%zone", ErrInvalidKey, a)
		}
		want[a.Unmap().As16()] = struct{}{}
	}
	if len(want) > limit {
		return fmt.Errorf("%d addresses, at most %d", len(want), limit)
	}
	var k [16]byte
	var v uint32
	var stale [][16]byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, s := range stale {
		if err := m.Delete(s); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	for a := range want {
		if err := m.Update(a, uint32(1), ebpf.UpdateAny); err != nil {
			return err
		}
	}
	return nil
}

// SetReals is SetServices for the reals map (real servers whose replies come back
// through this director: NAT). Limit: MaxReals distinct keys.
func (c *Classifier) SetReals(keys []Key) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("set reals: %w", ErrClosed)
	}
	if err := syncMap(c.reals, keys, MaxReals); err != nil {
		return fmt.Errorf("set reals: %w", err)
	}
	if err := syncVaddrs(c.vaddrs, keys, roleReal); err != nil {
		return fmt.Errorf("set reals' addresses: %w", err)
	}
	return nil
}

// syncMap makes m's key set equal to keys. Deleting first keeps the map within its
// capacity when the set is replaced wholesale.
func syncMap(m *ebpf.Map, keys []Key, limit int) error {
	want := make(map[mapKey]struct{}, len(keys))
	for _, k := range keys {
		mk, err := k.encode()
		if err != nil {
			return err
		}
		want[mk] = struct{}{}
	}
	if len(want) > limit {
		return fmt.Errorf("%w: %d distinct keys, the map holds at most %d", ErrInvalidKey, len(want), limit)
	}

	var extra []mapKey
	have := make(map[mapKey]struct{}, len(want))
	var k mapKey
	var v mapVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; ok {
			have[k] = struct{}{}
		} else {
			extra = append(extra, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate map: %w", err)
	}
	for i := range extra {
		if err := m.Delete(&extra[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete %v: %w", extra[i].decode(), err)
		}
	}
	zero := mapVal{}
	for mk := range want {
		if _, ok := have[mk]; ok {
			continue
		}
		if err := m.Update(&mk, &zero, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add %v: %w", mk.decode(), err)
		}
	}
	return nil
}

// syncVaddrs makes the role entries of the vaddrs map equal to the (address, protocol)
// pairs of keys (already validated by syncMap), leaving the other role's entries alone:
// later fragments, which carry no ports, are redirected by address.
func syncVaddrs(m *ebpf.Map, keys []Key, role uint8) error {
	want := make(map[vaddrKey]struct{}, len(keys))
	for _, k := range keys {
		mk, err := k.encode()
		if err != nil {
			return err
		}
		want[vaddrKey{Addr: mk.Addr, Proto: mk.Proto, Role: role}] = struct{}{}
	}
	var extra []vaddrKey
	have := make(map[vaddrKey]struct{}, len(want))
	var k vaddrKey
	var v mapVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		if k.Role != role {
			continue
		}
		if _, ok := want[k]; ok {
			have[k] = struct{}{}
		} else {
			extra = append(extra, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate map: %w", err)
	}
	for i := range extra {
		if err := m.Delete(&extra[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete address %v: %w", netip.AddrFrom16(extra[i].Addr).Unmap(), err)
		}
	}
	zero := mapVal{}
	for vk := range want {
		if _, ok := have[vk]; ok {
			continue
		}
		if err := m.Update(&vk, &zero, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add address %v: %w", netip.AddrFrom16(vk.Addr).Unmap(), err)
		}
	}
	return nil
}

// dumpKeys returns the keys in m, in no particular order.
func dumpKeys(m *ebpf.Map) ([]Key, error) {
	var out []Key
	var k mapKey
	var v mapVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		out = append(out, k.decode())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate map: %w", err)
	}
	return out, nil
}

// Load loads a new instance of the program with its own xsks and stats maps and the
// shared services and reals maps, without attaching it. Attach uses it; tests run the
// returned Port's Program directly. The Port's Mode is ModeAuto until it is attached.
func (c *Classifier) Load() (*Port, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("load program: %w", ErrClosed)
	}
	p := &Port{}
	spec := c.spec.Copy()
	spec.Maps[xlvsMapFastpath].MaxEntries = c.fastpath.MaxEntries() // EnableFastPath sizes it
	err := spec.LoadAndAssign(&p.objs, &ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{
			xlvsMapServices: c.services,
			xlvsMapReals:    c.reals,
			xlvsMapLocals:   c.locals,
			xlvsMapLaddrs:   c.laddrs,
			xlvsMapVaddrs:   c.vaddrs,
			xlvsMapHold:     c.hold,
			xlvsMapFwmAddrs: c.fwmAddrs,
			xlvsMapFwmPorts: c.fwmPorts,
			xlvsMapFastpath: c.fastpath,
			xlvsMapTxPorts:  c.txPorts,
			xlvsMapFpOn:     c.fpOn,
		},
		Cache: c.cache,
	})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("load program: %w: %w", ErrNoXDP, err)
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) && len(ve.Log) > 0 {
			// The end of the verifier's log says which instruction it rejected and why.
			tail := ve.Log[max(0, len(ve.Log)-20):]
			return nil, fmt.Errorf("load program: %w; end of the verifier log:\n%s", err, strings.Join(tail, "\n"))
		}
		return nil, fmt.Errorf("load program: %w", err)
	}
	return p, nil
}

// Attach loads a program instance (see Load) and attaches it to the interface with index
// ifindex, resolved in the calling thread's network namespace, through a bpf_link: the
// program is detached when the Port is closed or the process exits. ModeAuto tries
// native XDP first, then generic.
func (c *Classifier) Attach(ifindex int, mode Mode) (*Port, error) {
	if ifindex < 1 {
		return nil, fmt.Errorf("attach xdp to ifindex %d: interface indexes start at 1", ifindex)
	}
	if mode != ModeAuto && mode != ModeNative && mode != ModeGeneric {
		return nil, fmt.Errorf("attach xdp to ifindex %d: unknown %v; want ModeAuto, ModeNative or ModeGeneric", ifindex, mode)
	}
	p, err := c.Load()
	if err != nil {
		return nil, fmt.Errorf("attach xdp to ifindex %d: %w", ifindex, err)
	}
	if err := p.attach(ifindex, mode); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Close releases the Classifier's references to the shared maps. Ports already loaded
// keep working (each holds its own references) until they are closed; close them too.
// Close is idempotent.
func (c *Classifier) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return errors.Join(c.services.Close(), c.reals.Close(), c.locals.Close(), c.laddrs.Close(), c.vaddrs.Close(), c.hold.Close(),
		c.fwmAddrs.Close(), c.fwmPorts.Close(), c.fastpath.Close(), c.txPorts.Close(), c.fpOn.Close())
}
