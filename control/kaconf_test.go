package control

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"xlvs/control/api"
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
