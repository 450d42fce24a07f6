package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"xlvs/bench"
)

// TestDemo runs the demo (smaller) and checks the wrr 3:1 split is exact: one worker
// schedules every new connection, and wrr with weights 3 and 1 is periodic.
func TestDemo(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := bench.Demo(ctx, bins, bench.DemoOptions{Requests: 1000, Concurrency: 50}, &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 1000 || res.Failed != 0 {
		t.Fatalf("ok %d failed %d", res.OK, res.Failed)
	}
	if res.ByServer["rs1"] != 750 || res.ByServer["rs2"] != 250 {
		t.Fatalf("split %v, want rs1 750 and rs2 250", res.ByServer)
	}
}
