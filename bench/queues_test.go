package bench

import (
	"errors"
	"strings"
	"testing"
)

func TestPacersShareTheRate(t *testing.T) {
	p := make(pacers, 4)
	p.Set(1000)
	for i := range p {
		if got := p[i].Rate(); got != 250 {
			t.Errorf("pacer %d: rate %g, want 250 (a quarter of 1000)", i, got)
		}
	}
	p.Set(0)
	for i := range p {
		if got := p[i].Rate(); got != 0 {
			t.Errorf("pacer %d: rate %g after Set(0), want 0 (unpaced)", i, got)
		}
	}
}

func TestCheckQueues(t *testing.T) {
	for _, tc := range []struct {
		name        string
		target      Target
		o           PacketOptions
		ok, unavail bool
	}{
		{"one queue", TargetXLVSNATOneArm, PacketOptions{Flows: 1}, true, false},
		{"two queues", TargetXLVSNAT, PacketOptions{Flows: 1000, Queues: 2}, true, false},
		{"one-armed", TargetXLVSNATOneArm, PacketOptions{Flows: 1000, Queues: 2}, false, true},
		{"l2fwd", TargetL2Fwd, PacketOptions{Flows: 1000, Queues: 2}, false, true},
		{"more flows than frames", TargetXLVSNAT, PacketOptions{Flows: 100000, Queues: 2}, false, true},
		{"fewer flows than queues", TargetXLVSNAT, PacketOptions{Flows: 1, Queues: 2}, false, false},
		{"too many queues", TargetXLVSNAT, PacketOptions{Flows: 1000, Queues: MaxQueues + 1}, false, false},
		{"negative", TargetXLVSNAT, PacketOptions{Flows: 1000, Queues: -1}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.checkQueues(tc.target)
			if (err == nil) != tc.ok || errors.Is(err, ErrUnavailable) != tc.unavail {
				t.Errorf("checkQueues: %v; want ok %v, unavailable %v", err, tc.ok, tc.unavail)
			}
		})
	}
}

func TestDirCPUs(t *testing.T) {
	if got := (PacketOptions{DirCPU: 3}).dirCPUs(); len(got) != 1 || got[0] != 3 {
		t.Errorf("dirCPUs without DirCPUs = %v, want [3]", got)
	}
	if got := (PacketOptions{DirCPU: 3, DirCPUs: []int{1, 0}}).dirCPUs(); len(got) != 2 || got[0] != 1 || got[1] != 0 {
		t.Errorf("dirCPUs = %v, want [1 0]", got)
	}
}

func TestReportQueuesHeader(t *testing.T) {
	r := &Report{Machine: Machine{CPU: "test", CPUs: 2, Kernel: "6.18", Go: "go"}, Duration: "1s"}
	r.Options.GenCPU, r.Options.DirCPU, r.Options.Queues, r.Options.DirCPUs = 0, 1, 2, []int{1, 0}
	var b strings.Builder
	r.WriteMarkdown(&b)
	for _, want := range []string{"director with 2 queues and workers on CPUs 1,0", "CPU 0 is the generator's too"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
	r.Options.Queues, r.Options.DirCPUs = 0, nil
	b.Reset()
	r.WriteMarkdown(&b)
	if !strings.Contains(b.String(), "director on CPU 1") || strings.Contains(b.String(), "queues") {
		t.Errorf("one-queue markdown:\n%s", b.String())
	}
}
