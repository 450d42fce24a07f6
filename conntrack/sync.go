package conntrack

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"
)

// Connection sync: the table's part of IPVS's sync master (which packets make a
// connection be sent) and backup (a received connection applied). Read from the mainline
// source:
//
//   - codesnas/linux-6.18.y net/netfilter/ipvs/ip_vs_sync.c at
//     33ef1e6ac01f0ac6e67e0ed1324ee25def174c4e: ip_vs_sync_conn_needed, ip_vs_sync_conn,
//     ip_vs_proc_conn, ip_vs_process_message_v0 and ip_vs_proc_sync_conn (state checks);
//   - Kingxukai/linux net/netfilter/ipvs/ip_vs_core.c and ip_vs_conn.c at
//     9b44fff655e2c6f4cc53cb499dd2c038e99cb013: ip_vs_in_hook (the caller), ip_vs_conn_new
//     (a new connection's sync fields).
//
// Master. ip_vs_in_hook applies each packet from a client to the state machine
// (ip_vs_set_state, which also sets cp->timeout to the new state's timeout), then
// increments the connection's in_pkts and, on a master, asks ip_vs_sync_conn_needed with
// that count. Replies (ip_vs_out) move the state but are neither counted nor synced.
// ip_vs_conn_new starts a connection with in_pkts 0, old_state 0 (NONE) and
// sync_endtime = jiffies & ~3. ip_vs_sync_conn_needed, for a connection that is not a
// template:
//
//  1. TCP: not in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT or TIME_WAIT: no (nothing
//     changes). force = state != old_state; force into any of them but ESTABLISHED: go
//     to 4. SCTP the same with ESTABLISHED, SHUTDOWN_SENT, SHUTDOWN_RECEIVED,
//     SHUTDOWN_ACK_SENT and CLOSED. UDP (single state): force = false.
//  2. With sync_refresh_period > 0: n = (jiffies + timeout) & ~3 (the end time the
//     backup would compute); if |n - sync_endtime| < min(refresh, max(timeout/2, 10 s))
//     the connection was sent recently with nearly the same end time: no if the retries
//     kept in sync_endtime's low 2 bits reached sync_retries, or if jiffies is before
//     sync_endtime - timeout + refresh/8; else n carries retries+1.
//  3. sync_period > 0: no unless in_pkts % sync_period == sync_threshold. sync_period
//     0 and no refresh period: no unless in_pkts == sync_threshold.
//  4. old_state = state, sync_endtime = n, yes. (The kernel's cmpxchg on sync_endtime
//     can lose to another CPU; here the shard lock is held, so reaching 4 is a yes.)
//
// Templates and their TEMPLATE branches, sync_persist_mode (in_persistence) and
// ONE_PACKET connections are the dataplane's business: templates are not in this table.
//
// Backup. ip_vs_proc_conn finds the connection by protocol, client and virtual endpoint
// (ip_vs_conn_in_get: Entry.Orig). Present with another real server: a message for an
// active connection expires the old one and creates the new; one for an inactive
// connection is the expiry of a connection already replaced, and is ignored. Present
// otherwise: its activity flag and activeconns follow the message, the destination stays.
// Absent: ip_vs_conn_new, whose ip_vs_bind_dest counts it active or inactive as the
// message says and may set the overload flag. Either way in_pkts = sync_threshold,
// state = the message's, old_state = state, and the timer restarts with the message's
// timeout (0: the state's own). Messages whose state is not below the protocol's number
// of states are dropped before (TCP: NONE to SYNACK; UDP: its one state; SCTP: NONE to
// CLOSED).
//
// Deviations, all deliberate:
//
//   - Packets are counted only while sync is on (the kernel counts on any director): a
//     connection's count misses the packets it saw while this table was not a master,
//     and a connection inserted while sync was off starts with no end time.
//   - The sync clock ticks every 8 ms, as jiffies do at HZ=125 (IPVS's arithmetic here
//     is in jiffies, so its resolution depends on HZ in the kernel too: 1 ms at 1000,
//     10 ms at 100), and sync_endtime is kept in 29 bits: it wraps every 49.7 days like
//     the table's millisecond clock, under the same rule (an entry is touched within 24
//     days). This keeps a connection's sync state in 8 bytes.
//   - Apply on a present connection moves both ActiveConn and InActConn when the state's
//     activity changes, as a packet's state change does; the kernel moves only
//     activeconns there, so its InActConn drifts after such an update.

