package conntrack

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

const sec = int64(1e9) // one second of caller time

// v4 returns an IPv4-mapped address.
func v4(a, b, c, d byte) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: a, 13: b, 14: c, 15: d}
}

// v6 returns 2001:db8::x:y.
func v6(x, y uint16) [16]byte {
	return [16]byte{0: 0x20, 1: 0x01, 2: 0x0d, 3: 0xb8, 12: byte(x >> 8), 13: byte(x), 14: byte(y >> 8), 15: byte(y)}
}

var (
	vip = v4(198, 18, 0, 1)
	rs1 = v4(198, 18, 1, 1)
)

// client returns the i-th test client address (IPv4 for even i, IPv6 for odd).
func client(i int) [16]byte {
	if i%2 == 0 {
		return v4(198, 19, byte(i>>16), byte(i>>8))
	}
	return v6(uint16(i>>16), uint16(i))
}

// conn builds an entry of method m for client i: Orig client:port → VIP:80,
// Reply (NAT) real server:8080 → client:port.
func conn(i int, proto uint8, m Method, dest uint32) Entry {
	c := client(i)
	port := uint16(1024 + i%50000)
	e := Entry{
		Orig:    Key{Src: c, Dst: vip, SrcPort: port, DstPort: 80, Proto: proto},
		Dest:    dest,
		Service: 7,
		Method:  m,
		Flags:   uint16(i),
	}
	if m.twoWay() {
		e.Reply = Key{Src: rs1, Dst: c, SrcPort: 8080, DstPort: port, Proto: proto}
	}
	return e
}

func mustNew(t testing.TB, cfg Config) *Table {
	t.Helper()
	tb, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return tb
}

func mustInsert(t testing.TB, tb *Table, e Entry, flags uint8, now int64) Entry {
	t.Helper()
	if err := tb.Insert(&e, flags, now); err != nil {
		t.Fatalf("Insert(%v): %v", e.Orig, err)
	}
	return e
}

// forceState moves the entry with original key k to state s through the
// table's own bookkeeping (counts, eviction list) and restarts its timer for
// s, as if a packet had moved it there at now.
func forceState(t testing.TB, tb *Table, k *Key, s State, now int64) {
	t.Helper()
	sh := &tb.shards[tb.shardOf(&k.Src, k.SrcPort)].shard
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ref := tb.find(sh, tb.origHash(k), DirOrig, k)
	if ref == noIdx {
		t.Fatalf("forceState: %v not found", k)
	}
	if cur := sh.recs[ref].state(); cur != s {
		tb.changeState(sh, ref, cur, s)
	}
	sh.recs[ref].expires = msOf(now) + tb.timeout(s)
}

