package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// TestKeepalivedFullNAT runs a DPVS-style keepalived.conf (lb_kind FNAT, a
// local_address_group with an A.B.C.D-E range and DPVS interface names, laddr_group_name)
// under xlvsd, with the real servers' route back through the director removed: the real
// server sees one of the group's local addresses as its client; SIGHUP with a smaller
// group removes the other address, and new connections come from the one left.
func TestKeepalivedFullNAT(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	lips := []netip.Addr{netip.MustParseAddr("198.18.2.50"), netip.MustParseAddr("198.18.2.51")}
	for _, lip := range lips {
		if out, err := e.bed.Director.Run(e.ctx, "ip", "-4", "addr", "add", lip.String()+"/24", "dev", e.bed.Int.Iface); err != nil {
			t.Fatalf("add local address %v on the director: %v %s", lip, err, out)
		}
	}
	for _, rs := range e.bed.Reals {
		if out, err := rs.NS.Run(e.ctx, "ip", "-4", "route", "del", "default"); err != nil {
			t.Fatalf("delete %s's default route: %v %s", rs.NS.Name(), err, out)
		}
	}
	conf := func(group string) string {
		return fmt.Sprintf(`! LVS-FNAT cluster, DPVS syntax
local_address_group laddr_g1 {
    %s
}
virtual_server %s %d {
    delay_loop 1
    lb_algo rr
    lb_kind FNAT
    protocol TCP
    laddr_group_name laddr_g1
    real_server %s %d {
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server %s %d {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
`, group, e.bed.VIP, whoPort, e.bed.Reals[0].Addr, whoPort, e.bed.Reals[1].Addr, whoPort)
	}
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf("198.18.2.50-51 dpdk0")), 0o600); err != nil {
		t.Fatal(err)
	}
	e.restart("-i", e.bed.Ext.Iface, "-i", e.bed.Int.Iface, "--keepalived-conf", path)
	svc := netip.AddrPortFrom(e.bed.VIP, whoPort).String()
	wait := func(what string, ok func(string) bool, args ...string) {
		t.Helper()
		var out string
		var err error
		for begin := time.Now(); time.Since(begin) < 10*time.Second; time.Sleep(100 * time.Millisecond) {
			if out, err = e.d.Adm(e.ctx, args...); err == nil && ok(out) {
				return
			}
		}
		t.Fatalf("%s: xlvsadm %s:\n%s %v", what, strings.Join(args, " "), out, err)
	}
	wait("two FullNat real servers", func(s string) bool { return strings.Count(s, "FullNat") == 2 }, "-L", "-n")
	wait("both local addresses", func(s string) bool {
		return strings.Contains(s, "198.18.2.50") && strings.Contains(s, "198.18.2.51")
	}, "-G", "-t", svc)

	// The real servers see the local addresses as the client.
	seen := map[netip.Addr]int{}
	for range 20 {
		body, err := e.get("http://" + svc + "/")
		if err != nil {
			t.Fatal(err)
		}
		ap, err := netip.ParseAddrPort(strings.TrimSpace(body))
		if err != nil || (ap.Addr() != lips[0] && ap.Addr() != lips[1]) {
			t.Fatalf("real server saw client %q, want one of %v", body, lips)
		}
		seen[ap.Addr()]++
	}
	t.Logf("clients seen by the real servers: %v", seen)

	// SIGHUP with .51 only: .50 goes, new connections come from .51.
	if err := os.WriteFile(path, []byte(conf("198.18.2.51 dpdk0")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(e.d.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait("198.18.2.50 removed", func(s string) bool {
		return !strings.Contains(s, "198.18.2.50") && strings.Contains(s, "198.18.2.51")
	}, "-G", "-t", svc)
	for range 10 {
		body, err := e.get("http://" + svc + "/")
		if err != nil {
			t.Fatal(err)
		}
		if ap, err := netip.ParseAddrPort(strings.TrimSpace(body)); err != nil || ap.Addr() != lips[1] {
			t.Fatalf("after reload the real server saw client %q, want %v", body, lips[1])
		}
	}
	c := e.dataplaneCounters()
	for _, k := range []string{"drop_no_laddr", "drop_no_lport", "drop_malformed"} {
		if c[k] != 0 {
			t.Errorf("dataplane %s = %d", k, c[k])
		}
	}
	e.noChecksumErrors()
}
