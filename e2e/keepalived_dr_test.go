package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

// TestKeepalivedDR runs an LVS-DR keepalived.conf unchanged under xlvsd (real servers with
// the VIP on lo, in the L2 layout): both servers checked and used; one stopped → it
// leaves and the load sees no failure; the replies bypass the director.
func TestKeepalivedDR(t *testing.T) {
	e := setup(t, testbed.L2)
	conf := fmt.Sprintf(`virtual_server %[1]s 8080 {
    delay_loop 1
    lb_algo wlc
    lb_kind DR
    protocol TCP
    real_server %[2]s 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server %[3]s 8080 {
        weight 1
        HTTP_GET {
            url {
                path /
            }
            connect_timeout 1
            retry 0
        }
    }
}
`, e.bed.VIP, e.bed.Reals[0].Addr, e.bed.Reals[1].Addr)
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var stops []func()
	for i := range e.bed.Reals {
		ln, err := e.bed.Reals[i].NS.Listen("tcp", ":8080")
		if err != nil {
			t.Fatal(err)
		}
		srv := traffic.ServeHTTP(ln, fmt.Sprintf("rs%d", i+1))
		stops = append(stops, func() { srv.Close() })
	}
	defer stops[1]()
	e.restart("-i", e.bed.Ext.Iface, "--keepalived-conf", path)
	servers := func() int {
		out := e.adm("-L", "-n")
		return strings.Count(out, "Route")
	}
	deadline := time.Now().Add(10 * time.Second)
	for servers() != 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := servers(); n != 2 {
		t.Fatalf("%d DR real servers listed, want 2:\n%s", n, e.adm("-L", "-n"))
	}
	vip := netip.AddrPortFrom(e.bed.VIP, 8080).String()
	load := func(n int) traffic.HTTPLoadResult {
		ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		defer cancel()
		res, err := traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{URL: "http://" + vip + "/", Requests: n, Concurrency: 4, Dial: e.dial(), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := load(100); res.Failed != 0 || res.ByServer["rs1"] == 0 || res.ByServer["rs2"] == 0 {
		t.Fatalf("both servers up: %s", res.String())
	}
	stops[0]()
	deadline = time.Now().Add(6 * time.Second)
	for servers() != 1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := servers(); n != 1 {
		t.Fatalf("rs1 stopped: %d real servers listed, want 1", n)
	}
	if res := load(100); res.Failed != 0 || res.ByServer["rs2"] != 100 {
		t.Fatalf("after rs1 left: %s", res.String())
	}
	if st := e.service("tcp", e.bed.VIP, 8080).Stats; st.OutPkts != 0 || st.InPkts == 0 {
		t.Fatalf("stats %+v: DR replies should bypass the director", st)
	}
}
