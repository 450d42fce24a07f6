package control

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"xlvs/control/api"
	"xlvs/sched"
)

// A model of the kernel's rr and wrr schedulers and of the hooks ip_vs_ctl.c calls on
// them, written from net/netfilter/ipvs/ip_vs_ctl.c, ip_vs_wrr.c and ip_vs_rr.c of a
// mainline 6.17-rc3 tree (the Kingxukai/linux mirror, commits 0291023e7330 for
// ip_vs_ctl.c and ip_vs_wrr.c, 9b44fff655e2 for ip_vs_rr.c):
//   - ip_vs_add_dest/__ip_vs_update_dest put a new destination at the list head and call
//     add_dest; ip_vs_edit_dest calls upd_dest; ip_vs_del_dest unlinks and calls
//     del_dest; ip_vs_edit_service binds a new scheduler (init_service) only when -s
//     changes. Nothing else calls a scheduler.
//   - wrr: add_dest, upd_dest and del_dest are ip_vs_wrr_dest_changed: the mark goes to
//     the head, di and mw are recomputed, cw becomes mw if it was above mw or 0, else
//     cw/di*di+1 when di > 1. init_service: the head, cw = mw.
//   - rr: no add_dest or upd_dest; del_dest moves the position to the predecessor when
//     it was on the deleted destination. init_service: the head.
//
// The model has no thresholds (nothing overloaded); weights and the list decide.
type kDest struct {
	name   string
	weight int
}

type kService struct {
	sched      string
	list       []*kDest // the kernel's list order: newest first
	cl         *kDest   // wrr's mark, rr's position; nil = the list head
	cw, mw, di int      // wrr
}

func newKService(sched string) *kService {
	k := &kService{sched: sched}
	k.initService()
	return k
}

func (k *kService) index(d *kDest) int {
	for i, x := range k.list {
		if x == d {
			return i
		}
	}
	return -1
}

func (k *kService) find(name string) *kDest {
	for _, x := range k.list {
		if x.name == name {
			return x
		}
	}
	return nil
}

func kGCD(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// wrrWeights sets di (the gcd of the weights above zero, 1 if none) and mw (the largest
// weight less di-1).
func (k *kService) wrrWeights() {
	g, m := 0, 0
	for _, d := range k.list {
		if d.weight > 0 {
			if g > 0 {
				g = kGCD(d.weight, g)
			} else {
				g = d.weight
			}
		}
		m = max(m, d.weight)
	}
	if g == 0 {
		g = 1
	}
	k.di, k.mw = g, m-(g-1)
}

func (k *kService) initService() {
	k.cl = nil
	if k.sched == "wrr" {
		k.wrrWeights()
		k.cw = k.mw
	}
}

func (k *kService) destChanged() { // wrr's add_dest, upd_dest and del_dest
	if k.sched != "wrr" {
		return
	}
	k.cl = nil
	k.wrrWeights()
	if k.cw > k.mw || k.cw == 0 {
		k.cw = k.mw
	} else if k.di > 1 {
		k.cw = k.cw/k.di*k.di + 1
	}
}

func (k *kService) add(name string, w int) {
	k.list = append([]*kDest{{name, w}}, k.list...)
	k.destChanged()
}

func (k *kService) edit(name string, w int) {
	k.find(name).weight = w
	k.destChanged()
}

func (k *kService) del(name string) {
	d := k.find(name)
	i := k.index(d)
	k.list = append(k.list[:i:i], k.list[i+1:]...)
	if k.sched == "rr" && k.cl == d {
		k.cl = nil // the head, unless d had a predecessor
		if i > 0 {
			k.cl = k.list[i-1]
		}
	}
	k.destChanged()
}

func (k *kService) setSched(name string) {
	if name != k.sched {
		k.sched = name
		k.initService()
	}
}

func (k *kService) schedule() string {
	switch k.sched {
	case "rr":
		p := k.index(k.cl) // -1: the head
		order := []int{}
		for j := p + 1; j < len(k.list); j++ {
			order = append(order, j)
		}
		for j := 0; j <= p; j++ { // the position itself last
			order = append(order, j)
		}
		for _, j := range order {
			if k.list[j].weight > 0 {
				k.cl = k.list[j]
				return k.cl.name
			}
		}
		return "-"
	case "wrr":
		if k.mw == 0 {
			return "-"
		}
		last := k.index(k.cl)
		i, stop := last, -2
		lastPass, restarted := false, false
		for {
			for i++; i < len(k.list); i++ {
				if k.list[i].weight >= k.cw {
					k.cl = k.list[i]
					return k.cl.name
				}
				if i == stop {
					k.cl = k.list[i]
					return "-"
				}
			}
			i = -1
			if k.cw -= k.di; k.cw <= 0 {
				k.cw = k.mw
				if lastPass || last == -1 {
					k.cl = nil
					return "-"
				}
				restarted = true
			}
			if lastPass = k.cw <= k.di; lastPass && restarted && last != -1 {
				stop = last
			}
		}
	}
	panic("model: scheduler " + k.sched)
}

func (k *kService) run(n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(k.schedule())
	}
	return b.String()
}

