package control

import (
	"net/netip"
	"slices"
	"testing"

	"xlvs/conntrack"
	"xlvs/control/api"
	"xlvs/dataplane"
)

// realKeys lists the snapshot's real servers whose replies come to the dataplane, in
// address and port order.
func realKeys(d *Daemon) []dataplane.SvcKey {
	ks := d.dp.Snapshot().RealKeys()
	slices.SortFunc(ks, func(a, b dataplane.SvcKey) int {
		if c := slices.Compare(a.Addr[:], b.Addr[:]); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return ks
}

// TestDrainingReals: a NAT real server deleted (by -d, a service's -D, or a failing
// health check) while it has connections keeps its replies coming to the dataplane, as
// IPVS keeps translating the replies of a deleted server's connections
// (expire_nodest_conn=0); once they are gone a reap forgets it. One without connections
// is forgotten at the first reap.
func TestDrainingReals(t *testing.T) {
	d := newDaemon(t)
	s := svc("tcp", "198.18.1.100", 80)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.11", 8080, 1)})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.12", 8080, 1)})
	svcID, destID := d.r.services[0].id, d.r.services[0].dests[0].id
	rs1, rs2 := netip.MustParseAddr("198.18.2.11"), netip.MustParseAddr("198.18.2.12")
	key := func(a netip.Addr) dataplane.SvcKey {
		return dataplane.SvcKey{Addr: a.As16(), Port: 8080, Proto: 6}
	}
	client := netip.MustParseAddr("198.18.1.2").As16()
	e := conntrack.Entry{
		Orig:    conntrack.Key{Src: client, Dst: netip.MustParseAddr("198.18.1.100").As16(), SrcPort: 40000, DstPort: 80, Proto: 6},
		Reply:   conntrack.Key{Src: rs1.As16(), Dst: client, SrcPort: 8080, DstPort: 40000, Proto: 6},
		Dest:    destID,
		Service: svcID,
		Method:  conntrack.MethodNAT,
	}
	if err := d.dp.Conntrack().Insert(&e, conntrack.TCPSyn, d.dp.Now()); err != nil {
		t.Fatal(err)
	}
	mustOK(t, d, &api.Request{Op: api.OpDelDest, Service: s, Dest: dest("198.18.2.11", 8080, 1)})
	mustOK(t, d, &api.Request{Op: api.OpDelDest, Service: s, Dest: dest("198.18.2.12", 8080, 1)})
	if got, want := realKeys(d), []dataplane.SvcKey{key(rs1), key(rs2)}; !slices.Equal(got, want) {
		t.Fatalf("reals after the deletes %v, want both (draining)", got)
	}
	d.reapDraining() // rs2 has no connection: forgotten; rs1 keeps draining
	if got, want := realKeys(d), []dataplane.SvcKey{key(rs1)}; !slices.Equal(got, want) {
		t.Fatalf("reals after a reap %v, want only the server with a connection", got)
	}
	// Named again by another service: not draining, and not dropped by a reap.
	s2 := svc("tcp", "198.18.1.101", 80)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s2})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s2, Dest: dest("198.18.2.11", 8080, 1)})
	mustOK(t, d, &api.Request{Op: api.OpDelService, Service: s2})
	d.dp.Conntrack().RemoveDest(destID, d.dp.Now())
	d.reapDraining()
	if got := realKeys(d); len(got) != 0 || len(d.drainingReals) != 0 {
		t.Fatalf("reals %v (draining %v) after the connections ended", got, d.drainingReals)
	}
	// A new rule set (-C then restore) drains nothing of the old one.
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.12", 8080, 1)})
	mustOK(t, d, &api.Request{Op: api.OpRestore, Batch: []api.Request{{Op: api.OpClear}}})
	if got := realKeys(d); len(got) != 0 {
		t.Fatalf("reals %v after a restore of an empty rule set", got)
	}
}
