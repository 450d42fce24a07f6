package conntrack

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Errors. Insert and Apply return these sentinels as they are (no wrapping,
// no allocation); New wraps ErrConfig with the detail.
var (
	// ErrFull: the shard the connection belongs to is at capacity and holds
	// no entry that may be evicted (all ESTABLISHED). Drop the packet.
	ErrFull = errors.New("insert or apply connection: table full and every entry of the shard is ESTABLISHED; drop the packet (or the synced entry) or raise MaxEntries")
	// ErrExists: the original or reply key is already present, typically
	// because another worker inserted the same connection first. Look it up
	// again.
	ErrExists = errors.New("insert or apply connection: a connection with this original or reply key exists; look it up instead")
	// ErrNotOpener: the packet may not create a connection (TCP without SYN
	// while not sloppy, or with RST; SCTP whose event chunk is not INIT, or with
	// SloppySCTP is ABORT). Check MayCreate before Insert.
	ErrNotOpener = errors.New("insert connection: packet may not open a connection; only a TCP SYN without RST (any flags but RST with SloppyTCP) or an SCTP INIT (any chunk but ABORT with SloppySCTP) may")
	// ErrProto: the protocol is not TCP, UDP or SCTP.
	ErrProto = errors.New("insert or apply connection: protocol not tracked; want TCP (6), UDP (17) or SCTP (132)")
	// ErrDest: Entry.Dest is not below Config.MaxDests.
	ErrDest = errors.New("insert or apply connection: destination id out of range; want Dest < Config.MaxDests")
	// ErrMethod: unknown Method.
	ErrMethod = errors.New("insert or apply connection: unknown forwarding method; want MethodNAT, MethodDR, MethodTUN or MethodFullNAT")
	// ErrReply: a NAT or FULLNAT entry lacks a Reply key of the original's
	// protocol.
	ErrReply = errors.New("insert or apply connection: NAT/FULLNAT entry without a reply key of the original's protocol; set Reply to the key replies will arrive with")
	// ErrShardMismatch: ShardOf(Reply.Dst, Reply.DstPort) differs from
	// ShardOf(Orig.Src, Orig.SrcPort). FULLNAT must choose its local port so
	// that they are equal.
	ErrShardMismatch = errors.New("insert or apply connection: reply key lies in another shard than the original key; choose the local endpoint so that ShardOf(Reply.Dst, Reply.DstPort) == ShardOf(Orig.Src, Orig.SrcPort)")
	// ErrCrowded: the original key's home already holds maxSameHome keys. Keys share a
	// home when they share their client endpoint (origHash, replyHash), so this is one
	// client address and port with about that many connections at once,
	// to as many services (or ports of a port-0 or fwmark service): what no real client
	// has, and what would otherwise make every insert and lookup near that home walk
	// them all. Drop the packet.
	ErrCrowded = errors.New("insert connection: too many connections from one client address and port (about 128 NAT or 256 DR/TUN ones at once); a new one needs another source port")
	// ErrClosed: the table was closed; it holds nothing and takes nothing.
	ErrClosed = errors.New("insert or apply connection: table closed")
	// ErrConfig: New was given an unusable Config.
	ErrConfig = errors.New("invalid config")
)

// Status is the outcome of Lookup.
type Status uint8

const (
	// Found: the entry was found, updated and copied out.
	Found Status = iota
	// NotFound: no live entry. For DirOrig the packet may create a
	// connection: schedule it and Insert.
	NotFound
	// Reused: a SYN hit an entry IPVS would expire and replace
	// (conn_reuse_mode, TIME_WAIT/CLOSE, or FIN_WAIT of DR/TUN with bit 2).
	// The old entry is gone (it was copied to out for reference): schedule
	// anew and Insert.
	Reused
	// Invalid: no live entry, and the packet may not create one (a TCP
	// packet of DirOrig that fails MayCreate). Drop or pass it.
	Invalid
)

func (s Status) String() string {
	switch s {
	case Found:
		return "found"
	case NotFound:
		return "not found"
	case Reused:
		return "reused"
	case Invalid:
		return "invalid"
	}
	return "Status(?)"
}

// Entry is what the caller inserts and what Lookup and Walk copy out.
type Entry struct {
	Orig    Key    // client → VIP as received
	Reply   Key    // real server → client (NAT) or → local address (FULLNAT), as the reply will arrive; DR/TUN: none (Insert clears it)
	Dest    uint32 // destination id, < Config.MaxDests
	Service uint32 // service id
	Method  Method
	State   State // filled by the table
	// Prior is filled by the table: for Lookup and LookupBatch of a Found packet, the
	// state the packet found (State is the one it leaves); StateNone in every other
	// output. FULLNAT's TOA option goes on the client packet that finds SYN_RECV (the
	// handshake's ACK).
	Prior State
	Flags uint16 // caller's flags, stored and returned as they are
	// Sync is set by the table on output, ignored on input: true when a sync master sends
	// the connection now (IPVS's ip_vs_sync_conn_needed; see SetSync). Only Lookup and
	// LookupBatch of a DirOrig packet that find the entry, and Insert, set it, and only
	// while sync is on; every other output (Reused, Get, Walk, replies) has it false.
	Sync bool
}

// Conn reuse modes (IPVS's conn_reuse_mode sysctl).
const (
	// ConnReuseDefault selects the kernel default, 1.
	ConnReuseDefault = 0
	// ConnReuseOff is the kernel's 0: a SYN that hits an old entry keeps
	// using it (and its real server).
	ConnReuseOff = -1
	// ConnReuseReschedule (1): a SYN hitting TIME_WAIT or CLOSE expires the
	// entry and is scheduled anew.
	ConnReuseReschedule = 1
	// ConnReuseFinWait (2): as 1, plus FIN_WAIT of DR/TUN connections.
	ConnReuseFinWait = 2
)

// Config configures a Table.
type Config struct {
	// MaxEntries is the hard cap on connections; memory for all of them is
	// reserved by New (about 121 bytes per entry, see EntryBytes).
	MaxEntries int
	// Shards is a power of two; 0 means 64 (fewer for tables smaller than
	// 1024 entries, so each shard holds at least 16).
	Shards int
	// MaxDests bounds destination ids; 0 means DefaultMaxDests.
	MaxDests int
	// Timeouts per state in seconds; zero fields take DefaultTimeouts().
	Timeouts Timeouts
	// SloppyTCP lets any TCP packet without RST create a connection
	// (IPVS's sloppy_tcp).
	SloppyTCP bool
	// SloppySCTP lets any SCTP packet whose event chunk is not an ABORT create a
	// connection (IPVS's sloppy_sctp), not only an INIT.
	SloppySCTP bool
	// SecureTCP uses IPVS's secure_tcp ("dos") state tables.
	SecureTCP bool
	// ConnReuseMode is one of the ConnReuse constants; 0 is the kernel
	// default (ConnReuseReschedule).
	ConnReuseMode int
	// ShardKey, when not all zero, keys the shard choice (ShardOf) instead of a random
	// seed. Two tables with the same ShardKey and the same number of shards put every
	// endpoint in the same shard, which a FULLNAT connection needs to move from one table
	// to another (a sync backup's, a restarted daemon's): its local port was chosen so
	// that its two endpoints share a shard. Keep it secret as any hash key: a sender
	// who knows it can aim every connection at one shard. The index hash is random
	// whatever this is.
	ShardKey [ShardKeyLen]byte
	// Prefault makes all of the table's memory resident in New, so that no
	// packet waits while the kernel zeroes a page for it. Without it a new
	// table's pages are faulted in by its first connections: the index is
	// hashed, so the first few hundred connections touch most of its huge
	// pages, and a director starting (or taking over) under load spends its
	// first second zeroing memory and drops packets meanwhile. xlvsd sets it.
	Prefault bool
	// BasePages maps the table without asking for transparent huge pages, for a
	// table that must take its first entries at once (a restarted daemon's import,
	// while packets wait): a first touch then costs a base page (microseconds), not
	// a zeroed 2 MiB page that the kernel may first compact memory for (measured on a
	// loaded 2-core machine: 5 to 190 ms for 9 entries of a 4Mi-entry table). Call
	// Settle afterwards for huge pages and a resident table. Prefault ignores it.
	BasePages bool
}

// TableStats are cumulative counters since New, plus the current size.
type TableStats struct {
	Entries  int    // connections held now (expired ones not yet reaped included)
	Capacity int    // MaxEntries
	Inserts  uint64 // successful Inserts
	Exists   uint64 // Inserts refused with ErrExists
	Full     uint64 // Inserts refused with ErrFull
	Crowded  uint64 // Inserts refused with ErrCrowded
	Evicted  uint64 // live non-ESTABLISHED entries evicted to make room
	Expired  uint64 // entries removed because their timer ran out (Reap, or found expired)
	Reused   uint64 // entries replaced by a SYN (Status Reused)
	Removed  uint64 // entries removed by RemoveDest
	Applied  uint64 // connections created or updated by Apply (a sync backup's)
}

// DefaultMaxDests is Config.MaxDests's default: destination ids below 65536.
const DefaultMaxDests = 65536

// EntryBytes bounds the memory New reserves per entry of capacity (Config.MaxEntries) in a
// large table: its share of the shard's pages at full load (records and index, see
// pageBytes: 2 index slots per entry at load 5/6, so pageSlots/2.4 entries' worth of a
// page, 76.8 bytes), the cold parts and sync slots of those pages' records (42) and
// their free words (0.15), and its share of Walk's buffer (1.5), rounded up (measured:
// 120.88 bytes). Small tables take more per entry: the per-destination counts and page
// rounding are fixed costs.
const EntryBytes = (2*loadDen*(pageBytes+pageRecs*int(unsafe.Sizeof(coldRec{})+unsafe.Sizeof(syncSlot{}))+8)+loadNum*pageSlots-1)/(loadNum*pageSlots) +
	2 // Walk's buffer, 1.5

const (
	defaultShards   = 64
	maxMaxDests     = 1 << 24
	minShardEntries = 16
	// Index load when a shard is full: 2 keys per entry in
	// 2*cap*loadDen/loadNum + 1 slots (5/6: 9.6 bytes of index per entry).
	loadNum    = 5
	loadDen    = 6
	minTagBits = 4
	// Slots keep up to maxDistBits of probe distance and want wantTagBits
	// of hash tag; the distance gets what the tag leaves.
	maxDistBits = 6
	wantTagBits = 7
	noIdx       = ^uint32(0)
)

// Pages. A shard's records and index share its 4 KiB pages: each page holds idxLines
// cache lines of index (pageSlots slots) and then pageRecs records. Record refs count
// the page's 64-byte lines, so record ref lies at byte ref*64 of the shard's pages and
// the refs page*pageRefs+0 ... +idxLines-1 are the index's lines, never records; index
// slot i is word slotWord(i). An insert takes its record from the page of its original
// key's home slot when that page has one free (alloc), and a NAT connection's reply key
// shares that home (origHash, replyHash): a lookup then reads its index window and its
// record within one page. On this project's VM a random access costs its page, not its
// line: a second line of the same 4 KiB page is nearly free, one of another page (even
// of the same 2 MiB huge page) costs as much as the first (BENCHMARKS.md, "The floor
// under a 10 M-entry lookup").
const (
	pageBytes = 4096
	pageRefs  = pageBytes / 64 // 64-byte lines per page
	idxLines  = 8
	pageSlots = idxLines * 64 / 4 // 128
	pageRecs  = pageRefs - idxLines
	// pageFreeAll is the free word of a page whose records are all free.
	pageFreeAll = uint64(1<<64 - 1<<idxLines)
)

// slotWord is the word of a shard's pages that holds index slot i.
//
// i is never negative: computed unsigned, it is two shifts and a mask (signed, twice
// the instructions, and called a dozen times per new connection).
func slotWord(i int) int { return int(uint(i)/pageSlots*(pageBytes/4) + uint(i)%pageSlots) }

// isIndexLine reports whether record ref is one of a page's index lines.
func isIndexLine(ref uint32) bool { return ref%pageRefs < idxLines }

// dense is the place of record ref in the arrays parallel to the records (cold parts,
// sync slots), which have no places for the pages' index lines.
func dense(ref uint32) uint32 { return ref/pageRefs*pageRecs + ref%pageRefs - idxLines }

// shardPages is how many pages a shard of n entries takes: enough index slots for its
// load (shardSlots) and enough records.
func shardPages(n int) int {
	return max((shardSlots(n)+pageSlots-1)/pageSlots, (n+pageRecs-1)/pageRecs)
}

// record is the hot part of one connection: one 64-byte cache line, all that
// a lookup of an IPv4 connection (or of an IPv6 one in DR/TUN, which has no
// reply key) reads and writes. Pointer-free.
//
// Addresses are stored in one of two forms, told by metaV4:
//   - v4 (every address of the entry IPv4-mapped): a[0:16] holds the IPv4
//     addresses oSrc, oDst, rSrc, rDst, 4 bytes each; a[16:32] is zero and
//     the cold part is not used.
//   - v6: a holds oSrc and oDst in full; the cold part (coldRec) holds rSrc
//     and rDst.
type record struct {
	a              [32]byte
	oSport, oDport uint16
	rSport, rDport uint16
	expires        uint32 // milliseconds, wrapping; see msOf
	meta           uint32 // see packMeta
	dest           uint32
	service        uint32
	// prev and next link the shard's list of non-ESTABLISHED entries, oldest
	// first (eviction order).
	prev, next uint32
}

// coldRec is the cold part of a connection, in an array parallel to the
// records: the reply key's addresses of a v6-form NAT or FULLNAT entry. Only
// such entries read or write it.
type coldRec struct {
	rSrc, rDst [16]byte
}

// meta packs: proto | caller's flags<<8 | state (5 bits)<<24 | method (2 bits)<<29 |
// v4 form<<31. A record is in use when its proto is not 0 (every tracked protocol's
// number is nonzero).
const (
	metaV4        = 1 << 31
	metaStateMask = 0x1f // a state takes 5 bits of meta (numStates <= 32)
)

func (r *record) used() bool       { return r.meta&0xff != 0 }
func (r *record) v4() bool         { return r.meta&metaV4 != 0 }
func (r *record) proto() uint8     { return uint8(r.meta) }
func (r *record) state() State     { return State(r.meta >> 24 & metaStateMask) }
func (r *record) method() Method   { return Method(r.meta >> 29 & 0x3) }
func (r *record) setState(s State) { r.meta = r.meta&^(metaStateMask<<24) | uint32(s)<<24 }

func packMeta(proto uint8, flags uint16, s State, m Method, v4 bool) uint32 {
	v := uint32(0)
	if v4 {
		v = metaV4
	}
	return uint32(proto) | uint32(flags)<<8 | uint32(s)<<24 | uint32(m)<<29 | v
}

// is4 reports whether a is IPv4-mapped (::ffff:a.b.c.d).
func is4(a *[16]byte) bool {
	return binary.LittleEndian.Uint64(a[0:8]) == 0 && binary.LittleEndian.Uint32(a[8:12]) == 0xffff0000
}

// w32 is the 32-bit word at a[i:i+4].
func w32(a []byte, i int) uint32 { return binary.LittleEndian.Uint32(a[i:]) }

// hi4 is the high half, as le64 reads it, of the IPv4-mapped address of the IPv4
// address whose w32 is w; the low half is 0.
func hi4(w uint32) uint64 { return 0xffff0000 | uint64(w)<<32 }

// eq4 reports whether a is the IPv4-mapped address of w (w32 of an IPv4 address).
func eq4(a *[16]byte, w uint32) bool {
	return binary.LittleEndian.Uint64(a[0:8]) == 0 && binary.LittleEndian.Uint64(a[8:16]) == hi4(w)
}

// put4 makes *a the IPv4-mapped address of the IPv4 address w (w32 of its
// 4 bytes), with two 8-byte stores (byte-wise stores followed by 16-byte
// loads of the address would stall store-to-load forwarding).
func put4(a *[16]byte, w uint32) {
	binary.LittleEndian.PutUint64(a[0:8], 0)
	binary.LittleEndian.PutUint64(a[8:16], hi4(w))
}

// matches reports whether entry ref (record r, cold part c) has key k in
// direction dir.
func (r *record) matches(c *coldRec, dir Dir, k *Key) bool {
	m := r.meta
	if uint8(m) != k.Proto {
		return false
	}
	if dir == DirOrig {
		if r.oSport != k.SrcPort || r.oDport != k.DstPort {
			return false
		}
		if m&metaV4 != 0 {
			return eq4(&k.Src, w32(r.a[:], 0)) && eq4(&k.Dst, w32(r.a[:], 4))
		}
		return [16]byte(r.a[0:16]) == k.Src && [16]byte(r.a[16:32]) == k.Dst
	}
	if r.rSport != k.SrcPort || r.rDport != k.DstPort {
		return false
	}
	if m&metaV4 != 0 {
		return eq4(&k.Src, w32(r.a[:], 8)) && eq4(&k.Dst, w32(r.a[:], 12))
	}
	return c.rSrc == k.Src && c.rDst == k.Dst
}

// origKey is the entry's original key.
func (r *record) origKey(k *Key) {
	if r.v4() {
		put4(&k.Src, w32(r.a[:], 0))
		put4(&k.Dst, w32(r.a[:], 4))
	} else {
		k.Src, k.Dst = [16]byte(r.a[0:16]), [16]byte(r.a[16:32])
	}
	k.SrcPort, k.DstPort, k.Proto = r.oSport, r.oDport, r.proto()
}

// replyKey is the entry's reply key (NAT and FULLNAT only).
func (r *record) replyKey(c *coldRec, k *Key) {
	if r.v4() {
		put4(&k.Src, w32(r.a[:], 8))
		put4(&k.Dst, w32(r.a[:], 12))
	} else {
		k.Src, k.Dst = c.rSrc, c.rDst
	}
	k.SrcPort, k.DstPort, k.Proto = r.rSport, r.rDport, r.proto()
}

// addrs4 reports whether both of k's addresses are IPv4.
func (k *Key) addrs4() bool { return is4(&k.Src) && is4(&k.Dst) }

// coldForm reports whether e's record would use its cold part (set): an entry with a
// reply key (NAT, FULLNAT) not in v4 form.
func coldForm(e *Entry) bool { return e.Method.twoWay() && !(e.Orig.addrs4() && e.Reply.addrs4()) }

// set stores connection e's keys, destination, service and meta (in state st)
// in r and, for a v6-form NAT or FULLNAT entry, c.
func (r *record) set(c *coldRec, e *Entry, st State) {
	o, p := &e.Orig, &e.Reply
	twoWay := e.Method.twoWay()
	v4 := o.addrs4() && (!twoWay || p.addrs4())
	r.a = [32]byte{}
	switch {
	case v4:
		copy(r.a[0:4], o.Src[12:])
		copy(r.a[4:8], o.Dst[12:])
		if twoWay {
			copy(r.a[8:12], p.Src[12:])
			copy(r.a[12:16], p.Dst[12:])
		}
	default:
		copy(r.a[0:16], o.Src[:])
		copy(r.a[16:32], o.Dst[:])
		if twoWay {
			c.rSrc, c.rDst = p.Src, p.Dst
		}
	}
	r.oSport, r.oDport = o.SrcPort, o.DstPort
	if twoWay {
		r.rSport, r.rDport = p.SrcPort, p.DstPort
	} else {
		r.rSport, r.rDport = 0, 0
	}
	r.dest = e.Dest
	r.service = e.Service
	r.meta = packMeta(o.Proto, e.Flags, st, e.Method, v4)
}

func (r *record) copyOut(c *coldRec, out *Entry) {
	m := r.meta
	p := uint8(m)
	method := Method(m >> 29 & 0x3)
	twoWay := method.twoWay()
	o, rp := &out.Orig, &out.Reply
	if m&metaV4 != 0 {
		put4(&o.Src, w32(r.a[:], 0))
		put4(&o.Dst, w32(r.a[:], 4))
		if twoWay {
			put4(&rp.Src, w32(r.a[:], 8))
			put4(&rp.Dst, w32(r.a[:], 12))
		}
	} else {
		o.Src, o.Dst = [16]byte(r.a[0:16]), [16]byte(r.a[16:32])
		if twoWay {
			rp.Src, rp.Dst = c.rSrc, c.rDst
		}
	}
	o.SrcPort, o.DstPort, o.Proto = r.oSport, r.oDport, p
	if twoWay {
		rp.SrcPort, rp.DstPort, rp.Proto = r.rSport, r.rDport, p
	} else {
		*rp = Key{}
	}
	out.Dest = r.dest
	out.Service = r.service
	out.Method = method
	out.State = State(m >> 24 & metaStateMask)
	out.Prior = StateNone
	out.Flags = uint16(m >> 8)
	out.Sync = false
}

// shard owns its pages (records and index, see pageBytes), their free words and its
// lock.
// Fields are ordered by use: the lock and the record and index headers (all
// a lookup touches) fit one cache line; the free words, eviction list and
// count (inserts and removals) follow; the statistics come last.
// paddedShard keeps any cache line from holding fields of two shards.
type shard struct {
	mu   shardLock
	recs []record // the shard's pages as records (a page's first idxLines are index)
	// idx is the open-addressing index over both keys of every entry: the same pages
	// as words, slot i at word slotWord(i).
	// A slot is 0 (empty) or tag<<tagPos | dist<<refBits | (ref+1):
	// ref = record<<1 | dir; dist is the slot's distance from the key's
	// home slot, saturated at distMax ("look it up"); tag is the top bits
	// of the key's hash.
	idx []uint32
	// syncp is &sync[0] (see slot): a sync master's lookups reach the slots from
	// this cache line.
	syncp unsafe.Pointer

	// cold is the cold part of each record, by the record's ref (see
	// coldRec): read only for v6-form NAT and FULLNAT entries.
	cold []coldRec

	hwm        uint32 // records [0, hwm) have been handed out at least once
	cap        uint32 // the most entries the shard holds (its share of MaxEntries)
	head, tail uint32 // non-ESTABLISHED list, oldest at head
	// pfree has a word per page: bit l is set when record page*pageRefs+l is free
	// (bits below idxLines, the index's lines, never are); psum has a bit per page,
	// set when the page's word is not 0.
	pfree, psum []uint64
	count       int32 // live + not yet reaped entries; written under mu (addCount), read with atomic loads
	// syncUsed: some slot of sync may be nonzero (written by a master's lookup or
	// insert, or by Apply). Until then an Insert with sync off leaves its slot alone.
	syncUsed bool
	// sync is the connection-sync state of each record, by the record's ref (see
	// syncSlot); touched only while sync is on, by Apply, and by an Insert into a
	// shard whose slots were used.
	sync []syncSlot

	inserts, exists, full, crowded, evicted, expired, reused, removed, applied uint64
}

// coldOf is the cold part of record ref when it is in v6 form, else nil (a v4-form
// record never reads it): lookups of IPv4 connections do not touch the cold
// array, nor the slice header in the shard's second cache line.
// coldAddr is the address of the cold part at dense index d (< len(sh.cold)), for
// prefetching.
func (sh *shard) coldAddr(d uint32) uintptr {
	return uintptr(unsafe.Pointer(unsafe.SliceData(sh.cold))) + uintptr(d)*unsafe.Sizeof(coldRec{})
}

func (sh *shard) coldOf(ref uint32) *coldRec {
	if sh.recs[ref].v4() {
		return nil
	}
	return &sh.cold[dense(ref)]
}

// paddedShard keeps shards on separate cache lines.
type paddedShard struct {
	shard
	_ [128 - unsafe.Sizeof(shard{})%128]byte
}

// Table is a sharded connection table. See the package documentation for
// the concurrency contract.
type Table struct {
	// Read by every operation, written only by New.
	shards     []paddedShard
	shardBits  uint
	seed       [seedWords]uint64
	refBits    uint32 // slot layout, see shard.idx
	refMask    uint32
	distMax    uint32
	tagPos     uint32 // tag's position in a slot
	tagShift   uint32 // tag's position in a hash
	maxDests   uint32
	cap        int
	tables     *tcpTables
	sloppy     bool // sloppy_tcp
	sloppySCTP bool // sloppy_sctp
	reuseMode  int
	hint       bool // LookupBatch prefetches (see hintMin)

	// syncPol is the sync master's policy (SetSync); nil while sync is off. Read
	// without locks by every lookup that finds an entry.
	syncPol atomic.Pointer[syncPolicy]

	dests []destState // per destination id

	timeoutMS [numStates]atomic.Uint32

	// Written by Reap, Walk and Close: kept off the cache lines above, which
	// every lookup reads.
	_         [64]byte
	reapMu    sync.Mutex // guards the Reap cursor
	reapShard int
	reapPos   uint32

	walkMu    sync.Mutex
	walkBuf   []record
	walkCold  []coldRec
	walkEntry Entry

	closeMu sync.Mutex
	mem     arena // records and indexes of all shards
	cleanup runtime.Cleanup
}

// New builds a table, reserving all of its memory.
func New(cfg Config) (*Table, error) {
	if cfg.MaxEntries < 1 {
		return nil, fmt.Errorf("new table: MaxEntries %d; want at least 1: %w", cfg.MaxEntries, ErrConfig)
	}
	shards := cfg.Shards
	if shards == 0 {
		shards = defaultShards
		for shards > 1 && cfg.MaxEntries/shards < minShardEntries {
			shards /= 2
		}
	}
	if shards < 1 || shards&(shards-1) != 0 || shards > 1<<16 {
		return nil, fmt.Errorf("new table: Shards %d; want a power of two from 1 to 65536: %w", shards, ErrConfig)
	}
	if shards > cfg.MaxEntries {
		return nil, fmt.Errorf("new table: Shards %d exceeds MaxEntries %d; want at least one entry per shard: %w", shards, cfg.MaxEntries, ErrConfig)
	}
	maxDests := cfg.MaxDests
	if maxDests == 0 {
		maxDests = DefaultMaxDests
	}
	if maxDests < 1 || maxDests > maxMaxDests {
		return nil, fmt.Errorf("new table: MaxDests %d; want 1 to %d: %w", maxDests, maxMaxDests, ErrConfig)
	}
	switch cfg.ConnReuseMode {
	case ConnReuseOff, ConnReuseDefault, 1, 2, 3:
	default:
		return nil, fmt.Errorf("new table: ConnReuseMode %d; want -1 (off), 0 (default), 1, 2 or 3: %w", cfg.ConnReuseMode, ErrConfig)
	}
	to := DefaultTimeouts()
	for s := State(0); s < numStates; s++ {
		v := cfg.Timeouts.Of(s)
		if v < 0 || v > MaxTimeout {
			return nil, fmt.Errorf("new table: timeout of %v is %d s; want 0 (default) to %d: %w", s, v, MaxTimeout, ErrConfig)
		}
		if v > 0 {
			*to.field(s) = v
		}
	}

	per := cfg.MaxEntries / shards
	extra := cfg.MaxEntries % shards
	maxPer := per
	if extra > 0 {
		maxPer++
	}
	maxRefs := shardPages(maxPer) * pageRefs
	refBits := uint32(bits.Len32(uint32(2 * maxRefs)))
	if uint64(2*maxRefs) >= 1<<(32-minTagBits) {
		return nil, fmt.Errorf("new table: %d entries per shard is too many for the index; want fewer than %d (use more shards): %w", maxPer, 1<<(32-minTagBits-1), ErrConfig)
	}
	distBits := min(max(int(32-refBits)-wantTagBits, 0), maxDistBits)
	tagPos := refBits + uint32(distBits)

	t := &Table{
		shards:     make([]paddedShard, shards),
		shardBits:  uint(bits.TrailingZeros(uint(shards))),
		refBits:    refBits,
		refMask:    1<<refBits - 1,
		distMax:    1<<distBits - 1,
		tagPos:     tagPos,
		tagShift:   32 + tagPos,
		maxDests:   uint32(maxDests),
		cap:        cfg.MaxEntries,
		dests:      make([]destState, maxDests),
		tables:     &normalTables,
		sloppy:     cfg.SloppyTCP,
		sloppySCTP: cfg.SloppySCTP,
		reuseMode:  cfg.ConnReuseMode,
		walkBuf:    make([]record, maxPer),
		walkCold:   make([]coldRec, maxPer),
	}
	if cfg.SecureTCP {
		t.tables = &secureTables
	}
	if t.reuseMode == ConnReuseDefault {
		t.reuseMode = ConnReuseReschedule
	}
	var seed [seedWords * 8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("new table: read random hash seed: %w", err)
	}
	if cfg.ShardKey != ([ShardKeyLen]byte{}) {
		// The shard hash's words come from the shared key; the index hash stays random.
		x := sha256.Sum256(append([]byte("xlvs conntrack shard key v1\x00"), cfg.ShardKey[:]...))
		copy(seed[shardSeedWord*8:], x[:])
	}
	for i := range t.seed {
		t.seed[i] = binary.LittleEndian.Uint64(seed[i*8:]) | 1
	}
	size := arenaPad + pageBytes // pageBytes: room to align the pages
	for i := range t.shards {
		pages := shardPages(shardEntries(per, extra, i))
		size += pages*pageBytes + (pages*pageRecs*int(unsafe.Sizeof(coldRec{}))+63)&^63 +
			(pages*pageRecs*int(unsafe.Sizeof(syncSlot{}))+63)&^63 + (pages*8+63)&^63 + (pages/64*8+8+63)&^63
	}
	t.mem = newArena(size, cfg.BasePages && !cfg.Prefault)
	if cfg.Prefault {
		t.mem.prefault()
	}
	t.hint = hintsWork && size >= hintMin
	rest := t.mem.mem
	// The pages of all shards, one after another from a 4 KiB boundary (a mapped
	// arena's start is one).
	rest = rest[int(-uintptr(unsafe.Pointer(unsafe.SliceData(rest)))&(pageBytes-1)):]
	for i := range t.shards {
		sh := &t.shards[i].shard
		n := shardEntries(per, extra, i)
		pages := shardPages(n)
		sh.recs = carve[record](&rest, pages*pageRefs)
		sh.idx = unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(sh.recs))), pages*pageBytes/4)
		sh.cap = uint32(n)
		sh.head, sh.tail = noIdx, noIdx
	}
	for i := range t.shards {
		sh := &t.shards[i].shard
		pages := len(sh.recs) / pageRefs
		sh.pfree = carve[uint64](&rest, pages)
		sh.psum = carve[uint64](&rest, pages/64+1)
		for p := range sh.pfree {
			sh.pfree[p] = pageFreeAll
			sh.psum[p/64] |= 1 << (p % 64)
		}
	}
	// The cold parts and the sync slots come last: a director without IPv6 NAT
	// connections never touches the first, one that is not a sync master or backup
	// never touches the second.
	for i := range t.shards {
		sh := &t.shards[i].shard
		sh.cold = carve[coldRec](&rest, len(sh.recs)/pageRefs*pageRecs)
	}
	for i := range t.shards {
		sh := &t.shards[i].shard
		sh.sync = carve[syncSlot](&rest, len(sh.recs)/pageRefs*pageRecs)
		sh.syncp = unsafe.Pointer(unsafe.SliceData(sh.sync))
	}
	if t.mem.mapped != nil {
		// A table dropped without Close still gives its mapping back. Every
		// use of the arena goes through a shard, which keeps t.shards (and
		// so the cleanup's anchor) reachable while it runs.
		t.cleanup = runtime.AddCleanup(&t.shards[0], func(a arena) { _ = a.release() }, t.mem)
	}
	t.setTimeouts(to, true)
	return t, nil
}