// checkInvariants verifies every structural invariant of the table. The
// table must be quiescent.
func checkInvariants(t testing.TB, tb *Table) {
	t.Helper()
	active := make(map[uint32]int32)
	inactive := make(map[uint32]int32)
	total := 0
	for si := range tb.shards {
		sh := &tb.shards[si].shard
		used, keys := 0, 0
		if !sh.syncUsed {
			for p, sl := range sh.sync {
				if sl != (syncSlot{}) {
					t.Fatalf("shard %d never had its sync slots used, yet slot %d is %+v", si, p, sl)
				}
			}
		}
		nonES := make(map[uint32]bool)
		for p := uint32(0); p < uint32(len(sh.recs)); p++ {
			r := &sh.recs[p]
			// A page's index lines are never records; a record is free exactly when its
			// page's free word says so.
			free := sh.pfree[p/pageRefs]&(1<<(p%pageRefs)) != 0
			if isIndexLine(p) {
				if free {
					t.Fatalf("shard %d: index line %d marked as a free record", si, p)
				}
				continue
			}
			if free == r.used() {
				t.Fatalf("shard %d: record %d used %v, marked free %v", si, p, r.used(), free)
			}
			if !r.used() {
				continue
			}
			if p >= sh.hwm {
				t.Fatalf("shard %d: record %d used beyond hwm %d", si, p, sh.hwm)
			}
			used++
			var e Entry
			r.copyOut(&sh.cold[dense(p)], &e)
			if got := tb.shardOf(&e.Orig.Src, e.Orig.SrcPort); got != si {
				t.Fatalf("shard %d holds %v whose shard is %d", si, e.Orig, got)
			}
			if got := tb.find(sh, tb.origHash(&e.Orig), DirOrig, &e.Orig); got != p {
				t.Fatalf("shard %d: orig key of record %d found at %d", si, p, int32(got))
			}
			keys++
			if r.method().twoWay() {
				if got := tb.find(sh, tb.replyHash(&e.Reply), DirReply, &e.Reply); got != p {
					t.Fatalf("shard %d: reply key of record %d found at %d", si, p, int32(got))
				}
				keys++
			}
			if kernelActive(t, r.proto(), r.state()) {
				active[r.dest]++
			} else {
				inactive[r.dest]++
			}
			if !modelEst(r.state()) { // TCP's or SCTP's ESTABLISHED
				nonES[p] = true
			}
		}
		if int(atomic.LoadInt32(&sh.count)) != used {
			t.Fatalf("shard %d: count %d, %d records used", si, atomic.LoadInt32(&sh.count), used)
		}
		total += used
		if used > int(sh.cap) {
			t.Fatalf("shard %d: %d records used, more than its cap %d", si, used, sh.cap)
		}
		// The page summary: a page's bit is set exactly when it has a free record.
		for p, w := range sh.pfree {
			if has := sh.psum[p/64]&(1<<(p%64)) != 0; has != (w != 0) {
				t.Fatalf("shard %d: page %d's free word %#x, summary bit %v", si, p, w, has)
			}
		}
		// Eviction list: exactly the used non-ESTABLISHED records, well linked.
		seen, prev := 0, noIdx
		for p := sh.head; p != noIdx; p = sh.recs[p].next {
			if !nonES[p] {
				t.Fatalf("shard %d: record %d on the eviction list is not a used non-ESTABLISHED entry", si, p)
			}
			if sh.recs[p].prev != prev {
				t.Fatalf("shard %d: record %d prev %d, want %d", si, p, sh.recs[p].prev, prev)
			}
			prev = p
			if seen++; seen > len(nonES) {
				t.Fatalf("shard %d: eviction list longer than the %d non-ESTABLISHED entries", si, len(nonES))
			}
		}
		if seen != len(nonES) || sh.tail != prev {
			t.Fatalf("shard %d: eviction list has %d entries (tail %d), want %d (tail %d)", si, seen, sh.tail, len(nonES), prev)
		}
		// Index: one slot per key; every slot reachable from its home;
		// Robin Hood order: along a run, distances grow by at most one per
		// slot (homes never decrease).
		filled := 0
		n := sh.nslots()
		slot := func(i int) uint32 { return sh.idx[slotWord(i)] }
		for i := range n {
			s := slot(i)
			if s == 0 {
				continue
			}
			filled++
			if j := (i + 1) % n; slot(j) != 0 {
				if d, dn := tb.slotDist(sh, s, i), tb.slotDist(sh, slot(j), j); dn > d+1 {
					t.Fatalf("shard %d: slot %d at distance %d follows one at distance %d (not Robin Hood order)", si, j, dn, d)
				}
			}
			ref := s&tb.refMask - 1
			r := &sh.recs[ref>>1]
			if !r.used() || (ref&1 == 1 && !r.method().twoWay()) {
				t.Fatalf("shard %d: slot %d points to a dead key (ref %d)", si, i, ref)
			}
			h := tb.refHash(sh, ref)
			if s>>tb.tagPos != uint32(h>>tb.tagShift) {
				t.Fatalf("shard %d: slot %d has a wrong tag", si, i)
			}
			dist := uint32((i - home(h, n) + n) % n)
			if got := s >> tb.refBits & tb.distMax; got != min(dist, tb.distMax) {
				t.Fatalf("shard %d: slot %d records distance %d, is %d from home", si, i, got, dist)
			}
			for j := home(h, n); j != i; j = (j + 1) % n {
				if slot(j) == 0 {
					t.Fatalf("shard %d: slot %d unreachable from its home (gap at %d)", si, i, j)
				}
			}
		}
		if filled != keys {
			t.Fatalf("shard %d: %d index slots filled, %d keys", si, filled, keys)
		}
	}
	if tb.Len() != total {
		t.Fatalf("Len %d, %d entries held", tb.Len(), total)
	}
	for d := uint32(0); d < tb.maxDests; d++ {
		a, i := tb.Conns(d)
		if a != active[d] || i != inactive[d] {
			t.Fatalf("dest %d: Conns %d/%d, entries say %d/%d", d, a, i, active[d], inactive[d])
		}
	}
}

