package control

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"xlvs/control/api"
	"xlvs/control/health"
	"xlvs/control/ipvsadm"
	"xlvs/control/keepalived"
)

// kaGroupConf is a virtual_server group over IPv4 and IPv6 members, with real servers
// checked on loopback.
func kaGroupConf(entries string, upPort, downPort int) string {
	return fmt.Sprintf(`virtual_server_group FARM {
%s
}
virtual_server group FARM {
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 %d {
        weight 3
        TCP_CHECK {
            connect_timeout 1
            retry 0
            warmup 0
        }
    }
    real_server 127.0.0.2 %d {
        weight 2
        TCP_CHECK {
            connect_ip 127.0.0.1
            connect_timeout 1
            retry 0
            warmup 0
        }
    }
    real_server ::1 %d {
        weight 4
        TCP_CHECK {
            connect_ip 127.0.0.1
            connect_timeout 1
            retry 0
            warmup 0
        }
    }
}
`, entries, upPort, downPort, upPort)
}

// TestKeepalivedGroup: a virtual_server group becomes one service per member, all with
// the group's real servers; the checks run once per protocol and family (one pool for
// the IPv4 members, one for the IPv6 ones), and a result changes every member at once;
// a reload that changes the group's entries adds and removes exactly those services.
func TestKeepalivedGroup(t *testing.T) {
	up, upPort := listenLocal(t)
	defer up.Close()
	downPort := freePort(t)
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	os.WriteFile(path, []byte(kaGroupConf("    198.18.2.1-3 80\n    2001:db8:2::1 80", upPort, downPort)), 0o600)
	d := newDaemon(t)
	k, err := d.StartKeepalived(path)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()

	// The model: each IPv4 member has the IPv4 real servers that are up, the IPv6
	// member the IPv6 one.
	want := func(v4 []string, members ...string) map[string]string {
		m := map[string]string{}
		for _, s := range members {
			if strings.Contains(s, ":") && strings.Count(s, ":") > 1 {
				m[s] = fmt.Sprintf("[::1]:%d/4", upPort)
			} else {
				v4 = slices.Sorted(slices.Values(v4))
				m[s] = strings.Join(v4, " ")
			}
		}
		return m
	}
	r1 := fmt.Sprintf("127.0.0.1:%d/3", upPort)
	r2 := fmt.Sprintf("127.0.0.2:%d/2", downPort)
	waitServices(t, d, want([]string{r1}, "198.18.2.1:80", "198.18.2.2:80", "198.18.2.3:80", "2001:db8:2::1:80"))

	// One pool per family, not one per member: the checks are shared.
	states := k.mon.State()
	if len(states) != 2 {
		t.Fatalf("%d monitored pools, want 2 (IPv4 and IPv6 members of FARM)", len(states))
	}
	for _, s := range states {
		if s.Key.Group != "FARM" {
			t.Errorf("pool %s is not the group's", s.Key)
		}
	}

	// The second real server starts answering: every IPv4 member gets it.
	ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", downPort))
	if err != nil {
		t.Fatalf("listen on port %d again: %v", downPort, err)
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
	waitServices(t, d, want([]string{r1, r2}, "198.18.2.1:80", "198.18.2.2:80", "198.18.2.3:80", "2001:db8:2::1:80"))

	// SIGHUP with the range moved by one: .1 goes, .4 comes with the group's
	// destinations, .2 and .3 are not touched.
	before := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	os.WriteFile(path, []byte(kaGroupConf("    198.18.2.2-4 80\n    2001:db8:2::1 80", upPort, downPort)), 0o600)
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	waitServices(t, d, want([]string{r1, r2}, "198.18.2.2:80", "198.18.2.3:80", "198.18.2.4:80", "2001:db8:2::1:80"))
	after := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	for _, b := range before {
		for _, a := range after {
			if a.ServiceKey == b.ServiceKey && fmt.Sprint(a.Dests) != fmt.Sprint(b.Dests) {
				t.Errorf("%v changed on reload: %v -> %v", a.ServiceKey, b.Dests, a.Dests)
			}
		}
	}

	// The first real server fails: it leaves every IPv4 member at once (and the IPv6
	// member's server, checked on the same port, leaves too).
	up.Close()
	w := want([]string{r2}, "198.18.2.2:80", "198.18.2.3:80", "198.18.2.4:80", "2001:db8:2::1:80")
	w["2001:db8:2::1:80"] = ""
	waitServices(t, d, w)
}

// waitServices waits until the daemon has exactly the services of want (address:port
// -> "dest/weight ..." sorted).
func waitServices(t *testing.T, d *Daemon, want map[string]string) {
	t.Helper()
	var got map[string]string
	for range 200 {
		got = map[string]string{}
		for _, s := range mustOK(t, d, &api.Request{Op: api.OpList}).Services {
			var ds []string
			for _, x := range s.Dests {
				if x.Addr.Is6() {
					ds = append(ds, fmt.Sprintf("[%v]:%d/%d", x.Addr, x.Port, x.Weight))
				} else {
					ds = append(ds, fmt.Sprintf("%v:%d/%d", x.Addr, x.Port, x.Weight))
				}
			}
			slices.Sort(ds)
			got[fmt.Sprintf("%v:%d", s.Addr, s.Port)] = strings.Join(ds, " ")
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("services\n%v\nwant\n%v", got, want)
}

// TestCheckKeepalivedSamples: the sample-shaped files of keepalived's and DPVS's
// virtual_server_group configurations load the services they describe, as xlvsd
// --check-config prints them (ipvsadm -S -n).
func TestCheckKeepalivedSamples(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"vsg-sample.conf", func() []string {
			var w []string
			rs := "-r 198.51.100.101:1358 -m -w 1\n-a -t %s -r 198.51.100.102:1358 -m -w 1"
			for _, s := range []string{"172.16.5.1:8080", "172.16.5.2:80", "198.51.100.7:1358", "198.51.100.20:80", "198.51.100.21:80", "198.51.100.22:80",
				"198.51.100.23:80", "198.51.100.24:80", "198.51.100.25:80", "198.51.100.26:80", "198.51.100.27:80"} {
				w = append(w, fmt.Sprintf("-A -t %s -s rr -p 50\n-a -t %s "+rs, s, s, s))
			}
			// The group's marks: one fwmark service each, real servers as in the block.
			for _, m := range []string{"11", "12"} {
				w = append(w, fmt.Sprintf("-A -f %s -s rr -p 50\n-a -f %s -r 198.51.100.101:1358 -m -w 1\n-a -f %s -r 198.51.100.102:1358 -m -w 1", m, m, m))
			}
			return w
		}()},
		{"fwmark-sample.conf", []string{
			"-A -f 7 -s rr -p 900\n-a -f 7 -r 198.51.100.150:0 -m -w 1\n-a -f 7 -r 198.51.100.151:0 -m -w 1",
		}},
		{"dpvs-fnat.conf", []string{
			"-A -t 10.80.0.254:80 -s rr\n-a -t 10.80.0.254:80 -r 10.80.1.2:80 --fullnat -w 100\n-a -t 10.80.0.254:80 -r 10.80.1.3:80 --fullnat -w 100",
		}},
		{"dpvs-fnat6.conf", []string{
			"-A -t [2001:db8:80::1]:80 -s rr\n-a -t [2001:db8:80::1]:80 -r [2001:db8:81::3]:80 --fullnat -w 100\n-a -t [2001:db8:80::1]:80 -r [2001:db8:81::4]:8080 --fullnat -w 100",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			d := newDaemonOpts(t, Options{MaxServices: 64, MaxDests: 128})
			var warns []keepalived.Warning
			cfg, err := d.CheckKeepalived(filepath.Join("keepalived", "testdata", "groups", tc.file), keepalived.Options{Warn: func(w keepalived.Warning) { warns = append(warns, w) }})
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Warnings) != len(warns) {
				t.Errorf("%d warnings in the config, %d reported", len(cfg.Warnings), len(warns))
			}
			var out strings.Builder
			if err := ipvsadm.Save(&out, mustOK(t, d, &api.Request{Op: api.OpList}).Services, true); err != nil {
				t.Fatal(err)
			}
			got := strings.TrimSpace(out.String())
			if w := strings.Join(tc.want, "\n"); got != w {
				t.Errorf("rules\n%s\nwant\n%s", got, w)
			}
			// FULLNAT's local addresses, from laddr_group_name.
			for _, vs := range cfg.VirtualServers {
				have := d.laddrsOf(kaServiceKey(vs.ServiceKey))
				if len(have) != len(vs.LocalAddrs) || len(vs.LocalAddrs) == 0 && vs.Method.Kind == keepalived.MethodFNAT {
					t.Errorf("%s: local addresses %v, want %v", vs.ServiceKey, have, vs.LocalAddrs)
				}
				for _, a := range vs.LocalAddrs {
					if !have[a] {
						t.Errorf("%s: local address %s missing", vs.ServiceKey, a)
					}
				}
			}
			hv, err := health.FromKeepalived(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(hv) != 1 || hv[0].Key.Group == "" && tc.file != "fwmark-sample.conf" {
				t.Errorf("%d health entries, want one shared by the group: %+v", len(hv), hv)
			}
		})
	}
}
