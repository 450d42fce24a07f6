package control

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"xlvs/conntrack"
	"xlvs/control/api"
	"xlvs/dataplane"
	"xlvs/dataplane/xsk"
)

func newDaemon(t *testing.T) *Daemon { return newDaemonOpts(t, Options{}) }

func newDaemonOpts(t *testing.T, o Options) *Daemon {
	t.Helper()
	cfg := xsk.Config{Frames: 64, FrameSize: 2048, FillRing: 16, CompRing: 16, RxRing: 16, TxRing: 16}
	f, err := xsk.NewFake(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := dataplane.NewWithPorts(dataplane.Config{Socket: cfg, Batch: 8, Conntrack: conntrack.Config{MaxEntries: 4096}},
		[]dataplane.Port{{Name: "eth0", Ifindex: 1, Sockets: []xsk.Socket{f}}})
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxServices == 0 {
		o.MaxServices, o.MaxDests = 8, 16
	}
	o.ConnTable = 4096
	return New(dp, o)
}

func svc(proto, addr string, port uint16) *api.Service {
	return &api.Service{ServiceKey: api.ServiceKey{Protocol: proto, Addr: netip.MustParseAddr(addr), Port: port}, Scheduler: "rr"}
}

func dest(addr string, port uint16, w int32) *api.Dest {
	return &api.Dest{Addr: netip.MustParseAddr(addr), Port: port, Method: api.MethodMasq, Weight: w}
}

func do(t *testing.T, d *Daemon, req *api.Request) *api.Response {
	t.Helper()
	return d.Handle(context.Background(), req)
}

func mustOK(t *testing.T, d *Daemon, req *api.Request) *api.Response {
	t.Helper()
	r := do(t, d, req)
	if r.Error != nil {
		t.Fatalf("%s: %v", req.Op, r.Error.Message)
	}
	return r
}

func wantErr(t *testing.T, d *Daemon, req *api.Request, code, text string) {
	t.Helper()
	r := do(t, d, req)
	if r.Error == nil || r.Error.Code != code || !strings.Contains(r.Error.Message, text) {
		t.Fatalf("%s: got %+v, want code %s containing %q", req.Op, r.Error, code, text)
	}
}

func TestServiceAndDestLifecycle(t *testing.T) {
	d := newDaemon(t)
	s := svc("tcp", "198.18.1.100", 80)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	wantErr(t, d, &api.Request{Op: api.OpAddService, Service: s}, api.ErrCodeServiceExists, "already exists")
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.11", 80, 3)})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.12", 0, 1)})
	wantErr(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.12", 80, 1)}, api.ErrCodeDestExists, "already exists")

	list := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	if len(list) != 1 || len(list[0].Dests) != 2 {
		t.Fatalf("list %+v", list)
	}
	// The kernel's order: the newest destination first; a dest without a port takes the
	// service's.
	if list[0].Dests[0].Addr != netip.MustParseAddr("198.18.2.12") || list[0].Dests[0].Port != 80 {
		t.Fatalf("first dest %+v, want the newest (198.18.2.12:80)", list[0].Dests[0])
	}
	mustOK(t, d, &api.Request{Op: api.OpEditDest, Service: s, Dest: dest("198.18.2.11", 80, 0)})
	list = mustOK(t, d, &api.Request{Op: api.OpList}).Services
	if list[0].Dests[1].Weight != 0 {
		t.Fatalf("edited weight %d, want 0", list[0].Dests[1].Weight)
	}
	wantErr(t, d, &api.Request{Op: api.OpEditDest, Service: s, Dest: dest("198.18.2.99", 80, 1)}, api.ErrCodeNoDest, "no real server")
	mustOK(t, d, &api.Request{Op: api.OpDelDest, Service: s, Dest: dest("198.18.2.11", 80, 0)})
	wantErr(t, d, &api.Request{Op: api.OpDelDest, Service: s, Dest: dest("198.18.2.11", 80, 0)}, api.ErrCodeNoDest, "no real server")

	edit := *s
	edit.Scheduler = "wrr"
	mustOK(t, d, &api.Request{Op: api.OpEditService, Service: &edit})
	if got := mustOK(t, d, &api.Request{Op: api.OpList}).Services[0].Scheduler; got != "wrr" {
		t.Fatalf("scheduler %s after edit", got)
	}
	if snap := d.dp.Snapshot(); len(snap.Services) != 1 || snap.Services[0].Sched.Name() != "wrr" || len(snap.Services[0].Dests) != 1 {
		t.Fatalf("published snapshot does not match the rules: %+v", snap.Services)
	}
	mustOK(t, d, &api.Request{Op: api.OpDelService, Service: s})
	wantErr(t, d, &api.Request{Op: api.OpDelService, Service: s}, api.ErrCodeNoService, "not defined")
	wantErr(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.11", 80, 1)}, api.ErrCodeNoService, "not defined")
	if n := len(mustOK(t, d, &api.Request{Op: api.OpList}).Services); n != 0 {
		t.Fatalf("%d services after delete", n)
	}
}

func TestValidation(t *testing.T) {
	d := newDaemon(t)
	bad := svc("tcp", "198.18.1.100", 80)
	bad.Scheduler = "bogus"
	wantErr(t, d, &api.Request{Op: api.OpAddService, Service: bad}, api.ErrCodeInvalid, "valid schedulers are")
	fw := &api.Service{ServiceKey: api.ServiceKey{Protocol: api.ProtoFWMark, FWMark: 1}}
	wantErr(t, d, &api.Request{Op: api.OpAddService, Service: fw}, api.ErrCodeNotImplemented, "firewall-mark")
	s := svc("udp", "198.18.1.100", 53)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	bogus := dest("198.18.2.11", 53, 1)
	bogus.Method = "carrier-pigeon"
	wantErr(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: bogus}, api.ErrCodeInvalid, "forwarding method")
	wantErr(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("fd00::1", 53, 1)}, api.ErrCodeInvalid, "address families")
	wantErr(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.11", 53, 70000)}, api.ErrCodeInvalid, "weight")
	wantErr(t, d, &api.Request{Op: "nonsense"}, api.ErrCodeInvalid, "unknown operation")
}

