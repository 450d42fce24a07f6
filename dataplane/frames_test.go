package dataplane

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"xlvs/conntrack"
	"xlvs/dataplane/xsk"
)

// Frame accounting: a frame the worker receives leaves by exactly one exit — transmitted,
// or dropped and counted — and, once the worker holds nothing, every frame of every
// socket is in exactly one place (free list, fill ring, RX ring or completing:
// xsk.Fake.CheckFrames), none leaked and none given back twice. Checked under every Drop
// reason and under a panic recovered mid-batch.

// frameCase makes the worker drop at least one packet for reason want.
type frameCase struct {
	name     string
	want     Drop
	n        uint64 // drops of want expected; 0: at least one
	answered int    // frames that leave as the ICMP answer to a packet counted as dropped
	rig      func(t *testing.T) *dropRig
	drive    func(t *testing.T, r *dropRig) int // injects, settles, returns frames injected
}

// injectAll injects frames on r.ext and settles.
func injectAll(t *testing.T, r *dropRig, frames [][]byte) int {
	t.Helper()
	for _, f := range frames {
		if !r.ext.Inject(f) {
			t.Fatal("inject refused")
		}
	}
	r.settle()
	return len(frames)
}

func asDropRig(r *rig) *dropRig { return r }

// frameCases are TestDropPaths's cases and, for the reasons they do not cover, cases
// after TestDropCrowded, TestDropTableFull, TestNeighbourPending, TestICMPDrops, TestFullNAT's no_laddr,
// TestFullNATPortExhaustion and TestSCTPDrops.
func frameCases() []frameCase {
	var out []frameCase
	for _, dc := range dropCases() {
		out = append(out, frameCase{
			name: dc.name, want: dc.want, n: max(dc.n, 1), answered: dc.sent,
			rig: func(t *testing.T) *dropRig {
				r := newDropRig(t, dc.opts)
				if dc.before != nil {
					dc.before(t, r)
				}
				return r
			},
			drive: func(t *testing.T, r *dropRig) int { return injectAll(t, r, dc.frames(t)) },
		})
	}
	fullNAT := []Dest{{ID: 1, Addr: a16(rs1), Port: 8080, Method: conntrack.MethodFullNAT, Weight: 1}}
	out = append(out,
		frameCase{
			name: "a client endpoint with too many connections", want: DropCrowded, n: 1,
			rig: func(t *testing.T) *dropRig {
				r := newDropRig(t, dropOpts{})
				crowd(t, r)
				return r
			},
			drive: func(t *testing.T, r *dropRig) int { return injectAll(t, r, [][]byte{build(t, synReq)}) },
		},
		frameCase{
			name: "connection table full", want: DropTableFull, n: 1,
			rig: func(t *testing.T) *dropRig { return newDropRig(t, dropOpts{entries: 64}) },
			drive: func(t *testing.T, r *dropRig) int {
				in := 0
				for i := 0; i < 512 && r.drops()["table_full"] == 0; i++ {
					syn := synReq
					syn.sport = uint16(10000 + i)
					in += injectAll(t, r, [][]byte{build(t, syn)})
					if r.drops()["table_full"] > 0 {
						break
					}
					ack := syn
					ack.syn, ack.ack = false, true
					in += injectAll(t, r, [][]byte{build(t, ack)}) // ESTABLISHED: not evictable
				}
				return in
			},
		},
		frameCase{
			// pendingCap frames wait for the neighbour, one more is dropped at once, and
			// the waiting ones are dropped when their deadline passes.
			name: "next hop never resolved", want: DropNoNeighbour, n: pendingCap + 1,
			rig: func(t *testing.T) *dropRig {
				return newDropRig(t, dropOpts{neigh: map[NeighKey][6]byte{{Ifindex: ifExt, Addr: a16(client)}: macClient}})
			},
			drive: func(t *testing.T, r *dropRig) int {
				var frames [][]byte
				for i := 0; i < pendingCap+1; i++ {
					p := udpReq
					p.sport = uint16(6000 + i)
					frames = append(frames, build(t, p))
				}
				in := injectAll(t, r, frames)
				if len(r.w.pend) != pendingCap {
					t.Fatalf("%d frames held, want %d", len(r.w.pend), pendingCap)
				}
				for i := range r.w.pend {
					r.w.pend[i].deadline = 0
				}
				r.settle()
				return in
			},
		},
		frameCase{
			name: "ICMP error about no connection", want: DropICMPNoConn, n: 1,
			rig: func(t *testing.T) *dropRig { return newDropRig(t, dropOpts{}) },
			drive: func(t *testing.T, r *dropRig) int {
				q := ipOnly(build(t, pkt{src: vip, dst: client, sport: 80, dport: 40000, udp: true}))
				return injectAll(t, r, [][]byte{icmpErrFrame(t, macClient, macDirExt, client, vip, 3, 3, q, 0)})
			},
		},
		frameCase{
			name: "FULLNAT service without local addresses", want: DropNoLaddr, n: 1,
			rig:   func(t *testing.T) *dropRig { return newDropRig(t, dropOpts{dests: fullNAT}) },
			drive: func(t *testing.T, r *dropRig) int { return injectAll(t, r, [][]byte{build(t, udpReq)}) },
		},
		frameCase{
			// One local address; 1024 shards leave it about 63 ports per shard, which
			// the about 190 clients of one shard (three addresses) run out of.
			name: "FULLNAT local ports exhausted", want: DropNoLport,
			rig: func(t *testing.T) *dropRig {
				fr := newFNRig(t, fnOpts{entries: 1 << 17, shards: 1024, oneRS: true})
				if err := fr.dp.Publish(fr.snapshot(t, map[netip.Addr]bool{lip4b: true})); err != nil {
					t.Fatal(err)
				}
				return asDropRig(fr.rig)
			},
			drive: func(t *testing.T, r *dropRig) int {
				in := 0
				for _, c := range []netip.Addr{client, netip.MustParseAddr("198.18.1.3"), netip.MustParseAddr("198.18.1.4")} {
					var frames [][]byte
					for _, p := range clientsInShard(r.dp.Conntrack(), c, 5, 200) {
						frames = append(frames, build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: c, dst: vip, sport: p, dport: 80, udp: true}))
					}
					in += injectAll(t, r, frames)
				}
				return in
			},
		},
	)
	for _, sc := range sctpDropCases() {
		if sc.want != DropSCTPFragment {
			continue // the other reasons have cases above
		}
		out = append(out, frameCase{
			name: "SCTP " + sc.name, want: sc.want, n: 1,
			rig:   func(t *testing.T) *dropRig { return asDropRig(sctpRig(t)) },
			drive: func(t *testing.T, r *dropRig) int { return injectAll(t, r, [][]byte{sc.frame(t)}) },
		})
	}
	return out
}

