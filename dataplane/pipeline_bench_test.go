package dataplane

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/conntrack"
	"xlvs/dataplane/xsk"
)

// Per-packet pipeline benchmarks over the in-memory socket fake, one worker, one-armed
// (the l2Rig): inject a batch of 32 frames (the fake kernel copies each into a UMEM frame
// and onto the RX ring, under one hold of its lock per batch), poll (parse → connection
// lookup → schedule and insert for a new flow → rewrite → TX batch), the fake transmits
// (hands each frame to a no-op and completes it). ns/op is per packet, fake included.
//
//	go test -run x -bench Pipeline ./dataplane/
//
// cpu-ns/op is the benchmark thread's CPU time per packet (CLOCK_THREAD_CPUTIME_ID, the
// goroutine locked to its thread): on a machine shared with other work ns/op also counts
// the time the thread waited for a core, cpu-ns/op does not.
//
// established: ACKs of one open TCP connection (each batch is one flow's burst).
// established32: ACKs of 32 open TCP connections, one of each per batch, so no packet
// follows one of its own flow. new: SYNs of distinct connections (65536 client
// endpoints; the table is emptied, timer stopped, each time they wrap). fake: what the
// socket fake alone costs per packet of those benchmarks (inject, receive, transmit in
// place, complete, refill), without the worker.

type pipeCase struct {
	name   string
	method conntrack.Method
	v6     bool
}

var pipeCases = []pipeCase{
	{"NAT/v4", conntrack.MethodNAT, false}, {"NAT/v6", conntrack.MethodNAT, true},
	{"DR/v4", conntrack.MethodDR, false}, {"DR/v6", conntrack.MethodDR, true},
	{"TUN/v4", conntrack.MethodTUN, false}, {"TUN/v6", conntrack.MethodTUN, true},
	{"FULLNAT/v4", conntrack.MethodFullNAT, false}, {"FULLNAT/v6", conntrack.MethodFullNAT, true},
}

const pipeBatch = 32

// cpuClock is the CPU time of the calling thread (its goroutine locked to it), with
// pauses left out; see the comment above.
type cpuClock struct{ start, paused, at int64 }

func threadCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// startCPU locks the goroutine to its thread (until the benchmark function returns:
// call it in the function itself) and starts the clock.
func startCPU() *cpuClock {
	runtime.LockOSThread()
	return &cpuClock{start: threadCPU()}
}

func (c *cpuClock) pause()  { c.at = threadCPU() }
func (c *cpuClock) resume() { c.paused += threadCPU() - c.at }

// report adds cpu-ns/op and unlocks the thread.
func (c *cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(threadCPU()-c.start-c.paused)/float64(b.N), "cpu-ns/op")
	runtime.UnlockOSThread()
}

func (c pipeCase) addrs() (client, vip netip.Addr) {
	if c.v6 {
		return l2Client6, l2VIP6
	}
	return l2Client, l2VIP
}

// openFrames returns the SYN that opens case c's connection from client port sport and
// an ACK of that connection carrying 18 bytes.
func (c pipeCase) openFrames(b testing.TB, sport uint16) (syn, ack []byte) {
	client, vip := c.addrs()
	syn = build(b, pkt{srcMAC: macClient, dstMAC: macDir, src: client, dst: vip, sport: sport, dport: 80, syn: true})
	ack = build(b, pkt{srcMAC: macClient, dstMAC: macDir, src: client, dst: vip, sport: sport, dport: 80, ack: true, payload: make([]byte, 18)})
	return syn, ack
}

// newFlows is how many distinct connections the new-flow benchmarks cycle through.
const newFlows = 1 << 16

// synFrames returns the SYNs of newFlows distinct connections of case c (two client
// addresses, newFlows/2 ports each), laid out one after another in one buffer, a
// cache-line multiple apart, in the order the benchmark injects them: the fake's copy
// reads them as a stream. As 64 Ki separate allocations (5 MB read in turn) each copy
// was a cache miss of the harness's own, about 9 ns per packet (perf: memmove under the
// benchmark loop).
func (c pipeCase) synFrames(b testing.TB) [][]byte {
	client, vip := c.addrs()
	syns := make([][]byte, newFlows)
	var buf []byte
	for i := range syns {
		src := client
		if i >= newFlows/2 {
			src = src.Next()
		}
		f := build(b, pkt{srcMAC: macClient, dstMAC: macDir, src: src, dst: vip, sport: uint16(1024 + i%(newFlows/2)), dport: 80, syn: true})
		stride := (len(f) + 63) &^ 63
		if buf == nil {
			buf = make([]byte, stride*newFlows)
		}
		if len(buf) < stride {
			b.Fatalf("SYN %d is %d bytes, longer than the first (%d)", i, len(f), stride)
		}
		syns[i] = buf[:len(f):len(f)]
		copy(syns[i], f)
		buf = buf[stride:]
	}
	return syns
}

// forgetFlows removes every connection of the l2 rig's destinations, so that the
// new-flow benchmarks' SYNs create connections again when they wrap.
func forgetFlows(r *rig) {
	for id := uint32(1); id <= 4; id++ {
		r.dp.ct.RemoveDest(id, r.dp.now())
	}
}

