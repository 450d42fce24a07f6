package dataplane

import (
	"encoding/binary"
	"sync"

	"xlvs/conntrack"
)

// Persistence templates (ipvsadm -p, -M): a client address, masked by the service's
// netmask, stays with the real server it was first given for the persistence timeout
// after its last packet. IPVS keeps a template entry in its connection table; here the
// templates live in a table of their own: fixed size, pointer-free, sharded, each shard
// an open-addressed array probed over a short window. A full window evicts the slot that
// expires first. Deviation from IPVS: a template's timer restarts with every packet of
// the client to the service (IPVS restarts it when the last connection it controls
// ends), which keeps a client pinned at least as long.

const (
	persistShards = 64
	persistWindow = 8
)

type persistKey struct {
	svc  uint32
	addr [16]byte
}

type persistSlot struct {
	key     persistKey
	dest    uint32
	used    bool
	expires int64
	// The template's sync state, for a sync master's one-packet datagrams
	// (syncOnePacket): IPVS's sync_endtime (the end time last sent, the creation time at
	// first), the retries kept in its low bits, and in_pkts.
	syncEnd     int64
	syncRetries uint8
	syncPkts    uint32
}

type persistShard struct {
	mu    sync.Mutex
	slots []persistSlot
	_     [40]byte // keep shards' locks on separate cache lines
}

type persistTable struct {
	shards [persistShards]persistShard
	mask   uint64 // slots per shard - 1
}

func newPersistTable(slots int) *persistTable {
	per := 1
	for per*persistShards < slots {
		per <<= 1
	}
	t := &persistTable{mask: uint64(per - 1)}
	for i := range t.shards {
		t.shards[i].slots = make([]persistSlot, per)
	}
	return t
}

// set makes k the template key of client address a for service svc: a masked by the
// service's persistence netmask, its first bits bits (of the 128-bit space: an IPv4 /24
// is 120; 128 and more keep it whole). The address is written, and read by hash and
// equal, in two 8-byte words: byte-wise stores read back by wider loads (a masked copy
// returned and then copied into a key) stall store-to-load forwarding, on every client
// packet of a persistent service.
func (k *persistKey) set(svc uint32, a *[16]byte, bits uint8) {
	hi, lo := binary.BigEndian.Uint64(a[0:8]), binary.BigEndian.Uint64(a[8:16])
	if b := uint(min(bits, 128)); b >= 64 {
		lo &= ^uint64(0) << (128 - b)
	} else {
		hi &= ^uint64(0) << (64 - b)
		lo = 0
	}
	k.svc = svc
	binary.BigEndian.PutUint64(k.addr[0:8], hi)
	binary.BigEndian.PutUint64(k.addr[8:16], lo)
}

// equal is *k == *o, word by word (see set).
func (k *persistKey) equal(o *persistKey) bool {
	return k.svc == o.svc && binary.NativeEndian.Uint64(k.addr[0:8]) == binary.NativeEndian.Uint64(o.addr[0:8]) &&
		binary.NativeEndian.Uint64(k.addr[8:16]) == binary.NativeEndian.Uint64(o.addr[8:16])
}

func (k *persistKey) hash() uint64 {
	h := uint64(k.svc)*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(k.addr[0:8])
	h = (h ^ h>>31) * 0xbf58476d1ce4e5b9
	h ^= binary.LittleEndian.Uint64(k.addr[8:16])
	h = (h ^ h>>27) * 0x94d049bb133111eb
	return h ^ h>>31
}

// lookup returns the destination of a live template and restarts its timer.
func (t *persistTable) lookup(k *persistKey, now, timeout int64) (uint32, bool) {
	h := k.hash()
	sh := &t.shards[h%persistShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := uint64(0); i < persistWindow; i++ {
		s := &sh.slots[(h/persistShards+i)&t.mask]
		if s.used && s.key.equal(k) {
			if s.expires <= now {
				s.used = false
				return 0, false
			}
			s.expires = now + timeout
			return s.dest, true
		}
	}
	return 0, false
}

// set creates or replaces the template of k.
func (t *persistTable) set(k *persistKey, dest uint32, now, timeout int64) {
	h := k.hash()
	sh := &t.shards[h%persistShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var victim *persistSlot
	for i := uint64(0); i < persistWindow; i++ {
		s := &sh.slots[(h/persistShards+i)&t.mask]
		if s.used && s.key.equal(k) {
			victim = s
			break
		}
		if !s.used || s.expires <= now {
			if victim == nil || victim.used {
				victim = s
			}
			continue
		}
		if victim == nil || (victim.used && s.expires < victim.expires) {
			victim = s
		}
	}
	// Field by field, as set writes keys.
	victim.key.svc = k.svc
	copyAddr(&victim.key.addr, &k.addr)
	victim.dest, victim.used, victim.expires = dest, true, now+timeout
	victim.syncEnd, victim.syncRetries, victim.syncPkts = now, 0, 0
}

// syncOnePacket counts a one-packet datagram of a sync master against the live template
// k (timeout: the service's persistence) and tells whether the template is to be sent
// now, by IPVS's rule for templates (templateSyncDue); false without a live template.
func (t *persistTable) syncOnePacket(k *persistKey, now, timeout int64, pol *conntrack.SyncPolicy) bool {
	h := k.hash()
	sh := &t.shards[h%persistShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := uint64(0); i < persistWindow; i++ {
		s := &sh.slots[(h/persistShards+i)&t.mask]
		if s.used && s.key.equal(k) {
			if s.expires <= now {
				return false
			}
			s.syncPkts++
			return templateSyncDue(pol, &s.syncEnd, &s.syncRetries, s.syncPkts, now, timeout)
		}
	}
	return false
}

// count returns the live templates per destination ID (for --persistent-conn).
func (t *persistTable) count(now int64) map[uint32]uint32 {
	out := map[uint32]uint32{}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, s := range sh.slots {
			if s.used && s.expires > now {
				out[s.dest]++
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// walk calls f with every live template, one shard locked at a time (f must not use the
// table).
func (t *persistTable) walk(now int64, f func(svc, dest uint32, client [16]byte, expiresIn int64)) {
	var buf [persistWindow * 8]persistSlot
	for i := range t.shards {
		sh := &t.shards[i]
		for start := 0; start < len(sh.slots); start += len(buf) {
			sh.mu.Lock()
			n := copy(buf[:], sh.slots[start:])
			sh.mu.Unlock()
			for _, s := range buf[:n] {
				if s.used && s.expires > now {
					f(s.key.svc, s.dest, s.key.addr, s.expires-now)
				}
			}
		}
	}
}

// maskPersist keeps the first bits bits of a, as persistKey.set does.
func maskPersist(a [16]byte, bits uint8) [16]byte {
	var k persistKey
	k.set(0, &a, bits)
	return k.addr
}
