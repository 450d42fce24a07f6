package control

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"xlvs/conntrack"
	"xlvs/control/api"
	"xlvs/dataplane"
	"xlvs/dataplane/xsk"
)

func newDaemon(t *testing.T) *Daemon { return newDaemonOpts(t, Options{}) }

func newDaemonOpts(t testing.TB, o Options) *Daemon {
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
	fw := &api.Service{ServiceKey: api.ServiceKey{Protocol: api.ProtoFWMark, FWMark: 1, Addr: netip.MustParseAddr("198.18.1.100")}}
	wantErr(t, d, &api.Request{Op: api.OpAddService, Service: fw}, api.ErrCodeInvalid, "has no address or port")
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

// TestRestoreSideEffects: a batch whose last line fails leaves everything as it was, not
// only the rules: the timeouts (the API's answer and the connection table's), a deleted
// local address (still listed, not draining), the state file, and the ID the next
// service gets.
func TestRestoreSideEffects(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	d := newDaemonOpts(t, Options{StatePath: state})
	s := svc("tcp", "198.18.1.100", 80)
	lip := netip.MustParseAddr("198.18.3.1")
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	mustOK(t, d, &api.Request{Op: api.OpAddLocalAddr, Service: s, LocalAddr: &api.LocalAddr{Addr: lip}})
	saved, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	tmo := *mustOK(t, d, &api.Request{Op: api.OpGetTimeouts}).Timeouts
	ctTmo := d.dp.Conntrack().Timeouts()
	batch := []api.Request{
		{Op: api.OpSetTimeouts, Timeouts: &api.Timeouts{TCP: 60, TCPFin: 10, UDP: 5}, Line: 1},
		{Op: api.OpDelLocalAddr, Service: s, LocalAddr: &api.LocalAddr{Addr: lip}, Line: 2},
		{Op: api.OpAddService, Service: svc("tcp", "198.18.1.101", 80), Line: 3},
		{Op: api.OpAddDest, Service: svc("tcp", "198.18.1.101", 80), Dest: dest("198.18.2.11", 80, 1), Line: 4},
		{Op: api.OpAddService, Service: s, Line: 5}, // exists
	}
	r := do(t, d, &api.Request{Op: api.OpRestore, Batch: batch})
	if r.Error == nil || r.Error.Line != 5 {
		t.Fatalf("restore error %+v, want line 5", r.Error)
	}
	if got := *mustOK(t, d, &api.Request{Op: api.OpGetTimeouts}).Timeouts; got != tmo {
		t.Errorf("timeouts %+v after a failed restore, want %+v", got, tmo)
	}
	if got := d.dp.Conntrack().Timeouts(); got != ctTmo {
		t.Errorf("connection table timeouts %+v after a failed restore, want %+v", got, ctTmo)
	}
	if la := mustOK(t, d, &api.Request{Op: api.OpGetLocalAddrs}).LocalAddrs; len(la) != 1 || la[0].Addr != lip {
		t.Errorf("local addresses %+v after a failed restore, want %v", la, lip)
	}
	if n := len(d.dp.Snapshot().Draining); n != 0 || len(d.draining) != 0 {
		t.Errorf("%d local addresses draining after a failed restore", max(n, len(d.draining)))
	}
	if now, err := os.ReadFile(state); err != nil || string(now) != string(saved) {
		t.Errorf("state file rewritten by a failed restore (err %v)", err)
	}
	// The service the batch would have added gets, added alone, the ID it would have had.
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: svc("tcp", "198.18.1.101", 80)})
	if id := d.r.services[1].id; id != d.r.services[0].id+1 {
		t.Errorf("next service got ID %d after a failed restore, want %d", id, d.r.services[0].id+1)
	}
	// The same batch without its bad line applies whole, side effects included.
	mustOK(t, d, &api.Request{Op: api.OpDelService, Service: svc("tcp", "198.18.1.101", 80)})
	mustOK(t, d, &api.Request{Op: api.OpRestore, Batch: batch[:4]})
	if got := d.dp.Conntrack().Timeouts(); got.Established != 60 || got.FinWait != 10 || got.UDP != 5 {
		t.Errorf("connection table timeouts %+v after the restore, want 60 10 5", got)
	}
	if n := len(d.dp.Snapshot().Draining); n != 1 {
		t.Errorf("%d local addresses draining after the restore, want 1", n)
	}
}