// shardEntries is the capacity of shard i: MaxEntries/Shards, plus one for
// the first MaxEntries%Shards shards.
func shardEntries(per, extra, i int) int {
	if i < extra {
		return per + 1
	}
	return per
}

// shardSlots is the index size of a shard of n entries: both keys of every
// entry at load loadNum/loadDen, plus one so that a probe always ends.
func shardSlots(n int) int { return 2*n*loadDen/loadNum + 1 }

// Close gives back the memory of the records and indexes (a mapping
// outside the Go heap for tables of more than a few thousand entries; a
// table dropped without Close gives it back when the garbage collector
// finds it unreachable). The table is then empty: lookups find nothing,
// Insert returns ErrClosed, Len and Conns report 0. Close must not run
// concurrently with other methods (stop the workers first); calling it
// again does nothing.
func (t *Table) Close() error {
	t.closeMu.Lock()
	defer t.closeMu.Unlock()
	if t.mem.mem == nil {
		return nil
	}
	k := int(-uintptr(unsafe.Pointer(&closedIdx[0])) & 63 / 4)
	for i := range t.shards {
		sh := &t.shards[i].shard
		sh.mu.Lock()
		sh.recs, sh.cold = nil, nil
		sh.sync, sh.syncp = nil, nil
		sh.pfree, sh.psum = nil, nil
		sh.syncUsed = false
		sh.idx = closedIdx[k : k+2*lineSlots] // 4 slots (nslots), all empty
		sh.hwm, sh.cap, sh.head, sh.tail = 0, 0, noIdx, noIdx
		atomic.StoreInt32(&sh.count, 0)
		sh.mu.Unlock()
	}
	for d := range t.dests {
		t.dests[d].reset()
	}
	t.cleanup.Stop()
	return t.mem.release()
}

