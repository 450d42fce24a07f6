package xsk

import (
	"bytes"
	"testing"
)

func smallConfig() Config {
	return Config{Frames: 64, FrameSize: 2048, FillRing: 16, CompRing: 16, RxRing: 16, TxRing: 16}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"frame size not power of two", func(c *Config) { c.FrameSize = 3000 }, false},
		{"frame size too small", func(c *Config) { c.FrameSize = 1024 }, false},
		{"ring not power of two", func(c *Config) { c.RxRing = 1000 }, false},
		{"too few frames", func(c *Config) { c.Frames = c.FillRing }, false},
		{"both modes", func(c *Config) { c.Copy, c.ZeroCopy = true, true }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestFakeRoundTrip(t *testing.T) {
	f, err := NewFake(smallConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := smallConfig()
	if got := f.FramesAccounted(); got != cfg.Frames {
		t.Fatalf("frames accounted %d, want %d", got, cfg.Frames)
	}
	pkt := bytes.Repeat([]byte{0xab}, 100)
	for i := 0; i < 10; i++ {
		if !f.Inject(pkt) {
			t.Fatal("inject refused")
		}
	}
	descs := make([]Desc, 32)
	n := f.Receive(descs)
	if n != 10 {
		t.Fatalf("received %d, want 10", n)
	}
	for _, d := range descs[:n] {
		if d.Addr%uint64(cfg.FrameSize) != XDPPacketHeadroom {
			t.Fatalf("data at offset %d in frame, want %d", d.Addr%uint64(cfg.FrameSize), XDPPacketHeadroom)
		}
		if !bytes.Equal(f.Umem()[d.Addr:d.Addr+uint64(d.Len)], pkt) {
			t.Fatal("frame bytes differ from injected packet")
		}
	}
	// Transmit half, free the rest.
	sent, err := f.Transmit(descs[:5])
	if sent != 5 || err != nil {
		t.Fatalf("transmit = %d, %v", sent, err)
	}
	for _, d := range descs[5:n] {
		f.Free(d.Addr)
	}
	if got := len(f.Sent()); got != 5 {
		t.Fatalf("sent %d frames, want 5", got)
	}
	if c := f.Complete(); c != 5 {
		t.Fatalf("completed %d, want 5", c)
	}
	f.Refill()
	if got := f.FramesAccounted(); got != cfg.Frames {
		t.Fatalf("after round trip frames accounted %d, want %d (leak)", got, cfg.Frames)
	}
	st := f.Stats()
	if st.RxPackets != 10 || st.TxPackets != 5 || st.TxCompleted != 5 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFakeFillEmptyDrops(t *testing.T) {
	cfg := smallConfig()
	f, _ := NewFake(cfg)
	pkt := make([]byte, 60)
	ok := 0
	for i := 0; i < cfg.FillRing+5; i++ {
		if f.Inject(pkt) {
			ok++
		}
	}
	if ok != cfg.FillRing || f.Dropped != 5 {
		t.Fatalf("accepted %d dropped %d, want %d and 5", ok, f.Dropped, cfg.FillRing)
	}
}

// TestFakeInjectBatch: a batch lands as the same frames one Inject each would give, in
// order, and what does not fit (no fill frame or RX slot, or too long) is dropped and
// counted, not delivered.
func TestFakeInjectBatch(t *testing.T) {
	cfg := smallConfig()
	f, _ := NewFake(cfg)
	frames := make([][]byte, cfg.FillRing+3)
	for i := range frames {
		frames[i] = bytes.Repeat([]byte{byte(i + 1)}, 60+i)
	}
	frames[2] = make([]byte, cfg.FrameSize) // longer than a frame holds after the headroom
	want := append(append([][]byte{}, frames[:2]...), frames[3:cfg.FillRing+1]...)
	if n := f.InjectBatch(frames); n != cfg.FillRing || f.Dropped != 3 {
		t.Fatalf("delivered %d, dropped %d; want %d and 3 (one too long, two past the fill ring)", n, f.Dropped, cfg.FillRing)
	}
	descs := make([]Desc, 2*cfg.RxRing)
	n := f.Receive(descs)
	if n != len(want) {
		t.Fatalf("received %d, want %d", n, len(want))
	}
	for i, d := range descs[:n] {
		if got := f.Umem()[d.Addr : d.Addr+uint64(d.Len)]; !bytes.Equal(got, want[i]) {
			t.Fatalf("frame %d: %d bytes starting %#x, want %d starting %#x", i, len(got), got[0], len(want[i]), want[i][0])
		}
		f.Free(d.Addr)
	}
	f.Refill()
	if err := f.CheckFrames(); err != nil {
		t.Fatal(err)
	}
}

func TestFreeListAllocExhaustion(t *testing.T) {
	cfg := smallConfig()
	f, _ := NewFake(cfg)
	var got []uint64
	for {
		a, ok := f.Alloc()
		if !ok {
			break
		}
		if a%uint64(cfg.FrameSize) != 0 {
			t.Fatalf("alloc returned unaligned %d", a)
		}
		got = append(got, a)
	}
	if len(got) != cfg.Frames-cfg.FillRing {
		t.Fatalf("allocated %d frames, want %d", len(got), cfg.Frames-cfg.FillRing)
	}
	if f.Stats().AllocFailed != 1 {
		t.Fatalf("alloc failures %d, want 1", f.Stats().AllocFailed)
	}
	seen := map[uint64]bool{}
	for _, a := range got {
		if seen[a] {
			t.Fatalf("frame %d handed out twice", a)
		}
		seen[a] = true
		f.Free(a + 100) // any address inside the frame
	}
	if f.FramesAccounted() != cfg.Frames {
		t.Fatal("frames lost")
	}
}

func TestFreeListIgnoresOverflow(t *testing.T) {
	fl := newFreeList(4, 2048)
	if fl.push(0) {
		t.Fatal("push onto a full list accepted: a double free would corrupt it")
	}
	a, _ := fl.pop()
	if !fl.push(a) {
		t.Fatal("push of a popped frame refused")
	}
}

func TestFakeAllocs(t *testing.T) {
	f, _ := NewFake(smallConfig())
	f.OnTransmit = func([]byte) {}
	descs := make([]Desc, 8)
	pkt := make([]byte, 64)
	batch := [][]byte{pkt, pkt, pkt}
	n := testing.AllocsPerRun(100, func() {
		f.Inject(pkt)
		f.InjectBatch(batch)
		k := f.Receive(descs)
		f.Transmit(descs[:k])
		f.Complete()
		f.Refill()
	})
	if n != 0 {
		t.Fatalf("%v allocations per batch", n)
	}
}

// TestFakeCheckFrames: CheckFrames passes when every frame is back, and names a frame
// still held (leak) and a frame given back twice (double free).
func TestFakeCheckFrames(t *testing.T) {
	f, err := NewFake(smallConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CheckFrames(); err != nil {
		t.Fatalf("fresh fake: %v", err)
	}
	a, ok := f.Alloc()
	if !ok {
		t.Fatal("alloc")
	}
	if err := f.CheckFrames(); err == nil {
		t.Fatal("a frame in the caller's hands passed the check")
	}
	f.Free(a + 100) // any address inside the frame
	if err := f.CheckFrames(); err != nil {
		t.Fatalf("after giving it back: %v", err)
	}
	b, _ := f.Alloc()
	c, _ := f.Alloc()
	f.Free(b)
	f.Free(b) // twice; c is still held, so the count alone would balance
	if err := f.CheckFrames(); err == nil {
		t.Fatal("a frame freed twice passed the check")
	}
	f.Free(c)
	if err := f.CheckFrames(); err == nil {
		t.Fatal("a frame freed twice passed the check once the count balanced")
	}
}
