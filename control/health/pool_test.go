package health

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCheckState(t *testing.T) {
	c := Check{Interval: 10 * time.Second, Retry: 2, RetryDelay: time.Second}
	type step struct {
		ok      bool
		changed bool
		up      bool
		next    time.Duration
	}
	tests := []struct {
		name  string
		start bool
		steps []step
	}{
		{"first failure is enough at start", true, []step{{false, true, false, 10 * time.Second}}},
		{"alpha starts down, one success is enough", false, []step{
			{false, false, false, 10 * time.Second}, {true, true, true, 10 * time.Second}}},
		{"retries after a success", true, []step{
			{true, false, true, 10 * time.Second},
			{false, false, true, time.Second},
			{false, false, true, time.Second},
			{false, true, false, 10 * time.Second},
			{false, false, false, 10 * time.Second},
			{true, true, true, 10 * time.Second}}},
		{"a success resets the retries", true, []step{
			{true, false, true, 10 * time.Second},
			{false, false, true, time.Second},
			{true, false, true, 10 * time.Second},
			{false, false, true, time.Second},
			{false, false, true, time.Second},
			{false, true, false, 10 * time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newCheckState(tt.start, c)
			for i, st := range tt.steps {
				changed, next := s.observe(st.ok, c)
				if changed != st.changed || s.up != st.up || next != st.next {
					t.Fatalf("step %d (ok=%v): changed %v up %v next %v, want %v %v %v", i, st.ok, changed, s.up, next, st.changed, st.up, st.next)
				}
			}
		})
	}
	// Retry 0: the first failure after a success takes the check down.
	z := Check{Interval: time.Second}
	s := newCheckState(true, z)
	s.observe(true, z)
	if changed, _ := s.observe(false, z); !changed || s.up {
		t.Errorf("retry 0: one failure should take the check down")
	}
}

var t0 = time.Unix(1700000000, 0)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// poolVS builds a virtual server whose servers have one check each, with the given
// weights; inhibit lists the inhibited servers.
func poolVS(quorum, hyst uint32, sorry *SorryServer, weights []int32, inhibit ...int) VirtualServer {
	vs := VirtualServer{Key: ServiceKey{Protocol: "tcp", Addr: netip.MustParseAddr("198.18.0.10"), Port: 80}, Quorum: quorum, Hysteresis: hyst, Sorry: sorry}
	for i, w := range weights {
		vs.Servers = append(vs.Servers, RealServer{
			Addr:    netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}), 80),
			Weight:  w,
			Inhibit: slices.Contains(inhibit, i),
			Checks:  []Check{{Checker: nopChecker(fmt.Sprint(i)), Interval: time.Second}},
		})
	}
	return vs
}

type nopChecker string

func (n nopChecker) Check(context.Context) Result { return Result{} }
func (n nopChecker) String() string               { return "nop " + string(n) }

func allUp(vs VirtualServer, up bool) [][]bool {
	out := make([][]bool, len(vs.Servers))
	for i, s := range vs.Servers {
		out[i] = make([]bool, len(s.Checks))
		for j := range out[i] {
			out[i][j] = up
		}
	}
	return out
}

// kinds renders events compactly: "server-down 198.18.1.1:80".
func kinds(evs []Event) string {
	var s []string
	for _, e := range evs {
		if e.Server.IsValid() {
			s = append(s, e.Kind.String()+" "+e.Server.String())
		} else {
			s = append(s, fmt.Sprintf("%s %d/%d", e.Kind, e.WeightSum, e.Threshold))
		}
	}
	return strings.Join(s, ", ")
}

// destString renders dests: "198.18.1.1:80=3 198.18.1.2:80=- sorry:198.18.9.9:80=0".
func destString(ds []DestState) string {
	var s []string
	for _, d := range ds {
		p := ""
		if d.Sorry {
			p = "sorry:"
		}
		v := "-"
		if d.InPool {
			v = fmt.Sprint(d.Weight)
		}
		s = append(s, p+d.Addr.String()+"="+v)
	}
	return strings.Join(s, " ")
}

