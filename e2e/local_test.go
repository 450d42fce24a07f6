package e2e

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// TestDirectorReachesRealServers: the director's own connections to a NAT real server (a
// health check, an operator's curl) keep working while the server is behind a VIP: its
// answers to the director's address go to the kernel, not the dataplane.
func TestDirectorReachesRealServers(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	e.natService("-t", e.bed.VIP, httpPort, "rr")
	e.natService("-t", e.bed.VIP6, httpPort, "rr")
	tr := &http.Transport{DialContext: e.bed.Director.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for _, rs := range e.bed.Reals {
		for _, a := range []netip.Addr{rs.Addr, rs.Addr6} {
			resp, err := c.Get("http://" + netip.AddrPortFrom(a, httpPort).String() + "/")
			if err != nil {
				t.Fatalf("director → %v: %v", a, err)
			}
			resp.Body.Close()
		}
	}
	if n := e.dataplaneCounters()["xdp_local_reply"]; n == 0 {
		t.Fatal("no answer to the director counted as xdp_local_reply")
	}
	// And clients still get through the VIP.
	if _, err := e.get(httpURL(e.bed.VIP, httpPort, "/")); err != nil {
		t.Fatal(err)
	}
}
