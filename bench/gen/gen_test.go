package gen

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"xlvs/dataplane/packet"
	"xlvs/dataplane/xsk"
)

var (
	macA = [6]byte{2, 0, 0x5e, 1, 0, 2}
	macB = [6]byte{2, 0, 0x5e, 1, 0, 1}
	src  = netip.MustParseAddrPort("198.18.1.2:10000")
	vip  = netip.MustParseAddrPort("198.18.1.100:9")
)

// checkFrame parses frame and verifies what BuildUDP4 promises about it.
func checkFrame(t *testing.T, frame []byte, f Flow, size int) {
	t.Helper()
	if len(frame) != size {
		t.Fatalf("frame is %d bytes, want %d", len(frame), size)
	}
	var info packet.Info
	if r := packet.Parse(frame, &info); r != packet.ResultOK {
		t.Fatalf("parse: %v", r)
	}
	if info.Family != 4 || info.Proto != packet.ProtoUDP || info.Src != f.Src.Addr().As16() || info.Dst != f.Dst.Addr().As16() ||
		info.SrcPort != f.Src.Port() || info.DstPort != f.Dst.Port() || int(info.L3Len) != size-14 {
		t.Fatalf("parsed %+v, want flow %v → %v, L3 length %d", info, f.Src, f.Dst, size-14)
	}
	if !packet.IPv4HeaderChecksumValid(packet.IPv4(frame[14:])) {
		t.Fatal("IPv4 header checksum invalid")
	}
	udp := frame[34:]
	sum := packet.Fold(packet.Checksum(udp, packet.PseudoHeaderSum(4, info.Src, info.Dst, packet.ProtoUDP, uint32(len(udp)))))
	if sum != 0xFFFF || binary.BigEndian.Uint16(udp[6:]) == 0 {
		t.Fatalf("UDP checksum does not verify (sum %#x)", sum)
	}
	if [6]byte(frame[0:6]) != f.DstMAC || [6]byte(frame[6:12]) != f.SrcMAC {
		t.Fatalf("MACs %x %x, want %x %x", frame[0:6], frame[6:12], f.DstMAC, f.SrcMAC)
	}
}

func TestBuildUDP4(t *testing.T) {
	f := Flow{SrcMAC: macA, DstMAC: macB, Src: src, Dst: vip}
	for _, tc := range []struct {
		name string
		size int
		buf  int
		flow Flow
		ok   bool
	}{
		{"64 bytes on the wire", WireSize(64), 2048, f, true},
		{"1500-byte packet", WireSize(1500), 2048, f, true},
		{"odd length", 61, 2048, f, true},
		{"too small", MinFrame - 1, 2048, f, false},
		{"too large", MaxFrame + 1, 2048, f, false},
		{"buffer too short", 100, 99, f, false},
		{"IPv6 flow", 100, 2048, Flow{Src: netip.MustParseAddrPort("[fd00::1]:1"), Dst: vip}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, tc.buf)
			fr, err := BuildUDP4(buf, tc.flow, tc.size)
			if !tc.ok {
				if !errors.Is(err, ErrBadFlow) {
					t.Fatalf("err %v, want ErrBadFlow", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkFrame(t, fr, tc.flow, tc.size)
		})
	}
}

func TestWireSize(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{64, 60}, {1500, 1514}, {128, 142}, {60, 74}} {
		if got := WireSize(tc.in); got != tc.want {
			t.Errorf("WireSize(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func FuzzBuildUDP4(f *testing.F) {
	f.Add(uint16(60), uint16(1), uint16(9), uint32(0xc6120102))
	f.Add(uint16(1514), uint16(65535), uint16(0), uint32(0))
	f.Add(uint16(61), uint16(0), uint16(80), uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, size, sport, dport uint16, saddr uint32) {
		if int(size) < MinFrame || int(size) > MaxFrame {
			if _, err := BuildUDP4(make([]byte, 2048), Flow{Src: src, Dst: vip}, int(size)); err == nil {
				t.Fatalf("size %d accepted", size)
			}
			return
		}
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], saddr)
		fl := Flow{SrcMAC: macA, DstMAC: macB, Src: netip.AddrPortFrom(netip.AddrFrom4(a), sport), Dst: netip.AddrPortFrom(vip.Addr(), dport)}
		fr, err := BuildUDP4(make([]byte, 2048), fl, int(size))
		if err != nil {
			t.Fatal(err)
		}
		checkFrame(t, fr, fl, int(size))
	})
}

