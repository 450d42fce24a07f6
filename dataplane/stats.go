package dataplane

import "sync/atomic"

// Drop reasons: every packet a worker does not forward increments exactly one.
type Drop int

const (
	DropMalformed    Drop = iota // Parse failed: truncated or invalid headers
	DropNotTCPUDP                // not TCP, UDP or SCTP (or an unsupported IPv6 header chain)
	DropFragment                 // a later fragment of no datagram this worker saw the first fragment of
	DropNoService                // neither a service nor a NAT real server (config changed under it)
	DropNoConn                   // not a connection opener (TCP without SYN) and no entry
	DropNoReplyConn              // a real server's packet with no connection entry
	DropNoDest                   // no available real server: answered with ICMP port unreachable (IPVS ip_vs_leave)
	DropTableFull                // the connection table is full
	DropTTLExpired               // TTL / hop limit expired
	DropNoRoute                  // no route to the destination
	DropNotManaged               // the route leaves through an interface xlvsd does not run on
	DropNoNeighbour              // next hop not resolved yet (resolution requested)
	DropNoFrame                  // no free frame on the egress socket
	DropTxFull                   // the egress TX ring was full
	DropTxError                  // the egress socket failed (link down)
	DropTooBig                   // larger than an egress frame can hold
	DropDestGone                 // the connection's real server was deleted (expire_nodest_conn=0)
	DropBadMethod                // forwarding method not handled for this packet (or family mismatch)
	DropNoSource                 // no director address on the egress interface for a tunnel's outer header
	DropNoHeadroom               // the frame has no room before the packet for a new header
	DropICMPNoConn               // an ICMP error quoting a packet of no tracked connection
	DropNoLaddr                  // a new FULLNAT connection to a service without local addresses
	DropNoLport                  // a new FULLNAT connection found no free local port
	DropSCTPFragment             // the first fragment of an SCTP packet whose ports NAT changes: its CRC32c covers the whole packet
	DropCrowded                  // a new connection from a client endpoint that has about 256 at once (conntrack.ErrCrowded)
	numDrops

	dropNone Drop = -1 // not a drop: schedule succeeded
)

var dropNames = [numDrops]string{
	"malformed", "not_tcp_udp", "fragment", "no_service", "no_conn", "no_reply_conn",
	"no_dest", "table_full", "ttl_expired", "no_route", "not_managed", "no_neighbour",
	"no_frame", "tx_full", "tx_error", "too_big", "dest_gone", "bad_method", "no_source", "no_headroom",
	"icmp_no_conn", "no_laddr", "no_lport", "sctp_fragment", "crowded",
}

// String names the reason as counters show it.
func (d Drop) String() string {
	if d < 0 || d >= numDrops {
		return "unknown"
	}
	return dropNames[d]
}

// ctr is a single-writer counter: the owning worker adds without a locked instruction,
// readers load atomically.
type ctr struct{ v atomic.Uint64 }

func (c *ctr) add(n uint64) { c.v.Store(c.v.Load() + n) }
func (c *ctr) load() uint64 { return c.v.Load() }

// flowCtrs are IPVS's per-service / per-destination counters.
type flowCtrs struct {
	conns, inPkts, outPkts, inBytes, outBytes ctr
}

// FlowStats are the summed counters of a service or destination.
type FlowStats struct {
	Conns, InPkts, OutPkts, InBytes, OutBytes uint64
}

func (f *flowCtrs) addTo(s *FlowStats) {
	s.Conns += f.conns.load()
	s.InPkts += f.inPkts.load()
	s.OutPkts += f.outPkts.load()
	s.InBytes += f.inBytes.load()
	s.OutBytes += f.outBytes.load()
}

// workerStats are one worker's counters.
type workerStats struct {
	rx, tx, forwarded, panics, neighQueued ctr
	encapsulated, icmpSent                 ctr // TUN packets encapsulated; ICMP errors the director sent
	icmpForwarded                          ctr // ICMP errors about tracked connections forwarded
	icmpLimited                            ctr // ICMP errors of the director's own not sent: over the rate limit
	fragNoted, fragments                   ctr // first fragments noted; later fragments forwarded
	opsReplies                             ctr // NAT replies of one-packet services routed unchanged (ops.go)
	burst                                  ctr // packets forwarded as part of their flow's burst (flowrun.go)
	toaAdded, toaSkipped                   ctr // FULLNAT: TOA options written; packets that wanted one but had no room (fullnat.go)
	drops                                  [numDrops]ctr
	svc                                    []flowCtrs // by service ID
	dest                                   []flowCtrs // by destination ID
	laddrConflicts                         []ctr      // FULLNAT port allocations that failed, by local address ID
	_                                      [64]byte   // keep neighbours off this cache line
}

