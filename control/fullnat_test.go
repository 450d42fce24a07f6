package control

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"xlvs/conntrack"
	"xlvs/control/api"
	"xlvs/dataplane"
)

func laddrReq(op string, s *api.Service, addr string) *api.Request {
	return &api.Request{Op: op, Service: &api.Service{ServiceKey: s.ServiceKey}, LocalAddr: &api.LocalAddr{Addr: netip.MustParseAddr(addr)}}
}

func fullnatDest(addr string, port uint16) *api.Dest {
	return &api.Dest{Addr: netip.MustParseAddr(addr), Port: port, Method: api.MethodFullNAT, Weight: 1}
}

// snapLaddrs returns the published snapshot's local addresses of the service keyed k, and
// its draining addresses.
func snapLaddrs(t *testing.T, d *Daemon, k api.ServiceKey) (laddrs, draining []netip.Addr) {
	t.Helper()
	snap := d.dp.Snapshot()
	for _, s := range snap.Services {
		if netip.AddrFrom16(s.Key.Addr).Unmap() == k.Addr && s.Key.Port == k.Port && s.Key.Proto == protoNum(k.Protocol) {
			for _, l := range s.Laddrs {
				laddrs = append(laddrs, netip.AddrFrom16(l.Addr).Unmap())
			}
		}
	}
	for _, a := range snap.Draining {
		draining = append(draining, netip.AddrFrom16(a).Unmap())
	}
	return laddrs, draining
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// TestLocalAddrLifecycle: FULLNAT destinations are accepted before any local address
// exists; local addresses are added (family-checked, once each), listed, deleted (they
// drain), and reach the dataplane's snapshot.
func TestLocalAddrLifecycle(t *testing.T) {
	d := newDaemon(t)
	s4 := svc("tcp", "198.18.1.100", 80)
	s6 := svc("udp", "fd00:1::100", 53)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s4})
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s6})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s4, Dest: fullnatDest("198.18.2.11", 8080)})
	if got := mustOK(t, d, &api.Request{Op: api.OpList}).Services[0].Dests[0].Method; got != api.MethodFullNAT {
		t.Fatalf("destination method %q", got)
	}
	if snap := d.dp.Snapshot(); len(snap.RealKeys()) != 1 {
		t.Fatalf("FULLNAT real server not in the snapshot's reply keys: %v", snap.RealKeys())
	}
	if la := mustOK(t, d, &api.Request{Op: api.OpGetLocalAddrs}).LocalAddrs; len(la) != 0 {
		t.Fatalf("local addresses before any was added: %+v", la)
	}

	mustOK(t, d, laddrReq(api.OpAddLocalAddr, s4, "198.18.2.50"))
	mustOK(t, d, laddrReq(api.OpAddLocalAddr, s4, "::ffff:198.18.2.51")) // IPv4-mapped is IPv4
	mustOK(t, d, laddrReq(api.OpAddLocalAddr, s6, "fd00:2::50"))
	for _, tc := range []struct {
		name string
		req  *api.Request
		code string
		text string
	}{
		{"duplicate", laddrReq(api.OpAddLocalAddr, s4, "198.18.2.50"), api.ErrCodeLaddrExists, "already exists"},
		{"unknown service", laddrReq(api.OpAddLocalAddr, svc("tcp", "198.18.1.100", 81), "198.18.2.52"), api.ErrCodeNoService, "not defined"},
		{"ipv6 on ipv4", laddrReq(api.OpAddLocalAddr, s4, "fd00:2::51"), api.ErrCodeInvalid, "different address families"},
		{"ipv4 on ipv6", laddrReq(api.OpAddLocalAddr, s6, "198.18.2.52"), api.ErrCodeInvalid, "different address families"},
		{"unspecified", laddrReq(api.OpAddLocalAddr, s4, "0.0.0.0"), api.ErrCodeInvalid, "unicast"},
		{"multicast", laddrReq(api.OpAddLocalAddr, s6, "ff02::1"), api.ErrCodeInvalid, "unicast"},
		{"no address", &api.Request{Op: api.OpAddLocalAddr, Service: s4}, api.ErrCodeInvalid, "no local address given"},
		{"no service", &api.Request{Op: api.OpAddLocalAddr, LocalAddr: &api.LocalAddr{Addr: netip.MustParseAddr("198.18.2.50")}}, api.ErrCodeInvalid, "no service given"},
		{"delete unknown", laddrReq(api.OpDelLocalAddr, s4, "198.18.2.99"), api.ErrCodeNoLocalAddr, "no local address"},
		{"delete from unknown service", laddrReq(api.OpDelLocalAddr, svc("udp", "198.18.1.100", 80), "198.18.2.50"), api.ErrCodeNoService, "not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, d, tc.req, tc.code, tc.text) })
	}

	got := mustOK(t, d, &api.Request{Op: api.OpGetLocalAddrs}).LocalAddrs
	want := []api.LocalAddr{
		{Service: s4.ServiceKey, Addr: netip.MustParseAddr("198.18.2.50")},
		{Service: s4.ServiceKey, Addr: netip.MustParseAddr("198.18.2.51")},
		{Service: s6.ServiceKey, Addr: netip.MustParseAddr("fd00:2::50")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("get-laddrs\n got %+v\nwant %+v", got, want)
	}
	if one := mustOK(t, d, &api.Request{Op: api.OpGetLocalAddrs, Service: s6}).LocalAddrs; !reflect.DeepEqual(one, want[2:]) {
		t.Fatalf("get-laddrs of one service: %+v", one)
	}
	wantErr(t, d, &api.Request{Op: api.OpGetLocalAddrs, Service: svc("tcp", "198.18.1.1", 1)}, api.ErrCodeNoService, "not defined")
	if l, _ := snapLaddrs(t, d, s4.ServiceKey); !slices.Equal(l, addrs("198.18.2.50", "198.18.2.51")) {
		t.Fatalf("snapshot's local addresses %v", l)
	}

	// Delete: gone from the service, draining; added again: not draining.
	mustOK(t, d, laddrReq(api.OpDelLocalAddr, s4, "198.18.2.50"))
	if l, dr := snapLaddrs(t, d, s4.ServiceKey); !slices.Equal(l, addrs("198.18.2.51")) || !slices.Equal(dr, addrs("198.18.2.50")) {
		t.Fatalf("after delete: local addresses %v, draining %v", l, dr)
	}
	mustOK(t, d, laddrReq(api.OpAddLocalAddr, s4, "198.18.2.50"))
	if l, dr := snapLaddrs(t, d, s4.ServiceKey); !slices.Equal(l, addrs("198.18.2.51", "198.18.2.50")) || len(dr) != 0 {
		t.Fatalf("after adding back: local addresses %v, draining %v", l, dr)
	}

	// An edit keeps them; deleting the service frees their IDs.
	e := *s4
	e.Scheduler = "wlc"
	mustOK(t, d, &api.Request{Op: api.OpEditService, Service: &e})
	if l, _ := snapLaddrs(t, d, s4.ServiceKey); len(l) != 2 {
		t.Fatalf("an edit lost the local addresses: %v", l)
	}
	used := func() int {
		n := 0
		for _, u := range d.laddrIDs.used {
			if u {
				n++
			}
		}
		return n
	}
	if n := used(); n != 3 {
		t.Fatalf("%d local address IDs in use, want 3", n)
	}
	mustOK(t, d, &api.Request{Op: api.OpDelService, Service: s4})
	if n := used(); n != 1 {
		t.Fatalf("%d local address IDs in use after deleting the service, want 1", n)
	}
}

// insertFullNAT puts a FULLNAT connection of service svcID from client into the
// connection table, using local address laddr and a port of the client's shard that is
// not in taken (ports already handed out: the shard seed is random per table, so two client
// ports may share a shard and would otherwise get the same reply key). The port is added to
// taken.
func insertFullNAT(t *testing.T, dp *dataplane.Dataplane, svcID, destID uint32, client, vip, rs, laddr netip.Addr, cport uint16, taken map[uint16]bool) {
	t.Helper()
	ct := dp.Conntrack()
	lport := uint16(1024)
	for taken[lport] || ct.ShardOf(laddr.As16(), lport) != ct.ShardOf(client.As16(), cport) {
		lport++
	}
	taken[lport] = true
	e := conntrack.Entry{
		Orig:    conntrack.Key{Src: client.As16(), Dst: vip.As16(), SrcPort: cport, DstPort: 80, Proto: 6},
		Reply:   conntrack.Key{Src: rs.As16(), Dst: laddr.As16(), SrcPort: 8080, DstPort: lport, Proto: 6},
		Dest:    destID,
		Service: svcID,
		Method:  conntrack.MethodFullNAT,
	}
	if err := ct.Insert(&e, conntrack.TCPSyn, dp.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestLocalAddrConnsAndDraining: get-laddrs counts the connections using each local
// address; a deleted local address with connections keeps draining until they are gone.
func TestLocalAddrConnsAndDraining(t *testing.T) {
	d := newDaemon(t)
	s := svc("tcp", "198.18.1.100", 80)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: fullnatDest("198.18.2.11", 8080)})
	mustOK(t, d, laddrReq(api.OpAddLocalAddr, s, "198.18.2.50"))
	mustOK(t, d, laddrReq(api.OpAddLocalAddr, s, "198.18.2.51"))
	svcID, destID := d.r.services[0].id, d.r.services[0].dests[0].id
	vip, rs := netip.MustParseAddr("198.18.1.100"), netip.MustParseAddr("198.18.2.11")
	lip := netip.MustParseAddr("198.18.2.50")
	taken := make(map[uint16]bool)
	for p := uint16(40000); p < 40003; p++ {
		insertFullNAT(t, d.dp, svcID, destID, netip.MustParseAddr("198.18.1.2"), vip, rs, lip, p, taken)
	}
	insertFullNAT(t, d.dp, svcID+1, destID, netip.MustParseAddr("198.18.1.2"), vip, rs, lip, 40009, taken) // another service's
	la := mustOK(t, d, &api.Request{Op: api.OpGetLocalAddrs}).LocalAddrs
	if len(la) != 2 || la[0].Conns != 3 || la[1].Conns != 0 {
		t.Fatalf("get-laddrs %+v: want 3 connections on %v, none on the other", la, lip)
	}

	mustOK(t, d, laddrReq(api.OpDelLocalAddr, s, "198.18.2.50"))
	mustOK(t, d, laddrReq(api.OpDelLocalAddr, s, "198.18.2.51"))
	if _, dr := snapLaddrs(t, d, s.ServiceKey); len(dr) != 2 {
		t.Fatalf("draining %v, want both deleted addresses", dr)
	}
	d.reapDraining() // .51 has no connection: forgotten; .50 keeps draining
	if _, dr := snapLaddrs(t, d, s.ServiceKey); !slices.Equal(dr, addrs("198.18.2.50")) {
		t.Fatalf("draining %v after a reap, want only the address with connections", dr)
	}
	d.dp.Conntrack().RemoveDest(destID, d.dp.Now())
	d.reapDraining()
	if _, dr := snapLaddrs(t, d, s.ServiceKey); len(dr) != 0 || len(d.draining) != 0 {
		t.Fatalf("draining %v after the connections ended", dr)
	}
}

// TestLocalAddrState: local addresses survive a restart through the state file, in
// order, with their interface names; a restore that fails changes nothing.
func TestLocalAddrState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	d := newDaemonOpts(t, Options{StatePath: path})
	s4 := svc("tcp", "198.18.1.100", 80)
	s6 := svc("udp", "fd00:1::100", 53)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s4})
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s6})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s6, Dest: fullnatDest("fd00:2::11", 53)})
	for _, a := range []string{"198.18.2.52", "198.18.2.50", "198.18.2.51"} {
		mustOK(t, d, laddrReq(api.OpAddLocalAddr, s4, a))
	}
	r := laddrReq(api.OpAddLocalAddr, s6, "fd00:2::50")
	r.LocalAddr.Ifname = "int0"
	mustOK(t, d, r)
	want := mustOK(t, d, &api.Request{Op: api.OpGetLocalAddrs}).LocalAddrs

	fresh := newDaemon(t)
	if ok, err := fresh.RestoreState(path); !ok || err != nil {
		t.Fatalf("restore: %v %v", ok, err)
	}
	got := mustOK(t, fresh, &api.Request{Op: api.OpGetLocalAddrs}).LocalAddrs
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored local addresses\n got %+v\nwant %+v", got, want)
	}
	if got[3].Ifname != "int0" {
		t.Fatalf("interface name not kept: %+v", got[3])
	}
	if l, _ := snapLaddrs(t, fresh, s6.ServiceKey); !slices.Equal(l, addrs("fd00:2::50")) {
		t.Fatalf("restored snapshot's local addresses %v", l)
	}

	// A batch whose last line fails leaves the rules and the IDs as they were.
	batch := &api.Request{Op: api.OpRestore, Batch: []api.Request{
		*laddrReq(api.OpAddLocalAddr, s4, "198.18.2.60"),
		*laddrReq(api.OpAddLocalAddr, s4, "fd00::1"),
	}}
	batch.Batch[0].Line, batch.Batch[1].Line = 1, 2
	if r := do(t, fresh, batch); r.Error == nil || r.Error.Line != 2 {
		t.Fatalf("bad batch: %+v", r.Error)
	}
	if got := mustOK(t, fresh, &api.Request{Op: api.OpGetLocalAddrs}).LocalAddrs; len(got) != 4 {
		t.Fatalf("a failed batch changed the local addresses: %+v", got)
	}
	n := 0
	for _, u := range fresh.laddrIDs.used {
		if u {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("%d local address IDs in use after a failed batch, want 4", n)
	}
}

// TestLocalAddrLimit: the XDP program holds a bounded number of distinct local
// addresses: the first one over the bound is refused, naming it (a restore batch: the
// 256 before it are accepted, then nothing changes).
func TestLocalAddrLimit(t *testing.T) {
	d := newDaemon(t)
	s := svc("tcp", "198.18.1.100", 80)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	batch := &api.Request{Op: api.OpRestore}
	for i := 0; i <= dataplane.MaxLaddrAddrs; i++ {
		r := laddrReq(api.OpAddLocalAddr, s, netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}).String())
		r.Line = i + 1
		batch.Batch = append(batch.Batch, *r)
	}
	r := do(t, d, batch)
	if r.Error == nil || r.Error.Code != api.ErrCodeInvalid || r.Error.Line != dataplane.MaxLaddrAddrs+1 {
		t.Fatalf("%d distinct local addresses: %+v, want the last refused", dataplane.MaxLaddrAddrs+1, r.Error)
	}
	if la := mustOK(t, d, &api.Request{Op: api.OpGetLocalAddrs}).LocalAddrs; len(la) != 0 {
		t.Fatalf("a refused batch left %d local addresses", len(la))
	}
}