func TestFlows(t *testing.T) {
	fl := Flows(2500, macA, macB, src, vip)
	seen := map[netip.AddrPort]bool{}
	for i, f := range fl {
		if seen[f.Src] {
			t.Fatalf("flow %d repeats source %v", i, f.Src)
		}
		seen[f.Src] = true
		if f.Dst != vip {
			t.Fatalf("flow %d goes to %v, want %v", i, f.Dst, vip)
		}
	}
	if fl[0].Src != src || fl[2499].Src != netip.MustParseAddrPort("198.18.1.11:10249") {
		t.Fatalf("flow 0 %v, flow 2499 %v; want %v and 198.18.1.11:10249", fl[0].Src, fl[2499].Src, src)
	}
}

func TestRunFake(t *testing.T) {
	cfg := xsk.Config{Frames: 1024, FrameSize: 2048, FillRing: 8, CompRing: 512, RxRing: 8, TxRing: 512}
	fk, err := xsk.NewFake(cfg)
	if err != nil {
		t.Fatal(err)
	}
	flows := Flows(7, macA, macB, src, vip)
	perFlow := map[uint16]int{}
	var bad error
	fk.OnTransmit = func(b []byte) {
		var info packet.Info
		if r := packet.Parse(b, &info); r != packet.ResultOK || len(b) != 60 {
			bad = errors.New("bad frame transmitted")
		}
		perFlow[info.SrcPort]++
	}
	// Stop after a few thousand frames rather than after a time: a busy machine (or the
	// race detector) may take long to prepare the frames.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := 0
	onTx := fk.OnTransmit
	fk.OnTransmit = func(b []byte) {
		onTx(b)
		if seen++; seen == 5000 {
			cancel()
		}
	}
	res, err := Run(ctx, fk, Options{Flows: flows, Size: 60, Batch: 32, CPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	if bad != nil {
		t.Fatal(bad)
	}
	if res.Queued == 0 || res.Completed != res.Queued {
		t.Fatalf("result %+v: want packets queued and all completed by the fake", res)
	}
	if len(perFlow) != len(flows) {
		t.Fatalf("%d flows seen, want %d", len(perFlow), len(flows))
	}
	total := 0
	for _, n := range perFlow {
		total += n
	}
	if uint64(total) != res.Queued {
		t.Fatalf("fake saw %d frames, Run says %d", total, res.Queued)
	}
	if _, err := Run(context.Background(), fk, Options{Flows: flows, Size: 60, Batch: -1, CPU: -1}); !errors.Is(err, ErrBadOptions) {
		t.Fatalf("batch -1: err %v, want ErrBadOptions", err)
	}
}

// TestTransmitStepAllocs checks that one step of Run's loop (complete, alloc, transmit),
// done the way Run does it, allocates nothing.
func TestTransmitStepAllocs(t *testing.T) {
	cfg := xsk.Config{Frames: 1024, FrameSize: 2048, FillRing: 8, CompRing: 512, RxRing: 8, TxRing: 512}
	fk, err := xsk.NewFake(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fk.OnTransmit = func([]byte) {}
	if err := Prepare(fk, Flows(3, macA, macB, src, vip), 60); err != nil {
		t.Fatal(err)
	}
	descs := make([]xsk.Desc, 64)
	allocs := testing.AllocsPerRun(100, func() {
		fk.Complete()
		n := 0
		for n < len(descs) {
			a, ok := fk.Alloc()
			if !ok {
				break
			}
			descs[n] = xsk.Desc{Addr: a, Len: 60}
			n++
		}
		fk.Transmit(descs[:n])
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
}

// TestRunPaced checks the pacer's bound on the fake: Run never queues more than the rate
// allows over its duration plus one burst (four batches).
func TestRunPaced(t *testing.T) {
	cfg := xsk.Config{Frames: 1024, FrameSize: 2048, FillRing: 8, CompRing: 512, RxRing: 8, TxRing: 512}
	fk, err := xsk.NewFake(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fk.OnTransmit = func([]byte) {}
	var p Pacer
	p.Set(20_000)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, fk, Options{Flows: Flows(3, macA, macB, src, vip), Size: 60, Batch: 16, CPU: -1, Pace: &p})
	if err != nil {
		t.Fatal(err)
	}
	if limit := uint64(20_000*res.Duration.Seconds()) + 4*16; res.Queued > limit {
		t.Fatalf("queued %d frames in %v at 20000 pps, more than the %d the pacer allows", res.Queued, res.Duration, limit)
	}
}

// TestRunRange: with more flows than frames, every frame sent carries the next flow of
// the range, with valid checksums, so the path under test sees all N flows.
func TestRunRange(t *testing.T) {
	cfg := xsk.Config{Frames: 1024, FrameSize: 2048, FillRing: 8, CompRing: 512, RxRing: 8, TxRing: 512}
	fk, err := xsk.NewFake(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	r := FlowRange{N: n, Addrs: 7, SrcMAC: macA, DstMAC: macB, Base: src, Dst: vip}
	seen := map[netip.AddrPort]int{}
	var bad, sent int
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fk.OnTransmit = func(b []byte) {
		if sent++; sent == 3*n {
			cancel() // every flow had three chances
		}
		var info packet.Info
		if packet.Parse(b, &info) != packet.ResultOK || !packet.IPv4HeaderChecksumValid(packet.IPv4(b[info.L3Off:])) || !packet.L4ChecksumValid(b, &info) {
			bad++
			return
		}
		seen[netip.AddrPortFrom(netip.AddrFrom16(info.Src).Unmap(), info.SrcPort)]++
	}
	if _, err := Run(ctx, fk, Options{Range: &r, Size: 60, Batch: 64, CPU: -1}); err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Fatalf("%d frames with bad headers or checksums", bad)
	}
	if sent < 3*n {
		t.Fatalf("only %d frames sent in 10 s", sent)
	}
	if len(seen) != n {
		t.Fatalf("%d distinct flows sent, want all %d", len(seen), n)
	}
	for i := range n {
		if f := r.At(i); seen[f.Src] == 0 {
			t.Fatalf("flow %d (%v) never sent", i, f.Src)
		}
	}
	if _, err := Run(context.Background(), fk, Options{Range: &r, Flows: Flows(1, macA, macB, src, vip), Size: 60}); err == nil {
		t.Fatal("Flows and Range together accepted")
	}
}

func TestFlowRangeCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    FlowRange
		want string
	}{
		{"no flows", FlowRange{N: 0, Addrs: 1, Base: src, Dst: vip}, "at least 1"},
		{"ports run out", FlowRange{N: 1 << 20, Addrs: 1, Base: src, Dst: vip}, "past port 65535"},
		{"ipv6", FlowRange{N: 10, Addrs: 1, Base: netip.MustParseAddrPort("[2001:db8::1]:1000"), Dst: vip}, "IPv4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.r.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if err := (FlowRange{N: 10_000_000, Addrs: 200, Base: src, Dst: vip}).Check(); err != nil {
		t.Fatalf("10M flows over 200 addresses: %v", err)
	}
	var info packet.Info
	frame := make([]byte, 60)
	if _, err := BuildUDP4(frame, Flow{SrcMAC: macA, DstMAC: macB, Src: src, Dst: vip}, 60); err != nil {
		t.Fatal(err)
	}
	r := FlowRange{N: 1000, Addrs: 10, Base: src, Dst: vip}
	if n := testing.AllocsPerRun(100, func() { setSource(frame, &info, r.At(999)) }); n != 0 {
		t.Fatalf("%v allocations per rewrite", n)
	}
}

// TestRunFlowsEven: at a paced rate, where the kernel (here the fake) gives each batch's
// frames back before the next is sent, every flow is still sent, and equally often: the
// generator sends its frames in turn, each flow having as many frames as any other
// (1024 frames for 1000 flows: 1000 are used). Taking frames from the socket's stack of
// free ones instead sent the same few frames, a few dozen flows, over and over.
func TestRunFlowsEven(t *testing.T) {
	cfg := xsk.Config{Frames: 1024, FrameSize: 2048, FillRing: 8, CompRing: 512, RxRing: 8, TxRing: 512}
	fk, err := xsk.NewFake(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const nflows, want = 1000, 3000
	perFlow := map[uint16]int{}
	sent := 0
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fk.OnTransmit = func(b []byte) {
		var info packet.Info
		if packet.Parse(b, &info) == packet.ResultOK {
			perFlow[info.SrcPort+256*uint16(info.Src[15]-2)]++
		}
		if sent++; sent == want {
			cancel()
		}
	}
	var p Pacer
	p.Set(200_000)
	if _, err := Run(ctx, fk, Options{Flows: Flows(nflows, macA, macB, src, vip), Size: 60, Batch: 16, CPU: -1, Pace: &p}); err != nil {
		t.Fatal(err)
	}
	if sent < want {
		t.Fatalf("only %d frames sent", sent)
	}
	lo, hi := want, 0
	for _, n := range perFlow {
		lo, hi = min(lo, n), max(hi, n)
	}
	if len(perFlow) != nflows || lo < want/nflows-1 || hi > want/nflows+1 {
		t.Fatalf("%d of %d flows sent, %d to %d times each in %d frames; want every flow %d±1 times", len(perFlow), nflows, lo, hi, sent, want/nflows)
	}
	if got := fk.FramesAccounted(); got != cfg.Frames {
		t.Fatalf("%d of %d frames accounted for after Run: want every frame back in the socket", got, cfg.Frames)
	}
}
