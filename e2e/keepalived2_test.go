package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

// TestKeepalivedInhibitSorryReload: inhibit_on_failure keeps a failed server listed with
// weight 0; with every real server down the sorry server takes the traffic; SIGHUP with
// a changed weight changes the split without failing a request.
func TestKeepalivedInhibitSorryReload(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	rs1, rs2 := e.bed.Reals[0].Addr, e.bed.Reals[1].Addr
	conf := func(w1 int) string {
		return fmt.Sprintf(`virtual_server %[1]s 8081 {
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    sorry_server %[3]s 8082
    real_server %[2]s 8081 {
        weight %[4]d
        inhibit_on_failure
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server %[3]s 8081 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
`, e.bed.VIP, rs1, rs2, w1)
	}
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf(1)), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := func(i, port int, name string) func() {
		ln, err := e.bed.Reals[i].NS.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatal(err)
		}
		srv := traffic.ServeHTTP(ln, name)
		return func() { srv.Close() }
	}
	stop1 := serve(0, 8081, "rs1")
	stop2 := serve(1, 8081, "rs2")
	stopSorry := serve(1, 8082, "sorry")
	defer stopSorry()
	d := e.restart("-i", e.bed.Ext.Iface, "-i", e.bed.Int.Iface, "--keepalived-conf", path)
	vip := netip.AddrPortFrom(e.bed.VIP, 8081).String()
	// wait until the listing's real-server lines are exactly want (address → weight)
	wait := func(want map[string]string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		var out string
		for time.Now().Before(deadline) {
			out = e.adm("-L", "-n")
			got := map[string]string{}
			for _, l := range strings.Split(out, "\n") {
				f := strings.Fields(l)
				if len(f) >= 4 && f[0] == "->" && f[1] != "RemoteAddress:Port" {
					got[f[1]] = f[3]
				}
			}
			if fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("real servers not %v within 10s:\n%s", want, out)
	}
	a1 := netip.AddrPortFrom(rs1, 8081).String()
	a2 := netip.AddrPortFrom(rs2, 8081).String()
	sorry := netip.AddrPortFrom(rs2, 8082).String()
	wait(map[string]string{a1: "1", a2: "1"})
	load := func(n int) traffic.HTTPLoadResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		defer cancel()
		res, err := traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{URL: "http://" + vip + "/", Requests: n, Concurrency: 4, Dial: e.dial(), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if res.Failed != 0 {
			t.Fatalf("%d requests failed: %v", res.Failed, res.FirstErrors)
		}
		return res
	}

	// SIGHUP with rs1's weight 1 → 3: the split follows, nothing fails meanwhile.
	if err := os.WriteFile(path, []byte(conf(3)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(d.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait(map[string]string{a1: "3", a2: "1"})
	if res := load(400); res.ByServer["rs1"] != 300 || res.ByServer["rs2"] != 100 {
		t.Fatalf("split after reload %v, want 300:100", res.ByServer)
	}

	// rs1 fails: inhibited, it stays listed with weight 0 and gets nothing.
	stop1()
	wait(map[string]string{a1: "0", a2: "1"})
	if res := load(50); res.ByServer["rs2"] != 50 {
		t.Fatalf("with rs1 inhibited: %v", res.ByServer)
	}
	// rs2 fails too: the quorum is lost and the sorry server takes the traffic (the
	// inhibited rs1 stays listed with weight 0, as under keepalived).
	stop2()
	wait(map[string]string{a1: "0", sorry: "1"})
	if res := load(20); res.ByServer["sorry"] != 20 {
		t.Fatalf("with every real server down: %v, want the sorry server", res.ByServer)
	}
}