// TestRestoreAtomic: a batch with a bad line changes nothing and names the line.
func TestRestoreAtomic(t *testing.T) {
	d := newDaemon(t)
	s := svc("tcp", "198.18.1.100", 80)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	before := d.dp.Snapshot()
	batch := []api.Request{
		{Op: api.OpAddService, Service: svc("tcp", "198.18.1.101", 80), Line: 1},
		{Op: api.OpAddDest, Service: svc("tcp", "198.18.1.101", 80), Dest: dest("198.18.2.11", 80, 1), Line: 2},
		{Op: api.OpAddService, Service: s, Line: 3}, // exists
	}
	r := do(t, d, &api.Request{Op: api.OpRestore, Batch: batch})
	if r.Error == nil || r.Error.Line != 3 || !strings.Contains(r.Error.Message, "line 3") {
		t.Fatalf("restore error %+v, want line 3", r.Error)
	}
	if n := len(mustOK(t, d, &api.Request{Op: api.OpList}).Services); n != 1 {
		t.Fatalf("%d services after a failed restore, want 1", n)
	}
	if d.dp.Snapshot() != before {
		t.Fatal("a failed restore published a snapshot")
	}
	// The IDs the failed batch took are free again: 8 services fit.
	for i := 0; i < 7; i++ {
		mustOK(t, d, &api.Request{Op: api.OpAddService, Service: svc("tcp", "198.18.1.1", uint16(1000+i))})
	}
	wantErr(t, d, &api.Request{Op: api.OpAddService, Service: svc("tcp", "198.18.1.1", 2000)}, api.ErrCodeInvalid, "too many services")
	// A good batch applies whole.
	mustOK(t, d, &api.Request{Op: api.OpClear})
	batch = batch[:2]
	mustOK(t, d, &api.Request{Op: api.OpRestore, Batch: batch})
	list := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	if len(list) != 1 || len(list[0].Dests) != 1 {
		t.Fatalf("after restore: %+v", list)
	}
}

