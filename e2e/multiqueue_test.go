package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"xlvs/bench"
	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
	"xlvs/control/api"
)

// mqQueues is the queue count of the multi-queue tests: one worker per queue.
const mqQueues = 2

// queueCounters is what xlvsd counted per queue: each AF_XDP socket's frames received
// ("IFACE/Q") and each worker's counters ("worker/Q.NAME").
type queueCounters map[string]uint64

func (e *env) queueCounters() queueCounters {
	e.t.Helper()
	resp, err := e.d.Client().Do(e.ctx, &api.Request{Op: api.OpDataplaneStats})
	if err != nil {
		e.t.Fatal(err)
	}
	c := queueCounters{}
	for _, q := range resp.Dataplane {
		if q.Interface == "worker" {
			for k, v := range q.Counters {
				c[fmt.Sprintf("worker/%d.%s", q.Queue, k)] = v
			}
			c["workers"]++
			continue
		}
		c[fmt.Sprintf("%s/%d", q.Interface, q.Queue)] = q.Counters["rx_packets"]
	}
	return c
}

// sub returns what each counter grew by since before.
func (c queueCounters) sub(before queueCounters) queueCounters {
	d := queueCounters{}
	for k, v := range c {
		d[k] = v - before[k]
	}
	return d
}

// TestMultiQueue runs NAT through an xlvsd with two queues on each interface, one worker
// and one AF_XDP socket per queue, with the connection table shared by the workers.
//
// The model. drivers/net/veth.c, veth_xmit (read in a public copy of a recent tree,
// the version that no longer calls skb_record_rx_queue there), hands a packet to the
// peer's RX queue numbered by the skb's queue mapping, the TX queue the sender chose.
// net/core/dev.c (netdev_pick_tx, get_xps_queue, skb_tx_hash; from memory of the
// source, not re-read) chooses that queue by transmit packet steering (tx-N/xps_cpus of
// the sending CPU) when set, else by the flow hash, and a connected socket keeps the
// queue its first packet got; net/xdp/xsk.c sends an AF_XDP socket's frames on its own
// queue. testbed.TestQueues checks the first two on the running kernel (6.18) with the
// veth's own per-queue counters. So:
//
//   - hashed: many TCP connections and UDP flows from one client spread over both of
//     ext0's RX queues, and the real servers' replies over int0's (the bridge hashes
//     them, see the testbed's doc); every socket and every worker receives traffic.
//
//   - crossed: with the client's XPS on queue 0 and the real servers' (and the bridge
//     port facing int0) on queue 1, every request arrives on ext0 queue 0 and every reply
//     on int0 queue 1: worker 0 makes every connection, worker 1 finds each in the
//     shared table and translates every reply. Nothing at all arrives on ext0 queue 1 or
//     int0 queue 0. Fragmented datagrams (4000 bytes, three fragments at MTU 1500) keep
//     all their fragments on that one queue (XPS sends them all there), so worker 0
//     forwards the requests' later fragments and worker 1 the replies'.
//
//   - fullnat crossed: the same with FULLNAT (a local address as the real servers'
//     client, their routes to the client removed): worker 0 allocates the local ports,
//     worker 1 translates the replies.
//
// In all, every byte must arrive as sent, both ways.
func TestMultiQueue(t *testing.T) {
	e := setupBed(t, testbed.Options{Layout: testbed.NATTwoArm, Reals: 2, Prefix: "e2emq", IPv6: true, Queues: mqQueues},
		"--queues", fmt.Sprint(mqQueues))
	b := e.bed
	for _, h := range []*testbed.Host{b.Ext, b.Int} {
		rx, tx, err := testbed.Queues(h.NS, h.Iface)
		if err != nil {
			t.Fatal(err)
		}
		if rx != mqQueues || tx != mqQueues {
			t.Fatalf("%s has %d RX and %d TX queues, want %d", h.Iface, rx, tx, mqQueues)
		}
	}
	if c := e.queueCounters(); c["workers"] != mqQueues {
		t.Fatalf("xlvsd runs %d workers, want %d (one per queue)", c["workers"], mqQueues)
	}
	vips := []netip.Addr{b.VIP, b.VIP6}
	for _, vip := range vips {
		e.natService("-t", vip, httpPort, "rr")
		e.natService("-u", vip, echoPort, "rr")
	}

	t.Run("hashed", func(t *testing.T) {
		e.t = t
		before := e.queueCounters()
		mqTraffic(t, e, vips, 24, 16, 8)
		d := e.queueCounters().sub(before)
		t.Logf("received per socket and worker: %s", d.describe())
		for q := range mqQueues {
			for _, iface := range []string{b.Ext.Iface, b.Int.Iface} {
				if k := fmt.Sprintf("%s/%d", iface, q); d[k] == 0 {
					t.Errorf("%s received nothing: the flows did not spread over the queues", k)
				}
			}
			if k := fmt.Sprintf("worker/%d.forwarded", q); d[k] == 0 {
				t.Errorf("%s = 0: worker %d forwarded nothing", k, q)
			}
		}
	})

	t.Run("crossed", func(t *testing.T) {
		e.t = t
		port, err := b.SwitchPort(b.Int)
		if err != nil {
			t.Fatal(err)
		}
		xps := []struct {
			ns    *testbed.NS
			iface string
			queue int
		}{{b.Client.NS, b.Client.Iface, 0}, {b.Switch, port, 1}}
		for _, r := range b.Reals {
			xps = append(xps, struct {
				ns    *testbed.NS
				iface string
				queue int
			}{r.NS, r.Iface, 1})
		}
		for _, x := range xps {
			if err := testbed.SetXPS(x.ns, x.iface, x.queue); err != nil {
				t.Fatal(err)
			}
		}
		before := e.queueCounters()
		mqTraffic(t, e, vips, 16, 8, 8)
		d := e.queueCounters().sub(before)
		t.Logf("received per socket and worker: %s", d.describe())
		ext, int_ := b.Ext.Iface, b.Int.Iface
		for k, want := range map[string]bool{ext + "/0": true, ext + "/1": false, int_ + "/0": false, int_ + "/1": true} {
			if got := d[k] > 0; got != want {
				t.Errorf("%s received %d frames; want them all on %s/0 (requests) and %s/1 (replies)", k, d[k], ext, int_)
			}
		}
		// Later fragments are forwarded by the worker of the queue they came on:
		// requests' by worker 0, replies' by worker 1.
		for q := range mqQueues {
			if k := fmt.Sprintf("worker/%d.fragments", q); d[k] == 0 {
				t.Errorf("%s = 0: worker %d forwarded no later fragment", k, q)
			}
		}
	})

	// FULLNAT, still crossed: worker 0 takes a local port for each new connection,
	// worker 1 finds the connection by the real server's reply to that local address.
	// Last, as the real servers lose their routes back to the client.
	t.Run("fullnat crossed", func(t *testing.T) {
		e.t = t
		for _, args := range [][]string{
			{"-4", "addr", "add", fullnatLIP4.String() + "/24", "dev", b.Int.Iface},
			{"-6", "addr", "add", fullnatLIP6.String() + "/64", "dev", b.Int.Iface, "nodad"},
		} {
			if out, err := b.Director.Run(e.ctx, "ip", args...); err != nil {
				t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
			}
		}
		for _, rs := range b.Reals {
			for _, fam := range []string{"-4", "-6"} {
				if out, err := rs.NS.Run(e.ctx, "ip", fam, "route", "del", "default"); err != nil {
					t.Fatalf("delete %s's default route (%s): %v %s", rs.NS.Name(), fam, err, out)
				}
			}
		}
		for i, vip := range vips {
			lip := []netip.Addr{fullnatLIP4, fullnatLIP6}[i]
			for _, s := range []struct {
				proto string
				port  int
			}{{"-t", httpPort}, {"-u", echoPort}} {
				svc := netip.AddrPortFrom(vip, uint16(s.port)).String()
				e.adm("-D", s.proto, svc)
				e.modeService(s.proto, vip, s.port, "--fullnat")
				e.adm("-P", s.proto, svc, "-z", lip.String())
			}
		}
		before := e.queueCounters()
		mqTraffic(t, e, vips, 16, 8, 8)
		d := e.queueCounters().sub(before)
		t.Logf("received per socket and worker: %s", d.describe())
		ext, int_ := b.Ext.Iface, b.Int.Iface
		for k, want := range map[string]bool{ext + "/0": true, ext + "/1": false, int_ + "/0": false, int_ + "/1": true} {
			if got := d[k] > 0; got != want {
				t.Errorf("%s received %d frames; want them all on %s/0 (requests) and %s/1 (replies)", k, d[k], ext, int_)
			}
		}
	})

	e.t = t
	e.noChecksumErrors()
	c := e.dataplaneCounters()
	capacity := map[string]bool{"drop_no_frame": true, "drop_tx_full": true}
	for k, v := range c {
		switch {
		case v == 0:
		case capacity[k]:
			t.Logf("dataplane %s = %d (capacity)", k, v)
		case strings.HasPrefix(k, "drop_"), k == "panics", k == "xdp_malformed", k == "xdp_fragment":
			t.Errorf("dataplane %s = %d, want 0", k, v)
		}
	}
}

