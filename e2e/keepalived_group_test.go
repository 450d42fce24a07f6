package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// TestKeepalivedGroup: a virtual_server_group of two ports of the VIP (IPv4) and one of
// the IPv6 VIP, one `virtual_server group` block whose real servers have no port (each
// member's port is used) and are checked by PING_CHECK. Traffic reaches both real servers
// through every member; when rs2 stops answering pings (net.ipv4.icmp_echo_ignore_all and
// its IPv6 twin in its namespace), it leaves every member at once, and requests go to rs1
// only; when it answers again it comes back.
func TestKeepalivedGroup(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	rs1, rs2 := e.bed.Reals[0], e.bed.Reals[1]
	conf := fmt.Sprintf(`! virtual_server_group with PING_CHECK
virtual_server_group WEB {
    %[1]s %[3]d
    %[1]s %[4]d
}
virtual_server group WEB {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server %[2]s {
        weight 1
        PING_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
    real_server %[5]s {
        weight 1
        PING_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
}
virtual_server_group WEB6 {
    %[6]s %[3]d
}
virtual_server group WEB6 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server %[7]s {
        weight 1
        PING_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
    real_server %[8]s {
        weight 1
        PING_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
}
`, e.bed.VIP, rs1.Addr, httpPort, whoPort, rs2.Addr, e.bed.VIP6, rs1.Addr6, rs2.Addr6)
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	e.restart("-i", e.bed.Ext.Iface, "-i", e.bed.Int.Iface, "--keepalived-conf", path)

	// servers counts the real servers of each member service.
	members := []struct {
		addr string
		port int
	}{{e.bed.VIP.String(), httpPort}, {e.bed.VIP.String(), whoPort}, {e.bed.VIP6.String(), httpPort}}
	waitDests := func(want int, within time.Duration) {
		t.Helper()
		var got []int
		for begin := time.Now(); time.Since(begin) < within; time.Sleep(50 * time.Millisecond) {
			got = got[:0]
			for _, m := range members {
				n := -1
				for _, s := range e.list() {
					if s.Addr.String() == m.addr && int(s.Port) == m.port {
						n = len(s.Dests)
					}
				}
				got = append(got, n)
			}
			ok := true
			for _, n := range got {
				ok = ok && n == want
			}
			if ok {
				return
			}
		}
		t.Fatalf("real servers per member %v, want %d each, within %v:\n%s", got, want, within, e.adm("-L", "-n"))
	}
	// names fetches url n times and returns the real servers that answered, by name.
	names := func(url string, n int) map[string]int {
		t.Helper()
		seen := map[string]int{}
		for range n {
			body, err := e.get(url)
			if err != nil {
				t.Fatalf("GET %s: %v", url, err)
			}
			seen[strings.TrimSpace(body)]++
		}
		return seen
	}
	waitDests(2, 10*time.Second)
	v4, v6 := httpURL(e.bed.VIP, httpPort, "/"), httpURL(e.bed.VIP6, httpPort, "/")
	for _, u := range []string{v4, v6} {
		if got := names(u, 4); got["rs1"] != 2 || got["rs2"] != 2 {
			t.Fatalf("%s answered by %v, want rs1 and rs2 twice each (rr)", u, got)
		}
	}
	// The second port: the who server answers with the client address it sees (NAT keeps it).
	if body, err := e.get(httpURL(e.bed.VIP, whoPort, "/")); err != nil || !strings.HasPrefix(body, e.bed.Client.Addr.String()+":") {
		t.Fatalf("port %d: %q %v", whoPort, body, err)
	}

	// rs2 stops answering pings: out of every member.
	for _, k := range []string{"net.ipv4.icmp_echo_ignore_all", "net.ipv6.icmp.echo_ignore_all"} {
		if err := rs2.NS.SetSysctl(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	waitDests(1, 10*time.Second)
	for _, u := range []string{v4, v6} {
		if got := names(u, 4); got["rs1"] != 4 {
			t.Fatalf("%s answered by %v with rs2 down, want rs1 only", u, got)
		}
	}
	// And back.
	for _, k := range []string{"net.ipv4.icmp_echo_ignore_all", "net.ipv6.icmp.echo_ignore_all"} {
		if err := rs2.NS.SetSysctl(k, "0"); err != nil {
			t.Fatal(err)
		}
	}
	waitDests(2, 10*time.Second)
	if got := names(v4, 4); got["rs1"] != 2 || got["rs2"] != 2 {
		t.Fatalf("%s answered by %v after rs2 came back", v4, got)
	}
}