// syncTick is the sync clock's period: the table's milliseconds >> syncTickShift.
const (
	syncTickShift = 3
	syncTick      = time.Millisecond << syncTickShift
	syncHZ        = uint32(time.Second / syncTick) // 125
	syncOldBits   = 3
	syncOldMask   = 1<<syncOldBits - 1
	syncEndMask   = 1<<(32-syncOldBits) - 1 // sync_endtime's 29 bits
	// syncDefaultThreshold is sync_threshold's default, which Apply gives a connection's
	// count while sync is off.
	syncDefaultThreshold = 3
)

// ErrState: Apply was given a state the protocol does not have.
var ErrState = errors.New("apply connection: state not valid for the protocol; want NONE to SYNACK (StateNone..StateSynAck) for TCP, StateUDP for UDP, StateNone or StateSCTPInit1..StateSCTPClosed for SCTP")

// SyncPolicy is IPVS's connection-sync tuning (the sync_* sysctls of net/netfilter/ipvs,
// ip_vs_sync_conn_needed): which packets of a connection make a sync master send it.
// Table.SetSync turns it on. Validate says whether the kernel would take it.
type SyncPolicy struct {
	// Threshold and Period are sync_threshold's two values (default 3 50): a connection is
	// sent when its count of incoming packets modulo Period equals Threshold. Period 0:
	// sent once, at the Threshold-th packet (or, with RefreshPeriod, by RefreshPeriod).
	// TCP connections are sent only in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT and
	// TIME_WAIT, and always (whatever the count) on a change into one of them but
	// ESTABLISHED.
	Threshold, Period int
	// RefreshPeriod is sync_refresh_period (default 0: off): a connection whose state did
	// not change is sent again only once the timer it was last sent with is more than
	// min(RefreshPeriod, max(timeout/2, 10 s)) from the one it has now. It counts in
	// steps of the 8 ms sync clock (rounded down).
	RefreshPeriod time.Duration
	// Retries is sync_retries (0..3, default 0): with RefreshPeriod, how many times an
	// unchanged connection is sent again, RefreshPeriod/8 apart.
	Retries int
}

// DefaultSyncPolicy is the kernel's defaults: sync_threshold 3 50, sync_refresh_period 0,
// sync_retries 0.
func DefaultSyncPolicy() SyncPolicy { return SyncPolicy{Threshold: syncDefaultThreshold, Period: 50} }

// Validate reports what the kernel's sysctls would refuse in p: negative values, a
// Threshold not below a nonzero Period, Retries outside 0..3, a RefreshPeriod beyond
// MaxTimeout seconds.
func (p SyncPolicy) Validate() error {
	switch {
	case p.Threshold < 0 || p.Period < 0:
		return fmt.Errorf("sync policy: threshold %d, period %d; want both 0 or more", p.Threshold, p.Period)
	case p.Period > 0 && p.Threshold >= p.Period:
		return fmt.Errorf("sync policy: threshold %d with period %d; want threshold below period (or period 0)", p.Threshold, p.Period)
	case p.Period > math.MaxInt32:
		return fmt.Errorf("sync policy: period %d; want at most %d", p.Period, math.MaxInt32)
	case p.Retries < 0 || p.Retries > 3:
		return fmt.Errorf("sync policy: retries %d; want 0 to 3", p.Retries)
	case p.RefreshPeriod < 0 || p.RefreshPeriod > MaxTimeout*time.Second:
		return fmt.Errorf("sync policy: refresh period %v; want 0 (off) to %v", p.RefreshPeriod, MaxTimeout*time.Second)
	}
	return nil
}

