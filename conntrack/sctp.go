package conntrack

// SCTP connections, as IPVS tracks them (net/netfilter/ipvs/ip_vs_proto_sctp.c, read at
// intel-lab-lkp/linux e0cc369553c8344fbedb63fc62b4d37aed1cb5a6, a 2025 tree; ip_vs_core.c's
// is_new_conn and is_new_conn_expected at Kingxukai/linux
// 9b44fff655e2c6f4cc53cb499dd2c038e99cb013):
//
//   - A packet's event is the type of its first chunk (set_sctp_state), except that a
//     COOKIE ECHO or COOKIE ACK followed by an ABORT chunk counts as the ABORT. DATA,
//     SACK, HEARTBEAT, HEARTBEAT ACK, ECNE, CWR and every chunk type above SHUTDOWN
//     COMPLETE (14) are the DATA event. The caller passes that chunk type where TCP
//     passes its flags (Lookup's tcpFlags, Insert's, Query.TCPFlags); packet.SCTPChunk
//     computes it.
//   - Three tables, as TCP's: INPUT (client → director) and OUTPUT (real server →
//     director) for NAT and FULLNAT, INPUT-ONLY for DR and TUN (IP_VS_CONN_F_NOOUTPUT);
//     there is no secure variant. sctpTables below holds them, columns in the kernel's
//     state order.
//   - Only an INIT may create a connection (sctp_conn_schedule); with sloppy_sctp
//     (Config.SloppySCTP) any packet whose first chunk is not an ABORT may, and its first
//     transition from NONE is its event's: INIT1 for an INIT, ESTABLISHED for DATA,
//     SHUTDOWN_RECEIVED for a client's SHUTDOWN, and so on. One deviation: the kernel asks
//     the first chunk, xlvs the event chunk, so a COOKIE ECHO or COOKIE ACK bundled with
//     an ABORT (the ABORT event) creates a connection there, in CLOSED, and none here.
//   - ActiveConn counts SCTP connections in ESTABLISHED only; every other state is
//     inactive (set_sctp_state moves the counts on a change to or from ESTABLISHED).
//   - Timeouts (sctp_timeouts): NONE 2 s, INIT1 and REJECTED 4 s, ESTABLISHED 15 min,
//     every other state IP_VS_SCTP_MAX_RTO, 61 s. The kernel offers no way to change
//     them (ipvsadm --set and the sysctls are TCP's and UDP's).
//   - An INIT from the client that finds a connection in CLOSED replaces it
//     (is_new_conn_expected; conn_reuse_mode as for TCP): Status Reused.
//   - A sync master sends an SCTP connection in ESTABLISHED, SHUTDOWN_SENT,
//     SHUTDOWN_RECEIVED, SHUTDOWN_ACK_SENT and CLOSED, at once on a change into one of
//     them but ESTABLISHED (ip_vs_sync_conn_needed; sync.go).

// ProtoSCTP is SCTP's IP protocol number.
const ProtoSCTP uint8 = 132

// SCTP chunk types (RFC 9260 section 3.2) that the state machine tells apart.
const (
	SCTPData             uint8 = 0
	SCTPInit             uint8 = 1
	SCTPInitAck          uint8 = 2
	SCTPSack             uint8 = 3
	SCTPHeartbeat        uint8 = 4
	SCTPHeartbeatAck     uint8 = 5
	SCTPAbort            uint8 = 6
	SCTPShutdown         uint8 = 7
	SCTPShutdownAck      uint8 = 8
	SCTPError            uint8 = 9
	SCTPCookieEcho       uint8 = 10
	SCTPCookieAck        uint8 = 11
	SCTPEcne             uint8 = 12
	SCTPCwr              uint8 = 13
	SCTPShutdownComplete uint8 = 14
)

// NumSCTPStates is the number of SCTP states besides NONE (IP_VS_SCTP_S_LAST - 1).
const NumSCTPStates = int(StateSCTPClosed-StateSCTPInit1) + 1

// IsSCTP reports whether s is one of the SCTP states (StateNone, SCTP's NONE too, is
// not counted).
func (s State) IsSCTP() bool { return s >= StateSCTPInit1 && s <= StateSCTPClosed }