// The kernel's TCP state tables (net/netfilter/ipvs/ip_vs_proto_tcp.c,
// tcp_states and tcp_states_dos), written out as text in the kernel's row
// and column order. Tests parse this text and compare the table's behaviour
// with it; it is deliberately a different encoding from state.go.
const kernelColumns = "sNO sES sSS sSR sFW sTW sCL sCW sLA sLI sSA"

const kernelTCPStates = `
INPUT
syn sSR sES sES sSR sSR sSR sSR sSR sSR sSR sSR
fin sCL sCW sSS sTW sTW sTW sCL sCW sLA sLI sTW
ack sES sES sSS sES sFW sTW sCL sCW sCL sLI sES
rst sCL sCL sCL sSR sCL sCL sCL sCL sLA sLI sSR
OUTPUT
syn sSS sES sSS sSR sSS sSS sSS sSS sSS sLI sSR
fin sTW sFW sSS sTW sFW sTW sCL sTW sLA sLI sTW
ack sES sES sSS sES sFW sTW sCL sCW sLA sES sES
rst sCL sCL sSS sCL sCL sTW sCL sCL sCL sCL sCL
INPUT-ONLY
syn sSR sES sES sSR sSR sSR sSR sSR sSR sSR sSR
fin sCL sFW sSS sTW sFW sTW sCL sCW sLA sLI sTW
ack sES sES sSS sES sFW sTW sCL sCW sCL sLI sES
rst sCL sCL sCL sSR sCL sCL sCL sCL sLA sLI sCL
`

const kernelTCPStatesDos = `
INPUT
syn sSR sES sES sSR sSR sSR sSR sSR sSR sSR sSA
fin sCL sCW sSS sTW sTW sTW sCL sCW sLA sLI sSA
ack sES sES sSS sSR sFW sTW sCL sCW sCL sLI sSA
rst sCL sCL sCL sSR sCL sCL sCL sCL sLA sLI sCL
OUTPUT
syn sSS sES sSS sSA sSS sSS sSS sSS sSS sLI sSA
fin sTW sFW sSS sTW sFW sTW sCL sTW sLA sLI sTW
ack sES sES sSS sES sFW sTW sCL sCW sLA sES sES
rst sCL sCL sSS sCL sCL sTW sCL sCL sCL sCL sCL
INPUT-ONLY
syn sSA sES sES sSR sSA sSA sSA sSA sSA sSA sSA
fin sCL sFW sSS sTW sFW sTW sCL sCW sLA sLI sTW
ack sES sES sSS sES sFW sTW sCL sCW sCL sLI sES
rst sCL sCL sCL sSR sCL sCL sCL sCL sLA sLI sCL
`

// kernelSpec maps "TABLE/event/FROM" (kernel names, e.g. "OUTPUT/fin/sES")
// to the kernel's next state name.
type kernelSpec map[string]string

func parseKernel(t testing.TB, text string) kernelSpec {
	t.Helper()
	cols := strings.Fields(kernelColumns)
	spec := kernelSpec{}
	table := ""
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) == 1 {
			table = f[0]
			continue
		}
		if len(f) != len(cols)+1 {
			t.Fatalf("kernel table line %q: %d fields, want %d", line, len(f), len(cols)+1)
		}
		for i, c := range cols {
			spec[table+"/"+f[0]+"/"+c] = f[i+1]
		}
	}
	if len(spec) != 3*4*11 {
		t.Fatalf("kernel table has %d transitions, want %d", len(spec), 3*4*11)
	}
	return spec
}

// The kernel's tcp_state_active_table (ip_vs_proto_tcp.c), as it writes it,
// and its timeouts: tcp_timeouts[] of ip_vs_proto_tcp.c and udp_timeouts[]
// of ip_vs_proto_udp.c (HZ is a second). Read from the torvalds/linux
// mainline source as of 2025 (6.16+).
const kernelActiveTable = `
sNO false
sES true
sSS true
sSR true
sFW false
sTW false
sCL false
sCW false
sLA false
sLI false
sSA true
`

