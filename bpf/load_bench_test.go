package bpf

import "testing"

// BenchmarkLoad is the cost of one program instance (Classifier.Load): the kernel's
// verifier, mostly. A restarting xlvsd's successor pays it once per interface before it
// forwards (dataplane/handoff.go).
func BenchmarkLoad(b *testing.B) {
	requirePrivileged(b)
	c, err := New()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		p, err := c.Load()
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}