// syncPolicy is a SyncPolicy as the lookups use it.
type syncPolicy struct {
	threshold, period int32
	refresh           uint32 // sync ticks
	retries           uint32
}

func sat32(v int) int32 { return int32(min(max(v, math.MinInt32), math.MaxInt32)) }

func (p *SyncPolicy) compile() *syncPolicy {
	c := &syncPolicy{
		threshold: sat32(p.Threshold),
		period:    sat32(p.Period),
		retries:   uint32(min(max(p.Retries, 0), 3)),
	}
	if p.RefreshPeriod > 0 {
		c.refresh = uint32(min(p.RefreshPeriod, MaxTimeout*time.Second) / syncTick)
	}
	return c
}

// SetSync makes the table a sync master's (p) or not (nil, the default). While on, every
// packet from a client that Lookup or LookupBatch finds (DirOrig, Found) and every Insert
// counts in the connection's incoming-packet count, and Entry.Sync on output says
// whether the master sends the connection now, by IPVS's rules (see SyncPolicy and
// sync.go). Replies are not counted and never sent. The policy is copied; SetSync takes
// any values (Validate tells what the kernel would refuse), with Retries clamped to 0..3
// and RefreshPeriod to MaxTimeout seconds. Safe concurrently with everything: the
// lookups read the policy without locks, and a changed policy applies from the next
// packet. Connections keep their counts while sync is off and on again.
func (t *Table) SetSync(p *SyncPolicy) {
	if p == nil {
		t.syncPol.Store(nil)
		return
	}
	c := p.compile()
	// Mark every shard's slots as in use before any lookup can see the policy, so that
	// an Insert after a later SetSync(nil) still resets the slot it takes.
	for i := range t.shards {
		sh := &t.shards[i].shard
		sh.mu.Lock()
		if len(sh.recs) > 0 {
			sh.syncUsed = true
		}
		sh.mu.Unlock()
	}
	t.syncPol.Store(c)
}

// StateTimeout is state s's timeout in whole seconds as the table applies it now (0 for a
// state that does not exist): what a sync master sends with a connection.
func (t *Table) StateTimeout(s State) uint32 {
	if s >= numStates {
		return 0
	}
	return t.timeout(s) / 1000
}

// Active tells whether IPVS counts a connection in state s as active (ActiveConn: the TCP
// states of tcp_state_active_table, SCTP's ESTABLISHED) rather than inactive (InActConn,
// UDP included).
func (s State) Active() bool { return s < numStates && activeState[s] }

// syncSlot is one connection's sync state, 8 bytes, in the shard's sync array at the
// record's ref: pkts is in_pkts; w is sync_endtime<<syncOldBits | old, sync_endtime in
// sync ticks (29 bits, wrapping; its low 2 bits are the refresh retries), old a code of
// the connection's old_state when that is one of the states a connection of its
// protocol is sent in (syncOld: 1 to 7), else 0: old_state is only ever compared with a
// state of that set, of the same protocol, so the answers are the kernel's.
type syncSlot struct {
	pkts int32
	w    uint32
}

// syncStates are the states a connection is sent in, with their old-state codes (0: not
// sent): TCP's by their numbers (all below 8), SCTP's 1 to 5.
var syncStates = [numStates]uint8{
	StateEstablished:          uint8(StateEstablished),
	StateFinWait:              uint8(StateFinWait),
	StateClose:                uint8(StateClose),
	StateCloseWait:            uint8(StateCloseWait),
	StateTimeWait:             uint8(StateTimeWait),
	StateSCTPEstablished:      1,
	StateSCTPShutdownSent:     2,
	StateSCTPShutdownReceived: 3,
	StateSCTPShutdownAckSent:  4,
	StateSCTPClosed:           5,
}

