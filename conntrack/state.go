package conntrack

import "strconv"

// State is a connection's state. TCP states use the kernel's numbering
// (IP_VS_TCP_S_*), so they can be carried in the IPVS sync protocol as they
// are. StateUDP stands for the kernel's single UDP state (IP_VS_UDP_S_NORMAL,
// which is 0 in the UDP protocol's own numbering). The SCTP states follow, in
// the kernel's order (IP_VS_SCTP_S_INIT1 to IP_VS_SCTP_S_CLOSED; SCTP's NONE is
// StateNone): SCTPState and State.SCTPNumber convert to and from the kernel's
// SCTP numbers (sctp.go).
type State uint8

const (
	StateNone State = iota
	StateEstablished
	StateSynSent
	StateSynRecv
	StateFinWait
	StateTimeWait
	StateClose
	StateCloseWait
	StateLastAck
	StateListen
	StateSynAck
	StateUDP
	StateSCTPInit1
	StateSCTPInit
	StateSCTPCookieSent
	StateSCTPCookieReplied
	StateSCTPCookieWait
	StateSCTPCookie
	StateSCTPCookieEchoed
	StateSCTPEstablished
	StateSCTPShutdownSent
	StateSCTPShutdownReceived
	StateSCTPShutdownAckSent
	StateSCTPRejected
	StateSCTPClosed
	numStates
)

// numTCPStates is the number of TCP states (IP_VS_TCP_S_LAST).
const numTCPStates = int(StateSynAck) + 1

var stateNames = [numStates]string{
	StateNone:        "NONE",
	StateEstablished: "ESTABLISHED",
	StateSynSent:     "SYN_SENT",
	StateSynRecv:     "SYN_RECV",
	StateFinWait:     "FIN_WAIT",
	StateTimeWait:    "TIME_WAIT",
	StateClose:       "CLOSE",
	StateCloseWait:   "CLOSE_WAIT",
	StateLastAck:     "LAST_ACK",
	StateListen:      "LISTEN",
	StateSynAck:      "SYNACK",
	StateUDP:         "UDP",
	// ipvsadm -L -c prints SCTP states by the kernel's sctp_state_name_table.
	StateSCTPInit1:            "INIT1",
	StateSCTPInit:             "INIT",
	StateSCTPCookieSent:       "C-SENT",
	StateSCTPCookieReplied:    "C-REPLIED",
	StateSCTPCookieWait:       "C-WAIT",
	StateSCTPCookie:           "COOKIE",
	StateSCTPCookieEchoed:     "C-ECHOED",
	StateSCTPEstablished:      "ESTABLISHED",
	StateSCTPShutdownSent:     "S-SENT",
	StateSCTPShutdownReceived: "S-RECEIVED",
	StateSCTPShutdownAckSent:  "S-ACK-SENT",
	StateSCTPRejected:         "REJECTED",
	StateSCTPClosed:           "CLOSED",
}

// String gives the name ipvsadm -L -c prints ("ESTABLISHED", "UDP", ...).
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// TCP state tables. IPVS keeps three: INPUT (client → director) and OUTPUT
// (real server → director) for connections whose replies pass the director,
// and INPUT-ONLY for DR/TUN connections, whose replies do not. A packet's
// event is chosen from its flags with RST first, then SYN, FIN, ACK; a packet
// with none of these moves the connection to CLOSE. secure_tcp swaps in a
// second, stricter set of tables (IPVS's defense mode).

const (
	tblInput = iota
	tblOutput
	tblInputOnly
	numTables
)

const (
	evSyn = iota
	evFin
	evAck
	evRst
	numEvents
)

type tcpTables [numTables][numEvents][numTCPStates]State

// Short names, in the kernel's column order, make the tables below readable
// against net/netfilter/ipvs/ip_vs_proto_tcp.c.
const (
	xNO = StateNone
	xES = StateEstablished
	xSS = StateSynSent
	xSR = StateSynRecv
	xFW = StateFinWait
	xTW = StateTimeWait
	xCL = StateClose
	xCW = StateCloseWait
	xLA = StateLastAck
	xLI = StateListen
	xSA = StateSynAck
)

