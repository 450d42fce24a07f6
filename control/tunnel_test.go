package control

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"xlvs/control/api"
	"xlvs/dataplane/packet"
)

// TestTunnelDests: tunnelling real servers of every type ipvsadm has are accepted with the
// options ipvsadm's table allows, reach the dataplane's snapshot as the encapsulation
// they name (remcsum as csum: see encapOf), and an edit changes it; what ipvsadm's table
// refuses is refused with the reason, and nothing of it is published.
func TestTunnelDests(t *testing.T) {
	d := newDaemon(t)
	s := svc("tcp", "198.18.0.10", 80)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	tun := func(addr, typ string, port uint16, flags string) *api.Dest {
		x := dest(addr, 80, 1)
		x.Method, x.TunType, x.TunPort, x.TunFlags = api.MethodTunnel, typ, port, flags
		return x
	}
	for _, tc := range []struct {
		d    *api.Dest
		want packet.Encap
	}{
		{tun("198.18.1.1", "", 0, ""), packet.Encap{}},
		{tun("198.18.1.2", api.TunIPIP, 0, ""), packet.Encap{}},
		{tun("198.18.1.3", api.TunGUE, 6080, ""), packet.Encap{Type: packet.EncapGUE, Port: 6080}},
		{tun("198.18.1.4", api.TunGUE, 6080, api.TunNoCsum), packet.Encap{Type: packet.EncapGUE, Port: 6080}},
		{tun("198.18.1.5", api.TunGUE, 5555, api.TunCsum), packet.Encap{Type: packet.EncapGUE, Port: 5555, Csum: true}},
		{tun("198.18.1.6", api.TunGUE, 1, api.TunRemCsum), packet.Encap{Type: packet.EncapGUE, Port: 1, Csum: true}},
		{tun("198.18.1.7", api.TunGRE, 0, ""), packet.Encap{Type: packet.EncapGRE}},
		{tun("198.18.1.8", api.TunGRE, 0, api.TunCsum), packet.Encap{Type: packet.EncapGRE, Csum: true}},
		// The service's other family: for tunnelling only.
		{tun("2001:db8::9", "", 0, ""), packet.Encap{}},
		{tun("2001:db8::a", api.TunGUE, 6080, api.TunCsum), packet.Encap{Type: packet.EncapGUE, Port: 6080, Csum: true}},
	} {
		mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: tc.d})
		if got := snapEncap(t, d, tc.d.Addr.As16()); got != tc.want {
			t.Errorf("%s %q port %d %q: snapshot has %+v, want %+v", tc.d.Addr, tc.d.TunType, tc.d.TunPort, tc.d.TunFlags, got, tc.want)
		}
	}
	// ipvsadm -e: the real server's packets take the new encapsulation.
	mustOK(t, d, &api.Request{Op: api.OpEditDest, Service: s, Dest: tun("198.18.1.1", api.TunGRE, 0, api.TunCsum)})
	if got, want := snapEncap(t, d, tun("198.18.1.1", "", 0, "").Addr.As16()), (packet.Encap{Type: packet.EncapGRE, Csum: true}); got != want {
		t.Errorf("after the edit: %+v, want %+v", got, want)
	}

	before := d.dp.Snapshot()
	for _, tc := range []struct {
		d    *api.Dest
		want string
	}{
		{tun("198.18.2.1", api.TunGUE, 0, ""), "needs its UDP port"},
		{tun("198.18.2.2", api.TunGRE, 6080, ""), "gre tunnel takes no port"},
		{tun("198.18.2.3", api.TunGRE, 0, api.TunRemCsum), "not remcsum"},
		{tun("198.18.2.4", api.TunIPIP, 6080, ""), "ipip tunnel takes no port or checksum option"},
		{tun("198.18.2.5", api.TunIPIP, 0, api.TunCsum), "ipip tunnel takes no port or checksum option"},
		{tun("198.18.2.6", "vxlan", 0, ""), `tunnel type "vxlan": want ipip, gue or gre`},
		{tun("198.18.2.7", api.TunGUE, 6080, "crc"), `checksum option "crc"`},
		{func() *api.Dest { x := tun("198.18.2.8", api.TunGUE, 6080, ""); x.Method = api.MethodRoute; return x }(), "only tunnelling (-i) real servers have them"},
		{func() *api.Dest { x := tun("2001:db8::2:9", "", 0, ""); x.Method = api.MethodRoute; return x }(), "only a tunnelling (-i) real server may be"},
		{dest("2001:db8::2:a", 80, 1), "only a tunnelling (-i) real server may be"},
	} {
		wantErr(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: tc.d}, api.ErrCodeInvalid, tc.want)
	}
	if d.dp.Snapshot() != before {
		t.Error("a refused real server changed the published snapshot")
	}
}

// snapEncap is the published snapshot's encapsulation of the real server at addr.
func snapEncap(t *testing.T, d *Daemon, addr [16]byte) packet.Encap {
	t.Helper()
	for _, s := range d.dp.Snapshot().Services {
		for _, x := range s.Dests {
			if x.Addr == addr {
				return x.Tun
			}
		}
	}
	t.Fatalf("real server %v not in the snapshot", addr)
	return packet.Encap{}
}

// TestKeepalivedTunnelTypes: keepalived.conf's "TUN type gue port N csum" and "TUN type gre"
// (a real server's lvs_method, and a virtual server's lb_kind its real servers inherit)
// reach the snapshot with their port and checksum option.
func TestKeepalivedTunnelTypes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(`virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_kind TUN type gre csum
    real_server 198.18.1.1 80 {
    }
    real_server 198.18.1.2 80 {
        lvs_method TUN type gue port 6080 remcsum
    }
    real_server 198.18.1.3 80 {
        lvs_method TUN
    }
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t)
	k, err := d.StartKeepalived(path)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for addr, want := range map[string]packet.Encap{
		"198.18.1.1": {Type: packet.EncapGRE, Csum: true},
		"198.18.1.2": {Type: packet.EncapGUE, Port: 6080, Csum: true},
		"198.18.1.3": {},
	} {
		if got := snapEncap(t, d, netip.MustParseAddr(addr).As16()); got != want {
			t.Errorf("%s: %+v, want %+v", addr, got, want)
		}
	}
}
