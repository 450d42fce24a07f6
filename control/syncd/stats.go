package syncd

import (
	"sync/atomic"
	"time"
)

type counter = atomic.Uint64

// Master drop reasons (entries not sent).
const (
	dropWouldBlock  = iota // the socket buffer stayed full for SendTries × SendWait
	dropSendError          // the socket refused the message
	dropEncode             // the entry cannot be encoded
	dropMixedFamily        // addresses of different families (no such entry in the format)
	numMasterDrops
)

var masterDropNames = [numMasterDrops]string{"would_block", "send_error", "encode", "mixed_family"}

// Backup drop reasons: whole messages, then single entries.
const (
	dropShort     = iota // shorter than a header
	dropMalformed        // size field differs from the datagram, entry or option cut short or malformed
	dropVersion          // an entry of an unknown version
	dropSyncID           // another sync ID than the backup's (when its own is not 0)
	dropSkipped          // entry with an option the receiver must know and does not (Conn.Skip)
	dropProtocol         // entry of a protocol xlvs does not track
	dropState            // entry in a state at or past its protocol's last
	dropMethod           // entry of a forwarding method xlvs does not have (local node, bypass)
	numBackupDrops
)

var backupDropNames = [numBackupDrops]string{"short", "malformed", "version", "syncid", "skipped", "protocol", "state", "method"}

// Options a backup accepts and ignores.
const (
	ignSeqData = iota
	ignPEData
	numIgnored
)

var ignoredNames = [numIgnored]string{"seq_data", "pe_data"}

type stats struct {
	mMsgs, mConns, mSendErrs, mWaits counter
	mDrop                            [numMasterDrops]counter
	lagLast, lagMax, lagSum          atomic.Int64 // ns
	lagCount                         counter

	bMsgs, bConns, bApplied, bRecvErrs counter
	bDrop                              [numBackupDrops]counter

	reqSent, reqSendErrs, reqRecv, tableSends, tableConns counter
	ignored                                               [numIgnored]counter
	apply                                                 []counter // by Options.ApplyReasons, then "other"
	applyNames                                            []string
}

// Stats are the daemon's counters since New, over every start of each role.
type Stats struct {
	// Master.
	Queued     uint64            // entries the dataplane's workers queued (dataplane.SyncStats)
	QueueFull  uint64            // entries the workers lost to a full queue
	Messages   uint64            // messages sent
	Conns      uint64            // entries sent
	SendErrors uint64            // messages the socket refused (not for want of room)
	SendWaits  uint64            // waits for room in a full socket buffer
	Drops      map[string]uint64 // entries not sent, by reason
	// Lag is the time from a worker queuing an entry to its message being sent:
	// LagLast is the oldest entry's of the last message, LagMax the largest seen,
	// LagSum / LagCount the mean over every entry sent.
	LagLast, LagMax, LagSum time.Duration
	LagCount                uint64

	// Backup.
	Received    uint64            // datagrams received
	Decoded     uint64            // entries decoded from accepted messages
	Applied     uint64            // entries applied
	RecvErrors  uint64            // socket errors while receiving
	Dropped     map[string]uint64 // messages (short, malformed, version, syncid) and entries (skipped, protocol, state, method) dropped
	ApplyErrors map[string]uint64 // entries the dataplane refused, by reason
	Ignored     map[string]uint64 // options accepted and ignored (seq_data, pe_data)

	// Whole-table exchanges (xlvs's table request, not IPVS's).
	RequestsSent      uint64 // table requests sent (a backup starting, RequestTable)
	RequestSendErrors uint64 // table requests that could not be sent
	RequestsReceived  uint64 // table requests a master heard for its sync ID
	TableSends        uint64 // whole-table sends (after a request, or SendTable)
	TableConns        uint64 // entries those sends walked (each also counted in Conns when sent)
}

// Stats returns the counters.
func (d *Daemon) Stats() Stats {
	s := &d.st
	out := Stats{
		Messages: s.mMsgs.Load(), Conns: s.mConns.Load(), SendErrors: s.mSendErrs.Load(), SendWaits: s.mWaits.Load(),
		Drops:   map[string]uint64{},
		LagLast: time.Duration(s.lagLast.Load()), LagMax: time.Duration(s.lagMax.Load()),
		LagSum: time.Duration(s.lagSum.Load()), LagCount: s.lagCount.Load(),
		Received: s.bMsgs.Load(), Decoded: s.bConns.Load(), Applied: s.bApplied.Load(), RecvErrors: s.bRecvErrs.Load(),
		Dropped: map[string]uint64{}, ApplyErrors: map[string]uint64{}, Ignored: map[string]uint64{},
		RequestsSent: s.reqSent.Load(), RequestSendErrors: s.reqSendErrs.Load(), RequestsReceived: s.reqRecv.Load(),
		TableSends: s.tableSends.Load(), TableConns: s.tableConns.Load(),
	}
	dps := d.dp.SyncStats()
	out.Queued, out.QueueFull = dps.Queued, dps.QueueFull
	for i := range s.mDrop {
		out.Drops[masterDropNames[i]] = s.mDrop[i].Load()
	}
	for i := range s.bDrop {
		out.Dropped[backupDropNames[i]] = s.bDrop[i].Load()
	}
	for i := range s.ignored {
		out.Ignored[ignoredNames[i]] = s.ignored[i].Load()
	}
	for i := range s.apply {
		out.ApplyErrors[s.applyNames[i]] = s.apply[i].Load()
	}
	return out
}

// lag records the lag of one sent entry.
func (s *stats) lag(ns int64, oldest bool) {
	if ns < 0 {
		ns = 0
	}
	if oldest {
		s.lagLast.Store(ns)
	}
	for {
		m := s.lagMax.Load()
		if ns <= m || s.lagMax.CompareAndSwap(m, ns) {
			break
		}
	}
	s.lagSum.Add(ns)
	s.lagCount.Add(1)
}