func TestTimeouts(t *testing.T) {
	d := newDaemon(t)
	got := mustOK(t, d, &api.Request{Op: api.OpGetTimeouts}).Timeouts
	if *got != (api.Timeouts{TCP: 900, TCPFin: 120, UDP: 300}) {
		t.Fatalf("default timeouts %+v", got)
	}
	mustOK(t, d, &api.Request{Op: api.OpSetTimeouts, Timeouts: &api.Timeouts{TCP: 600, UDP: 30}})
	got = mustOK(t, d, &api.Request{Op: api.OpGetTimeouts}).Timeouts
	if *got != (api.Timeouts{TCP: 600, TCPFin: 120, UDP: 30}) {
		t.Fatalf("timeouts %+v after set (0 keeps a value)", got)
	}
	if ct := d.dp.Conntrack().Timeouts(); ct.Established != 600 || ct.UDP != 30 || ct.FinWait != 120 {
		t.Fatalf("connection table timeouts %+v", ct)
	}
}

func TestSyncDaemonNotImplemented(t *testing.T) {
	d := newDaemon(t)
	wantErr(t, d, &api.Request{Op: api.OpStartDaemon, Daemon: &api.SyncDaemon{State: "master"}}, api.ErrCodeNotImplemented, "sync daemon")
}

// TestConcurrentClients: many clients changing and listing at once (run with -race); the
// final state is exactly what they did.
func TestConcurrentClients(t *testing.T) {
	d := newDaemonOpts(t, Options{MaxServices: 64, MaxDests: 256})
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func(g int) {
			s := svc("tcp", "198.18.1.100", uint16(1000+g))
			for i := 0; i < 20; i++ {
				if r := d.Handle(context.Background(), &api.Request{Op: api.OpAddService, Service: s}); r.Error != nil {
					done <- fmt.Errorf("add: %v", r.Error)
					return
				}
				if r := d.Handle(context.Background(), &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.11", 80, 1)}); r.Error != nil {
					done <- fmt.Errorf("add dest: %v", r.Error)
					return
				}
				d.Handle(context.Background(), &api.Request{Op: api.OpList})
				d.Handle(context.Background(), &api.Request{Op: api.OpListConns})
				if i < 19 {
					if r := d.Handle(context.Background(), &api.Request{Op: api.OpDelService, Service: s}); r.Error != nil {
						done <- fmt.Errorf("del: %v", r.Error)
						return
					}
				}
			}
			done <- nil
		}(g)
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	list := mustOK(t, d, &api.Request{Op: api.OpList}).Services
	if len(list) != 8 || len(d.dp.Snapshot().Services) != 8 {
		t.Fatalf("%d services listed, %d published; want 8", len(list), len(d.dp.Snapshot().Services))
	}
}

// TestExpireNodestConn: deleting a real server expires its connections only when
// expire_nodest_conn is on (IPVS's default keeps them until they time out).
func TestExpireNodestConn(t *testing.T) {
	for _, expire := range []bool{false, true} {
		d := newDaemonOpts(t, Options{ExpireNodestConn: expire})
		s := svc("udp", "198.18.1.100", 53)
		mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
		mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.11", 53, 1)})
		id := d.r.services[0].dests[0].id
		ct := d.dp.Conntrack()
		client := netip.MustParseAddr("198.18.1.2").As16()
		e := conntrack.Entry{
			Orig:  conntrack.Key{Src: client, Dst: netip.MustParseAddr("198.18.1.100").As16(), SrcPort: 4000, DstPort: 53, Proto: 17},
			Reply: conntrack.Key{Src: netip.MustParseAddr("198.18.2.11").As16(), Dst: client, SrcPort: 53, DstPort: 4000, Proto: 17},
			Dest:  id, Method: conntrack.MethodNAT,
		}
		if err := ct.Insert(&e, 0, d.dp.Now()); err != nil {
			t.Fatal(err)
		}
		mustOK(t, d, &api.Request{Op: api.OpDelDest, Service: s, Dest: dest("198.18.2.11", 53, 0)})
		want := 1
		if expire {
			want = 0
		}
		if got := ct.Len(); got != want {
			t.Fatalf("expire_nodest_conn=%v: %d entries after deleting the server, want %d", expire, got, want)
		}
		// While the old connection lives, its ID is not handed to a new server.
		mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.12", 53, 1)})
		if nid := d.r.services[0].dests[0].id; !expire && nid == id {
			t.Fatal("a destination ID with live connections was reused")
		}
	}
}
