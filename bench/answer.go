package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"xlvs/bench/testbed"
	"xlvs/control/api"
)

// FastPathStart is what xlvsd's XDP fast path (--fastpath) held when counting started.
type FastPathStart struct {
	// Answered is how many connections the sink answered (PacketOptions.AnswerFlows;
	// 0 without it), Rounds in how many rounds of answers.
	Answered int `json:"answered"`
	Rounds   int `json:"rounds,omitempty"`
	// Conns is how many connections the director had, Installed how many of them were
	// in the fast path (its map's entries over the entries per connection: two for NAT
	// and FULLNAT, one for DR and TUN), Entries the map's entries.
	Conns     int `json:"conns"`
	Installed int `json:"installed"`
	Entries   int `json:"entries"`
	// Wait is how long the answers and installs took (seconds).
	Wait float64 `json:"wait_s,omitempty"`
}

// Fast-path counters as daemonCounters names them.
const (
	ctrFastEntries = "fastpath.fastpath_entries"
	ctrFastTx      = "xdp.xdp_fastpath_tx" // packets the program forwarded itself
)

// answerPayload is the datagram the sink answers with.
var answerPayload = []byte("xlvs-bench answer")

const (
	// answerRounds bounds how often the sink answers the connections not installed yet.
	answerRounds = 3
	// answerAgain is how long a round waits before the next: a worker offers a
	// connection to the fast path at most once a second (dataplane fastOfferEvery), so
	// an answer sooner than that after the last could not install it.
	answerAgain = 1100 * time.Millisecond
	// answerChunk answers go out together, then answerPause passes: the worker's queue
	// of offers (1024) is drained every 5 ms and must not overflow.
	answerChunk = 200
	answerPause = 10 * time.Millisecond
	// answerFloodPPS is the generator's rate while the sink answers: an overloaded
	// director would drop the answers at its interface with the flood.
	answerFloodPPS = 20000
)

// fastPathStart reads the fast path's state before counting and, with answer, first
// has the sink answer each of the director's connections once, in rounds until all are
// installed (at most answerRounds, each waiting answerAgain). Nil when the target is not
// xlvs or xlvsd runs without the fast path. While answering, the generator is paced at
// answerFloodPPS; the caller restores its rate.
func fastPathStart(ctx context.Context, bed *testbed.Bed, target Target, pr probe, answer bool, pace rateSetter) (*FastPathStart, error) {
	if pr.conns == nil || pr.counters == nil {
		return nil, nil
	}
	c, err := pr.counters()
	if err != nil {
		return nil, err
	}
	if _, on := c[ctrFastEntries]; !on {
		return nil, nil
	}
	per := 1
	if twoWay(target) {
		per = 2
	}
	conns, err := pr.conns(ctx)
	if err != nil {
		return nil, err
	}
	fs := &FastPathStart{Conns: len(conns)}
	started := time.Now()
	if answer && twoWay(target) {
		pace.Set(answerFloodPPS)
		if err := answerRound(ctx, bed.Reals[0].NS, conns); err != nil {
			return nil, err
		}
		fs.Answered, fs.Rounds = len(conns), 1
		last := time.Now()
		for {
			// The installs follow the answers by fastInstallDelay (25 ms) and a drain
			// (5 ms): wait until the entries stop growing.
			if fs.Entries, err = waitEntries(ctx, pr, per*len(conns)); err != nil {
				return nil, err
			}
			if fs.Entries >= per*len(conns) || fs.Rounds >= answerRounds {
				break
			}
			if err := sleep(ctx, answerAgain-time.Since(last)); err != nil {
				return nil, err
			}
			// The connections are listed again: one not installed yet may have been
			// re-offered and installed since, and answering it once more is harmless
			// (an installed one's answer takes the fast path to the generator).
			if conns, err = pr.conns(ctx); err != nil {
				return nil, err
			}
			if err := answerRound(ctx, bed.Reals[0].NS, conns); err != nil {
				return nil, err
			}
			fs.Rounds++
			last = time.Now()
		}
	} else {
		fs.Entries = int(c[ctrFastEntries])
	}
	fs.Installed = min(fs.Entries/per, fs.Conns)
	fs.Wait = time.Since(started).Seconds()
	return fs, nil
}

