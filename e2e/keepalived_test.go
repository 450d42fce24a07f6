package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

// TestKeepalivedFailover runs a keepalived.conf for an LVS-NAT cluster under xlvsd with
// continuous HTTP load through the VIP, and holds the health checks to keepalived's timing
// (control/health: an up check runs every delay_loop; after a failure it retries
// delay_before_retry later and goes down after retry+1 consecutive failures; a down check
// runs every delay_loop and comes up on one success):
//   - rs1's server stops: its TCP_CHECK fails at the next run, at most delay_loop later
//     (the connect is refused at once, so connect_timeout never runs out), and once more
//     delay_before_retry after that, so rs1 is taken out no sooner than retry ×
//     delay_before_retry (1 s) and no later than delay_loop + retry × delay_before_retry
//     (2 s) after it stopped — inside keepalived's documented bound of delay_loop ×
//     (retry+1) plus one interval (3 s);
//   - the load runs across the stop: requests may fail only between the stop and the
//     removal; every request started after the removal succeeds on rs2;
//   - rs1's server starts again: the down check runs within one delay_loop and succeeds,
//     so rs1 is back within one interval (1 s), and requests started after that succeed
//     on both servers.
//
// rs1 stops only after its check's first run (within warmup, default delay_loop, of the
// start), which succeeds and resets its retries.
//
// The measured times carry a stated slack (checkSlack) for what is not the checker's
// timing: the 20 ms between two polls of the listing, the API round trip, and goroutine
// scheduling on a loaded machine.
func TestKeepalivedFailover(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	conf := fmt.Sprintf(`! LVS-NAT cluster
global_defs {
    router_id xlvs-test
}
vrrp_instance VI_1 {
    state MASTER
    interface ext0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        %[1]s
    }
}
virtual_server %[1]s 8080 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server %[2]s 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
    real_server %[3]s 8080 {
        weight 1
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
}
`, e.bed.VIP, e.bed.Reals[0].Addr, e.bed.Reals[1].Addr)
	dir := t.TempDir()
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	const (
		delayLoop        = 1 * time.Second // delay_loop
		retry            = 1               // retry
		delayBeforeRetry = 1 * time.Second // delay_before_retry
		checkSlack       = 250 * time.Millisecond
	)
	e.restart("-i", e.bed.Ext.Iface, "-i", e.bed.Int.Iface, "--keepalived-conf", path)
	daemonUp := time.Now()
	// Servers on 8080 for this test; rs1's can be stopped and started again.
	start := func(i int) func() {
		ln, err := e.bed.Reals[i].NS.Listen("tcp", ":8080")
		if err != nil {
			t.Fatal(err)
		}
		srv := traffic.ServeHTTP(ln, fmt.Sprintf("rs%d", i+1))
		return func() { srv.Close() }
	}
	stop1 := start(0)
	stop2 := start(1)
	defer stop2()
	// waitServers polls the service's real servers through the API until there are want
	// of them, and returns when it saw that; it fails after within.
	waitServers := func(want int, within time.Duration) time.Time {
		t.Helper()
		var n int
		for begin := time.Now(); time.Since(begin) < within; time.Sleep(20 * time.Millisecond) {
			n = -1
			for _, s := range e.list() {
				if s.Port == 8080 {
					n = len(s.Dests)
				}
			}
			if n == want {
				return time.Now()
			}
		}
		t.Fatalf("%d real servers, not %d, within %v:\n%s", n, want, within, e.adm("-L", "-n"))
		return time.Time{}
	}
	waitServers(2, 10*time.Second)

	// Load through the VIP from before rs1 stops until after it is back: each request's
	// start, end and outcome.
	type request struct {
		start, end time.Time
		server     string
		err        error
	}
	url := httpURL(e.bed.VIP, 8080, "/")
	loadCtx, stopLoad := context.WithCancel(e.ctx)
	defer stopLoad()
	const workers = 4
	done := make([][]request, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				r := request{start: time.Now()}
				r.server, r.err = e.get(url)
				r.end = time.Now()
				done[w] = append(done[w], r)
			}
		}()
	}
	// Load with both servers up until every check has run once: the first run comes at
	// a random point within warmup (default delay_loop) of the start, and before it the
	// check's retries count as used up (keepalived's start-up rule: one failure takes a
	// server out), so stopping rs1 earlier would test a different rule.
	time.Sleep(time.Until(daemonUp.Add(delayLoop + checkSlack)))

	stopped := time.Now() // taken before the stop: no check can fail earlier
	stop1()
	removed := waitServers(1, 10*time.Second)
	took := removed.Sub(stopped)
	t.Logf("rs1 removed %v after it stopped", took)
	if lo, hi := retry*delayBeforeRetry, delayLoop+retry*delayBeforeRetry+checkSlack; took < lo || took > hi {
		t.Errorf("rs1 removed %v after it stopped, want within [%v, %v]", took, lo, hi)
	}
	time.Sleep(time.Second) // load on rs2 alone

	started := time.Now()
	stop1 = start(0)
	defer stop1()
	back := waitServers(2, 10*time.Second)
	t.Logf("rs1 back %v after it started", back.Sub(started))
	if hi := delayLoop + checkSlack; back.Sub(started) > hi {
		t.Errorf("rs1 back %v after it started, want within %v", back.Sub(started), hi)
	}
	time.Sleep(time.Second) // load on both again
	stopLoad()
	wg.Wait()

	var before, window, alone, again int
	var windowFailed int
	aloneBy, againBy := map[string]int{}, map[string]int{}
	for _, rs := range done {
		for _, r := range rs {
			switch {
			case r.end.Before(stopped):
				before++
				if r.err != nil {
					t.Errorf("request before rs1 stopped failed: %v", r.err)
				}
			case r.start.Before(removed):
				window++ // may reach the stopped rs1 and be refused
				if r.err != nil {
					windowFailed++
				}
			case r.err != nil:
				t.Errorf("request started %v after rs1 was removed failed: %v", r.start.Sub(removed), r.err)
			case r.start.Before(started):
				alone++
				aloneBy[r.server]++
			case r.start.After(back):
				again++
				againBy[r.server]++
			}
		}
	}
	t.Logf("requests: %d before the stop, %d in the removal window (%d failed), %d with rs1 out %v, %d after it was back %v",
		before, window, windowFailed, alone, aloneBy, again, againBy)
	if alone == 0 || aloneBy["rs2"] != alone {
		t.Errorf("with rs1 out: %d requests answered by %v, want all by rs2", alone, aloneBy)
	}
	if againBy["rs1"] == 0 || againBy["rs2"] == 0 {
		t.Errorf("after rs1 was back: answered by %v, want both servers", againBy)
	}
}