// Test destinations by name: A is 198.18.2.1, B .2, and so on.
func hookDest(name string, w int32) *api.Dest {
	return dest(fmt.Sprintf("198.18.2.%d", name[0]-'A'+1), 80, w)
}

// decide makes n decisions with the published scheduler of service port (on
// 198.18.1.100) and names the servers chosen ("-" for none): by names, else 198.18.2.1
// is A, .2 B and so on.
func decide(t *testing.T, d *Daemon, port uint16, n int, names map[netip.AddrPort]string) string {
	t.Helper()
	var b strings.Builder
	for _, s := range d.dp.Snapshot().Services {
		if s.Key.Port != port {
			continue
		}
		for range n {
			i := s.Sched.Schedule(d.dp.Conntrack(), nil)
			if i < 0 {
				b.WriteString("-")
				continue
			}
			a := netip.AddrPortFrom(netip.AddrFrom16(s.Dests[i].Addr).Unmap(), s.Dests[i].Port)
			if name, ok := names[a]; ok {
				b.WriteString(name)
			} else {
				b.WriteByte('A' + a.Addr().As4()[3] - 1)
			}
		}
		return b.String()
	}
	t.Fatalf("service port %d not published", port)
	return ""
}

// hookSvc is service port on 198.18.1.100 with scheduler name.
func hookSvc(port uint16, name string) *api.Service {
	s := svc("tcp", "198.18.1.100", port)
	s.Scheduler = name
	return s
}

// TestSchedKeptAcrossUnrelatedChanges: a change that calls no hook of a service's
// scheduler (another service edited or given a server, a local address added or
// deleted, timeouts, the service's own persistence or -b flags) leaves its wrr or rr
// position where it was, as in the kernel: wrr A=3,B=2 goes on AABAB AABAB.
func TestSchedKeptAcrossUnrelatedChanges(t *testing.T) {
	other := hookSvc(81, "wlc")
	changes := map[string][]api.Request{
		"edit another service": {{Op: api.OpEditService, Service: hookSvc(81, "rr")}},
		"server of another service": {
			{Op: api.OpAddDest, Service: other, Dest: hookDest("C", 1)},
			{Op: api.OpEditDest, Service: other, Dest: hookDest("C", 5)},
			{Op: api.OpDelDest, Service: other, Dest: hookDest("C", 0)},
		},
		"another service added and deleted": {
			{Op: api.OpAddService, Service: hookSvc(82, "wrr")},
			{Op: api.OpDelService, Service: hookSvc(82, "wrr")},
		},
		"local address": {
			{Op: api.OpAddLocalAddr, Service: hookSvc(80, ""), LocalAddr: &api.LocalAddr{Addr: netip.MustParseAddr("198.18.3.1")}},
			{Op: api.OpAddLocalAddr, Service: other, LocalAddr: &api.LocalAddr{Addr: netip.MustParseAddr("198.18.3.2")}},
			{Op: api.OpDelLocalAddr, Service: hookSvc(80, ""), LocalAddr: &api.LocalAddr{Addr: netip.MustParseAddr("198.18.3.1")}},
			{Op: api.OpDelLocalAddr, Service: other, LocalAddr: &api.LocalAddr{Addr: netip.MustParseAddr("198.18.3.2")}},
		},
		"timeouts": {{Op: api.OpSetTimeouts, Timeouts: &api.Timeouts{TCP: 100}}},
	}
	for _, sched := range []string{"wrr", "rr"} {
		own := hookSvc(80, sched)
		own.Timeout = 60
		changes["own persistence"] = []api.Request{{Op: api.OpEditService, Service: own}}
		flagged := hookSvc(80, sched)
		flagged.SchedFlags = []string{"flag-3"}
		changes["own -b flags"] = []api.Request{{Op: api.OpEditService, Service: flagged}}
		for name, reqs := range changes {
			t.Run(sched+"/"+name, func(t *testing.T) {
				d := newDaemon(t)
				k := newKService(sched)
				mustOK(t, d, &api.Request{Op: api.OpAddService, Service: hookSvc(80, sched)})
				mustOK(t, d, &api.Request{Op: api.OpAddService, Service: other})
				mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: other, Dest: hookDest("D", 1)})
				for _, x := range []struct {
					n string
					w int
				}{{"B", 2}, {"A", 3}} {
					mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: hookSvc(80, sched), Dest: hookDest(x.n, int32(x.w))})
					k.add(x.n, x.w)
				}
				got, want := decide(t, d, 80, 2, nil), k.run(2)
				for _, r := range reqs { // one by one
					mustOK(t, d, &r)
				}
				got, want = got+" "+decide(t, d, 80, 13, nil), want+" "+k.run(13)
				mustOK(t, d, &api.Request{Op: api.OpRestore, Batch: reqs}) // and again as one batch
				got, want = got+" "+decide(t, d, 80, 10, nil), want+" "+k.run(10)
				if got != want {
					t.Fatalf("decisions %q, want the kernel's %q", got, want)
				}
			})
		}
	}
}

