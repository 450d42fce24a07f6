package dataplane

import (
	"encoding/binary"
	"time"

	"xlvs/dataplane/packet"
)

// Fragments. A first fragment carries the ports: it is looked up and scheduled like any
// packet, and the decision (where the datagram goes and how it is rewritten) is noted in
// the worker's fragment table under (source, destination, identification, protocol), the
// key the kernel reassembles by. Later fragments carry no ports: they are forwarded as
// their first fragment was, or counted (DropFragment) and dropped when there is no note:
// the first fragment came later, was dropped, or went to another queue (see doc.go).
//
// The table is bounded: fragSets sets of fragWays entries, a new note taking an empty or
// expired way of its set, else the one closest to expiry. Notes live fragTimeout, as the
// kernel keeps an incomplete datagram (ipfrag_time); a note is not removed at the last
// fragment, because fragments may arrive out of order.
const (
	fragWays    = 4
	fragSets    = 256
	fragTimeout = int64(30 * time.Second)
)

// fragAction is what later fragments of a datagram get.
type fragAction uint8

const (
	fragNATDst     fragAction = iota + 1 // NAT request: destination becomes addr, TTL decremented
	fragNATSrc                           // NAT reply: source becomes addr, TTL decremented
	fragDR                               // DR: MACs, TTL decremented, towards addr
	fragTUN                              // TUN: TTL decremented, encapsulated towards addr
	fragFullNATIn                        // FULLNAT request: source becomes addr, destination to, TTL decremented
	fragFullNATOut                       // FULLNAT reply: likewise
)

// fragKey identifies a datagram as the kernel's reassembly does. Pointer-free.
type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	_        [3]byte
}

// fragEntry is a note about one datagram. Pointer-free.
type fragEntry struct {
	key       fragKey
	expires   int64    // dataplane clock; 0 = free
	addr      [16]byte // the NAT address written (FULLNAT: the source), or the DR/TUN real server
	to        [16]byte // where the fragment is routed (FULLNAT: also the destination written)
	svc, dest uint32   // counter indexes
	action    fragAction
	tun       packet.Encap // fragTUN: the encapsulation
}

// fragTable is one worker's set-associative table of fragment notes.
type fragTable struct {
	seed uint64
	ents []fragEntry
}

func newFragTable(seed uint64) fragTable {
	return fragTable{seed: seed | 1, ents: make([]fragEntry, fragSets*fragWays)}
}

func (t *fragTable) set(k *fragKey) []fragEntry {
	h := t.seed ^ uint64(k.id)<<8 ^ uint64(k.proto)
	h ^= binary.LittleEndian.Uint64(k.src[8:]) * 0x9E3779B97F4A7C15
	h ^= binary.LittleEndian.Uint64(k.dst[8:]) * 0xC2B2AE3D27D4EB4F
	h ^= binary.LittleEndian.Uint64(k.src[:8]) ^ binary.LittleEndian.Uint64(k.dst[:8])<<1
	h *= 0xFF51AFD7ED558CCD
	h ^= h >> 33
	i := int(h%fragSets) * fragWays
	return t.ents[i : i+fragWays]
}

// lookup returns the live note for k, or nil.
func (t *fragTable) lookup(k *fragKey, now int64) *fragEntry {
	s := t.set(k)
	for i := range s {
		if e := &s[i]; e.expires > now && e.key == *k {
			return e
		}
	}
	return nil
}

// put returns the entry to write k's note into (k and the expiry already set): k's own,
// else a free or expired way, else the way closest to expiry.
func (t *fragTable) put(k *fragKey, now int64) *fragEntry {
	s := t.set(k)
	victim := &s[0]
	for i := range s {
		e := &s[i]
		if e.key == *k || e.expires <= now {
			victim = e
			break
		}
		if e.expires < victim.expires {
			victim = e
		}
	}
	*victim = fragEntry{key: *k, expires: now + fragTimeout}
	return victim
}

func fragKeyOf(info *packet.Info) fragKey {
	return fragKey{src: info.Src, dst: info.Dst, id: info.FragID, proto: info.Proto}
}

// noteFrag records, for first fragment p (not yet rewritten) of connection p.entry(),
// what its later fragments get, and returns the note (for fragTUN's encapsulation).
func (w *worker) noteFrag(p *pktDesc, action fragAction, addr, to [16]byte) *fragEntry {
	k := fragKeyOf(&p.info)
	e := w.frags.put(&k, p.now)
	c := p.entry()
	e.action, e.addr, e.to, e.svc, e.dest = action, addr, to, c.Service, c.Dest
	w.st.fragNoted.add(1)
	return e
}

// fragment forwards p, a later fragment, the way its datagram's first fragment went.
func (w *worker) fragment(p *pktDesc) {
	info := &p.info
	k := fragKeyOf(info)
	fe := w.frags.lookup(&k, p.now)
	if fe == nil {
		w.drop(p, DropFragment)
		return
	}
	w.st.fragments.add(1)
	switch fe.action {
	case fragNATDst, fragNATSrc:
		if !packet.DecrementTTL(p.frame, info) {
			w.drop(p, DropTTLExpired)
			return
		}
		if fe.action == fragNATDst {
			packet.RewriteDstAddr(p.frame, info, fe.addr)
			w.countFlow(p, fe.svc, fe.dest, true)
		} else {
			packet.RewriteSrcAddr(p.frame, info, fe.addr)
			w.countFlow(p, fe.svc, fe.dest, false)
		}
		w.output(p, fe.to)
	case fragFullNATIn, fragFullNATOut:
		if !packet.DecrementTTL(p.frame, info) {
			w.drop(p, DropTTLExpired)
			return
		}
		packet.RewriteSrcAddr(p.frame, info, fe.addr)
		packet.RewriteDstAddr(p.frame, info, fe.to)
		w.countFlow(p, fe.svc, fe.dest, fe.action == fragFullNATIn)
		w.output(p, fe.to)
	case fragDR, fragTUN:
		if !packet.DecrementTTL(p.frame, info) {
			w.drop(p, DropTTLExpired)
			return
		}
		w.countFlow(p, fe.svc, fe.dest, true)
		if fe.action == fragDR {
			w.output(p, fe.addr)
		} else {
			w.tunnel(p, fe.addr, fe.tun)
		}
	default:
		w.drop(p, DropBadMethod)
	}
}
