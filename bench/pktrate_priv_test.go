package bench

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// requireRoot skips when not root, except under CI, where it fails.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (namespaces, XDP, AF_XDP), and CI is set: not skipping")
	}
	t.Skip("needs root (namespaces, XDP, AF_XDP)")
}

// TestMeasurePacketRate runs each kernel-side target and the AF_XDP forwarder briefly
// and checks that packets arrive and the figures are consistent. xlvs itself is measured
// by the end-to-end harness (it needs the built binaries).
func TestMeasurePacketRate(t *testing.T) {
	requireRoot(t)
	for _, target := range []Target{TargetKernel, TargetIptables, TargetNftables, TargetL2Fwd} {
		t.Run(string(target), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := MeasurePacketRate(ctx, target, PacketOptions{Size: 64, Flows: 100, Warmup: 200 * time.Millisecond, Duration: 500 * time.Millisecond, GenCPU: 0, DirCPU: 1})
			if errors.Is(err, ErrUnavailable) && os.Getenv("CI") == "" {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", s)
			if s.Delivered == 0 || s.Delivered > s.Offered+s.Offered/100 || s.PPS <= 0 || s.DirNsPerPkt < 0 {
				t.Fatalf("inconsistent sample %+v: want 0 < delivered <= offered", s)
			}
		})
	}
}