// SCTPNumber is s as the kernel numbers SCTP states (IP_VS_SCTP_S_*, what the sync
// protocol carries): 0 for StateNone, 1 (INIT1) to 13 (CLOSED) for the SCTP states.
// false for a state SCTP does not have.
func (s State) SCTPNumber() (uint16, bool) {
	switch {
	case s == StateNone:
		return 0, true
	case s.IsSCTP():
		return uint16(s-StateSCTPInit1) + 1, true
	}
	return 0, false
}

// SCTPState is the State of the kernel's SCTP state number n (0 NONE to 13 CLOSED);
// false for a number at or past IP_VS_SCTP_S_LAST.
func SCTPState(n uint16) (State, bool) {
	switch {
	case n == 0:
		return StateNone, true
	case int(n) <= NumSCTPStates:
		return StateSCTPInit1 + State(n-1), true
	}
	return 0, false
}

// sctpMaxRTO is IP_VS_SCTP_MAX_RTO in seconds.
const sctpMaxRTO = 60 + 1

// defaultSCTPTimeouts are the kernel's sctp_timeouts, StateSCTPInit1 first.
var defaultSCTPTimeouts = [NumSCTPStates]int{
	0:                                          0 + 3 + 1, // StateSCTPInit1
	StateSCTPInit - StateSCTPInit1:             sctpMaxRTO,
	StateSCTPCookieSent - StateSCTPInit1:       sctpMaxRTO,
	StateSCTPCookieReplied - StateSCTPInit1:    sctpMaxRTO,
	StateSCTPCookieWait - StateSCTPInit1:       sctpMaxRTO,
	StateSCTPCookie - StateSCTPInit1:           sctpMaxRTO,
	StateSCTPCookieEchoed - StateSCTPInit1:     sctpMaxRTO,
	StateSCTPEstablished - StateSCTPInit1:      15 * 60,
	StateSCTPShutdownSent - StateSCTPInit1:     sctpMaxRTO,
	StateSCTPShutdownReceived - StateSCTPInit1: sctpMaxRTO,
	StateSCTPShutdownAckSent - StateSCTPInit1:  sctpMaxRTO,
	StateSCTPRejected - StateSCTPInit1:         0 + 3 + 1,
	StateSCTPClosed - StateSCTPInit1:           sctpMaxRTO,
}

// SCTP events: the rows of the state tables (the kernel's ipvs_sctp_event_t).
const (
	sevData = iota
	sevInit
	sevInitAck
	sevCookieEcho
	sevCookieAck
	sevShutdown
	sevShutdownAck
	sevShutdownComplete
	sevError
	sevAbort
	numSCTPEvents
)

// sctpEvents maps chunk types 0..14 to events; higher types are DATA.
var sctpEvents = [SCTPShutdownComplete + 1]uint8{
	SCTPData:             sevData,
	SCTPInit:             sevInit,
	SCTPInitAck:          sevInitAck,
	SCTPSack:             sevData,
	SCTPHeartbeat:        sevData,
	SCTPHeartbeatAck:     sevData,
	SCTPAbort:            sevAbort,
	SCTPShutdown:         sevShutdown,
	SCTPShutdownAck:      sevShutdownAck,
	SCTPError:            sevError,
	SCTPCookieEcho:       sevCookieEcho,
	SCTPCookieAck:        sevCookieAck,
	SCTPEcne:             sevData,
	SCTPCwr:              sevData,
	SCTPShutdownComplete: sevShutdownComplete,
}

func sctpEvent(chunk uint8) int {
	if int(chunk) < len(sctpEvents) {
		return int(sctpEvents[chunk])
	}
	return sevData
}

// numSCTPColumns: NONE and the SCTP states, the kernel's column order.
const numSCTPColumns = NumSCTPStates + 1

type sctpTable [numTables][numSCTPEvents][numSCTPColumns]State

// Short names in the kernel's column order, to read the tables against
// ip_vs_proto_sctp.c's sctp_states.
const (
	sNO = StateNone
	sI1 = StateSCTPInit1
	sIN = StateSCTPInit
	sCS = StateSCTPCookieSent
	sCR = StateSCTPCookieReplied
	sCW = StateSCTPCookieWait
	sCO = StateSCTPCookie
	sCE = StateSCTPCookieEchoed
	sES = StateSCTPEstablished
	sSS = StateSCTPShutdownSent
	sSR = StateSCTPShutdownReceived
	sSA = StateSCTPShutdownAckSent
	sRJ = StateSCTPRejected
	sCL = StateSCTPClosed
)

