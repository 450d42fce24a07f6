package control

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"xlvs/control/api"
	"xlvs/control/ipvsadm"
	"xlvs/control/keepalived"
)

// TestKeepalivedSCTP: keepalived.conf's `protocol SCTP` makes an SCTP service (as
// keepalived makes an IPVS one), saved as ipvsadm saves it.
func TestKeepalivedSCTP(t *testing.T) {
	conf := `virtual_server 198.18.0.10 38412 {
    protocol SCTP
    lb_algo rr
    lb_kind NAT
    persistence_timeout 120
    real_server 198.18.1.1 38412 {
        weight 2
    }
    real_server 198.18.1.2 38412 {
    }
}
virtual_server 198.18.0.10 38412 {
    protocol TCP
    lb_kind DR
    real_server 198.18.1.1 38412 {
    }
}
`
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t)
	cfg, err := d.CheckKeepalived(path, keepalived.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings %v", cfg.Warnings)
	}
	var out strings.Builder
	if err := ipvsadm.Save(&out, mustOK(t, d, &api.Request{Op: api.OpList}).Services, true); err != nil {
		t.Fatal(err)
	}
	want := "-A -t 198.18.0.10:38412 -s wlc\n" +
		"-a -t 198.18.0.10:38412 -r 198.18.1.1:38412 -g -w 1\n" +
		"-A --sctp-service 198.18.0.10:38412 -s rr -p 120\n" +
		"-a --sctp-service 198.18.0.10:38412 -r 198.18.1.1:38412 -m -w 2\n" +
		"-a --sctp-service 198.18.0.10:38412 -r 198.18.1.2:38412 -m -w 1\n"
	if out.String() != want {
		t.Errorf("rules\n%s\nwant\n%s", out.String(), want)
	}
}

// TestSCTPServiceAPI: an SCTP service and real server through the API (what xlvsadm -A
// --sctp-service sends), edited and deleted by its key, apart from a TCP service of the
// same VIP:port.
func TestSCTPServiceAPI(t *testing.T) {
	d := newDaemon(t)
	key := api.ServiceKey{Protocol: api.ProtoSCTP, Addr: netip.MustParseAddr("198.18.0.20"), Port: 3868, Family: 4}
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: &api.Service{ServiceKey: key, Scheduler: "wrr"}})
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: &api.Service{ServiceKey: api.ServiceKey{Protocol: api.ProtoTCP, Addr: netip.MustParseAddr("198.18.0.20"), Port: 3868, Family: 4}, Scheduler: "rr"}})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: &api.Service{ServiceKey: key}, Dest: &api.Dest{Addr: netip.MustParseAddr("198.18.1.5"), Port: 3868, Method: api.MethodTunnel, Weight: 4}})
	svcs := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	if len(svcs) != 2 {
		t.Fatalf("%d services", len(svcs))
	}
	var s *api.Service
	for i := range svcs {
		if svcs[i].Protocol == api.ProtoSCTP {
			s = &svcs[i]
		}
	}
	if s == nil || s.Scheduler != "wrr" || len(s.Dests) != 1 || s.Dests[0].Method != api.MethodTunnel {
		t.Fatalf("SCTP service %+v", s)
	}
	mustOK(t, d, &api.Request{Op: api.OpDelService, Service: &api.Service{ServiceKey: key}})
	if svcs := mustOK(t, d, &api.Request{Op: api.OpList}).Services; len(svcs) != 1 || svcs[0].Protocol != api.ProtoTCP {
		t.Fatalf("after deleting the SCTP service: %+v", svcs)
	}
}