// TestPool walks the keepalived state machine through named scenarios: each step sets
// one server's check up or down and lists the events and the desired destinations.
func TestPool(t *testing.T) {
	sorry := &SorryServer{Addr: ap("198.18.9.9:80")}
	type step struct {
		server int
		up     bool
		weight int32 // when non-zero: a dynamic weight instead of a check change (-1 restores)
		events string
		dests  string
	}
	tests := []struct {
		name      string
		vs        VirtualServer
		startUp   bool
		initDests string
		steps     []step
	}{
		{"remove and restore", poolVS(1, 0, nil, []int32{3, 1}), true,
			"198.18.1.1:80=3 198.18.1.2:80=1",
			[]step{
				{server: 0, up: false, events: "check-down 198.18.1.1:80, server-down 198.18.1.1:80", dests: "198.18.1.1:80=- 198.18.1.2:80=1"},
				{server: 0, up: false, events: "", dests: "198.18.1.1:80=- 198.18.1.2:80=1"},
				{server: 0, up: true, events: "check-up 198.18.1.1:80, server-up 198.18.1.1:80", dests: "198.18.1.1:80=3 198.18.1.2:80=1"},
			}},
		{"inhibit_on_failure keeps weight 0", poolVS(1, 0, nil, []int32{3, 1}, 0), true,
			"198.18.1.1:80=3 198.18.1.2:80=1",
			[]step{
				{server: 0, up: false, events: "check-down 198.18.1.1:80, server-down 198.18.1.1:80", dests: "198.18.1.1:80=0 198.18.1.2:80=1"},
				{server: 0, up: true, events: "check-up 198.18.1.1:80, server-up 198.18.1.1:80", dests: "198.18.1.1:80=3 198.18.1.2:80=1"},
			}},
		{"all down without sorry server: quorum lost, nothing else", poolVS(1, 0, nil, []int32{1, 1}), true,
			"198.18.1.1:80=1 198.18.1.2:80=1",
			[]step{
				{server: 0, up: false, events: "check-down 198.18.1.1:80, server-down 198.18.1.1:80", dests: "198.18.1.1:80=- 198.18.1.2:80=1"},
				{server: 1, up: false, events: "check-down 198.18.1.2:80, server-down 198.18.1.2:80, quorum-lost 0/1", dests: "198.18.1.1:80=- 198.18.1.2:80=-"},
				{server: 1, up: true, events: "check-up 198.18.1.2:80, server-up 198.18.1.2:80, quorum-gained 1/1", dests: "198.18.1.1:80=- 198.18.1.2:80=1"},
			}},
		{"sorry server takes over when all are down", poolVS(1, 0, sorry, []int32{1, 1}), true,
			"198.18.1.1:80=1 198.18.1.2:80=1 sorry:198.18.9.9:80=-",
			[]step{
				{server: 0, up: false, events: "check-down 198.18.1.1:80, server-down 198.18.1.1:80", dests: "198.18.1.1:80=- 198.18.1.2:80=1 sorry:198.18.9.9:80=-"},
				{server: 1, up: false, events: "check-down 198.18.1.2:80, server-down 198.18.1.2:80, quorum-lost 0/1, sorry-server-in 198.18.9.9:80",
					dests: "198.18.1.1:80=- 198.18.1.2:80=- sorry:198.18.9.9:80=1"},
				{server: 0, up: true, events: "check-up 198.18.1.1:80, server-up 198.18.1.1:80, quorum-gained 1/1, sorry-server-out 198.18.9.9:80",
					dests: "198.18.1.1:80=1 198.18.1.2:80=- sorry:198.18.9.9:80=-"},
			}},
		{"quorum with hysteresis, sorry server replaces the live servers", poolVS(4, 1, &SorryServer{Addr: ap("198.18.9.9:80"), Inhibit: true}, []int32{2, 2, 2}), true,
			"198.18.1.1:80=2 198.18.1.2:80=2 198.18.1.3:80=2 sorry:198.18.9.9:80=0",
			[]step{
				// 4 live >= 4-1: still up.
				{server: 0, up: false, events: "check-down 198.18.1.1:80, server-down 198.18.1.1:80",
					dests: "198.18.1.1:80=- 198.18.1.2:80=2 198.18.1.3:80=2 sorry:198.18.9.9:80=0"},
				// 2 live < 3: lost; the live server leaves too, the sorry server comes in.
				{server: 1, up: false, events: "check-down 198.18.1.2:80, server-down 198.18.1.2:80, quorum-lost 2/3, sorry-server-in 198.18.9.9:80",
					dests: "198.18.1.1:80=- 198.18.1.2:80=- 198.18.1.3:80=- sorry:198.18.9.9:80=1"},
				// 4 live < 4+1: still lost.
				{server: 1, up: true, events: "check-up 198.18.1.2:80, server-up 198.18.1.2:80",
					dests: "198.18.1.1:80=- 198.18.1.2:80=- 198.18.1.3:80=- sorry:198.18.9.9:80=1"},
				// 6 live >= 5: regained.
				{server: 0, up: true, events: "check-up 198.18.1.1:80, server-up 198.18.1.1:80, quorum-gained 6/5, sorry-server-out 198.18.9.9:80",
					dests: "198.18.1.1:80=2 198.18.1.2:80=2 198.18.1.3:80=2 sorry:198.18.9.9:80=0"},
			}},
		{"dynamic weight moves the quorum", poolVS(3, 0, sorry, []int32{2, 2}), true,
			"198.18.1.1:80=2 198.18.1.2:80=2 sorry:198.18.9.9:80=-",
			[]step{
				{server: 0, weight: 10, events: "weight-changed 198.18.1.1:80", dests: "198.18.1.1:80=10 198.18.1.2:80=2 sorry:198.18.9.9:80=-"},
				{server: 1, up: false, events: "check-down 198.18.1.2:80, server-down 198.18.1.2:80", dests: "198.18.1.1:80=10 198.18.1.2:80=- sorry:198.18.9.9:80=-"},
				{server: 0, weight: -1, events: "weight-changed 198.18.1.1:80, quorum-lost 2/3, sorry-server-in 198.18.9.9:80",
					dests: "198.18.1.1:80=- 198.18.1.2:80=- sorry:198.18.9.9:80=1"},
				{server: 0, weight: -1, events: "", dests: "198.18.1.1:80=- 198.18.1.2:80=- sorry:198.18.9.9:80=1"},
			}},
		{"alpha: starts down with the sorry server in", poolVS(1, 0, sorry, []int32{1}, 0), false,
			"198.18.1.1:80=0 sorry:198.18.9.9:80=1",
			[]step{
				{server: 0, up: true, events: "check-up 198.18.1.1:80, server-up 198.18.1.1:80, quorum-gained 1/1, sorry-server-out 198.18.9.9:80",
					dests: "198.18.1.1:80=1 sorry:198.18.9.9:80=-"},
			}},
		{"sorry server that is also a real server", poolVS(2, 0, &SorryServer{Addr: ap("198.18.1.2:80")}, []int32{1, 1}), true,
			"198.18.1.1:80=1 198.18.1.2:80=1",
			[]step{
				{server: 0, up: false, events: "check-down 198.18.1.1:80, server-down 198.18.1.1:80, quorum-lost 1/2, sorry-server-in 198.18.1.2:80",
					dests: "198.18.1.1:80=- 198.18.1.2:80=1"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(tt.vs, allUp(tt.vs, tt.startUp))
			if got := destString(p.dests()); got != tt.initDests {
				t.Fatalf("initial dests %s, want %s", got, tt.initDests)
			}
			for i, st := range tt.steps {
				var evs []Event
				if st.weight != 0 {
					evs = p.setWeight(st.server, st.weight, t0)
				} else {
					evs = p.setCheck(st.server, 0, st.up, t0, "nop", nil)
				}
				if got := kinds(evs); got != st.events {
					t.Errorf("step %d events:\n got %s\nwant %s", i, got, st.events)
				}
				if got := destString(p.dests()); got != st.dests {
					t.Errorf("step %d dests:\n got %s\nwant %s", i, got, st.dests)
				}
			}
		})
	}
}

func TestPoolSeveralChecks(t *testing.T) {
	vs := poolVS(1, 0, nil, []int32{1, 1})
	vs.Servers[0].Checks = append(vs.Servers[0].Checks, Check{Checker: nopChecker("b"), Interval: time.Second})
	p := newPool(vs, allUp(vs, true))
	if got := kinds(p.setCheck(0, 0, false, t0, "a", nil)); got != "check-down 198.18.1.1:80, server-down 198.18.1.1:80" {
		t.Errorf("first check down: %s", got)
	}
	if got := kinds(p.setCheck(0, 1, false, t0, "b", nil)); got != "check-down 198.18.1.1:80" {
		t.Errorf("second check down: %s", got)
	}
	if got := kinds(p.setCheck(0, 0, true, t0, "a", nil)); got != "check-up 198.18.1.1:80" {
		t.Errorf("one of two checks up: %s", got)
	}
	if got := kinds(p.setCheck(0, 1, true, t0, "b", nil)); got != "check-up 198.18.1.1:80, server-up 198.18.1.1:80" {
		t.Errorf("both checks up: %s", got)
	}
}

// refPool is a slow reference of the pool written from keepalived.conf(5): it recomputes
// everything from the raw check states and remembers only the quorum state.
type refPool struct {
	vs       VirtualServer
	up       [][]bool
	weight   []int32
	quorumUp bool
}

func (r *refPool) alive(i int) bool { return !slices.Contains(r.up[i], false) }

func (r *refPool) live() (sum int64) {
	for i := range r.vs.Servers {
		if r.alive(i) {
			sum += int64(r.weight[i])
		}
	}
	return sum
}

func (r *refPool) step() {
	q, h, sum := int64(r.vs.quorum()), int64(r.vs.Hysteresis), r.live()
	if !r.quorumUp && sum >= q+h {
		r.quorumUp = true
	} else if r.quorumUp && (sum == 0 || sum < q-h) {
		r.quorumUp = false
	}
}

func (r *refPool) dests() map[netip.AddrPort]DestState {
	out := map[netip.AddrPort]DestState{}
	sorryOn := r.vs.Sorry != nil && !r.quorumUp
	for i, s := range r.vs.Servers {
		d := DestState{Addr: s.Addr}
		if r.alive(i) && !sorryOn {
			d.InPool, d.Weight = true, r.weight[i]
		} else if s.Inhibit {
			d.InPool = true
		}
		out[s.Addr] = d
	}
	if s := r.vs.Sorry; s != nil {
		d := out[s.Addr]
		d.Addr = s.Addr
		if _, dup := out[s.Addr]; !dup {
			d.Sorry = true
		}
		if sorryOn {
			d.InPool, d.Weight = true, max(d.Weight, s.weight())
		} else if s.Inhibit {
			d.InPool = true
		}
		out[s.Addr] = d
	}
	return out
}

// TestPoolDifferential drives the pool and the reference with random observations and
// checks they agree on the destinations, and that every event is a real transition
// reported exactly once.
func TestPoolDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		n := 1 + rng.IntN(4)
		weights := make([]int32, n)
		var total int64
		for i := range weights {
			weights[i] = int32(rng.IntN(4))
			total += int64(weights[i])
		}
		q := uint32(1 + rng.IntN(int(max(total, 1))))
		var h uint32
		if q > 1 {
			h = uint32(rng.IntN(int(q)))
		}
		var sorry *SorryServer
		switch rng.IntN(3) {
		case 1:
			sorry = &SorryServer{Addr: ap("198.18.9.9:80"), Inhibit: rng.IntN(2) == 0}
		case 2:
			sorry = &SorryServer{Addr: ap("198.18.1.1:80")}
		}
		var inhibit []int
		for i := range n {
			if rng.IntN(2) == 0 {
				inhibit = append(inhibit, i)
			}
		}
		vs := poolVS(q, h, sorry, weights, inhibit...)
		for i := range vs.Servers {
			for range rng.IntN(2) {
				vs.Servers[i].Checks = append(vs.Servers[i].Checks, Check{Checker: nopChecker("x"), Interval: time.Second})
			}
		}
		init := allUp(vs, true)
		for i := range init {
			for j := range init[i] {
				init[i][j] = rng.IntN(3) > 0
			}
		}
		p := newPool(vs, init)
		ref := &refPool{vs: vs, weight: slices.Clone(weights)}
		for i := range init {
			ref.up = append(ref.up, slices.Clone(init[i]))
		}
		ref.quorumUp = ref.live() >= int64(vs.quorum())+int64(vs.Hysteresis)
		for stepN := range 40 {
			i := rng.IntN(n)
			before := *ref
			before.weight = slices.Clone(ref.weight)
			beforeAlive := ref.alive(i)
			var evs []Event
			if rng.IntN(5) == 0 {
				w := int32(rng.IntN(5)) - 1
				evs = p.setWeight(i, w, t0)
				if w == ConfiguredWeight {
					w = vs.Servers[i].Weight
				}
				ref.weight[i] = w
			} else {
				j := rng.IntN(len(vs.Servers[i].Checks))
				up := rng.IntN(2) == 0
				evs = p.setCheck(i, j, up, t0, "x", nil)
				ref.up[i] = slices.Clone(ref.up[i])
				ref.up[i][j] = up
			}
			if ref.alive(i) != beforeAlive || ref.weight[i] != before.weight[i] {
				ref.step()
			}
			if p.quorumUp != ref.quorumUp {
				t.Fatalf("iteration %d step %d: quorum %v, reference %v (live %d/%d, q %d h %d, events %s)", iter, stepN, p.quorumUp, ref.quorumUp, p.liveWeight(), ref.live(), q, h, kinds(evs))
			}
			got := map[netip.AddrPort]DestState{}
			for _, d := range p.dests() {
				got[d.Addr] = d
			}
			want := ref.dests()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("iteration %d step %d: dests\n got %v\nwant %v", iter, stepN, got, want)
			}
			// Events: a server event iff aliveness changed, a quorum event iff the quorum
			// state changed, each once.
			count := map[EventKind]int{}
			for _, e := range evs {
				count[e.Kind]++
			}
			wantServer := 0
			if ref.alive(i) != beforeAlive {
				wantServer = 1
			}
			if count[ServerUp]+count[ServerDown] != wantServer {
				t.Fatalf("iteration %d step %d: server events %v, want %d", iter, stepN, kinds(evs), wantServer)
			}
			wantQuorum := 0
			if ref.quorumUp != before.quorumUp {
				wantQuorum = 1
			}
			if count[QuorumLost]+count[QuorumGained] != wantQuorum {
				t.Fatalf("iteration %d step %d: quorum events %v, want %d", iter, stepN, kinds(evs), wantQuorum)
			}
			if sorry != nil && count[SorryServerIn]+count[SorryServerOut] != wantQuorum {
				t.Fatalf("iteration %d step %d: sorry events %v", iter, stepN, kinds(evs))
			}
		}
	}
}