// Settle makes the table's memory resident and backed by transparent huge pages where
// the kernel has them (as Prefault does in New), while the table is in use: for a table
// made with BasePages, once its urgent entries are in. It works through the memory a
// slice at a time, pausing between slices so that it takes one CPU only in part, and
// returns early when the table is closed. Pages already touched as base pages stay so
// until the kernel's khugepaged merges them. Safe to call concurrently with any other
// method; without a mapped arena it does nothing.
func (t *Table) Settle() {
	const slice = 32 << 20
	t.closeMu.Lock()
	if t.mem.mem == nil || t.mem.mapped == nil {
		t.closeMu.Unlock()
		return
	}
	t.mem.adviseHuge()
	n := len(t.mem.mem)
	t.closeMu.Unlock()
	for off := 0; off < n; off += slice {
		t.closeMu.Lock()
		if t.mem.mem == nil {
			t.closeMu.Unlock()
			return
		}
		t.mem.populateRange(off, min(slice, n-off))
		t.closeMu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

// closedIdx holds the index of every shard of a closed table: a line of empty
// slots (the first 4 of which are the index, see nslots) at a cache line's start,
// and the line after it for LookupBatch's reads. Nothing ever writes it.
var closedIdx [3 * lineSlots]uint32

// msOf converts caller time (monotonic nanoseconds) to the table's wrapping
// millisecond clock. Expiry compares with int32 differences, so an entry
// must be refreshed, looked up or reaped within 24 days of its expiry; a
// running Reap guarantees that.
func msOf(now int64) uint32 { return uint32(now / 1e6) }

func timedOut(r *record, now uint32) bool { return int32(now-r.expires) >= 0 }

func (t *Table) timeout(s State) uint32 { return t.timeoutMS[s].Load() }

// MayCreate is the package's MayCreate with the table's sloppy setting for proto
// (Config.SloppyTCP, Config.SloppySCTP): what Insert's opener check asks.
func (t *Table) MayCreate(proto, tcpFlags uint8) bool {
	sloppy := t.sloppy
	if proto == ProtoSCTP {
		sloppy = t.sloppySCTP
	}
	return MayCreate(proto, tcpFlags, sloppy)
}

// SetTimeouts changes per-state timeouts. Fields <= 0 keep the current
// value (as ipvsadm --set 0 does); values above MaxTimeout are clamped.
// Safe concurrently with everything; entries pick the new value up on their
// next packet.
func (t *Table) SetTimeouts(to Timeouts) { t.setTimeouts(to, false) }

func (t *Table) setTimeouts(to Timeouts, init bool) {
	for s := State(0); s < numStates; s++ {
		v := to.Of(s)
		if v <= 0 && !init {
			continue
		}
		v = min(v, MaxTimeout)
		t.timeoutMS[s].Store(uint32(v) * 1000)
	}
}

// Timeouts returns the current per-state timeouts.
func (t *Table) Timeouts() Timeouts {
	var to Timeouts
	for s := State(0); s < numStates; s++ {
		*to.field(s) = int(t.timeoutMS[s].Load() / 1000)
	}
	return to
}

// ShardOf returns the shard of a client endpoint. Both keys of a connection
// must live in one shard: Insert puts a connection in ShardOf(Orig.Src,
// Orig.SrcPort) and requires ShardOf(Reply.Dst, Reply.DstPort) to be the same.
// For NAT the two are the same client endpoint; FULLNAT must pick its local
// port so that ShardOf(localAddr, lport) == ShardOf(client, cport) (about
// one port in Shards qualifies).
func (t *Table) ShardOf(addr [16]byte, port uint16) int {
	return t.shardOf(&addr, port)
}

func (t *Table) shardOf(addr *[16]byte, port uint16) int {
	if t.shardBits == 0 {
		return 0
	}
	return int(hashEndpoint(&t.seed, addr, port) >> (64 - t.shardBits))
}

// Shards returns the number of shards.
func (t *Table) Shards() int { return len(t.shards) }

// Len returns the number of entries held, including expired ones not yet
// reaped. Lock-free.
func (t *Table) Len() int {
	n := 0
	for i := range t.shards {
		n += int(atomic.LoadInt32(&t.shards[i].count))
	}
	return n
}

// Cap returns MaxEntries.
func (t *Table) Cap() int { return t.cap }

// Conns returns the destination's ActiveConn and InActConn as IPVS counts
// them: a TCP connection is active in SYN_SENT, SYN_RECV, SYNACK and
// ESTABLISHED, any other connection (every UDP one) inactive (see
// destState). Lock-free; each count is exact at the moment it is read.
func (t *Table) Conns(dest uint32) (active, inactive int32) {
	if dest >= t.maxDests {
		return 0, 0
	}
	d := &t.dests[dest]
	return d.active.Load(), d.inactive.Load()
}

// Overloaded returns the destination's IPVS overload flag
// (IP_VS_DEST_F_OVERLOAD), kept as connections are inserted and removed
// against the thresholds SetThresholds gave. Lock-free.
func (t *Table) Overloaded(dest uint32) bool {
	if dest >= t.maxDests {
		return false
	}
	return t.dests[dest].over.Load() != 0
}

// SetThresholds gives a destination its -x upper and -y lower connection
// thresholds (0: none), as __ip_vs_update_dest does when a real server is
// added or edited: the overload flag is cleared if upper is 0 or above the
// old upper threshold, and kept otherwise (an unbind clears it under the new
// rule). Giving the same thresholds again changes nothing. Safe concurrently
// with everything; the control plane calls it (Dataplane.Publish does) from
// one goroutine.
func (t *Table) SetThresholds(dest, upper, lower uint32) {
	if dest >= t.maxDests {
		return
	}
	d := &t.dests[dest]
	if old := d.upper(); upper == 0 || upper > old {
		d.over.Store(0)
	}
	d.thresh.Store(uint64(upper)<<32 | uint64(lower))
}

// Stats returns the table's counters, locking one shard at a time.
func (t *Table) Stats() TableStats {
	st := TableStats{Capacity: t.cap}
	for i := range t.shards {
		sh := &t.shards[i].shard
		sh.mu.Lock()
		st.Entries += int(atomic.LoadInt32(&sh.count))
		st.Inserts += sh.inserts
		st.Exists += sh.exists
		st.Full += sh.full
		st.Crowded += sh.crowded
		st.Evicted += sh.evicted
		st.Expired += sh.expired
		st.Reused += sh.reused
		st.Removed += sh.removed
		st.Applied += sh.applied
		sh.mu.Unlock()
	}
	return st
}

// Lookup finds the entry of a packet travelling in dir, applies the
// packet's TCP flags to the state machine (the two-direction tables for
// NAT/FULLNAT, the input-only table for DR/TUN), refreshes its timer from
// the new state's timeout, keeps the per-dest counts exact and copies the
// entry to *out (out may be nil). An expired entry is removed and reported
// as not found. It allocates nothing. LookupBatch does the same for a batch
// of packets, faster on tables larger than the CPU caches.
func (t *Table) Lookup(dir Dir, k *Key, tcpFlags uint8, now int64, out *Entry) Status {
	si, ok := t.keyShard(dir, k)
	if !ok {
		return Invalid
	}
	h := t.dirHash(dir, k)
	sh := &t.shards[si].shard
	if t.hint {
		// The home slot is likely a cache miss: start it before the lock.
		a := slotAddr(sh, h)
		prefetchLines(&a, 1)
	}
	return t.lookup(sh, h, dir, k, tcpFlags, msOf(now), out)
}

// keyShard is the shard of key k travelling in dir; false for a bad dir.
func (t *Table) keyShard(dir Dir, k *Key) (int, bool) {
	switch dir {
	case DirOrig:
		return t.shardOf(&k.Src, k.SrcPort), true
	case DirReply:
		return t.shardOf(&k.Dst, k.DstPort), true
	}
	return 0, false
}

// lookup is Lookup once the shard and hash are known.
func (t *Table) lookup(sh *shard, h uint64, dir Dir, k *Key, tcpFlags uint8, now32 uint32, out *Entry) Status {
	sh.mu.Lock()
	st, _ := t.lookupLocked(sh, h, dir, k, tcpFlags, now32, out, noIdx)
	sh.mu.Unlock()
	return st
}

// lookupLocked is lookup with the shard's lock held. guess is a record to try
// before probing the index (findPF), noIdx for none. On a large table a sync
// master prefetches the sync slot of the record it is about to read
// (LookupBatch's hint has done so already: a second prefetch of a line in cache
// costs next to nothing). It also returns the entry's record when Found (else
// noIdx), for lookupAgain.
func (t *Table) lookupLocked(sh *shard, h uint64, dir Dir, k *Key, tcpFlags uint8, now32 uint32, out *Entry, guess uint32) (Status, uint32) {
	// A sync master counts the packets that come in from clients and decides
	// whether to send the connection after each (ip_vs_in_hook); replies do
	// neither.
	var sp *syncPolicy
	if dir == DirOrig {
		sp = t.syncPol.Load()
	}
	if ref := t.findPF(sh, h, dir, k, t.hint && sp != nil, guess); ref != noIdx {
		r := &sh.recs[ref]
		switch {
		case timedOut(r, now32):
			t.release(sh, ref)
			sh.expired++
		case dir == DirOrig && isNewConn(k.Proto, tcpFlags) &&
			t.reuseMode != ConnReuseOff && newConnExpected(r.state(), r.method(), t.reuseMode):
			if out != nil {
				r.copyOut(sh.coldOf(ref), out)
			}
			t.release(sh, ref)
			sh.reused++
			return Reused, noIdx
		default:
			cur := r.state()
			to := t.advance(sh, ref, dir, tcpFlags, now32)
			if out != nil {
				r.copyOut(sh.coldOf(ref), out)
				out.Prior = cur
			}
			if sp != nil {
				s := t.syncPacket(sh, ref, sp, to, now32)
				if out != nil {
					out.Sync = s
				}
			}
			return Found, ref
		}
	}
	if dir == DirOrig && !t.MayCreate(k.Proto, tcpFlags) {
		return Invalid, noIdx
	}
	return NotFound, noIdx
}

// tryGuess returns guess if record guess holds the entry of key k in direction dir,
// noIdx if not (the caller probes the index), for a record that LookupBatch's hint
// (hintRecord) named having read the index without the lock. Under the lock, a record
// in use that has k in direction dir is k's entry: a live key is in one record only.
// A DR or TUN record has no reply key to match; a freed record keeps its key.
func (sh *shard) tryGuess(guess uint32, dir Dir, k *Key) uint32 {
	if guess >= uint32(len(sh.recs)) || isIndexLine(guess) {
		return noIdx
	}
	if r := &sh.recs[guess]; r.used() && (dir == DirOrig || r.method().twoWay()) && r.matches(sh.coldOf(guess), dir, k) {
		return guess
	}
	return noIdx
}

// lookupAgain is LookupBatch's lookup of q when the query before it had the same key
// and direction and was found, record ref, under this same hold of the shard's lock (a
// flow's burst): no index search, and q.Entry is prevEntry (the entry of the last query
// before q whose Entry was filled) with the state this packet leaves (nothing else of a
// record changes under one hold but the state and the timer) instead of a copy from the
// record. It reports false, having done nothing, when the packet would not simply be
// Found (the entry timed out, or a SYN reuses it): lookupLocked then does what Lookup
// does.
//
// stay says that the packet before (its flags: prevFlags) left the state as it found
// it. With the same flags this packet then does too (the same transition from the same
// state), and the timer the packet before set, now32 plus the state's timeout, is the
// one this packet would set: the state machine is not consulted again. fixed reports
// the same of this packet, for the next.
func (t *Table) lookupAgain(sh *shard, ref uint32, q *Query, prevFlags uint8, prevEntry *Entry, stay bool, now32 uint32) (ok, fixed bool) {
	r := &sh.recs[ref]
	if timedOut(r, now32) || q.Dir == DirOrig && isNewConn(q.Key.Proto, q.TCPFlags) &&
		t.reuseMode != ConnReuseOff && newConnExpected(r.state(), r.method(), t.reuseMode) {
		return false, false
	}
	cur := r.state()
	skip := stay && q.TCPFlags == prevFlags
	var to uint32
	if fixed = skip; !skip {
		to = t.advance(sh, ref, q.Dir, q.TCPFlags, now32)
		fixed = r.state() == cur
	}
	out := &q.Entry
	*out = *prevEntry
	out.State, out.Prior, out.Sync = r.state(), cur, false
	if q.Dir == DirOrig {
		if sp := t.syncPol.Load(); sp != nil {
			if skip {
				to = t.timeout(cur) // what advance would have given
			}
			out.Sync = t.syncPacket(sh, ref, sp, to, now32)
		}
	}
	q.Status = Found
	return true, fixed
}

// Get copies the live entry whose key in direction dir is k to *out without
// treating the lookup as a packet of the connection: no state change, no
// timer refresh, nothing removed (IPVS handles an ICMP error about a
// connection this way). It reports whether it found one and allocates
// nothing.
func (t *Table) Get(dir Dir, k *Key, now int64, out *Entry) bool {
	si, ok := t.keyShard(dir, k)
	if !ok {
		return false
	}
	h := t.dirHash(dir, k)
	sh := &t.shards[si].shard
	sh.mu.Lock()
	ref := t.find(sh, h, dir, k)
	ok = ref != noIdx && !timedOut(&sh.recs[ref], msOf(now))
	if ok {
		sh.recs[ref].copyOut(sh.coldOf(ref), out)
	}
	sh.mu.Unlock()
	return ok
}

// advance applies one packet to entry ref: state transition, counts,
// eviction list and timer. It returns the timeout it gave (ms).
func (t *Table) advance(sh *shard, ref uint32, dir Dir, tcpFlags uint8, now32 uint32) uint32 {
	r := &sh.recs[ref]
	cur := r.state()
	next := StateUDP
	switch r.proto() {
	case ProtoTCP:
		next = t.tables.next(stateTable(r.method(), dir), tcpFlags, cur)
	case ProtoSCTP:
		next = sctpTables.next(stateTable(r.method(), dir), tcpFlags, cur)
	}
	if next != cur {
		t.changeState(sh, ref, cur, next)
	}
	to := t.timeout(next)
	r.expires = now32 + to
	return to
}

// changeState moves entry ref from state cur to next (next != cur): between
// the counts when its activity changes (set_tcp_state), and on or off the
// eviction list when it leaves or enters ESTABLISHED.
func (t *Table) changeState(sh *shard, ref uint32, cur, next State) {
	r := &sh.recs[ref]
	r.setState(next)
	if was, is := activeState[cur], activeState[next]; was != is {
		d := &t.dests[r.dest]
		if is {
			d.inactive.Add(-1)
			d.active.Add(1)
		} else {
			d.active.Add(-1)
			d.inactive.Add(1)
		}
	}
	switch {
	case cur.established():
		sh.listAppend(ref)
	case next.established():
		sh.listRemove(ref)
	}
}

// Insert adds a connection created by a packet with tcpFlags. On success
// it leaves *e as Lookup will return it: e.State is the first state (TCP:
// the input transition from NONE, so SYN_RECV for a SYN; UDP: StateUDP) and,
// for DR and TUN, which have no reply path, e.Reply is cleared (whatever it
// held was ignored); e.Sync tells whether a sync master sends the new
// connection now (its first packet counted; false while sync is off). The
// connection counts for its destination from then
// on (active or inactive by its first state) and may set the destination's
// overload flag (see destState). It returns ErrExists if either key is
// present, ErrFull if the shard is full after trying to evict its oldest
// non-ESTABLISHED entry, or one of the validation errors. It allocates
// nothing.
func (t *Table) Insert(e *Entry, tcpFlags uint8, now int64) error {
	if err := t.check(e, tcpFlags); err != nil {
		return err
	}
	o := &e.Orig
	si := t.shardOf(&o.Src, o.SrcPort)
	ho := t.origHash(o)
	return t.insert(e, tcpFlags, now, si, ho, true)
}

// InsertQuery is Insert(&q.Entry, tcpFlags, now) for a query that LookupBatch looked up
// (q.Key and q.Dir unchanged since) and found missing (NotFound or Reused), whose
// q.Entry the caller has filled in with q.Entry.Orig equal to q.Key: it reuses the
// shard and hash of q.Key that LookupBatch computed instead of computing them again,
// and it does not prefetch what the lookup brought into the cache (the key's home
// slot) or started loading (the record and list tail an insert takes, which
// LookupBatch prefetches for each query it finds missing). The outcome, q.Entry
// afterwards and the table's state are exactly Insert's. A query that does not qualify (not looked up by LookupBatch, not
// DirOrig, Orig not q.Key) is inserted as Insert does. It allocates nothing.
func (t *Table) InsertQuery(q *Query, tcpFlags uint8, now int64) error {
	e := &q.Entry
	if !q.hashed || q.Dir != DirOrig || !sameKey(&e.Orig, &q.Key) {
		return t.Insert(e, tcpFlags, now)
	}
	if err := t.check(e, tcpFlags); err != nil {
		return err
	}
	return t.insert(e, tcpFlags, now, int(q.shard), q.hash, false)
}

// OrigShard is the shard of q's client endpoint (ShardOf(q.Key.Src, q.Key.SrcPort)) as
// LookupBatch computed it, for a query of DirOrig it hashed; ok is false for any other
// query (the caller computes it with ShardOf). It is the shard InsertQuery inserts q's
// connection into: a FULLNAT port allocator chooses its local ports by it.
func (q *Query) OrigShard() (shard int, ok bool) {
	if !q.hashed || q.Dir != DirOrig {
		return 0, false
	}
	return int(q.shard), true
}

// check is Insert's validation of e and tcpFlags.
func (t *Table) check(e *Entry, tcpFlags uint8) error {
	o := &e.Orig
	if o.Proto != ProtoTCP && o.Proto != ProtoUDP && o.Proto != ProtoSCTP {
		return ErrProto
	}
	if !t.MayCreate(o.Proto, tcpFlags) {
		return ErrNotOpener
	}
	if e.Dest >= t.maxDests {
		return ErrDest
	}
	if e.Method >= numMethods {
		return ErrMethod
	}
	return nil
}

// insert is Insert once e is checked and the shard (si) and hash (ho) of its
// original key are known; pf: prefetch the key's home slot, the record alloc will
// take and the list tail.
func (t *Table) insert(e *Entry, tcpFlags uint8, now int64, si int, ho uint64, pf bool) error {
	o := &e.Orig
	twoWay := e.Method.twoWay()
	sh := &t.shards[si].shard
	if t.hint && pf {
		// The original key's home slot, the record alloc will most likely
		// take and the list tail it will link to, then the reply key's home
		// slot, are likely cache misses: start them all before the first is
		// waited for.
		sh.prefetchInsert(slotAddr(sh, ho), coldForm(e))
	}
	var hr uint64
	if twoWay {
		if e.Reply.Proto != o.Proto {
			return ErrReply
		}
		// NAT's reply goes to the client endpoint itself: the same shard and home, no
		// hash of the endpoint needed.
		if e.Reply.DstPort == o.SrcPort && e.Reply.Dst == o.Src {
			k := &e.Reply
			hr = withHome(hashParts(&t.seed, &k.Src, &k.Dst, k.SrcPort, k.DstPort, k.Proto), ho)
		} else if t.shardOf(&e.Reply.Dst, e.Reply.DstPort) != si {
			return ErrShardMismatch
		} else {
			hr = t.replyHash(&e.Reply)
		}
		if t.hint && uint32(hr) != uint32(ho) { // FULLNAT's own home; NAT's is ho's
			a := slotAddr(sh, hr)
			prefetchLines(&a, 1)
		}
	}
	now32 := msOf(now)

	st := StateUDP
	switch o.Proto {
	case ProtoTCP:
		st = t.tables.next(stateTable(e.Method, DirOrig), tcpFlags, StateNone)
	case ProtoSCTP:
		st = sctpTables.next(stateTable(e.Method, DirOrig), tcpFlags, StateNone)
	}

	// NAT's reply key has the original key's home: one walk of that run checks both
	// keys and counts the home's keys (homeScan).
	var r *Key
	if twoWay && uint32(hr) == uint32(ho) {
		r = &e.Reply
	}
	sh.mu.Lock()
	if len(sh.recs) == 0 {
		sh.mu.Unlock()
		return ErrClosed
	}
	var run homeRun
	t.homeScan(sh, ho, o, hr, r, &run)
	if run.ro != noIdx || run.rr != noIdx || (twoWay && r == nil) {
		// A key is held (vacant and vacantReply remove an expired holder, and may so
		// change the run), or FULLNAT's reply key has a home of its own.
		if !t.vacant(sh, ho, DirOrig, o, now32) || (twoWay && !t.vacantReply(sh, hr, &e.Reply, now32)) {
			sh.exists++
			sh.mu.Unlock()
			return ErrExists
		}
		run.counted = false
	}
	if run.counted && run.same >= maxSameHome || !run.counted && t.crowded(sh, ho) {
		sh.crowded++
		sh.mu.Unlock()
		return ErrCrowded
	}
	end := -1 // where create places the original key: the run's end, unless alloc evicts
	if run.counted && uint32(sh.count) < sh.cap {
		end = run.end
	}
	ref := t.alloc(sh, sh.homePage(ho), now32)
	if ref == noIdx {
		sh.full++
		sh.mu.Unlock()
		return ErrFull
	}
	to := t.timeout(st)
	t.create(sh, ref, e, st, ho, hr, now32+to, end, run.dist)
	sh.inserts++
	sync := false
	if p := t.syncPol.Load(); p != nil {
		sync = t.syncFirst(sh, ref, p, to, now32)
	} else if sh.syncUsed {
		*sh.slot(ref) = syncSlot{}
	}
	sh.mu.Unlock()
	e.State, e.Prior = st, StateNone
	e.Sync = sync
	if !twoWay {
		e.Reply = Key{}
	}
	return nil
}

// create makes record ref connection e in state st, expiring at expires: the
// record, its keys in the index (ho, hr: their hashes), the eviction list,
// the destination's counts and the shard's count. end, when not -1, is the slot where
// the original key's home run ends, d slots from home (homeScan, with the index as
// it is now): the original key's place, found without a walk.
func (t *Table) create(sh *shard, ref uint32, e *Entry, st State, ho, hr uint64, expires uint32, end int, d uint32) {
	twoWay := e.Method.twoWay()
	r := &sh.recs[ref]
	r.set(&sh.cold[dense(ref)], e, st)
	r.expires = expires
	i := end
	if end < 0 {
		i, d = t.place(sh, ho, ref<<1|uint32(DirOrig))
	} else {
		t.placeAt(sh, i, d, uint32(ho>>t.tagShift), ref<<1|uint32(DirOrig))
	}
	switch {
	case twoWay && uint32(hr) == uint32(ho):
		// NAT: the reply key shares the original key's home, whose run now ends with
		// the original key at slot i; the reply key's place is the next slot, where
		// place would have walked to.
		if i++; i == sh.nslots() {
			i = 0
		}
		t.placeAt(sh, i, d+1, uint32(hr>>t.tagShift), ref<<1|uint32(DirReply))
	case twoWay:
		t.place(sh, hr, ref<<1|uint32(DirReply))
	}
	if !st.established() {
		sh.listAppend(ref)
	}
	t.dests[e.Dest].bind(activeState[st])
	addCount(&sh.count, 1)
}

// vacantReply is vacant for a new connection's reply key. An older TCP connection that has
// finished (TIME_WAIT or CLOSE: a client reused its port towards another virtual service
// on the same real server) gives the key up, as the kernel hashes the new connection in
// front of the old one. Any other holder keeps it (ErrExists): it is alive, and FULLNAT's
// port allocator relies on ErrExists to never hand out a tuple in use.
func (t *Table) vacantReply(sh *shard, h uint64, k *Key, now32 uint32) bool {
	ref := t.find(sh, h, DirReply, k)
	if ref == noIdx {
		return true
	}
	r := &sh.recs[ref]
	if timedOut(r, now32) {
		t.release(sh, ref)
		sh.expired++
		return true
	}
	if st := r.state(); r.proto() == ProtoTCP && (st == StateTimeWait || st == StateClose) {
		t.release(sh, ref)
		sh.reused++
		return true
	}
	return false
}

// vacant reports whether key k of direction dir is free, removing an expired
// entry that holds it.
func (t *Table) vacant(sh *shard, h uint64, dir Dir, k *Key, now32 uint32) bool {
	ref := t.find(sh, h, dir, k)
	if ref == noIdx {
		return true
	}
	if !timedOut(&sh.recs[ref], now32) {
		return false
	}
	t.release(sh, ref)
	sh.expired++
	return true
}

// alloc takes a free record, from page page when it has one, else from the next page
// that has (see shard.take); when the shard holds its cap of entries, it first removes
// the oldest non-ESTABLISHED entry (counted as expired if its timer already ran out, else
// as evicted). noIdx if all entries are ESTABLISHED.
func (t *Table) alloc(sh *shard, page int, now32 uint32) uint32 {
	if uint32(sh.count) >= sh.cap {
		victim := sh.head
		if victim == noIdx {
			return noIdx
		}
		if timedOut(&sh.recs[victim], now32) {
			sh.expired++
		} else {
			sh.evicted++
		}
		t.release(sh, victim)
	}
	return sh.take(page)
}

// take takes a free record of page page, or of the first page after it (wrapping) that
// has one; the shard has one (it holds fewer entries than its cap, and its pages more
// records than that).
func (sh *shard) take(page int) uint32 {
	w := sh.pfree[page]
	if w == 0 {
		page = sh.freePage(page)
		w = sh.pfree[page]
	}
	l := bits.TrailingZeros64(w)
	w &^= 1 << l
	sh.pfree[page] = w
	if w == 0 {
		sh.psum[page/64] &^= 1 << (page % 64)
	}
	ref := uint32(page*pageRefs + l)
	sh.hwm = max(sh.hwm, ref+1)
	return ref
}

// freePage is the first page after from, wrapping, with a free record.
func (sh *shard) freePage(from int) int {
	i := from / 64
	w := sh.psum[i] &^ (1<<(from%64+1) - 1)
	for k := 0; w == 0; k++ {
		if k > len(sh.psum) {
			panic("conntrack: no free record in a shard below its cap (bug)")
		}
		if i++; i == len(sh.psum) {
			i = 0
		}
		w = sh.psum[i]
	}
	return i*64 + bits.TrailingZeros64(w)
}

// release removes entry ref from the index, the eviction list and the
// counts, and frees its record.
func (t *Table) release(sh *shard, ref uint32) {
	r := &sh.recs[ref]
	t.unplace(sh, t.refHash(sh, ref<<1|uint32(DirOrig)), ref<<1|uint32(DirOrig))
	if r.method().twoWay() {
		t.unplace(sh, t.refHash(sh, ref<<1|uint32(DirReply)), ref<<1|uint32(DirReply))
	}
	if !r.state().established() {
		sh.listRemove(ref)
	}
	t.dests[r.dest].unbind(activeState[r.state()])
	r.meta = 0
	p := int(ref / pageRefs)
	if sh.pfree[p] == 0 {
		sh.psum[p/64] |= 1 << (p % 64)
	}
	sh.pfree[p] |= 1 << (ref % pageRefs)
	addCount(&sh.count, -1)
}

// Index: Robin Hood linear probing over len(idx) slots (not a power of
// two: the home slot is the 32-bit hash scaled to the length), no
// tombstones, deletion by backward shift. Along a run of filled slots the
// keys' homes never decrease (Robin Hood: an insert takes the slot of a key
// nearer its home and pushes that one on), so probe distances vary little:
// at full load 99 % of keys lie within 11 slots of home, which lets
// LookupBatch prefetch the right record from one or two index cache lines,
// and a lookup of an absent key stops at the first key nearer its home than
// the probe. Slots carry their distance from home, so inserts and deletions
// read records only for distances that saturated (rare).

func home(h uint64, n int) int { return int(uint64(uint32(h)) * uint64(n) >> 32) }

// nslots is the number of slots of the shard's index: pageSlots of every page's
// pageBytes/4 words.
func (sh *shard) nslots() int { return int(uint(len(sh.idx)) / (pageBytes / 4 / pageSlots)) }

// homePage is the page of hash h's home slot, where alloc looks for its record first.
func (sh *shard) homePage(h uint64) int { return int(uint(home(h, sh.nslots())) / pageSlots) }

// slotAddr is the address of hash h's home slot in the shard's index, for
// prefetching. It reads the index's slice header, which only New and Close
// write.
func slotAddr(sh *shard, h uint64) uintptr {
	return uintptr(unsafe.Pointer(unsafe.SliceData(sh.idx))) + uintptr(slotWord(home(h, sh.nslots())))*4
}

func b2i(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func (t *Table) find(sh *shard, h uint64, dir Dir, k *Key) uint32 {
	return t.findPF(sh, h, dir, k, false, noIdx)
}

// findPF is find; with pfSync it also prefetches the sync slot of a
// candidate record before reading the record, so that a sync master's
// single lookups overlap the two misses. A guess other than noIdx is a
// record to try before probing the index (tryGuess).
func (t *Table) findPF(sh *shard, h uint64, dir Dir, k *Key, pfSync bool, guess uint32) uint32 {
	if guess != noIdx {
		if ref := sh.tryGuess(guess, dir, k); ref != noIdx {
			return ref
		}
	}
	idx, n := sh.idx, sh.nslots()
	i := home(h, n)
	tag := uint32(h >> t.tagShift)
	for d := uint32(0); ; d++ {
		s := idx[slotWord(i)]
		if s == 0 {
			return noIdx
		}
		if s>>t.tagPos == tag {
			ref := s&t.refMask - 1
			if pfSync && ref>>1 < uint32(len(sh.recs)) {
				a := uintptr(unsafe.Pointer(sh.slot(ref >> 1)))
				prefetchLines(&a, 1)
			}
			if ref&1 == uint32(dir) && sh.recs[ref>>1].matches(sh.coldOf(ref>>1), dir, k) {
				return ref >> 1
			}
		}
		// A key nearer its home than d would have been displaced by ours.
		if sd := s >> t.refBits & t.distMax; sd < d && sd < t.distMax {
			return noIdx
		}
		if i++; i == n {
			i = 0
		}
	}
}

// maxSameHome bounds the keys that share one home slot (ErrCrowded). Keys share a home
// when they share their client endpoint (origHash, replyHash): 256 is 128 NAT
// connections (both keys at the home) or 256 DR/TUN ones of one client address and
// port at once, which no real client has.
const maxSameHome = 256

// crowded reports whether maxSameHome keys already have the home of hash h. A home's
// keys are consecutive in its run (Robin Hood), after the keys of earlier homes pushed
// past it; the walk stops at the first empty slot or key of a later home, so keys of
// other endpoints never count. A distance that saturated is recomputed from its key
// (slotDist): only a run longer than distMax pays for that.
func (t *Table) crowded(sh *shard, h uint64) bool {
	idx, n := sh.idx, sh.nslots()
	i := home(h, n)
	same := 0
	for o := uint32(0); o < uint32(n); o++ {
		s := idx[slotWord(i)]
		if s == 0 {
			return false
		}
		ds := t.slotDist(sh, s, i)
		if ds < o {
			return false // a later home's key: this home's are all behind
		}
		if ds == o {
			if same++; same == maxSameHome {
				return true
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	return false
}

// slot builds a slot for ref at distance d from its home.
func (t *Table) slot(tag, d, ref uint32) uint32 {
	return tag<<t.tagPos | min(d, t.distMax)<<t.refBits | (ref + 1)
}

// slotDist is the distance from its home of slot s at position i, read from
// the slot unless it saturated.
func (t *Table) slotDist(sh *shard, s uint32, i int) uint32 {
	d := s >> t.refBits & t.distMax
	if d == t.distMax {
		d = t.farDist(sh, s, i)
	}
	return d
}

// farDist is slotDist for a slot whose distance saturated: from its key's hash.
func (t *Table) farDist(sh *shard, s uint32, i int) uint32 {
	n := sh.nslots()
	return uint32((i - home(t.refHash(sh, s&t.refMask-1), n) + n) % n)
}

// place puts ref, whose key has hash h, in the index (Robin Hood): at the first slot of
// its home's run that is empty or holds a key nearer its own home, pushing the keys
// from there on along. It returns that slot and its distance from home.
func (t *Table) place(sh *shard, h uint64, ref uint32) (int, uint32) {
	idx, n := sh.idx, sh.nslots()
	i := home(h, n)
	for d := uint32(0); ; d++ {
		if s := idx[slotWord(i)]; s == 0 || t.slotDist(sh, s, i) < d {
			t.placeAt(sh, i, d, uint32(h>>t.tagShift), ref)
			return i, d
		}
		if i++; i == n {
			i = 0
		}
	}
}

// placeAt is place from slot i on, which is d slots from the key's home and is its
// place: empty, or holding a key nearer its home.
func (t *Table) placeAt(sh *shard, i int, d, tag, ref uint32) {
	idx, n := sh.idx, sh.nslots()
	for {
		w := slotWord(i)
		s := idx[w]
		if s == 0 {
			idx[w] = t.slot(tag, d, ref)
			return
		}
		if sd := t.slotDist(sh, s, i); sd < d {
			idx[w] = t.slot(tag, d, ref)
			tag, d, ref = s>>t.tagPos, sd, s&t.refMask-1
		}
		if i++; i == n {
			i = 0
		}
		d++
	}
}

// homeRun is what homeScan found along the run of a home.
type homeRun struct {
	ro, rr uint32 // the records holding the original and the reply key, or noIdx
	// When neither is held: same is the number of keys of the home, and end the slot
	// where the run of the home's keys ends (empty, or a key of a later home: where
	// place puts a new key of that home), dist slots from home. counted is false when
	// the walk met a saturated distance: same and end are then not to be used
	// (crowded counts, place walks).
	same    int
	counted bool
	end     int
	dist    uint32
}

// homeScan walks the run of the home of hash ho once for insert: the record of original
// key o and, when r is not nil, of reply key r, whose hash hr has the same home (NAT's),
// as find would return them, and the home's keys and end: *run.
func (t *Table) homeScan(sh *shard, ho uint64, o *Key, hr uint64, r *Key, run *homeRun) {
	idx, n := sh.idx, sh.nslots()
	i := home(ho, n)
	tagO, tagR := uint32(ho>>t.tagShift), uint32(hr>>t.tagShift)
	*run = homeRun{ro: noIdx, rr: noIdx, counted: true}
	for d := uint32(0); ; d++ {
		s := idx[slotWord(i)]
		if s == 0 {
			run.end, run.dist = i, d
			return
		}
		switch sd := s >> t.refBits & t.distMax; {
		case sd == t.distMax:
			run.counted = false // a long run: find goes on, crowded counts exactly
		case sd < d:
			run.end, run.dist = i, d // a later home's key: this home's are all behind
			return
		case sd == d:
			run.same++
		}
		ref := s&t.refMask - 1
		switch tag := s >> t.tagPos; {
		case tag == tagO && ref&1 == uint32(DirOrig) && sh.recs[ref>>1].matches(sh.coldOf(ref>>1), DirOrig, o):
			run.ro = ref >> 1
			return
		case r != nil && tag == tagR && ref&1 == uint32(DirReply) && sh.recs[ref>>1].matches(sh.coldOf(ref>>1), DirReply, r):
			run.rr = ref >> 1
			return
		}
		if i++; i == n {
			i = 0
		}
	}
}

func (t *Table) unplace(sh *shard, h uint64, ref uint32) {
	idx, n := sh.idx, sh.nslots()
	want := ref + 1
	i := home(h, n)
	for probes := 0; idx[slotWord(i)]&t.refMask != want; probes++ {
		if probes == n {
			panic("conntrack: index lost an entry (bug)")
		}
		if i++; i == n {
			i = 0
		}
	}
	// Backward shift: every following key not at its home moves one slot
	// nearer to it.
	for {
		j := i + 1
		if j == n {
			j = 0
		}
		s := idx[slotWord(j)]
		if s == 0 {
			break
		}
		d := t.slotDist(sh, s, j)
		if d == 0 {
			break
		}
		idx[slotWord(i)] = t.slot(s>>t.tagPos, d-1, s&t.refMask-1)
		i = j
	}
	idx[slotWord(i)] = 0
}

// refHash recomputes the hash of the key an index ref points to.
func (t *Table) refHash(sh *shard, ref uint32) uint64 {
	r := &sh.recs[ref>>1]
	var k Key
	if ref&1 == uint32(DirOrig) {
		r.origKey(&k)
		return t.origHash(&k)
	}
	r.replyKey(&sh.cold[dense(ref>>1)], &k)
	return t.replyHash(&k)
}

// prefetchInsert prefetches the index line of an insert's original key's home slot
// (at address home; 0: none, and no record either), the record alloc will most likely
// take (the first free one of that slot's page) and the tail of the non-ESTABLISHED
// list that the new entry will link to. With cold it also prefetches that record's
// cold part, which an entry in v6 form with a reply key (NAT, FULLNAT) writes: it lies
// outside the record's page, so without it a new IPv6 NAT connection's insert waited
// for another page walk and line (PipelineNew NAT v6 276 → 213 ns, BENCHMARKS.md).
// It runs before the lock is taken, so it reads the page's free word and the shard's
// tail with peek32: a stale value only prefetches the wrong line.
func (sh *shard) prefetchInsert(home uintptr, cold bool) {
	var a [4]uintptr
	if n := sh.insertLines(&a, home, cold); n > 0 {
		prefetchLines(&a[0], n)
	}
}

// insertLines puts the addresses prefetchInsert prefetches in a and returns how many.
func (sh *shard) insertLines(a *[4]uintptr, home uintptr, cold bool) int {
	n := 0
	nrec := uint32(len(sh.recs))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(sh.recs)))
	if home != 0 {
		a[0] = home
		n = 1
		if p := int((home - base) / pageBytes); p < len(sh.pfree) {
			w := &sh.pfree[p]
			lo, hi := peek32((*uint32)(unsafe.Pointer(w))), peek32((*uint32)(unsafe.Add(unsafe.Pointer(w), 4)))
			if l := bits.TrailingZeros64(uint64(hi)<<32 | uint64(lo)); l < pageRefs {
				a[n] = base + uintptr(p*pageBytes+l*64)
				n++
				if cold && l >= idxLines {
					if d := dense(uint32(p*pageRefs + l)); d < uint32(len(sh.cold)) {
						a[n] = sh.coldAddr(d)
						n++
					}
				}
			}
		}
	}
	if tail := peek32(&sh.tail); tail < nrec {
		a[n] = base + uintptr(tail)*unsafe.Sizeof(record{}) + unsafe.Offsetof(record{}.next)
		n++
	}
	return n
}

// The list of non-ESTABLISHED entries, in the order they entered it.

func (sh *shard) listAppend(ref uint32) {
	r := &sh.recs[ref]
	r.prev, r.next = sh.tail, noIdx
	if sh.tail != noIdx {
		sh.recs[sh.tail].next = ref
	} else {
		sh.head = ref
	}
	sh.tail = ref
}

func (sh *shard) listRemove(ref uint32) {
	r := &sh.recs[ref]
	if r.prev != noIdx {
		sh.recs[r.prev].next = r.next
	} else {
		sh.head = r.next
	}
	if r.next != noIdx {
		sh.recs[r.next].prev = r.prev
	} else {
		sh.tail = r.prev
	}
	r.prev, r.next = noIdx, noIdx
}
