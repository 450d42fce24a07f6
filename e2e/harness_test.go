package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"xlvs/bench"
)

// TestHarnessFullNAT runs the benchmark harness's xlvs-fullnat target briefly: packet
// rate with 1000 flows (one local address) and with 40000 (two: the allocator moves on
// when the first address's ports of a shard are taken), then the connection workload,
// whose sink has no route to the generator (the set-up checks that) and so answers only
// through the director's translation. Packets must arrive, no new flow may miss a local
// address or port, and requests and the stream must go through.
func TestHarnessFullNAT(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, flows := range []int{1000, 40000} {
		s, err := bench.MeasurePacketRate(ctx, bench.TargetXLVSFullNAT, bench.PacketOptions{
			Size: 64, Flows: flows, Warmup: 300 * time.Millisecond, Duration: 500 * time.Millisecond, GenCPU: 0, DirCPU: 1, Bins: bins,
			// Paced: unpaced, NAPI on the director's core can starve xlvsd to next to
			// nothing for a while (the overload figure swings), which says nothing of
			// FULLNAT.
			MaxLoss: 0.05, SearchSteps: 4, TrialDuration: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("%d flows: %v", flows, err)
		}
		t.Logf("%d flows: %.0f pps of %.0f offered (overload %.0f of %.0f), counters %v", flows, s.PPS, s.OfferedPPS, s.OverloadPPS, s.OverloadOfferedPPS, s.Profile.Counters)
		if s.Delivered == 0 || s.Delivered > s.Offered+s.Offered/100 {
			t.Fatalf("%d flows: delivered %d of %d offered, want 0 < delivered <= offered", flows, s.Delivered, s.Offered)
		}
		if s.Profile.Counters["worker.forwarded"] == 0 {
			t.Fatalf("%d flows: xlvsd forwarded nothing in the interval: %v", flows, s.Profile.Counters)
		}
		for k, v := range s.Profile.Counters {
			for _, bad := range []string{"drop_no_laddr", "drop_no_lport", "drop_bad_method", "drop_no_service"} {
				if strings.HasSuffix(k, bad) {
					t.Errorf("%d flows: %s = %d", flows, k, v)
				}
			}
		}
	}

	const inFlight = 8
	c, err := bench.MeasureConnections(ctx, bench.TargetXLVSFullNAT, bench.ConnOptions{
		Concurrency: inFlight, Duration: time.Second, StreamBytes: 8 << 20, GenCPU: 0, DirCPU: 1, Bins: bins,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(c)
	if c.Requests == 0 || c.ConnsPerSec <= 0 || c.StreamGbps <= 0 || c.Failed > c.Requests/10+inFlight {
		t.Fatalf("connections %+v: want answered requests, at most a tenth failed besides the ones in flight at the end, and a stream", c)
	}
}
