package control

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"xlvs/control/api"
)

func weights(t *testing.T, d *Daemon) map[string]int32 {
	t.Helper()
	got := map[string]int32{}
	for _, s := range mustOK(t, d, &api.Request{Op: api.OpList}).Services {
		for _, ds := range s.Dests {
			got[fmt.Sprintf("%v:%d", ds.Addr, ds.Port)] = ds.Weight
		}
	}
	return got
}

func waitWeights(t *testing.T, d *Daemon, want map[string]int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && fmt.Sprint(weights(t, d)) != fmt.Sprint(want) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := weights(t, d); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("weights %v, want %v", got, want)
	}
}

// TestRuleChecks: --health-check on xlvsadm rules gives a failing server weight 0 in the
// listing and the dataplane, and its configured weight back when it passes; the saved
// rules keep the configured weight throughout.
func TestRuleChecks(t *testing.T) {
	up, upPort := listenLocal(t)
	defer up.Close()
	downPort := freePort(t)
	state := filepath.Join(t.TempDir(), "state.json")
	d := newDaemonOpts(t, Options{StatePath: state})
	s := svc("tcp", "198.18.1.100", 80)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("127.0.0.1", uint16(upPort), 3)})
	rc, err := d.StartRuleChecks("TCP_CHECK {\n connect_timeout 1\n retry 0\n delay_loop 1\n}")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// A server added after the start is checked too.
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("127.0.0.1", uint16(downPort), 2)})
	up1, dn := fmt.Sprintf("127.0.0.1:%d", upPort), fmt.Sprintf("127.0.0.1:%d", downPort)
	waitWeights(t, d, map[string]int32{up1: 3, dn: 0})
	for _, ds := range d.dp.Snapshot().Services[0].Dests {
		if fmt.Sprintf("%v:%d", addrOf(ds.Addr), ds.Port) == dn && ds.Weight != 0 {
			t.Fatalf("failed server scheduled with weight %d", ds.Weight)
		}
	}
	// The saved rules keep the configured weight.
	fresh := newDaemon(t)
	if _, err := fresh.RestoreState(state); err != nil {
		t.Fatal(err)
	}
	if w := weights(t, fresh)[dn]; w != 2 {
		t.Fatalf("saved weight of the failing server %d, want its configured 2", w)
	}
	// It starts answering: its weight comes back.
	ln, err := net.Listen("tcp", dn)
	if err != nil {
		t.Fatalf("listen on %s again (taken meanwhile?): %v", dn, err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	waitWeights(t, d, map[string]int32{up1: 3, dn: 2})
	if _, err := d.StartRuleChecks("BOGUS_CHECK {\n}"); err == nil {
		t.Fatal("a bad --health-check text was accepted")
	}
}

func addrOf(a [16]byte) string { return netip.AddrFrom16(a).Unmap().String() }