// twoWay reports whether target's replies pass the director (NAT, FULLNAT), so that
// answering them makes its connections eligible for the fast path.
func twoWay(t Target) bool {
	return t.base() == TargetXLVSNAT || t == TargetXLVSFullNAT
}

// waitEntries polls the fast path's map size until it reaches want or has not grown for
// 200 ms (at least 100 ms after the call, at most 3 s), and returns it.
func waitEntries(ctx context.Context, pr probe, want int) (int, error) {
	const (
		poll   = 20 * time.Millisecond
		settle = 200 * time.Millisecond
		least  = 100 * time.Millisecond
		most   = 3 * time.Second
	)
	start := time.Now()
	n, grew := -1, start
	for {
		c, err := pr.counters()
		if err != nil {
			return 0, err
		}
		now := time.Now()
		if e := int(c[ctrFastEntries]); e != n {
			n, grew = e, now
		}
		if n >= want || now.Sub(start) >= most || now.Sub(start) >= least && now.Sub(grew) >= settle {
			return n, nil
		}
		if err := sleep(ctx, poll); err != nil {
			return n, err
		}
	}
}

// answerPaths gives the director a way back to the generator's flows, which the one-way
// flood never needs: the generator sends from addresses it does not own (gen.Flows: a
// further one per 250 flows after its own; gen.FlowRange: manyFlowsBase's block), and
// the director would try in vain to resolve them. Each address on the generator's subnet
// gets a permanent neighbour entry with the generator's MAC, as the chain's own
// neighbours have, and manyFlowsBase's block a route through the generator. It runs
// before xlvsd starts, so that its FIB mirror reads them with its first dump (measured:
// added under the flood, an update was sometimes never seen, and a quarter of the
// answers was dropped for want of a neighbour).
func answerPaths(ctx context.Context, bed *testbed.Bed, flows int) error {
	gw := bed.Client
	var script strings.Builder
	if flows > genSocket.Frames {
		fmt.Fprintf(&script, "route replace %s via %s dev %s\n", netip.PrefixFrom(manyFlowsBase, 20).Masked(), gw.Addr, bed.Ext.Iface)
	} else {
		a := gw.Addr
		for range (flows - 1) / 250 {
			a = a.Next()
			fmt.Fprintf(&script, "neigh replace %s lladdr %s dev %s nud permanent\n", a, gw.MAC, bed.Ext.Iface)
		}
	}
	if script.Len() == 0 {
		return nil
	}
	if err := ipBatch(ctx, bed.Director, script.String()); err != nil {
		return fmt.Errorf("route the answers to the generator's flows: %w", err)
	}
	return nil
}

// answerRound sends, from the sink's namespace, one UDP datagram for each UDP connection
// of conns: from its real server's address and port to the client's (NAT; the sink's
// route back goes through the director) or to its local address and port (FULLNAT), as
// the real server's reply would.
func answerRound(ctx context.Context, ns *testbed.NS, conns []api.Conn) error {
	socks := map[netip.AddrPort]*net.UDPConn{}
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	sent := 0
	for _, c := range conns {
		if c.Protocol != "UDP" || c.Template || !c.Dest.IsValid() {
			continue
		}
		to := c.Client
		if c.Local.IsValid() {
			to = c.Local
		}
		s := socks[c.Dest]
		if s == nil {
			pc, err := ns.ListenPacket("udp", c.Dest.String())
			if err != nil {
				return fmt.Errorf("answer the director's connections: %w", err)
			}
			s = pc.(*net.UDPConn)
			socks[c.Dest] = s
		}
		if _, err := s.WriteToUDPAddrPort(answerPayload, to); err != nil {
			return fmt.Errorf("answer connection %v → %v from %v: %w", c.Client, c.Virtual, c.Dest, err)
		}
		if sent++; sent%answerChunk == 0 {
			if err := sleep(ctx, answerPause); err != nil {
				return err
			}
		}
	}
	return nil
}

// daemonConns lists xlvsd's connections (xlvsadm -L -c).
func daemonConns(ctx context.Context, d *Daemon) ([]api.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := d.Client().Do(ctx, &api.Request{Op: api.OpListConns})
	if err != nil {
		return nil, fmt.Errorf("list xlvsd's connections: %w", err)
	}
	return resp.Conns, nil
}
