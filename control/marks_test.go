package control

import (
	"io"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"xlvs/control/api"
	"xlvs/dataplane"
)

func fwmSvc(mark uint32, family int) *api.Service {
	return &api.Service{ServiceKey: api.ServiceKey{Protocol: api.ProtoFWMark, FWMark: mark, Family: family}, Scheduler: "rr"}
}

func markReq(op, proto, prefix string, mark uint32, ports ...api.PortRange) *api.Request {
	return &api.Request{Op: op, Mark: &api.MarkRule{Protocol: proto, Prefix: netip.MustParsePrefix(prefix), Ports: ports, Mark: mark}}
}

// TestFWMarkServices: fwmark services with every scheduler and method, persistence, -o;
// mark rules added (canonical form), listed in order, refused twice, deleted, cleared by
// -C, saved and restored by the state file, and compiled into the published snapshot.
func TestFWMarkServices(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	d := newDaemonOpts(t, Options{StatePath: path, MaxServices: 32, MaxDests: 32})
	for i, sch := range []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"} {
		s := fwmSvc(uint32(10+i), 4)
		s.Scheduler = sch
		mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	}
	p := fwmSvc(1, 4)
	p.Persistent, p.Netmask = true, "255.255.255.0"
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: p})
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: fwmSvc(1, 6)}) // same mark, IPv6: another service
	for _, m := range []string{api.MethodMasq, api.MethodRoute, api.MethodTunnel, api.MethodFullNAT} {
		dst := dest("198.18.1."+map[string]string{api.MethodMasq: "1", api.MethodRoute: "2", api.MethodTunnel: "3", api.MethodFullNAT: "4"}[m], 0, 1)
		dst.Method = m
		mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: fwmSvc(1, 4), Dest: dst})
	}
	if r := do(t, d, &api.Request{Op: api.OpAddDest, Service: fwmSvc(1, 4), Dest: dest("2001:db8::1", 0, 1)}); r.Error == nil {
		t.Fatal("an IPv6 real server in an IPv4 fwmark service was accepted")
	}
	if r := do(t, d, &api.Request{Op: api.OpAddService, Service: fwmSvc(0, 4)}); r.Error == nil || !strings.Contains(r.Error.Message, "fwmark 0") {
		t.Fatalf("mark 0: %+v", r.Error)
	}
	o := fwmSvc(2, 4)
	o.OnePacket = true
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: o})
	fn := dest("198.18.1.9", 0, 1)
	fn.Method = api.MethodFullNAT
	if r := do(t, d, &api.Request{Op: api.OpAddDest, Service: o, Dest: fn}); r.Error == nil || !strings.Contains(r.Error.Message, "one-packet") {
		t.Fatalf("FULLNAT in an -o service: %+v", r.Error)
	}
	p2 := *p
	p2.OnePacket = true
	if r := do(t, d, &api.Request{Op: api.OpEditService, Service: &p2}); r.Error == nil {
		t.Fatal("-o on a service with a FULLNAT real server was accepted")
	}
	tcp := svc("tcp", "192.0.2.1", 80)
	tcp.OnePacket = true
	if r := do(t, d, &api.Request{Op: api.OpAddService, Service: tcp}); r.Error == nil || !strings.Contains(r.Error.Message, "only for UDP") {
		t.Fatalf("-o on TCP: %+v", r.Error)
	}
	u := svc("udp", "192.0.2.1", 53)
	u.OnePacket = true
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: u})

	mustOK(t, d, markReq(api.OpAddMark, "tcp", "192.0.2.10/24", 1, api.PortRange{Lo: 443, Hi: 443}, api.PortRange{Lo: 80, Hi: 80}, api.PortRange{Lo: 81, Hi: 85}))
	mustOK(t, d, markReq(api.OpAddMark, "udp", "2001:db8::/64", 1, api.PortRange{Lo: 0, Hi: 65535}))
	if r := do(t, d, markReq(api.OpAddMark, "tcp", "192.0.2.0/24", 1, api.PortRange{Lo: 80, Hi: 85}, api.PortRange{Lo: 443, Hi: 443})); r.Error == nil || r.Error.Code != api.ErrCodeMarkExists {
		t.Fatalf("the same rule twice: %+v", r.Error)
	}
	for _, bad := range []*api.Request{
		markReq(api.OpAddMark, "icmp", "192.0.2.0/24", 1),
		markReq(api.OpAddMark, "tcp", "192.0.2.0/24", 0),
		markReq(api.OpAddMark, "tcp", "::ffff:192.0.2.0/120", 1),
		markReq(api.OpAddMark, "tcp", "192.0.2.0/24", 1, api.PortRange{Lo: 9, Hi: 8}),
		{Op: api.OpAddMark},
	} {
		if r := do(t, d, bad); r.Error == nil || r.Error.Code != api.ErrCodeInvalid {
			t.Errorf("%+v: %+v", bad.Mark, r.Error)
		}
	}
	got := mustOK(t, d, &api.Request{Op: api.OpListMarks}).Marks
	want := []api.MarkRule{
		{Protocol: "tcp", Prefix: netip.MustParsePrefix("192.0.2.0/24"), Ports: []api.PortRange{{Lo: 80, Hi: 85}, {Lo: 443, Hi: 443}}, Mark: 1},
		{Protocol: "udp", Prefix: netip.MustParsePrefix("2001:db8::/64"), Mark: 1},
	}
	if len(got) != 2 || !sameMark(&got[0], &want[0]) || !sameMark(&got[1], &want[1]) {
		t.Fatalf("marks %+v\nwant %+v", got, want)
	}
	// The snapshot has them, for the services of mark 1.
	if snap := d.dp.Snapshot(); len(snap.Marks) != 2 {
		t.Fatalf("snapshot has %d mark rules", len(snap.Marks))
	}
	if pre, ports := d.dp.Snapshot().MarkEntries(); len(pre) != 2 || len(ports) != 3 {
		t.Fatalf("XDP entries: %d prefixes, %d port ranges; want 2 and 3", len(pre), len(ports))
	}
	// Listing: the fwmark services as ipvsadm keys them.
	svcs := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	n := 0
	for _, s := range svcs {
		if s.Protocol == api.ProtoFWMark && s.FWMark == 1 {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d services of mark 1 listed, want 2 (IPv4, IPv6)", n)
	}
	// State: a new daemon restores services and rules.
	d2 := newDaemonOpts(t, Options{MaxServices: 32, MaxDests: 32})
	if ok, err := d2.RestoreState(path); err != nil || !ok {
		t.Fatalf("restore: %v %v", ok, err)
	}
	if got := mustOK(t, d2, &api.Request{Op: api.OpListMarks}).Marks; len(got) != 2 || !sameMark(&got[0], &want[0]) {
		t.Fatalf("restored marks %+v", got)
	}
	// RestoreMarks (keepalived.conf mode) adds only the missing ones.
	d3 := newDaemonOpts(t, Options{})
	mustOK(t, d3, markReq(api.OpAddMark, "tcp", "192.0.2.0/24", 1, api.PortRange{Lo: 80, Hi: 85}, api.PortRange{Lo: 443, Hi: 443}))
	if n, err := d3.RestoreMarks(path); err != nil || n != 1 {
		t.Fatalf("RestoreMarks: %d %v", n, err)
	}
	mustOK(t, d, markReq(api.OpDelMark, "tcp", "192.0.2.0/24", 1, api.PortRange{Lo: 443, Hi: 443}, api.PortRange{Lo: 80, Hi: 85}))
	if r := do(t, d, markReq(api.OpDelMark, "tcp", "192.0.2.0/24", 1)); r.Error == nil || r.Error.Code != api.ErrCodeNoMark {
		t.Fatalf("delete of a missing rule: %+v", r.Error)
	}
	// SCTP rules (--sctp-service) are taken, and reach the snapshot as protocol 132.
	mustOK(t, d, markReq(api.OpAddMark, "sctp", "192.0.2.0/24", 1, api.PortRange{Lo: 3868, Hi: 3868}))
	if m := d.dp.Snapshot().Marks; len(m) != 2 || m[1].Proto != 132 || m[1].Mark != 1 || len(m[1].Ports) != 1 || m[1].Ports[0] != (dataplane.PortRange{Lo: 3868, Hi: 3868}) {
		t.Fatalf("snapshot mark rules after an SCTP rule: %+v", m)
	}
	mustOK(t, d, &api.Request{Op: api.OpClear})
	if got := mustOK(t, d, &api.Request{Op: api.OpListMarks}).Marks; len(got) != 0 {
		t.Fatalf("-C left %+v", got)
	}
}

// TestMarksMetrics: two fwmark services have distinct label sets (a scrape with the same
// labels twice would fail), the mark in the address label.
func TestMarksMetrics(t *testing.T) {
	d := newDaemon(t)
	for _, m := range []uint32{1, 2} {
		mustOK(t, d, &api.Request{Op: api.OpAddService, Service: fwmSvc(m, 4)})
	}
	srv := httptest.NewServer(d.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `address="fwmark 1 ipv4"`) || !strings.Contains(string(b), `address="fwmark 2 ipv4"`) {
		t.Fatalf("status %d:\n%s", resp.StatusCode, b)
	}
}
