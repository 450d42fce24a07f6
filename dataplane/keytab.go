package dataplane

import "encoding/binary"

// keyTable maps an (address, port, protocol) key to an index: a snapshot's services
// and NAT real servers as the per-packet path looks them up. Built once from a map and
// never changed (it lives in an immutable Snapshot); pointer-free; linear probing over
// a power-of-two array at most half full, so a probe ends at an empty slot within a few
// slots. Lookups of keys that are not there (most packets' source address is not a real
// server) end at the first empty slot.
type keyTable struct {
	slots []keySlot
	mask  uint32
}

type keySlot struct {
	addr  [16]byte
	port  uint16
	proto uint8
	used  bool
	val   int32
}

func newKeyTable(m map[SvcKey]int32) keyTable {
	n := 8
	for n < 2*len(m) {
		n <<= 1
	}
	t := keyTable{slots: make([]keySlot, n), mask: uint32(n - 1)}
	for k, v := range m {
		i := keyHash(&k.Addr, k.Port, k.Proto) & t.mask
		for t.slots[i].used {
			i = (i + 1) & t.mask
		}
		t.slots[i] = keySlot{addr: k.Addr, port: k.Port, proto: k.Proto, used: true, val: v}
	}
	return t
}

func keyHash(addr *[16]byte, port uint16, proto uint8) uint32 {
	a := binary.LittleEndian.Uint64(addr[0:8])
	b := binary.LittleEndian.Uint64(addr[8:16])
	h := (a*0x9E3779B97F4A7C15 ^ b) * 0xBF58476D1CE4E5B9
	h ^= uint64(port)<<8 | uint64(proto)
	h *= 0x94D049BB133111EB
	return uint32(h >> 32)
}

// get returns the value of (addr, port, proto).
func (t *keyTable) get(addr *[16]byte, port uint16, proto uint8) (int32, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	for i := keyHash(addr, port, proto) & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if !s.used {
			return 0, false
		}
		if s.port == port && s.proto == proto && s.addr == *addr {
			return s.val, true
		}
	}
}
