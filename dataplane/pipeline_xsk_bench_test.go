package dataplane

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"xlvs/dataplane/xsk"
	"xlvs/dataplane/xsk/xsktest"
)

// BenchmarkPipelineXSK is BenchmarkPipelineEstablished and BenchmarkPipelineNew through
// a real AF_XDP socket instead of the fake: the rig's worker polls a shared socket bound
// to one end of a veth pair (in a namespace of its own), whose XDP program redirects
// every frame to it, and a second socket on the other end transmits the frames.
//
//	sudo go test -run x -bench PipelineXSK ./dataplane/
//
// Each round the generator sends 1024 frames with the clock stopped; they reach the
// worker's RX ring in the generator's own system calls (the veth runs the XDP program and
// the copy into the UMEM in the sender's softirq). Then the worker polls until its RX
// ring is empty, with the clock running: what is counted is the worker alone, as it runs
// in xlvsd, on frames the kernel wrote into the UMEM and with its real transmit, a
// copy-mode sendto per batch that builds an skb for each frame and hands it to the veth
// (whose peer's receive runs in the same softirq). cpu-ns/op is the worker thread's CPU
// time per packet; tx-ns/op the part of it spent in Transmit (the TX ring and the
// sendto); pipeline-ns/op the rest: what the Go pipeline and the RX, fill and completion
// rings cost, the figure to set against BenchmarkPipelineEstablished/New's (which
// include the fake's own work, BenchmarkPipelineFake). Each Transmit reads the thread's
// CPU clock twice (a system call here): that cost lands in tx-ns/op.
func BenchmarkPipelineXSK(b *testing.B) {
	needRoot(b)
	for _, kind := range []string{"Established", "New"} {
		for _, c := range pipeCases {
			b.Run(kind+"/"+c.name, func(b *testing.B) { benchXSK(b, c, kind == "New") })
		}
	}
}

// xskRound is how many frames the generator sends before the worker drains them.
const xskRound = 1024

// xskBenchSocket: rings that hold a round, a UMEM that holds two.
var xskBenchSocket = xsk.Config{Frames: 4096, FrameSize: 2048, FillRing: 2048, CompRing: 2048, RxRing: 2048, TxRing: 2048}

var xskBenchSeq int

func benchXSK(b *testing.B, c pipeCase, newFlow bool) {
	sock, gen := xskPair(b)
	dir := &timedSocket{Socket: sock}
	entries := 1 << 14
	if newFlow {
		entries = 1 << 18
	}
	r := newRigSpec(b, l2Spec(b, c.method, entries, []rigPort{{name: "eth0", ifindex: ifL2, mac: macDir, real: dir}}))
	g := &xskGen{s: gen, descs: make([]xsk.Desc, 0, 64)}
	var frames [][]byte
	next := 0
	if newFlow {
		frames = c.synFrames(b)
	} else {
		syn, ack := c.openFrames(b, 7)
		g.send(b, [][]byte{syn})
		if got := drainWorker(r); got != 1 {
			b.Fatalf("the worker received %d frames of the SYN, want 1", got)
		}
		frames = make([][]byte, xskRound)
		for i := range frames {
			frames[i] = ack
		}
	}
	var cpu int64
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	done := 0
	for done < b.N {
		k := min(xskRound, b.N-done)
		round := frames[:k]
		if newFlow {
			if next+k > len(frames) {
				forgetFlows(r)
				next = 0
			}
			round = frames[next : next+k]
			next += k
		}
		g.send(b, round)
		b.StartTimer()
		t0 := threadCPU()
		got := drainWorker(r)
		cpu += threadCPU() - t0
		b.StopTimer()
		if got == 0 {
			b.Fatalf("the worker received nothing of %d frames sent (socket %+v)", len(round), dir.Stats())
		}
		done += got
	}
	b.ReportMetric(float64(cpu)/float64(done), "cpu-ns/op")
	b.ReportMetric(float64(dir.tx)/float64(done), "tx-ns/op")
	b.ReportMetric(float64(cpu-dir.tx)/float64(done), "pipeline-ns/op")
	if d := r.drops(); len(d) != 0 {
		b.Fatalf("drops %v", d)
	}
	if k := dir.Stats().KernelDropped; k != 0 {
		b.Fatalf("the kernel dropped %d frames at the worker's socket: the rings did not hold a round", k)
	}
}