// TestFrameAccounting: under every Drop reason, frames in = frames out + packets
// dropped (an ICMP answer to a dropped packet counting once), only the case's reason
// moves, nothing is left held, and every frame of both sockets is in exactly one place.
// Every reason has a case built from crafted frames (and, for no_frame, tx_full,
// tx_error and no_headroom, sockets that refuse as a kernel would).
func TestFrameAccounting(t *testing.T) {
	cases := frameCases()
	for d := Drop(0); d < numDrops; d++ {
		found := false
		for _, tc := range cases {
			if tc.want != d {
				continue
			}
			found = true
			t.Run(d.String()+"/"+tc.name, func(t *testing.T) {
				r := tc.rig(t)
				r.ext.Sent()
				r.int.Sent()
				before := r.drops()
				in := tc.drive(t, r)
				out := len(r.ext.Sent()) + len(r.int.Sent())
				after := r.drops()
				dropped := uint64(0)
				for k, v := range after {
					dropped += v - before[k]
					if k != d.String() && v != before[k] {
						t.Errorf("drop counter %s moved too (%d -> %d)", k, before[k], v)
					}
				}
				got := after[d.String()] - before[d.String()]
				if tc.n != 0 && got != tc.n || got == 0 {
					t.Errorf("%s drops %d, want %d (all: %v)", d, got, tc.n, after)
				}
				if uint64(in) != uint64(out)+dropped-uint64(tc.answered) {
					t.Errorf("%d frames in, %d out, %d dropped, %d answered: in != out + dropped - answered", in, out, dropped, tc.answered)
				}
				if len(r.w.pend) != 0 {
					t.Errorf("%d frames still held", len(r.w.pend))
				}
				checkFakes(t, r.ext, r.int)
			})
		}
		if !found {
			t.Errorf("no case drops a packet for %s", d)
		}
	}
}