func newWorkerStats(maxServices, maxDests, maxLaddrs int) *workerStats {
	return &workerStats{svc: make([]flowCtrs, maxServices), dest: make([]flowCtrs, maxDests), laddrConflicts: make([]ctr, maxLaddrs)}
}

// WorkerStats are a worker's totals.
type WorkerStats struct {
	Queue                int
	RxPackets, TxPackets uint64
	Forwarded, Panics    uint64
	NeighQueued          uint64 // frames held while their next hop resolved
	Encapsulated         uint64 // packets sent into an IPIP / ip6ip6 tunnel
	OPSReplies           uint64 // NAT replies of one-packet services, of no connection, routed unchanged
	Burst                uint64 // packets forwarded as the burst of the flow of the packet before them (of Forwarded)
	ICMPSent             uint64 // ICMP errors the director sent (fragmentation needed, port unreachable)
	ICMPForwarded        uint64 // ICMP errors about tracked connections forwarded (translated for NAT)
	ICMPRateLimited      uint64 // ICMP errors the director did not send: over Config.ICMPRate
	FragmentsNoted       uint64 // first fragments whose datagram's later fragments will follow them
	Fragments            uint64 // later fragments forwarded as their first fragment was
	TOAAdded             uint64 // FULLNAT client packets given the TOA option (the client's address)
	TOASkipped           uint64 // FULLNAT client packets that wanted it but had no room (TCP header, MTU, headroom)
	Drops                map[string]uint64
}

// flowAcc gathers, during one batch, the packets, bytes and new connections of one
// (service, destination) pair; the worker adds them to its flowCtrs when the batch ends.
// A ctr store is a locked instruction on amd64 (an atomic store is XCHG there), so one
// store per counter per batch instead of one per packet is most of what counting costs.
type flowAcc struct {
	svc, dest                                 uint32
	gen                                       uint64 // batchCtrs.gen when it was taken
	conns, inPkts, inBytes, outPkts, outBytes uint64
}

// flowAccs is how many pairs a batch gathers before it adds them up early.
const flowAccs = 8

// batchCtrs are a worker's counters gathered during one batch, added to workerStats when
// it ends (flushCounters). Only the owning worker touches them.
type batchCtrs struct {
	flows                   [flowAccs]flowAcc
	nflows                  int
	forwarded, encapsulated uint64
	opsReplies, burst       uint64
	// gen counts the times the accumulators were added up: an accumulator of the current
	// gen whose pair matches is the pair's (one remembered from an earlier packet may
	// have been added up and reused since).
	gen uint64
}

// flowAcc returns the accumulator of (svc, dest), adding the gathered ones up first when
// all are taken.
func (w *worker) flowAcc(svc, dest uint32) *flowAcc {
	return &w.bc.flows[w.flowAccIndex(svc, dest)]
}

// flowAccIndex is flowAcc as an index of w.bc.flows (what a run remembers, flowrun.go).
func (w *worker) flowAccIndex(svc, dest uint32) int {
	b := &w.bc
	for i := 0; i < b.nflows; i++ {
		if a := &b.flows[i]; a.svc == svc && a.dest == dest {
			return i
		}
	}
	if b.nflows == len(b.flows) {
		w.flushFlows()
	}
	b.flows[b.nflows] = flowAcc{svc: svc, dest: dest, gen: b.gen}
	b.nflows++
	return b.nflows - 1
}

// flushFlows adds the gathered per-pair counts to the service and destination counters.
func (w *worker) flushFlows() {
	b := &w.bc
	for i := 0; i < b.nflows; i++ {
		a := &b.flows[i]
		for _, c := range [2]*flowCtrs{w.svcCtrs(a.svc), w.destCtrs(a.dest)} {
			if c == nil {
				continue
			}
			if a.conns != 0 {
				c.conns.add(a.conns)
			}
			if a.inPkts != 0 {
				c.inPkts.add(a.inPkts)
				c.inBytes.add(a.inBytes)
			}
			if a.outPkts != 0 {
				c.outPkts.add(a.outPkts)
				c.outBytes.add(a.outBytes)
			}
		}
	}
	b.nflows = 0
	b.gen++
}

// flushCounters adds everything gathered during the batch to the worker's counters.
func (w *worker) flushCounters() {
	w.flushFlows()
	b := &w.bc
	if b.forwarded != 0 {
		w.st.forwarded.add(b.forwarded)
		b.forwarded = 0
	}
	if b.encapsulated != 0 {
		w.st.encapsulated.add(b.encapsulated)
		b.encapsulated = 0
	}
	if b.opsReplies != 0 {
		w.st.opsReplies.add(b.opsReplies)
		b.opsReplies = 0
	}
	if b.burst != 0 {
		w.st.burst.add(b.burst)
		b.burst = 0
	}
}