// describe lists the non-zero per-socket frame counts and the workers' rx, forwarded and
// fragments counters, sorted.
func (c queueCounters) describe() string {
	var parts []string
	for k, v := range c {
		if v == 0 || strings.HasPrefix(k, "worker/") && !strings.HasSuffix(k, ".rx") && !strings.HasSuffix(k, ".forwarded") && !strings.HasSuffix(k, ".fragments") {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// mqTraffic sends, to each VIP and all at once: conns TCP connections (each a byte-exact
// 256 KiB download; every fourth also a 64 KiB upload), flows UDP flows of 20 512-byte
// datagrams and frags UDP flows of 10 4000-byte datagrams (fragmented both ways), every
// UDP flow from its own socket and each datagram echoed byte for byte by one real
// server. Each UDP socket sends one small datagram first, so that the queue its socket
// keeps is chosen by the hash of its ports (a fragment's hash has no ports).
func mqTraffic(t *testing.T, e *env, vips []netip.Addr, conns, flows, frags int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(vips)*(conns+flows+frags))
	for _, vip := range vips {
		for i := range conns {
			wg.Go(func() {
				const size = 256 << 10
				seed := uint64(1000 + i)
				n, err := traffic.Download(e.ctx, e.dial(), httpURL(vip, httpPort, "/"), size, seed)
				if err != nil || n != size {
					errs <- fmt.Errorf("download %d from %v: %d bytes, %v", i, vip, n, err)
					return
				}
				if i%4 == 0 {
					up := make([]byte, 64<<10)
					rand.Read(up)
					if err := traffic.Upload(e.ctx, e.dial(), httpURL(vip, httpPort, "/"), up); err != nil {
						errs <- fmt.Errorf("upload %d to %v: %v", i, vip, err)
					}
				}
			})
		}
		for i := range flows + frags {
			wg.Go(func() {
				count, size := 20, 512
				if i >= flows {
					count, size = 10, 4000
				}
				// A client port of its own: the subtests delete and re-add the services,
				// and a kernel-chosen port that an earlier subtest's flow had used would
				// meet that flow's connection, whose real server is gone (dropped as
				// drop_dest_gone until it times out, as IPVS does).
				conn, err := dialUDPFrom(e, mqClientPort.Add(1), netip.AddrPortFrom(vip, echoPort))
				if err != nil {
					errs <- err
					return
				}
				defer conn.Close()
				first, err := traffic.UDPEcho(e.ctx, conn, 1, 16, 5*time.Second)
				if err != nil || first.Received != 1 {
					errs <- fmt.Errorf("udp flow %d to %v: first datagram: %+v %v", i, vip, first, err)
					return
				}
				res, err := traffic.UDPEcho(e.ctx, conn, count, size, 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				if res.Received != count || res.Mismatched != 0 || len(res.ByServer) != 1 {
					errs <- fmt.Errorf("udp flow %d to %v, %d datagrams of %d bytes: %+v (want all echoed, byte-exact, by one server)", i, vip, count, size, res)
				}
				for s := range res.ByServer {
					for f := range first.ByServer {
						if s != f {
							errs <- fmt.Errorf("udp flow %d to %v: first datagram echoed by %s, the rest by %s: the connection moved", i, vip, f, s)
						}
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHarnessQueues runs the benchmark harness's xlvs-nat target with two queues and two
// workers: the generator sends on both queues of its veth (an AF_XDP socket each, the
// flows dealt out in turn), so each worker must receive and forward about half of what
// xlvsd forwards; and the targets that cannot spread over queues are refused.
func TestHarnessQueues(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Paced (the no-drop search): each queue's generator then sends half the rate, and
	// what arrives on each queue is what was sent there. Unpaced, both generators and a
	// queue's NAPI thread compete for CPU 0 and a starved queue drops at its veth ring
	// (seen: 15 % on one queue under -race on a busy machine).
	o := bench.PacketOptions{Size: 64, Flows: 1000, Warmup: 300 * time.Millisecond, Duration: 500 * time.Millisecond,
		GenCPU: 0, DirCPU: 1, DirCPUs: []int{1, 0}, Queues: mqQueues, Bins: bins,
		MaxLoss: 0.05, SearchSteps: 4, TrialDuration: 200 * time.Millisecond}
	s, err := bench.MeasurePacketRate(ctx, bench.TargetXLVSNAT, o)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Profile.Counters
	t.Logf("%.0f pps of %.0f offered, counters %v", s.PPS, s.OfferedPPS, c)
	if s.Delivered == 0 || s.Delivered > s.Offered+s.Offered/100 {
		t.Fatalf("delivered %d of %d offered, want 0 < delivered <= offered", s.Delivered, s.Offered)
	}
	// The generator sends the same number of frames on each queue (its flows alternate,
	// 500 each, every flow is sent equally often, each queue's generator at half the
	// rate): what reached each queue's socket on ext0 (received, or dropped by the kernel
	// when its worker fell behind) is about half, unless much was lost on the way (a
	// machine too busy for the search to find a rate), and each worker forwards.
	arrived := func(q int) uint64 {
		p := fmt.Sprintf("ext%d.", q)
		return c[p+"rx_packets"] + c[p+"kernel_rx_dropped"] + c[p+"rx_ring_full"]
	}
	total := arrived(0) + arrived(1)
	for q := range mqQueues {
		if s.Loss <= 0.1 && arrived(q) < total/3 || arrived(q) == 0 {
			t.Errorf("ext0 queue %d: %d of %d frames arrived (loss %.1f %%): the generator's queues did not share the load", q, arrived(q), total, 100*s.Loss)
		}
		if k := fmt.Sprintf("worker%d.forwarded", q); c[k] == 0 {
			t.Errorf("%s = 0: worker %d forwarded nothing", k, q)
		}
	}
	for _, target := range []bench.Target{bench.TargetXLVSNATOneArm, bench.TargetL2Fwd} {
		if _, err := bench.MeasurePacketRate(ctx, target, o); !errors.Is(err, bench.ErrUnavailable) {
			t.Errorf("%s with %d queues: %v, want ErrUnavailable", target, mqQueues, err)
		}
	}
}

// mqClientPort hands out the multi-queue test's UDP client ports: below the kernel's
// ephemeral range (32768 up), so no other socket of the test takes one.
var mqClientPort atomic.Int32

func init() { mqClientPort.Store(20000) }

// dialUDPFrom connects a UDP socket in the client's namespace from local port port to dst.
func dialUDPFrom(e *env, port int32, dst netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := e.bed.Client.NS.Do(func() error {
		d := net.Dialer{LocalAddr: &net.UDPAddr{Port: int(port)}}
		var err error
		c, err = d.DialContext(e.ctx, "udp", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial udp %v from port %d: %w", dst, port, err)
	}
	return c, nil
}