// sctpTables: columns are the current state NO I1 IN CS CR CW CO CE ES SS SR SA RJ CL;
// rows the events DATA, INIT, INIT ACK, COOKIE ECHO, COOKIE ACK, SHUTDOWN, SHUTDOWN ACK,
// SHUTDOWN COMPLETE, ERROR, ABORT.
var sctpTables = sctpTable{
	tblInput: {
		sevData:             {sES, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevInit:             {sI1, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sIN, sIN},
		sevInitAck:          {sCW, sCW, sCW, sCS, sCR, sCO, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevCookieEcho:       {sCR, sIN, sIN, sCR, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevCookieAck:        {sES, sI1, sIN, sCS, sCR, sCW, sCO, sES, sES, sSS, sSR, sSA, sRJ, sCL},
		sevShutdown:         {sSR, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sSR, sSS, sSR, sSA, sRJ, sCL},
		sevShutdownAck:      {sCL, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sES, sCL, sSR, sCL, sRJ, sCL},
		sevShutdownComplete: {sCL, sCL, sCL, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sCL, sRJ, sCL},
		sevError:            {sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCL, sES, sSS, sSR, sSA, sRJ, sCL},
		sevAbort:            {sCL, sCL, sCL, sCL, sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
	},
	tblOutput: {
		sevData:             {sES, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevInit:             {sCW, sCW, sCW, sCW, sCW, sCW, sCW, sCW, sES, sCW, sCW, sCW, sCW, sCW},
		sevInitAck:          {sCS, sCS, sCS, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevCookieEcho:       {sCE, sCE, sCE, sCE, sCE, sCE, sCE, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevCookieAck:        {sES, sES, sES, sES, sES, sES, sES, sES, sES, sSS, sSR, sSA, sRJ, sCL},
		sevShutdown:         {sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSS, sSR, sSA, sRJ, sCL},
		sevShutdownAck:      {sSA, sSA, sSA, sSA, sSA, sCW, sCO, sCE, sES, sSA, sSA, sSA, sRJ, sCL},
		sevShutdownComplete: {sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevError:            {sCL, sCL, sCL, sCL, sCL, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevAbort:            {sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
	},
	tblInputOnly: {
		sevData:             {sES, sI1, sIN, sCS, sCR, sES, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevInit:             {sI1, sIN, sIN, sIN, sIN, sIN, sCO, sCE, sES, sSS, sSR, sSA, sIN, sIN},
		sevInitAck:          {sCE, sCE, sCE, sCE, sCE, sCE, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevCookieEcho:       {sES, sES, sES, sES, sES, sES, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevCookieAck:        {sES, sI1, sIN, sES, sES, sCW, sES, sES, sES, sSS, sSR, sSA, sRJ, sCL},
		sevShutdown:         {sSR, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sSR, sSS, sSR, sSA, sRJ, sCL},
		sevShutdownAck:      {sCL, sIN, sIN, sCS, sCR, sCW, sCO, sCE, sCL, sCL, sSR, sCL, sRJ, sCL},
		sevShutdownComplete: {sCL, sCL, sCL, sCL, sCL, sCW, sCO, sCE, sES, sSS, sCL, sCL, sRJ, sCL},
		sevError:            {sCL, sI1, sIN, sCS, sCR, sCW, sCO, sCE, sES, sSS, sSR, sSA, sRJ, sCL},
		sevAbort:            {sCL, sCL, sCL, sCL, sCL, sRJ, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
	},
}

// sctpColumn is state s's column in sctpTables (NONE 0, INIT1 1, ...); -1 for a state
// SCTP does not have.
func sctpColumn(s State) int {
	switch {
	case s == StateNone:
		return 0
	case s.IsSCTP():
		return int(s-StateSCTPInit1) + 1
	}
	return -1
}

// next returns the state after a packet whose event chunk type is chunk, seen through
// table tbl, hits a connection in state cur (CLOSED for a state SCTP does not have,
// which no SCTP entry holds).
func (st *sctpTable) next(tbl int, chunk uint8, cur State) State {
	c := sctpColumn(cur)
	if c < 0 {
		return StateSCTPClosed
	}
	return st[tbl][sctpEvent(chunk)][c]
}

// established reports whether s is a protocol's ESTABLISHED state: such entries are off
// the eviction list (see Insert, ErrFull).
func (s State) established() bool { return s == StateEstablished || s == StateSCTPEstablished }