// TestSchedKeptAcrossHealthFlip: a health check failing a server of another service
// leaves a wrr or rr service's position alone; one failing a server of the service
// itself is an upd_dest (keepalived's inhibit_on_failure sets its weight to 0).
func TestSchedKeptAcrossHealthFlip(t *testing.T) {
	for _, sched := range []string{"wrr", "rr"} {
		t.Run(sched, func(t *testing.T) {
			lnA, pA := listenLocal(t)
			defer lnA.Close()
			lnB, pB := listenLocal(t)
			defer lnB.Close()
			pDown := freePort(t)
			lo := func(p int) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(p)) }
			names := map[netip.AddrPort]string{lo(pA): "A", lo(pB): "B"}
			d := newDaemon(t)
			k := newKService(sched)
			v, w := hookSvc(80, sched), hookSvc(81, "wrr")
			mustOK(t, d, &api.Request{Op: api.OpAddService, Service: v})
			mustOK(t, d, &api.Request{Op: api.OpAddService, Service: w})
			mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: w, Dest: dest("127.0.0.1", uint16(pDown), 1)})
			mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: v, Dest: dest("127.0.0.1", uint16(pB), 2)})
			k.add("B", 2)
			mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: v, Dest: dest("127.0.0.1", uint16(pA), 3)})
			k.add("A", 3)
			got, want := decide(t, d, 80, 2, names), k.run(2)
			rc, err := d.StartRuleChecks("TCP_CHECK {\n connect_timeout 1\n retry 0\n delay_loop 1\n}")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			up := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
			waitWeights(t, d, map[string]int32{up(pA): 3, up(pB): 2, up(pDown): 0})
			got, want = got+" "+decide(t, d, 80, 8, names), want+" "+k.run(8)
			// B stops answering: the service's own upd_dest.
			lnB.Close()
			waitWeights(t, d, map[string]int32{up(pA): 3, up(pB): 0, up(pDown): 0})
			k.edit("B", 0)
			got, want = got+" "+decide(t, d, 80, 4, names), want+" "+k.run(4)
			if got != want {
				t.Fatalf("decisions %q, want the kernel's %q", got, want)
			}
		})
	}
}

// hookOp is an operation on service 80 (198.18.1.100:80) for both the daemon and the
// kernel model: A adds the service with scheduler sched, E edits its scheduler; a, e
// and d add, edit and delete server name with weight w.
type hookOp struct {
	op    byte
	sched string
	name  string
	w     int
}

func (o hookOp) request(line int) api.Request {
	switch o.op {
	case 'A':
		return api.Request{Op: api.OpAddService, Service: hookSvc(80, o.sched), Line: line}
	case 'E':
		return api.Request{Op: api.OpEditService, Service: hookSvc(80, o.sched), Line: line}
	case 'a':
		return api.Request{Op: api.OpAddDest, Service: hookSvc(80, ""), Dest: hookDest(o.name, int32(o.w)), Line: line}
	case 'e':
		return api.Request{Op: api.OpEditDest, Service: hookSvc(80, ""), Dest: hookDest(o.name, int32(o.w)), Line: line}
	default:
		return api.Request{Op: api.OpDelDest, Service: hookSvc(80, ""), Dest: hookDest(o.name, 0), Line: line}
	}
}

func (o hookOp) model(k **kService) {
	switch o.op {
	case 'A':
		*k = newKService(o.sched)
	case 'E':
		(*k).setSched(o.sched)
	case 'a':
		(*k).add(o.name, o.w)
	case 'e':
		(*k).edit(o.name, o.w)
	default:
		(*k).del(o.name)
	}
}

