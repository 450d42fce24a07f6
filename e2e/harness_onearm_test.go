package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"xlvs/bench"
)

// TestHarnessOneArm runs the harness's one-armed NAT target briefly: UDP packet rate,
// where xlvsd has one interface and every packet it forwards leaves by the interface it
// came in on (its counters show the one socket receiving and sending, nothing else),
// then the connection workload: short HTTP connections and a long TCP stream, whose
// replies cross the bridge merged by GRO and must reach xlvsd with complete checksums.
func TestHarnessOneArm(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := bench.MeasurePacketRate(ctx, bench.TargetXLVSNATOneArm, bench.PacketOptions{
		Size: 64, Flows: 1000, Warmup: 300 * time.Millisecond, Duration: 500 * time.Millisecond, GenCPU: 0, DirCPU: 1, Bins: bins,
		MaxLoss: 0.05, SearchSteps: 4, TrialDuration: 200 * time.Millisecond, // paced: see TestHarnessFullNAT
	})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Profile.Counters
	t.Logf("%.0f pps of %.0f offered (overload %.0f of %.0f), counters %v", s.PPS, s.OfferedPPS, s.OverloadPPS, s.OverloadOfferedPPS, c)
	if s.Delivered == 0 || s.Delivered > s.Offered+s.Offered/100 {
		t.Fatalf("delivered %d of %d offered, want 0 < delivered <= offered", s.Delivered, s.Offered)
	}
	if c["worker.forwarded"] == 0 || c["ext.rx_packets"] == 0 || c["ext.tx_packets"] == 0 {
		t.Fatalf("counters %v: want packets forwarded, received and sent on the director's one interface", c)
	}
	// What the sink received went out of the one socket: counted over the same interval,
	// the two differ only by the packets in flight at its edges.
	if sent := c["ext.tx_packets"]; sent*10 < s.Delivered*9 {
		t.Fatalf("the director's one interface sent %d packets, the sink received %d: want about as many sent", sent, s.Delivered)
	}
	for k, v := range c {
		if strings.HasPrefix(k, "int.") && v != 0 {
			t.Errorf("counter %s = %d: a one-armed director has no second interface", k, v)
		}
		if strings.Contains(k, "drop_no_service") || strings.Contains(k, "drop_bad") {
			t.Errorf("%s = %d", k, v)
		}
	}

	const inFlight = 8
	cs, err := bench.MeasureConnections(ctx, bench.TargetXLVSNATOneArm, bench.ConnOptions{
		Concurrency: inFlight, Duration: time.Second, StreamBytes: 32 << 20, GenCPU: 0, DirCPU: 1, Bins: bins,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(cs)
	if cs.Requests == 0 || cs.ConnsPerSec <= 0 || cs.StreamGbps <= 0 || cs.Failed > cs.Requests/10+inFlight {
		t.Fatalf("connections %+v: want answered requests, at most a tenth failed besides the ones in flight at the end, and a stream", cs)
	}
}