// syncOld is the slot's code of old_state s (0 for UDP and for states not sent).
func syncOld(proto uint8, s State) uint32 {
	if proto == ProtoTCP || proto == ProtoSCTP {
		return uint32(syncStates[s])
	}
	return 0
}

// signed29 reads the low 29 bits of v as a signed number (a difference of sync times).
func signed29(v uint32) int32 { return int32(v<<syncOldBits) >> syncOldBits }

// needed is ip_vs_sync_conn_needed for a connection of protocol proto in state st, whose
// timeout is to ticks, at tick now, its slot already counting this packet. It updates
// old_state and sync_endtime when the answer is yes, as the kernel does.
func (p *syncPolicy) needed(sl *syncSlot, proto uint8, st State, to, now uint32) bool {
	orig := sl.w >> syncOldBits
	n := (now + to) & syncEndMask &^ 3
	if proto == ProtoTCP || proto == ProtoSCTP {
		code := uint32(syncStates[st])
		if code == 0 {
			return false
		}
		if code != sl.w&syncOldMask && !st.established() {
			sl.w = n<<syncOldBits | code
			return true
		}
	}
	if p.refresh > 0 {
		diff := int64(signed29(n - orig))
		if diff < 0 {
			diff = -diff
		}
		if diff < int64(min(p.refresh, max(to>>1, 10*syncHZ))) {
			retries := orig & 3
			if retries >= p.retries {
				return false
			}
			if signed29(now-(orig-to+p.refresh>>3)) < 0 {
				return false
			}
			n |= retries + 1
		}
	}
	if p.period > 0 {
		if sl.pkts%p.period != p.threshold {
			return false
		}
	} else if p.refresh == 0 && sl.pkts != p.threshold {
		return false
	}
	sl.w = n<<syncOldBits | syncOld(proto, st)
	return true
}

// slot is the sync slot of record ref (< len(sh.recs)). The array's address is kept in
// the shard's first cache line, which every lookup has already read.
func (sh *shard) slot(ref uint32) *syncSlot {
	return (*syncSlot)(unsafe.Add(sh.syncp, uintptr(dense(ref))*unsafe.Sizeof(syncSlot{})))
}

// syncPacket counts a client packet that Lookup found on entry ref (its timer just set
// to `to` ms) and decides.
func (t *Table) syncPacket(sh *shard, ref uint32, p *syncPolicy, to, now32 uint32) bool {
	sl := sh.slot(ref)
	sl.pkts++
	r := &sh.recs[ref]
	return p.needed(sl, r.proto(), r.state(), to>>syncTickShift, now32>>syncTickShift)
}

// syncFirst starts the sync state of entry ref, just inserted by its first packet (timer
// `to` ms), and decides.
func (t *Table) syncFirst(sh *shard, ref uint32, p *syncPolicy, to, now32 uint32) bool {
	sl := sh.slot(ref)
	now := now32 >> syncTickShift
	*sl = syncSlot{pkts: 1, w: now &^ 3 << syncOldBits}
	r := &sh.recs[ref]
	return p.needed(sl, r.proto(), r.state(), to>>syncTickShift, now)
}

