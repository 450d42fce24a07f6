package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"xlvs/bench"
	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

// TestKeepalivedFailover runs a keepalived.conf for an LVS-NAT cluster under xlvsd with
// continuous load through the VIP: a real server whose process stops is taken out within
// delay_loop × (retry+1) plus one interval and the load sees no failures after that
// window; started again, it is back within one interval.
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
	if err := e.d.Stop(); err != nil {
		t.Fatal(err)
	}
	d, err := bench.StartDaemon(e.ctx, e.bed.Director, bins, "-i", e.bed.Ext.Iface, "-i", e.bed.Int.Iface, "--keepalived-conf", path)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	// Servers on 8080 for this test; rs1's can be stopped and started again.
	var mu sync.Mutex
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
	vip := netip.AddrPortFrom(e.bed.VIP, 8080).String()
	waitServers := func(want int, within time.Duration) time.Duration {
		t.Helper()
		begin := time.Now()
		for time.Since(begin) < within {
			out, err := e.d.Adm(e.ctx, "-L", "-n")
			if err == nil && strings.Count(out, "->")-1 == want {
				return time.Since(begin)
			}
			time.Sleep(100 * time.Millisecond)
		}
		out, _ := e.d.Adm(e.ctx, "-L", "-n")
		t.Fatalf("not %d real servers within %v:\n%s", want, within, out)
		return 0
	}
	waitServers(2, 10*time.Second)

	// Load through the VIP while rs1 stops.
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	mu.Lock()
	stop1()
	stopped := time.Now()
	mu.Unlock()
	// delay_loop 1 × (retry 1 + 1) + one interval, plus the check's own timeouts.
	took := waitServers(1, 8*time.Second)
	t.Logf("rs1 removed %v after it stopped", time.Since(stopped))
	_ = took
	res, err := traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{URL: "http://" + vip + "/", Requests: 500, Concurrency: 10, Dial: e.dial(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 0 || res.ByServer["rs2"] != 500 {
		t.Fatalf("after rs1 was taken out: %s", res.String())
	}
	// rs1 starts again: back within about one interval.
	stop1 = start(0)
	defer stop1()
	back := time.Now()
	waitServers(2, 5*time.Second)
	t.Logf("rs1 back %v after it started", time.Since(back))
}