// drainWorker polls r's worker until its sockets have nothing left to receive and
// returns how many frames it received.
func drainWorker(r *rig) int {
	got := 0
	for {
		n := r.w.poll()
		if n == 0 {
			return got
		}
		got += n
	}
}

// xskPair makes a namespace holding a veth pair and returns a socket on queue 0 of each
// end: dir's end redirects every frame to dir, gen's transmits into it. The calling
// goroutine's thread runs in the namespace until the benchmark's cleanups end (they
// close both sockets, then go back), and is left locked if going back fails.
func xskPair(b *testing.B) (dir, gen xsk.Socket) {
	b.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		b.Fatalf("this thread's namespace: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		b.Fatalf("new namespace: %v", err)
	}
	b.Cleanup(func() {
		ns.Close()
		if err := netns.Set(orig); err != nil {
			b.Errorf("back to the original namespace: %v (the thread stays locked and dies)", err)
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
	// No IPv6 on the links: the kernel's neighbour discovery and MLD frames would reach
	// the worker too (the program redirects everything) and count as drops. The XDP
	// program still sees the benchmark's IPv6 frames: it runs before the stack.
	for _, conf := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+conf+"/disable_ipv6", []byte("1"), 0); err != nil {
			b.Fatalf("disable IPv6 in the benchmark's namespace: %v", err)
		}
	}
	xskBenchSeq++
	la := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("xba%d", xskBenchSeq)}, PeerName: fmt.Sprintf("xbb%d", xskBenchSeq)}
	if err := netlink.LinkAdd(la); err != nil {
		b.Fatalf("veth pair: %v", err)
	}
	var ends [2]netlink.Link
	for i, name := range []string{la.Name, la.PeerName} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			b.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			b.Fatalf("set %s up: %v", name, err)
		}
		ends[i] = l
	}
	open := func(l netlink.Link) xsk.Socket {
		s, err := xsk.OpenShared(l.Attrs().Index, 0, xskBenchSocket)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	dir = open(ends[0])
	if err := xsktest.RedirectAll(b, ends[0].Attrs().Index).Put(uint32(0), uint32(dir.FD())); err != nil {
		b.Fatalf("put the socket in the XSKMAP: %v", err)
	}
	gen = open(ends[1])
	return dir, gen
}

// xskGen transmits frames through a real socket.
type xskGen struct {
	s     xsk.Socket
	descs []xsk.Desc
}

// send copies frames into free frames of the socket's UMEM and transmits them, 64 at a
// time, taking back what earlier sends completed.
func (g *xskGen) send(b *testing.B, frames [][]byte) {
	g.s.Complete()
	umem := g.s.Umem()
	for len(frames) > 0 {
		g.descs = g.descs[:0]
		for len(frames) > 0 && len(g.descs) < cap(g.descs) {
			addr, ok := g.s.Alloc()
			if !ok {
				b.Fatalf("generator: no free frame (%+v)", g.s.Stats())
			}
			n := copy(umem[addr:addr+uint64(g.s.FrameSize())], frames[0])
			g.descs = append(g.descs, xsk.Desc{Addr: addr, Len: uint32(n)})
			frames = frames[1:]
		}
		sent, err := g.s.Transmit(g.descs)
		if err != nil || sent != len(g.descs) {
			b.Fatalf("generator: transmitted %d of %d: %v", sent, len(g.descs), err)
		}
	}
	g.s.Complete()
}

// timedSocket is a socket whose Transmit calls (the TX ring's descriptors and the
// copy-mode sendto kick, the socket's only system call on the worker's path) add their
// thread CPU time to tx.
type timedSocket struct {
	xsk.Socket
	tx int64
}

func (s *timedSocket) Transmit(descs []xsk.Desc) (int, error) {
	t0 := threadCPU()
	n, err := s.Socket.Transmit(descs)
	s.tx += threadCPU() - t0
	return n, err
}