// Apply applies a connection received from a sync master, as IPVS's ip_vs_proc_conn does
// for one that is not a template (the dataplane keeps templates). The connection is
// found by e.Orig.
//
// Present, with the same Dest: its state becomes e.State (ActiveConn/InActConn and the
// eviction list change as a packet's state change changes them; the overload flag does
// not change), its timer restarts with timeout seconds, and it keeps its Dest, Service,
// Method, Reply and Flags; created is false. Present with another Dest: when e.State is
// active, the old connection is removed (counted as expired) and e created; when not,
// the message is the expiry of a connection the backup already replaced and nothing
// changes (created false, err nil).
//
// Absent (or expired): e is created as Insert creates a connection, with both keys for
// NAT and FULLNAT (ErrExists when the reply key is held by a live connection; a TIME_WAIT
// or CLOSE holder gives it up), eviction or ErrFull when the shard is full, the
// destination's counts by e.State's activity and its overload flag as Insert sets it,
// but without the opener check and without a state transition: its state is e.State,
// its timer timeout seconds; created is true.
//
// timeout 0 means the state's own timeout (Timeouts); larger values are clamped to
// MaxTimeout. Either way the connection's sync count becomes the policy's Threshold (3,
// the default, while sync is off) and its old state e.State, as on a kernel backup, so
// that after a takeover (SetSync) its packets continue the master's sequence. Later
// packets go through the state machine as usual.
//
// It validates first: ErrProto, ErrState (TCP: StateNone to StateSynAck; UDP:
// StateUDP, the dataplane maps the wire's UDP state 0 to it; SCTP: StateNone and the
// SCTP states, SCTPState maps the wire's numbers), ErrDest, ErrMethod,
// ErrReply, ErrShardMismatch, as Insert does; ErrClosed after Close. e is only read.
// Counted in TableStats.Applied (refusals in Exists and Full, as Insert's). It allocates
// nothing.
func (t *Table) Apply(e *Entry, timeout uint32, now int64) (created bool, err error) {
	o := &e.Orig
	st := e.State
	switch {
	case o.Proto != ProtoTCP && o.Proto != ProtoUDP && o.Proto != ProtoSCTP:
		return false, ErrProto
	case o.Proto == ProtoTCP && int(st) >= numTCPStates, o.Proto == ProtoUDP && st != StateUDP,
		o.Proto == ProtoSCTP && st != StateNone && !st.IsSCTP():
		return false, ErrState
	case e.Dest >= t.maxDests:
		return false, ErrDest
	case e.Method >= numMethods:
		return false, ErrMethod
	}
	twoWay := e.Method.twoWay()
	si := t.shardOf(&o.Src, o.SrcPort)
	sh := &t.shards[si].shard
	ho := t.origHash(o)
	var hr uint64
	if twoWay {
		if e.Reply.Proto != o.Proto {
			return false, ErrReply
		}
		if t.shardOf(&e.Reply.Dst, e.Reply.DstPort) != si {
			return false, ErrShardMismatch
		}
		hr = t.replyHash(&e.Reply)
	}
	now32 := msOf(now)
	to := t.timeout(st)
	if timeout != 0 {
		to = min(timeout, MaxTimeout) * 1000
	}
	old := syncOld(o.Proto, st)

	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.recs) == 0 {
		return false, ErrClosed
	}
	thr := int32(syncDefaultThreshold)
	if p := t.syncPol.Load(); p != nil {
		thr = p.threshold
	}
	if ref := t.find(sh, ho, DirOrig, o); ref != noIdx {
		r := &sh.recs[ref]
		switch {
		case timedOut(r, now32) || r.dest != e.Dest && st.Active():
			t.release(sh, ref)
			sh.expired++
		case r.dest != e.Dest:
			return false, nil
		default:
			if cur := r.state(); cur != st {
				t.changeState(sh, ref, cur, st)
			}
			r.expires = now32 + to
			sh.syncUsed = true
			sl := sh.slot(ref)
			sl.pkts = thr
			sl.w = sl.w&^syncOldMask | old
			sh.applied++
			return false, nil
		}
	}
	if twoWay && !t.vacantReply(sh, hr, &e.Reply, now32) {
		sh.exists++
		return false, ErrExists
	}
	ref := t.alloc(sh, sh.homePage(ho), now32)
	if ref == noIdx {
		sh.full++
		return false, ErrFull
	}
	t.create(sh, ref, e, st, ho, hr, now32+to, -1, 0)
	sh.syncUsed = true
	*sh.slot(ref) = syncSlot{pkts: thr, w: now32>>syncTickShift&^3<<syncOldBits | old}
	sh.applied++
	return true, nil
}