const kernelTimeouts = `
sNO 2*HZ
sES 15*60*HZ
sSS 2*60*HZ
sSR 1*60*HZ
sFW 2*60*HZ
sTW 2*60*HZ
sCL 10*HZ
sCW 60*HZ
sLA 30*HZ
sLI 2*60*HZ
sSA 120*HZ
UDP 5*60*HZ
`

// kernelActive reports whether a connection of proto in state s counts as
// active: a TCP one when the kernel's table says so, never a UDP one (its
// connections are bound inactive and no UDP transition moves them).
func kernelActive(t testing.TB, proto uint8, s State) bool {
	t.Helper()
	if proto == ProtoSCTP {
		return kernelSCTPActive(s)
	}
	if proto != ProtoTCP {
		return false
	}
	for _, line := range strings.Split(strings.TrimSpace(kernelActiveTable), "\n") {
		if f := strings.Fields(line); f[0] == kernelName[s] {
			return f[1] == "true"
		}
	}
	t.Fatalf("state %v not in the kernel's active table", s)
	return false
}

// kernelTimeout is the kernel's default timeout of s in seconds.
func kernelTimeout(t testing.TB, s State) int {
	t.Helper()
	if s.IsSCTP() {
		secs, _, _ := kernelSCTPTimeout(t, s)
		return secs
	}
	name := kernelName[s]
	if s == StateUDP {
		name = "UDP"
	}
	for _, line := range strings.Split(strings.TrimSpace(kernelTimeouts), "\n") {
		f := strings.Fields(line)
		if f[0] != name {
			continue
		}
		v := 1
		for _, x := range strings.Split(f[1], "*") {
			if x == "HZ" {
				continue
			}
			n, err := strconv.Atoi(x)
			if err != nil {
				t.Fatalf("kernel timeout %q: %v", f[1], err)
			}
			v *= n
		}
		return v
	}
	t.Fatalf("state %v not in the kernel's timeouts", s)
	return 0
}

// kernelName is the kernel's short name of s (sNO, sES, ...).
var kernelName = map[State]string{
	StateNone: "sNO", StateEstablished: "sES", StateSynSent: "sSS", StateSynRecv: "sSR",
	StateFinWait: "sFW", StateTimeWait: "sTW", StateClose: "sCL", StateCloseWait: "sCW",
	StateLastAck: "sLA", StateListen: "sLI", StateSynAck: "sSA",
}

func stateByKernelName(t testing.TB, n string) State {
	t.Helper()
	for s, name := range kernelName {
		if name == n {
			return s
		}
	}
	t.Fatalf("unknown kernel state %q", n)
	return 0
}

// kernelEvent names the event the kernel's tcp_state_idx picks for flags:
// RST before SYN before FIN before ACK; "" for none (→ CLOSE).
func kernelEvent(flags uint8) string {
	switch {
	case flags&TCPRst != 0:
		return "rst"
	case flags&TCPSyn != 0:
		return "syn"
	case flags&TCPFin != 0:
		return "fin"
	case flags&TCPAck != 0:
		return "ack"
	}
	return ""
}

// kernelTableName is the kernel table a packet in dir uses for method m.
func kernelTableName(m Method, dir Dir) string {
	switch {
	case m == MethodDR || m == MethodTUN:
		return "INPUT-ONLY"
	case dir == DirReply:
		return "OUTPUT"
	}
	return "INPUT"
}

// next is the spec's next state.
func (k kernelSpec) next(t testing.TB, m Method, dir Dir, flags uint8, cur State) State {
	ev := kernelEvent(flags)
	if ev == "" {
		return StateClose
	}
	return stateByKernelName(t, k[kernelTableName(m, dir)+"/"+ev+"/"+kernelName[cur]])
}

func flagString(f uint8) string {
	var b strings.Builder
	for _, x := range []struct {
		bit  uint8
		name string
	}{{TCPSyn, "S"}, {TCPFin, "F"}, {TCPRst, "R"}, {TCPPsh, "P"}, {TCPAck, "A"}} {
		if f&x.bit != 0 {
			b.WriteString(x.name)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