func BenchmarkPipelineEstablished(b *testing.B) { benchEstablished(b, 1, false) }

func BenchmarkPipelineEstablished32(b *testing.B) { benchEstablished(b, pipeBatch, false) }

// BenchmarkPipelinePersist is BenchmarkPipelineEstablished on persistent services
// (ipvsadm -p 300, one template per client address): every client packet refreshes the
// client's template.
func BenchmarkPipelinePersist(b *testing.B) { benchEstablished(b, 1, true) }

// benchEstablished opens flows connections of each case and sends batches of pipeBatch
// ACKs, of the flows in turn: with one flow each batch is that flow's burst, with
// pipeBatch flows no packet of a batch follows one of its own flow. persist makes the
// services persistent (300 s, whole client addresses).
func benchEstablished(b *testing.B, flows int, persist bool) {
	for _, c := range pipeCases {
		b.Run(c.name, func(b *testing.B) {
			spec := l2Spec(b, c.method, 1<<14, oneArmed)
			if persist {
				for i := range spec.services {
					spec.services[i].Persist, spec.services[i].PersistBits = 300*int64(time.Second), 128
				}
			}
			benchEstablishedSpec(b, c, spec, flows)
		})
	}
}

// benchEstablishedSpec is one case of benchEstablished on a rig built from spec.
func benchEstablishedSpec(b *testing.B, c pipeCase, spec rigSpec, flows int) {
	r := newRigSpec(b, spec)
	r.eth.OnTransmit = func([]byte) {}
	acks := make([][]byte, pipeBatch)
	for i := range flows {
		var syn []byte
		syn, acks[i] = c.openFrames(b, uint16(1024+i))
		r.eth.Inject(syn)
	}
	for i := flows; i < pipeBatch; i++ {
		acks[i] = acks[i%flows]
	}
	r.w.poll()
	if n := r.dp.ct.Len(); n != flows {
		b.Fatalf("%d connections, want %d", n, flows)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	for i := 0; i < b.N; i += pipeBatch {
		r.eth.InjectBatch(acks)
		r.w.poll()
	}
	b.StopTimer()
	cpu.report(b)
	if d := r.drops(); len(d) != 0 {
		b.Fatalf("drops %v", d)
	}
}

// BenchmarkPipelineFake is the socket fake's share of the pipeline benchmarks: per
// batch of 32 what a worker's poll asks of its one port's socket, one Receive, one
// Transmit of the frames in place, Complete and Refill, after an InjectBatch of 32.
func BenchmarkPipelineFake(b *testing.B) {
	f, err := xsk.NewFake(rigSocket)
	if err != nil {
		b.Fatal(err)
	}
	f.OnTransmit = func([]byte) {}
	ack := build(b, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: 7, dport: 80, ack: true, payload: make([]byte, 18)})
	acks := make([][]byte, pipeBatch)
	for i := range acks {
		acks[i] = ack
	}
	rx := make([]xsk.Desc, pipeBatch)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	for i := 0; i < b.N; i += pipeBatch {
		f.InjectBatch(acks)
		n := f.Receive(rx)
		if sent, _ := f.Transmit(rx[:n]); sent != pipeBatch {
			b.Fatalf("transmitted %d of %d", sent, pipeBatch)
		}
		f.Complete()
		f.Refill()
	}
	b.StopTimer()
	cpu.report(b)
	if err := f.CheckFrames(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkPipelineNew(b *testing.B) {
	for _, c := range pipeCases {
		b.Run(c.name, func(b *testing.B) {
			r := newL2RigSized(b, c.method, 1<<18)
			r.eth.OnTransmit = func([]byte) {}
			syns := c.synFrames(b)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU()
			next := 0
			for i := 0; i < b.N; i += pipeBatch {
				if next+pipeBatch > newFlows {
					b.StopTimer()
					cpu.pause()
					forgetFlows(r)
					next = 0
					cpu.resume()
					b.StartTimer()
				}
				r.eth.InjectBatch(syns[next : next+pipeBatch])
				next += pipeBatch
				r.w.poll()
			}
			b.StopTimer()
			cpu.report(b)
			if d := r.drops(); len(d) != 0 {
				b.Fatalf("drops %v", d)
			}
		})
	}
}

// TestPipelineBenchFlows: the frames the new-flow benchmark cycles through are distinct
// connections (each one creates an entry), so it measures new flows, not lookups.
func TestPipelineBenchFlows(t *testing.T) {
	r := newL2RigSized(t, conntrack.MethodNAT, 1<<12)
	r.eth.OnTransmit = func([]byte) {}
	for i := 0; i < 64; i++ {
		r.eth.Inject(build(t, pkt{srcMAC: macClient, dstMAC: macDir, src: l2Client, dst: l2VIP, sport: uint16(1024 + i), dport: 80, syn: true}))
	}
	for r.w.poll() > 0 {
	}
	if n := r.dp.ct.Len(); n != 64 {
		t.Fatalf("%d connections after 64 distinct SYNs, want 64 (drops %v)", n, r.drops())
	}
}
