//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// SetMarks makes the fwm_addrs and fwm_ports maps hold exactly prefixes and ports (see
// MarkPrefix). New entries go in before stale ones leave, the ports of a prefix before
// the prefix, so a packet that keeps its mark across the change is never passed to the
// kernel meanwhile. Limits: MaxMarkPrefixes prefixes, MaxMarkPorts port blocks.
func (c *Classifier) SetMarks(prefixes []MarkPrefix, ports []MarkPorts) error {
	wantA := make(map[fwmAKey]fwmAVal, len(prefixes))
	for _, p := range prefixes {
		k, v, err := p.encode()
		if err != nil {
			return fmt.Errorf("set marks: %w", err)
		}
		wantA[k] = v
	}
	wantP := map[fwmPKey]uint32{}
	for _, p := range ports {
		if p.Mark == 0 || p.Lo > p.Hi {
			return fmt.Errorf("set marks: %w: mark %d ports %d-%d", ErrInvalidKey, p.Mark, p.Lo, p.Hi)
		}
		_, v, err := p.MarkPrefix.encode()
		if err != nil {
			return fmt.Errorf("set marks: %w", err)
		}
		for _, b := range PortBlocks(p.Lo, p.Hi) {
			k := fwmPKey{Prefixlen: 8*20 + uint32(b.Bits), Proto: uint8(p.Proto), Family: p.Family, Bits: v.Bits, Addr: v.Addr,
				Port: [2]byte{byte(b.First >> 8), byte(b.First)}}
			wantP[k] = p.Mark
		}
	}
	if len(wantA) > MaxMarkPrefixes || len(wantP) > MaxMarkPorts {
		return fmt.Errorf("set marks: %w: %d prefixes and %d port blocks, at most %d and %d", ErrInvalidKey, len(wantA), len(wantP), MaxMarkPrefixes, MaxMarkPorts)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("set marks: %w", ErrClosed)
	}
	staleP, err := syncLPM(c.fwmPorts, wantP)
	if err != nil {
		return fmt.Errorf("set mark ports: %w", err)
	}
	staleA, err := syncLPM(c.fwmAddrs, wantA)
	if err != nil {
		return fmt.Errorf("set mark prefixes: %w", err)
	}
	for i := range staleA {
		if err := c.fwmAddrs.Delete(&staleA[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("set mark prefixes: delete: %w", err)
		}
	}
	for i := range staleP {
		if err := c.fwmPorts.Delete(&staleP[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("set mark ports: delete: %w", err)
		}
	}
	return nil
}

// syncLPM writes every entry of want that m lacks or holds with another value, and
// returns m's keys that want does not have (for the caller to delete).
func syncLPM[K comparable, V comparable](m *ebpf.Map, want map[K]V) ([]K, error) {
	have := make(map[K]V, len(want))
	var stale []K
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; ok {
			have[k] = v
		} else {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate map: %w", err)
	}
	for k, v := range want {
		if h, ok := have[k]; ok && h == v {
			continue
		}
		if err := m.Update(&k, &v, ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("add: %w", err)
		}
	}
	return stale, nil
}

// dumpMarks returns the maps' entries (tests).
func (c *Classifier) dumpMarks() (map[fwmAKey]fwmAVal, map[fwmPKey]uint32, error) {
	a := map[fwmAKey]fwmAVal{}
	p := map[fwmPKey]uint32{}
	var ak fwmAKey
	var av fwmAVal
	it := c.fwmAddrs.Iterate()
	for it.Next(&ak, &av) {
		a[ak] = av
	}
	if err := it.Err(); err != nil {
		return nil, nil, err
	}
	var pk fwmPKey
	var pv uint32
	it = c.fwmPorts.Iterate()
	for it.Next(&pk, &pv) {
		p[pk] = pv
	}
	return a, p, it.Err()
}