// TestSchedHooksBatch: a batch (-R, the API's restore) calls each operation's scheduler
// hook in order, so the decisions after it are those after the same commands one by
// one, and the kernel's.
func TestSchedHooksBatch(t *testing.T) {
	cases := []struct {
		name   string
		setup  []hookOp // one by one
		before int      // decisions after the setup
		ops    []hookOp // one by one, or as one batch
	}{
		{"wrr weight down and back", []hookOp{{'A', "wrr", "", 0}, {'a', "", "B", 2}, {'a', "", "A", 3}}, 3,
			[]hookOp{{'e', "", "A", 2}, {'e', "", "A", 3}}},
		{"wrr new service", nil, 0,
			[]hookOp{{'A', "wrr", "", 0}, {'a', "", "A", 4}, {'a', "", "B", 2}}},
		{"wrr to rr and back", []hookOp{{'A', "wrr", "", 0}, {'a', "", "B", 2}, {'a', "", "A", 3}}, 2,
			[]hookOp{{'E', "rr", "", 0}, {'E', "wrr", "", 0}}},
		{"wrr servers changed", []hookOp{{'A', "wrr", "", 0}, {'a', "", "C", 2}, {'a', "", "B", 4}, {'a', "", "A", 6}}, 3,
			[]hookOp{{'d', "", "B", 0}, {'a', "", "D", 1}, {'e', "", "C", 6}, {'e', "", "D", 4}}},
		{"rr add then delete the position", []hookOp{{'A', "rr", "", 0}, {'a', "", "A", 1}, {'a', "", "B", 1}}, 1,
			[]hookOp{{'a', "", "C", 1}, {'d', "", "B", 0}}},
		{"rr delete and add back", []hookOp{{'A', "rr", "", 0}, {'a', "", "C", 1}, {'a', "", "B", 1}, {'a', "", "A", 1}}, 2,
			[]hookOp{{'d', "", "B", 0}, {'d', "", "A", 0}, {'a', "", "B", 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var k *kService
			one, batch := newDaemon(t), newDaemon(t)
			for _, o := range c.setup {
				r := o.request(0)
				mustOK(t, one, &r)
				mustOK(t, batch, &r)
				o.model(&k)
			}
			var got1, gotB, want string
			if c.before > 0 {
				got1, gotB, want = decide(t, one, 80, c.before, nil), decide(t, batch, 80, c.before, nil), k.run(c.before)
			}
			req := &api.Request{Op: api.OpRestore}
			for i, o := range c.ops {
				r := o.request(i + 1)
				mustOK(t, one, &r)
				req.Batch = append(req.Batch, r)
				o.model(&k)
			}
			mustOK(t, batch, req)
			got1 += " " + decide(t, one, 80, 16, nil)
			gotB += " " + decide(t, batch, 80, 16, nil)
			want += " " + k.run(16)
			if got1 != want || gotB != want {
				t.Fatalf("decisions one by one %q, as a batch %q; want the kernel's %q", got1, gotB, want)
			}
		})
	}
}

// TestSchedHooksBatchRandom: random batches of server additions, edits (weight 0
// included) and deletions, and scheduler changes: a batch ends where the same commands one
// by one do (where every hook is its own Rebuild), for every scheduler that keeps state
// or builds tables; for rr and wrr also where the kernel model does.
func TestSchedHooksBatchRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 3))
	for _, first := range []string{"wrr", "rr", "mh", "sh", "dh", "lblc", "lblcr", "wlc"} {
		for round := range 40 {
			one, batch := newDaemonOpts(t, Options{MaxServices: 4, MaxDests: 64}), newDaemonOpts(t, Options{MaxServices: 4, MaxDests: 64})
			var k *kService
			model := first == "wrr" || first == "rr"
			names := []string{}
			var log []string
			ops := []hookOp{}
			if round%2 == 0 {
				ops = append(ops, hookOp{'A', first, "", 0}) // a new service inside the batch
			} else {
				r := hookOp{'A', first, "", 0}.request(0)
				mustOK(t, one, &r)
				mustOK(t, batch, &r)
				k = newKService(first)
			}
			sched := first
			for range 4 + rng.IntN(20) {
				switch x := rng.IntN(10); {
				case x < 5 || len(names) == 0:
					n := string(rune('A' + rng.IntN(20))) // an absent server, maybe one deleted before
					if slices.Contains(names, n) {
						continue
					}
					names = append(names, n)
					ops = append(ops, hookOp{'a', "", n, rng.IntN(4) * (1 + rng.IntN(3))})
				case x < 8:
					ops = append(ops, hookOp{'e', "", names[rng.IntN(len(names))], rng.IntN(4) * 2})
				case x < 9:
					i := rng.IntN(len(names))
					ops = append(ops, hookOp{'d', "", names[i], 0})
					names = append(names[:i:i], names[i+1:]...)
				default:
					if model {
						sched = map[string]string{"wrr": "rr", "rr": "wrr"}[sched]
					} else {
						sched = map[bool]string{true: "wlc", false: first}[sched == first]
					}
					ops = append(ops, hookOp{'E', sched, "", 0})
				}
			}
			req := &api.Request{Op: api.OpRestore}
			for i, o := range ops {
				r := o.request(i + 1)
				mustOK(t, one, &r)
				req.Batch = append(req.Batch, r)
				if model {
					o.model(&k)
				}
				log = append(log, fmt.Sprintf("%c%s%s%d", o.op, o.sched, o.name, o.w))
			}
			mustOK(t, batch, req)
			got1, gotB := decideFlows(t, one, 30), decideFlows(t, batch, 30)
			if got1 != gotB {
				t.Fatalf("%s round %d, ops %v: decisions one by one %q, as a batch %q", first, round, log, got1, gotB)
			}
			if model && got1[:20] != k.run(20) {
				t.Fatalf("%s round %d, ops %v: decisions %q, the kernel's %q", first, round, log, got1[:20], k.run(20))
			}
		}
	}
}

