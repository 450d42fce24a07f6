package dataplane

import "encoding/binary"

// The next-hop cache: a worker remembers, per destination address, what the FIB said
// about it (route, egress port, next hop and its MAC, the route's source address and
// MTU), so that a packet to a destination seen before costs one compare instead of a
// longest-prefix walk, a neighbour map lookup and a port search. A FIB is immutable and
// carries a generation number unique to it; an entry is used only while its generation
// is that of the FIB the batch runs with, so a new FIB (routes, neighbours, links
// changed) invalidates every entry at once, with nothing to lock or flush. Negative
// answers (no route, unmanaged interface, unresolved neighbour) are cached too: they
// hold exactly as long as the FIB does. Direct-mapped and pointer-free; per worker.

const hopSlots = 256 // a power of two

// hop is what one FIB says about one destination.
type hop struct {
	gen    uint64   // the FIB's generation; 0: empty
	dst    [16]byte // the destination
	nh     [16]byte // next hop: the route's gateway, else dst
	src    [16]byte // the route's source address, when hasSrc
	ifx    int32    // egress interface
	mtu    uint32   // the route's MTU (0: unknown)
	mac    [6]byte  // the next hop's MAC, when neigh
	out    int16    // index of the egress port in worker.ports; -1: not managed
	route  bool     // a route matched
	neigh  bool     // the next hop is resolved
	hasSrc bool
}

func hopIndex(dst *[16]byte) uint32 {
	h := (binary.LittleEndian.Uint64(dst[0:8]) ^ binary.LittleEndian.Uint64(dst[8:16])) * 0x9E3779B97F4A7C15
	return uint32(h >> 56 & (hopSlots - 1))
}

// hop returns what fib says about dst, from the cache when it holds fib's answer.
func (w *worker) hop(fib *FIB, dst *[16]byte) *hop {
	h := &w.hops[hopIndex(dst)]
	if h.gen == fib.gen && h.dst == *dst {
		return h
	}
	*h = hop{gen: fib.gen, dst: *dst, nh: *dst, out: -1}
	rt := fib.route(dst)
	if rt == nil {
		return h
	}
	h.route, h.ifx, h.mtu = true, rt.Ifindex, rt.MTU
	h.src, h.hasSrc = rt.Src, rt.HasSrc
	if rt.HasGW {
		h.nh = rt.Gateway
	}
	for i, p := range w.ports {
		if p.ifindex == h.ifx {
			h.out = int16(i)
			break
		}
	}
	h.mac, h.neigh = fib.Neighbour(h.ifx, h.nh)
	return h
}
