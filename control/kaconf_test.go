package control

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"xlvs/control/api"
	"xlvs/control/ipvsadm"
	"xlvs/control/keepalived"
)

// listenLocal opens a TCP listener on a free loopback port (the health checks connect
// there) and returns it with its port.
func listenLocal(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, ln.Addr().(*net.TCPAddr).Port
}

func freePort(t *testing.T) int {
	ln, p := listenLocal(t)
	ln.Close()
	return p
}

func waitDests(t *testing.T, d *Daemon, want map[string]int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got map[string]int32
	for time.Now().Before(deadline) {
		got = map[string]int32{}
		for _, s := range mustOK(t, d, &api.Request{Op: api.OpList}).Services {
			for _, ds := range s.Dests {
				got[fmt.Sprintf("%v:%d", ds.Addr, ds.Port)] = ds.Weight
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("destinations %v, want %v", got, want)
}

// TestKeepalivedChecksAndReload: a keepalived.conf's services become rules; a real server
// whose TCP_CHECK fails stays out, and comes in when it starts answering; an inhibited
// one is listed with weight 0; SIGHUP-style reload with a changed weight changes only
// that weight.
func TestKeepalivedChecksAndReload(t *testing.T) {
	up, upPort := listenLocal(t)
	defer up.Close()
	downPort := freePort(t)
	inhibPort := freePort(t)
	conf := func(weight int) string {
		return fmt.Sprintf(`# test cluster
global_defs { router_id test }
virtual_server 198.18.1.100 80 {
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 %d {
        weight %d
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 127.0.0.2 %d {
        weight 2
        TCP_CHECK {
            connect_ip 127.0.0.1
            connect_port %d
            connect_timeout 1
            retry 0
        }
    }
    real_server 127.0.0.3 %d {
        weight 1
        inhibit_on_failure
        TCP_CHECK {
            connect_ip 127.0.0.1
            connect_port %d
            connect_timeout 1
            retry 0
        }
    }
}
`, upPort, weight, downPort, downPort, inhibPort, inhibPort)
	}
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	os.WriteFile(path, []byte(conf(3)), 0o600)
	d := newDaemon(t)
	k, err := d.StartKeepalived(path)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	svc := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	if len(svc) != 1 || svc[0].Scheduler != "wrr" {
		t.Fatalf("services %+v", svc)
	}
	waitDests(t, d, map[string]int32{fmt.Sprintf("127.0.0.1:%d", upPort): 3, fmt.Sprintf("127.0.0.3:%d", inhibPort): 0})

	// The failed server starts answering: it comes in with its weight.
	ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", downPort))
	if err != nil {
		t.Fatalf("listen on port %d again (taken by another process meanwhile?): %v", downPort, err)
	}
	defer ln2.Close()
	go func() {
		for {
			c, err := ln2.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	waitDests(t, d, map[string]int32{
		fmt.Sprintf("127.0.0.1:%d", upPort): 3, fmt.Sprintf("127.0.0.2:%d", downPort): 2, fmt.Sprintf("127.0.0.3:%d", inhibPort): 0,
	})

	// Reload with a new weight for the first server; a broken file keeps everything.
	os.WriteFile(path, []byte("virtual_server 198.18.1.100 80 {\n  real_server 127.0.0.1\n"), 0o600)
	if err := k.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	os.WriteFile(path, []byte(conf(5)), 0o600)
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	waitDests(t, d, map[string]int32{
		fmt.Sprintf("127.0.0.1:%d", upPort): 5, fmt.Sprintf("127.0.0.2:%d", downPort): 2, fmt.Sprintf("127.0.0.3:%d", inhibPort): 0,
	})
	if d.healthEvents.Load() == 0 {
		t.Fatal("no health transitions counted")
	}
}

// TestKeepalivedPersistence: persistence_timeout and persistence_granularity become -p/-M.
func TestKeepalivedPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	os.WriteFile(path, []byte("virtual_server 198.18.1.100 443 {\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    persistence_timeout 600\n    persistence_granularity 255.255.255.0\n    real_server 127.0.0.1 443 {\n        weight 1\n    }\n}\n"), 0o600)
	d := newDaemon(t)
	k, err := d.StartKeepalived(path)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	s := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	if len(s) != 1 || !s[0].Persistent || s[0].Timeout != 600 || s[0].Netmask != "255.255.255.0" {
		t.Fatalf("service %+v", s)
	}
	if p := d.dp.Snapshot().Services[0]; p.Persist != 600e9 || p.PersistBits != 120 {
		t.Fatalf("dataplane persistence %d ns /%d", p.Persist, p.PersistBits)
	}
}

// kaFNATConf is a DPVS-style keepalived.conf: service 80 takes group g1, service 81 the
// unchanging group g2; both forward with FNAT to a real server that answers checks.
func kaFNATConf(port int, g1, kind80 string) string {
	return fmt.Sprintf(`local_address_group g1 {
    %s
}
local_address_group g2 {
    198.18.2.60 dpdk0
}
virtual_server 198.18.1.100 80 {
    delay_loop 1
    lb_algo rr
    lb_kind %s
    protocol TCP
    laddr_group_name g1
    real_server 127.0.0.1 %d {
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
virtual_server 198.18.1.100 81 {
    delay_loop 1
    lb_algo rr
    lb_kind FNAT
    protocol TCP
    laddr_group_name g2
    real_server 127.0.0.1 %d {
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
`, g1, kind80, port, port)
}

// TestKeepalivedFullNAT: lb_kind FNAT services get the addresses of their
// local_address_group as FULLNAT local addresses, and FULLNAT destinations; a reload adds
// and removes local addresses by difference (a removed one drains) without touching the
// unchanged service; FNAT to NAT removes them after the destinations changed method; a
// broken file keeps everything; the -S listing is xlvsadm's.
func TestKeepalivedFullNAT(t *testing.T) {
	up, port := listenLocal(t)
	defer up.Close()
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(kaFNATConf(port, "198.18.2.50-52 dpdk0", "FNAT"))
	d := newDaemon(t)
	k, err := d.StartKeepalived(path)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	s80, s81 := svc("tcp", "198.18.1.100", 80), svc("tcp", "198.18.1.100", 81)
	rs := fmt.Sprintf("127.0.0.1:%d", port)
	waitDests(t, d, map[string]int32{rs: 1})
	for _, s := range mustOK(t, d, &api.Request{Op: api.OpList}).Services {
		if len(s.Dests) != 1 || s.Dests[0].Method != api.MethodFullNAT {
			t.Fatalf("service %d: destinations %+v, want one FULLNAT", s.Port, s.Dests)
		}
	}
	laddrs := func(s *api.Service) []netip.Addr {
		t.Helper()
		var out []netip.Addr
		for _, l := range mustOK(t, d, &api.Request{Op: api.OpGetLocalAddrs, Service: s}).LocalAddrs {
			if l.Ifname != "" {
				t.Errorf("local address %v has interface %q: keepalived's interface names are ignored", l.Addr, l.Ifname)
			}
			out = append(out, l.Addr)
		}
		return out
	}
	if got := laddrs(s80); !slices.Equal(got, addrs("198.18.2.50", "198.18.2.51", "198.18.2.52")) {
		t.Fatalf("service 80 local addresses %v", got)
	}
	if got := laddrs(s81); !slices.Equal(got, addrs("198.18.2.60")) {
		t.Fatalf("service 81 local addresses %v", got)
	}
	if l, _ := snapLaddrs(t, d, s80.ServiceKey); !slices.Equal(l, addrs("198.18.2.50", "198.18.2.51", "198.18.2.52")) {
		t.Fatalf("snapshot's local addresses of service 80: %v", l)
	}
	// The IDs of service 81 and its local address must survive every reload below.
	ids81 := func() (svcID, laddrID uint32) {
		d.mu.Lock()
		defer d.mu.Unlock()
		_, s := d.r.find(s81.ServiceKey)
		if s == nil || len(s.laddrs) != 1 {
			t.Fatalf("service 81 lost: %+v", s)
		}
		return s.id, s.laddrs[0].id
	}
	svc81, laddr81 := ids81()

	var save strings.Builder
	la := mustOK(t, d, &api.Request{Op: api.OpGetLocalAddrs}).LocalAddrs
	if err := ipvsadm.SaveAll(&save, mustOK(t, d, &api.Request{Op: api.OpList}).Services, la, true, nil); err != nil {
		t.Fatal(err)
	}
	wantSave := fmt.Sprintf(`-A -t 198.18.1.100:80 -s rr
-a -t 198.18.1.100:80 -r %[1]s --fullnat -w 1
-P -t 198.18.1.100:80 -z 198.18.2.50
-P -t 198.18.1.100:80 -z 198.18.2.51
-P -t 198.18.1.100:80 -z 198.18.2.52
-A -t 198.18.1.100:81 -s rr
-a -t 198.18.1.100:81 -r %[1]s --fullnat -w 1
-P -t 198.18.1.100:81 -z 198.18.2.60
`, rs)
	if save.String() != wantSave {
		t.Fatalf("-S listing\n%s\nwant\n%s", save.String(), wantSave)
	}

	// The group moves by one address: .53 is added, .50 removed (and drains).
	write(kaFNATConf(port, "198.18.2.51-53 dpdk0", "FNAT"))
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := laddrs(s80); !slices.Equal(got, addrs("198.18.2.51", "198.18.2.52", "198.18.2.53")) {
		t.Fatalf("after reload: service 80 local addresses %v", got)
	}
	if _, dr := snapLaddrs(t, d, s80.ServiceKey); !slices.Equal(dr, addrs("198.18.2.50")) {
		t.Fatalf("after reload: draining %v, want the removed 198.18.2.50", dr)
	}
	if s, l := ids81(); s != svc81 || l != laddr81 {
		t.Fatalf("service 81 was redone by a reload that did not change it: IDs %d/%d, were %d/%d", s, l, svc81, laddr81)
	}

	// An address deleted with xlvsadm meanwhile is not deleted again, nor one added
	// twice: the reload still applies.
	mustOK(t, d, laddrReq(api.OpDelLocalAddr, s80, "198.18.2.51"))
	write(kaFNATConf(port, "198.18.2.52-53 dpdk0\n    198.18.2.70", "FNAT"))
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := laddrs(s80); !slices.Equal(got, addrs("198.18.2.52", "198.18.2.53", "198.18.2.70")) {
		t.Fatalf("after a reload over an xlvsadm change: service 80 local addresses %v", got)
	}

	// Broken files keep everything: FNAT without laddr_group_name, an unknown group.
	for _, bad := range []string{
		strings.Replace(kaFNATConf(port, "198.18.2.80", "FNAT"), "    laddr_group_name g1\n", "", 1),
		strings.Replace(kaFNATConf(port, "198.18.2.80", "FNAT"), "laddr_group_name g1", "laddr_group_name g9", 1),
	} {
		write(bad)
		if err := k.Reload(); err == nil || !strings.Contains(err.Error(), "laddr_group_name") {
			t.Fatalf("reload of a broken file: %v, want an error about laddr_group_name", err)
		}
		if got := laddrs(s80); !slices.Equal(got, addrs("198.18.2.52", "198.18.2.53", "198.18.2.70")) {
			t.Fatalf("a broken file changed the local addresses: %v", got)
		}
	}

	// FNAT to NAT: the destination becomes masquerading, the local addresses go.
	write(kaFNATConf(port, "198.18.2.52-53 dpdk0\n    198.18.2.70", "NAT"))
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := laddrs(s80); len(got) != 0 {
		t.Fatalf("NAT service 80 keeps local addresses %v", got)
	}
	for _, s := range mustOK(t, d, &api.Request{Op: api.OpList}).Services {
		want := api.MethodFullNAT
		if s.Port == 80 {
			want = api.MethodMasq
		}
		if len(s.Dests) != 1 || s.Dests[0].Method != want {
			t.Fatalf("service %d after FNAT to NAT: destinations %+v, want one %s", s.Port, s.Dests, want)
		}
	}
	if s, l := ids81(); s != svc81 || l != laddr81 {
		t.Fatalf("service 81 was redone: IDs %d/%d, were %d/%d", s, l, svc81, laddr81)
	}
	// And back: NAT to FNAT adds them again.
	write(kaFNATConf(port, "198.18.2.52", "FNAT"))
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := laddrs(s80); !slices.Equal(got, addrs("198.18.2.52")) {
		t.Fatalf("NAT to FNAT: local addresses %v", got)
	}
	if ds := mustOK(t, d, &api.Request{Op: api.OpList, Service: s80}).Services[0].Dests; len(ds) != 1 || ds[0].Method != api.MethodFullNAT {
		t.Fatalf("NAT to FNAT: destinations %+v", ds)
	}
}

// TestKeepalivedFullNATMixedGroup: a group with IPv4 and IPv6 addresses, shared by an
// IPv4 and an IPv6 service, gives each service the addresses of its own family.
func TestKeepalivedFullNATMixedGroup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	os.WriteFile(path, []byte(`local_address_group g {
    198.18.2.50
    fd00:2::50 dpdk0
}
virtual_server 198.18.1.100 80 {
    lb_kind FNAT
    protocol TCP
    laddr_group_name g
    real_server 198.18.3.1 8080 { }
}
virtual_server fd00:1::100 80 {
    lb_kind FNAT
    protocol TCP
    laddr_group_name g
    real_server fd00:3::1 8080 { }
}
`), 0o600)
	d := newDaemon(t)
	k, err := d.StartKeepalived(path)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	got := mustOK(t, d, &api.Request{Op: api.OpGetLocalAddrs}).LocalAddrs
	if len(got) != 2 || got[0].Addr != netip.MustParseAddr("198.18.2.50") || got[1].Addr != netip.MustParseAddr("fd00:2::50") ||
		got[0].Service.Port != 80 || !got[1].Service.Addr.Is6() {
		t.Fatalf("local addresses %+v", got)
	}
}

// TestKeepalivedApplyErrorsNameLines: a file that parses but that the daemon cannot apply
// stops the start with the file and line of what was refused (the virtual_server for a
// service, the real_server for a destination), not the service's index in the file.
func TestKeepalivedApplyErrorsNameLines(t *testing.T) {
	for _, tc := range []struct {
		name, conf, want string
	}{
		{"full NAT real server of a one-packet service", `local_address_group g {
    198.18.2.50
}
virtual_server 198.18.0.10 53 {
    protocol UDP
    lb_kind DR
    ops
    laddr_group_name g
    real_server 198.18.1.1 53 {
    }
    real_server 198.18.1.2 53 {
        lvs_method FNAT
    }
}
`, ":11: real_server 198.18.1.2:53 of virtual_server UDP 198.18.0.10:53: real server 198.18.1.2: full NAT (--fullnat) does not combine with one-packet scheduling"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keepalived.conf")
			if err := os.WriteFile(path, []byte(tc.conf), 0o600); err != nil {
				t.Fatal(err)
			}
			d := newDaemon(t)
			k, err := d.StartKeepalived(path)
			if err == nil {
				k.Close()
				t.Fatalf("StartKeepalived succeeded, want an error containing %q", path+tc.want)
			}
			if !strings.Contains(err.Error(), path+tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, path+tc.want)
			}
			if _, err := newDaemon(t).CheckKeepalived(path, keepalived.Options{}); err == nil || !strings.Contains(err.Error(), path+tc.want) {
				t.Fatalf("CheckKeepalived err = %v\nwant it to contain %q", err, path+tc.want)
			}
		})
	}
}

// TestCheckKeepalived: the check applies the rules xlvsd starts with — services, local
// addresses and the real servers that start up (not those waiting for an alpha check),
// with the sorry server out while the quorum holds — and runs no check.
func TestCheckKeepalived(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "check-ran")
	conf := fmt.Sprintf(`virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_algo wrr
    lb_kind NAT
    delay_loop 1
    sorry_server 198.18.1.9 80
    real_server 198.18.1.1 8080 {
        weight 3
        MISC_CHECK {
            misc_path "/bin/sh -c 'touch %s'"
            warmup 0
        }
    }
    real_server 198.18.1.2 8080 {
        weight 2
        TCP_CHECK {
            alpha
        }
    }
    real_server 198.18.1.3 8080 {
        weight 0
        frobnicate
    }
}
`, ran)
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t)
	cfg, err := d.CheckKeepalived(path, keepalived.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || cfg.Warnings[0].Pos.Line != 22 {
		t.Errorf("warnings %v, want the unknown keyword at line 22", cfg.Warnings)
	}
	var out strings.Builder
	svcs := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	if err := ipvsadm.Save(&out, svcs, true); err != nil {
		t.Fatal(err)
	}
	want := "-A -t 198.18.0.10:80 -s wrr\n" +
		"-a -t 198.18.0.10:80 -r 198.18.1.1:8080 -m -w 3\n" +
		"-a -t 198.18.0.10:80 -r 198.18.1.3:8080 -m -w 0\n"
	if out.String() != want {
		t.Errorf("rules\n%s\nwant\n%s", out.String(), want)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(ran); err == nil {
		t.Errorf("a MISC_CHECK ran during the check")
	}
}