// normalTables: columns are the current state NO ES SS SR FW TW CL CW LA LI SA.
var normalTables = tcpTables{
	tblInput: {
		evSyn: {xSR, xES, xES, xSR, xSR, xSR, xSR, xSR, xSR, xSR, xSR},
		evFin: {xCL, xCW, xSS, xTW, xTW, xTW, xCL, xCW, xLA, xLI, xTW},
		evAck: {xES, xES, xSS, xES, xFW, xTW, xCL, xCW, xCL, xLI, xES},
		evRst: {xCL, xCL, xCL, xSR, xCL, xCL, xCL, xCL, xLA, xLI, xSR},
	},
	tblOutput: {
		evSyn: {xSS, xES, xSS, xSR, xSS, xSS, xSS, xSS, xSS, xLI, xSR},
		evFin: {xTW, xFW, xSS, xTW, xFW, xTW, xCL, xTW, xLA, xLI, xTW},
		evAck: {xES, xES, xSS, xES, xFW, xTW, xCL, xCW, xLA, xES, xES},
		evRst: {xCL, xCL, xSS, xCL, xCL, xTW, xCL, xCL, xCL, xCL, xCL},
	},
	tblInputOnly: {
		evSyn: {xSR, xES, xES, xSR, xSR, xSR, xSR, xSR, xSR, xSR, xSR},
		evFin: {xCL, xFW, xSS, xTW, xFW, xTW, xCL, xCW, xLA, xLI, xTW},
		evAck: {xES, xES, xSS, xES, xFW, xTW, xCL, xCW, xCL, xLI, xES},
		evRst: {xCL, xCL, xCL, xSR, xCL, xCL, xCL, xCL, xLA, xLI, xCL},
	},
}

// secureTables are the secure_tcp ("dos") tables.
var secureTables = tcpTables{
	tblInput: {
		evSyn: {xSR, xES, xES, xSR, xSR, xSR, xSR, xSR, xSR, xSR, xSA},
		evFin: {xCL, xCW, xSS, xTW, xTW, xTW, xCL, xCW, xLA, xLI, xSA},
		evAck: {xES, xES, xSS, xSR, xFW, xTW, xCL, xCW, xCL, xLI, xSA},
		evRst: {xCL, xCL, xCL, xSR, xCL, xCL, xCL, xCL, xLA, xLI, xCL},
	},
	tblOutput: {
		evSyn: {xSS, xES, xSS, xSA, xSS, xSS, xSS, xSS, xSS, xLI, xSA},
		evFin: {xTW, xFW, xSS, xTW, xFW, xTW, xCL, xTW, xLA, xLI, xTW},
		evAck: {xES, xES, xSS, xES, xFW, xTW, xCL, xCW, xLA, xES, xES},
		evRst: {xCL, xCL, xSS, xCL, xCL, xTW, xCL, xCL, xCL, xCL, xCL},
	},
	tblInputOnly: {
		evSyn: {xSA, xES, xES, xSR, xSA, xSA, xSA, xSA, xSA, xSA, xSA},
		evFin: {xCL, xFW, xSS, xTW, xFW, xTW, xCL, xCW, xLA, xLI, xTW},
		evAck: {xES, xES, xSS, xES, xFW, xTW, xCL, xCW, xCL, xLI, xES},
		evRst: {xCL, xCL, xCL, xSR, xCL, xCL, xCL, xCL, xLA, xLI, xCL},
	},
}

// tcpEvent maps TCP flags to a table row, or -1 for a packet that carries
// none of RST, SYN, FIN, ACK.
func tcpEvent(flags uint8) int {
	switch {
	case flags&TCPRst != 0:
		return evRst
	case flags&TCPSyn != 0:
		return evSyn
	case flags&TCPFin != 0:
		return evFin
	case flags&TCPAck != 0:
		return evAck
	}
	return -1
}

