package control

import (
	"testing"

	"xlvs/dataplane"
)

// TestEstimatorConverges: a steady rate is reported after a few periods, as the kernel's
// estimator (a quarter of the way per 2 s period) converges.
func TestEstimatorConverges(t *testing.T) {
	var s dataplane.FlowStats
	e := newEstimator(s)
	for i := 0; i < 80; i++ {
		s.Conns += 200    // 100 conn/s
		s.InPkts += 20000 // 10000 pkt/s
		s.OutPkts += 2000 // 1000 pkt/s
		s.InBytes += 2e6  // 1 MB/s
		s.OutBytes += 2e4 // 10 kB/s
		e.tick(s)
	}
	cps, inpps, outpps, inbps, outbps := e.rates()
	if cps != 100 || inpps != 10000 || outpps != 1000 || inbps != 1e6 || outbps != 1e4 {
		t.Fatalf("rates %d %d %d %d %d", cps, inpps, outpps, inbps, outbps)
	}
	// After one period the average has moved a quarter of the way: the kernel's first
	// reading of a new 100 conn/s load is 25.
	e2 := newEstimator(dataplane.FlowStats{})
	e2.tick(dataplane.FlowStats{Conns: 200})
	if c, _, _, _, _ := e2.rates(); c != 25 {
		t.Fatalf("first period cps %d, want 25", c)
	}
	e2.reset(dataplane.FlowStats{Conns: 200})
	if c, _, _, _, _ := e2.rates(); c != 0 {
		t.Fatalf("cps %d after reset", c)
	}
	// Traffic stopping decays the rate towards zero.
	for i := 0; i < 60; i++ {
		e.tick(s)
	}
	if cps, _, _, _, _ := e.rates(); cps != 0 {
		t.Fatalf("cps %d after the load stopped", cps)
	}
}
