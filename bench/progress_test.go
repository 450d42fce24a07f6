package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestProgress: counts, elapsed time and the estimate, computed by hand: the time left is
// the planned measurements not done of each kind times that kind's mean so far, a kind
// not measured yet taking the other's mean.
func TestProgress(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	p := newProgress(t0)
	p.plan(kindPacket, 10)
	p.plan(kindConn, 2)
	if got, want := p.line(at(3*time.Second)), "progress: 0/12 measurements, 3s elapsed"; got != want {
		t.Fatalf("before any measurement: %q, want %q", got, want)
	}
	p.skip(at(5 * time.Second)) // a warm-up: elapsed, not a measurement's time
	p.step(kindPacket, at(35*time.Second))
	// 9 packet measurements of 30 s, and 2 connection ones at the packet mean: 330 s.
	if got, want := p.line(at(35*time.Second)), "progress: 1/12 measurements, 35s elapsed, about 5m30s left"; got != want {
		t.Fatalf("after one: %q, want %q", got, want)
	}
	for i := 2; i <= 10; i++ {
		p.step(kindPacket, at(5*time.Second+time.Duration(i)*30*time.Second))
	}
	p.step(kindConn, at(315*time.Second)) // 10 s
	if got, want := p.line(at(315*time.Second)), "progress: 11/12 measurements, 5m15s elapsed, about 10s left"; got != want {
		t.Fatalf("after eleven: %q, want %q", got, want)
	}
	p.step(kindConn, at(327*time.Second)) // 12 s: mean 11 s, nothing left
	if got, want := p.line(at(327*time.Second)), "progress: 12/12 measurements, 5m27s elapsed, about 0s left"; got != want {
		t.Fatalf("at the end: %q, want %q", got, want)
	}

	// A target found unavailable part way: its remaining runs leave the plan, never
	// below what was done.
	q := newProgress(t0)
	q.plan(kindPacket, 5)
	q.step(kindPacket, at(2*time.Second))
	q.drop(kindPacket, 2)
	if done, total := q.counts(); done != 1 || total != 3 {
		t.Fatalf("after drop: %d/%d, want 1/3", done, total)
	}
	q.drop(kindPacket, 10)
	if done, total := q.counts(); done != 1 || total != 1 {
		t.Fatalf("after a drop past the plan: %d/%d, want 1/1", done, total)
	}
	// Short runs show tenths.
	if got, want := q.line(at(2500*time.Millisecond)), "progress: 1/1 measurements, 2.5s elapsed, about 0s left"; got != want {
		t.Fatalf("short run: %q, want %q", got, want)
	}
}

// TestRunPrintsProgress: Run plans every measurement and prints a progress line after
// each, failed ones included (flows 0 fails at once, without root). An unavailable
// target (kernel IPVS where the kernel has none) is not planned.
func TestRunPrintsProgress(t *testing.T) {
	var log strings.Builder
	targets := []Target{TargetXLVSNAT, TargetKernel}
	if IPVSAvailable(context.Background()) != nil { // unavailable: it must not count
		targets = append(targets, TargetIPVS)
	}
	_, err := Run(context.Background(), RunOptions{Targets: targets, Workloads: []Workload{{Size: 64, Flows: 0}, {Size: 1500, Flows: 0}}, Runs: 2}, &log)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.HasPrefix(l, "progress: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 8 {
		t.Fatalf("%d progress lines, want 8 (2 workloads x 2 targets x 2 runs):\n%s", len(lines), log.String())
	}
	for i, l := range lines {
		if want := fmt.Sprintf("progress: %d/8 measurements, ", i+1); !strings.HasPrefix(l, want) || !strings.Contains(l, " elapsed, about ") || !strings.HasSuffix(l, " left") {
			t.Errorf("line %d: %q, want it to start %q and end with an estimate", i+1, l, want)
		}
	}
}