func checkFakes(t *testing.T, fakes ...*xsk.Fake) {
	t.Helper()
	for i, f := range fakes {
		if err := f.CheckFrames(); err != nil {
			t.Errorf("socket %d: %v", i, err)
		}
	}
}

// TestPanicReturnsFrames: a panic in the middle of a batch (the test hook panicAt, in
// either pass) is recovered by worker.loop, counted, and leaks no frame: the packets
// handed on before it leave, the ones dropped before it stay counted, the rest are
// released, and once the TX batches are flushed every frame is in exactly one place.
// Two-armed NAT (frames copied into the other socket's UMEM) and one-armed DR (sent in
// place).
func TestPanicReturnsFrames(t *testing.T) {
	const n = 8
	type setup struct {
		w       *worker
		dp      *Dataplane
		in      *xsk.Fake
		fakes   []*xsk.Fake
		frames  [][]byte // frame i is forwarded when fwd[i]
		fwd     [n]bool
		drained func() int // frames sent so far
	}
	arp := append(make([]byte, 12), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1) // dropped in the first pass
	nat := func(t *testing.T) *setup {
		r := newDropRig(t, dropOpts{})
		s := &setup{w: r.w, dp: r.dp, in: r.ext, fakes: []*xsk.Fake{r.ext, r.int}}
		for i := 0; i < n; i++ {
			if i%3 == 1 {
				s.frames = append(s.frames, arp)
				continue
			}
			p := udpReq
			p.sport = uint16(7000 + i)
			s.frames, s.fwd[i] = append(s.frames, build(t, p)), true
		}
		s.drained = func() int { return len(r.ext.Sent()) + len(r.int.Sent()) }
		return s
	}
	dr := func(t *testing.T) *setup {
		r := newL2Rig(t, conntrack.MethodDR)
		s := &setup{w: r.w, dp: r.dp, in: r.eth, fakes: []*xsk.Fake{r.eth}}
		for i := 0; i < n; i++ {
			if i%3 == 1 {
				s.frames = append(s.frames, arp)
				continue
			}
			p := pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: uint16(7000 + i), dport: 80, syn: true}
			s.frames, s.fwd[i] = append(s.frames, build(t, p)), true
		}
		s.drained = func() int { return len(r.eth.Sent()) }
		return s
	}
	for _, mk := range []struct {
		name string
		f    func(*testing.T) *setup
	}{{"NAT copied", nat}, {"DR in place", dr}} {
		for _, c := range []struct {
			at    int
			first bool // in the first pass (parse, classify), else the second (forward)
		}{{1, false}, {4, false}, {n, false}, {1, true}, {4, true}, {n, true}} {
			pass := "forwarding"
			if c.first {
				pass = "classifying"
			}
			at := c.at
			t.Run(mk.name+"/before "+pass+" packet "+string(rune('0'+at-1)), func(t *testing.T) {
				s := mk.f(t)
				for _, f := range s.frames {
					if !s.in.Inject(f) {
						t.Fatal("inject refused")
					}
				}
				s.w.panicAt, s.w.panicFirst = at, c.first
				// Bounded: without the panic, loop would run until ctx ends.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if done := s.w.loop(ctx); done {
					t.Fatal("loop ended without the panic")
				}
				s.w.panicAt = 0
				if got := s.w.st.panics.load(); got != 1 {
					t.Fatalf("panics %d, want 1", got)
				}
				if p := s.dp.lastPanic.Load(); p == nil || *p != "dataplane: test panic mid-batch" {
					t.Fatalf("last panic %v", p)
				}
				for s.w.poll() > 0 { // flushes the TX batches the panic interrupted
				}
				s.w.poll()
				wantSent, wantDropped := 0, uint64(0)
				for i := 0; i < n; i++ {
					switch {
					case c.first && i >= at-1:
						// not classified: released by the recover path, uncounted
					case !s.fwd[i]:
						wantDropped++ // dropped by the first pass, before the panic
					case !c.first && i < at-1:
						wantSent++
					}
				}
				if got := s.drained(); got != wantSent {
					t.Errorf("%d frames sent, want %d (the packets forwarded before the panic)", got, wantSent)
				}
				d := nonzeroDrops(s.dp)
				if d["not_tcp_udp"] != wantDropped || len(d) > 1 {
					t.Errorf("drops %v, want %d not_tcp_udp", d, wantDropped)
				}
				checkFakes(t, s.fakes...)
			})
		}
	}
}