// decideFlows is decide for service 80 with flows from different clients (the first 20
// decisions without a flow, for rr and wrr).
func decideFlows(t *testing.T, d *Daemon, n int) string {
	t.Helper()
	var b strings.Builder
	s := d.dp.Snapshot().Services[0]
	for i := range n {
		f := &sched.Flow{Src: netip.AddrFrom4([4]byte{192, 0, 2, byte(i * 7)}).As16(), Dst: s.Key.Addr, SrcPort: uint16(1000 + i), DstPort: 80, Proto: 6}
		if c := s.Sched.Schedule(d.dp.Conntrack(), f); c < 0 {
			b.WriteString("-")
		} else {
			b.WriteByte('A' + netip.AddrFrom16(s.Dests[c].Addr).Unmap().As4()[3] - 1)
		}
	}
	return b.String()
}

// TestSchedKeptAcrossKeepalivedFlip: with a keepalived.conf, a real server of another
// virtual server failing its check (keepalived deletes it: that service's del_dest)
// leaves a wrr service's position alone.
func TestSchedKeptAcrossKeepalivedFlip(t *testing.T) {
	lnA, pA := listenLocal(t)
	defer lnA.Close()
	lnB, pB := listenLocal(t)
	defer lnB.Close()
	lnC, pC := listenLocal(t)
	defer lnC.Close()
	rs := func(port, weight int) string {
		return fmt.Sprintf("    real_server 127.0.0.1 %d {\n        weight %d\n        TCP_CHECK {\n            connect_timeout 1\n            retry 0\n        }\n    }\n", port, weight)
	}
	conf := "virtual_server 198.18.1.100 80 {\n    delay_loop 1\n    lb_algo wrr\n    lb_kind NAT\n    protocol TCP\n" + rs(pA, 3) + rs(pB, 2) + "}\n" +
		"virtual_server 198.18.1.100 81 {\n    delay_loop 1\n    lb_algo wrr\n    lb_kind NAT\n    protocol TCP\n" + rs(pC, 1) + "}\n"
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t)
	k, err := d.StartKeepalived(path)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	lo := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	waitDests(t, d, map[string]int32{lo(pA): 3, lo(pB): 2, lo(pC): 1})
	// The model: the servers added one by one, oldest first, as listed (newest first).
	names := map[netip.AddrPort]string{}
	km := newKService("wrr")
	list := mustOK(t, d, &api.Request{Op: api.OpList, Service: hookSvc(80, "")}).Services[0].Dests
	for i := len(list) - 1; i >= 0; i-- {
		ap := netip.AddrPortFrom(list[i].Addr, list[i].Port)
		names[ap] = map[uint16]string{uint16(pA): "A", uint16(pB): "B"}[ap.Port()]
		km.add(names[ap], int(list[i].Weight))
	}
	got, want := decide(t, d, 80, 2, names), km.run(2)
	lnC.Close()
	waitDests(t, d, map[string]int32{lo(pA): 3, lo(pB): 2})
	got, want = got+" "+decide(t, d, 80, 13, names), want+" "+km.run(13)
	if got != want {
		t.Fatalf("decisions %q, want the kernel's %q", got, want)
	}
}
