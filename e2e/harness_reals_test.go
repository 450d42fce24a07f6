package e2e

import (
	"context"
	"testing"
	"time"

	"xlvs/bench"
)

// TestHarnessReals runs the benchmark harness's xlvs-nat packet rate, paced, over four
// real servers (the sink's address and three more on its interface). The director's
// per-destination statistics must show every one of the four forwarded to, each about a
// quarter (rr over 1000 equal flows gives each server 250 flows of the same rate), and no
// other destination; what the real servers got together cannot exceed what the
// generator offered in the window, plus the packets in flight at its edges.
func TestHarnessReals(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const reals = 4
	s, err := bench.MeasurePacketRate(ctx, bench.TargetXLVSNAT, bench.PacketOptions{
		Size: 64, Flows: 1000, Warmup: 300 * time.Millisecond, Duration: 500 * time.Millisecond, GenCPU: 0, DirCPU: 1, Bins: bins,
		MaxLoss: 0.05, SearchSteps: 3, TrialDuration: 200 * time.Millisecond,
		Reals: reals, Sched: "rr",
	})
	if err != nil {
		t.Fatal(err)
	}
	per := s.RealPackets()
	t.Logf("%.0f pps of %.0f offered, delivered %d; per real server %v", s.PPS, s.OfferedPPS, s.Delivered, per)
	want := []string{"198.18.2.11", "198.18.2.12", "198.18.2.13", "198.18.2.14"}
	var sum uint64
	for _, a := range want {
		sum += per[a]
	}
	if len(per) != reals {
		t.Errorf("packets went to %d destinations %v, want exactly %v", len(per), per, want)
	}
	if sum == 0 {
		t.Fatalf("no real server got a packet in the counted interval: %v", per)
	}
	for _, a := range want {
		// A quarter each: the generator sends every flow equally often at any rate
		// (gen.Run), so the shares differ only by the packets in flight at the window's
		// edges (seen: within 0.1 %).
		if n := per[a]; n < sum*9/(10*reals) || n > sum*11/(10*reals) {
			t.Errorf("real server %s got %d of %d packets, want a quarter ±10 %% (%d to %d)", a, n, sum, sum*9/(10*reals), sum*11/(10*reals))
		}
	}
	// The director's counts include packets lost after it (between its transmit and the
	// sink's count: up to the search's 5 % loss and more at the window's edges), so they
	// are bounded by what the generator offered, not by what the sink received.
	if slack := s.Offered / 10; sum > s.Offered+slack {
		t.Errorf("the director counts %d packets to the real servers, the generator offered only %d (sink received %d)", sum, s.Offered, s.Delivered)
	}
}