// next returns the state after a packet with flags, seen through table tbl,
// hits a connection in state cur.
func (tt *tcpTables) next(tbl int, flags uint8, cur State) State {
	ev := tcpEvent(flags)
	if ev < 0 || int(cur) >= numTCPStates {
		return StateClose
	}
	return tt[tbl][ev][cur]
}

// stateTable picks the TCP table for a packet in dir on a connection of
// method m (IPVS's tcp_state_off plus the NOOUTPUT rule).
func stateTable(m Method, dir Dir) int {
	if !m.twoWay() {
		return tblInputOnly
	}
	if dir == DirReply {
		return tblOutput
	}
	return tblInput
}

// newConnExpected reports whether a SYN (an SCTP INIT) hitting an entry in
// state s may replace it (IPVS's is_new_conn_expected): TIME_WAIT and CLOSE
// always, and with bit 2 of conn_reuse_mode also FIN_WAIT of a DR/TUN
// connection, the last state a director sees when replies bypass it; SCTP's
// CLOSED.
func newConnExpected(s State, m Method, reuseMode int) bool {
	switch s {
	case StateTimeWait, StateClose, StateSCTPClosed:
		return true
	case StateFinWait:
		return reuseMode&2 != 0 && !m.twoWay()
	}
	return false
}

// isNewConn is IPVS's is_new_conn for a packet of protocol proto whose TCP
// flags (SCTP: event chunk type) are flags: a TCP SYN, an SCTP INIT.
func isNewConn(proto, flags uint8) bool {
	switch proto {
	case ProtoTCP:
		return flags&TCPSyn != 0
	case ProtoSCTP:
		return flags == SCTPInit
	}
	return false
}

// Timeouts are per-state idle timeouts in seconds: a connection expires when
// no packet refreshed it for its current state's timeout.
type Timeouts struct {
	// SCTP holds the SCTP states' timeouts, StateSCTPInit1 first (index
	// s-StateSCTPInit1). ipvsadm has no option for them (--set is tcp tcpfin
	// udp) and the kernel no sysctl: they are the kernel's constants unless a
	// program sets them.
	SCTP [NumSCTPStates]int

	None        int
	Established int
	SynSent     int
	SynRecv     int
	FinWait     int
	TimeWait    int
	Close       int
	CloseWait   int
	LastAck     int
	Listen      int
	SynAck      int
	UDP         int
}

// MaxTimeout is the largest timeout in seconds (about 23 days). The kernel's
// limit is INT_MAX jiffies, 24.8 days at HZ=1000.
const MaxTimeout = 2_000_000

// DefaultTimeouts returns IPVS's defaults (ip_vs_proto_tcp.c, ip_vs_proto_udp.c).
func DefaultTimeouts() Timeouts {
	return Timeouts{
		None:        2,
		Established: 15 * 60,
		SynSent:     2 * 60,
		SynRecv:     60,
		FinWait:     2 * 60,
		TimeWait:    2 * 60,
		Close:       10,
		CloseWait:   60,
		LastAck:     30,
		Listen:      2 * 60,
		SynAck:      120,
		UDP:         5 * 60,
		SCTP:        defaultSCTPTimeouts,
	}
}

// Of returns the timeout of state s in seconds (0 for an unknown state).
func (to Timeouts) Of(s State) int {
	if p := to.field(s); p != nil {
		return *p
	}
	return 0
}

func (to *Timeouts) field(s State) *int {
	switch s {
	case StateNone:
		return &to.None
	case StateEstablished:
		return &to.Established
	case StateSynSent:
		return &to.SynSent
	case StateSynRecv:
		return &to.SynRecv
	case StateFinWait:
		return &to.FinWait
	case StateTimeWait:
		return &to.TimeWait
	case StateClose:
		return &to.Close
	case StateCloseWait:
		return &to.CloseWait
	case StateLastAck:
		return &to.LastAck
	case StateListen:
		return &to.Listen
	case StateSynAck:
		return &to.SynAck
	case StateUDP:
		return &to.UDP
	}
	if s.IsSCTP() {
		return &to.SCTP[s-StateSCTPInit1]
	}
	return nil
}
