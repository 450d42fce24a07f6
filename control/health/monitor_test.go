package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fake is a Checker the test controls.
type fake struct {
	name  string
	mu    sync.Mutex
	res   Result
	calls atomic.Int64
	first atomic.Int64 // unix nanos of the first call
	hold  time.Duration
	// running and peak measure concurrency across fakes sharing them.
	running, peak *atomic.Int32
}

func newFake(name string) *fake { return &fake{name: name} }

func (f *fake) set(err error) {
	f.mu.Lock()
	f.res = Result{Err: err}
	f.mu.Unlock()
}

func (f *fake) setResult(r Result) {
	f.mu.Lock()
	f.res = r
	f.mu.Unlock()
}

func (f *fake) Check(ctx context.Context) Result {
	f.first.CompareAndSwap(0, time.Now().UnixNano())
	// The result is the one set when the call starts: a call counted after set sees it.
	f.mu.Lock()
	res := f.res
	f.calls.Add(1)
	f.mu.Unlock()
	if f.running != nil {
		n := f.running.Add(1)
		for {
			p := f.peak.Load()
			if n <= p || f.peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer f.running.Add(-1)
	}
	if f.hold > 0 {
		select {
		case <-time.After(f.hold):
		case <-ctx.Done():
		}
	}
	return res
}

func (f *fake) String() string { return "fake " + f.name }

var errDown = errors.New("down")

// recorder collects updates.
type recorder struct{ ch chan Update }

func newRecorder() *recorder { return &recorder{ch: make(chan Update, 1000)} }

func (r *recorder) on(u Update) { r.ch <- u }

// next waits for the next update.
func (r *recorder) next(t *testing.T) Update {
	t.Helper()
	select {
	case u := <-r.ch:
		return u
	case <-time.After(5 * time.Second):
		t.Fatalf("no update within 5s")
		return Update{}
	}
}

// quiet asserts that no update arrives for d.
func (r *recorder) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case u := <-r.ch:
		t.Fatalf("unexpected update: %s %s", kinds(u.Events), destString(u.Dests))
	case <-time.After(d):
	}
}

const tick = 5 * time.Millisecond

func fastCheck(c Checker) Check {
	return Check{Checker: c, Interval: tick, Retry: 1, RetryDelay: tick}
}

func key80() ServiceKey {
	return ServiceKey{Protocol: "tcp", Addr: netip.MustParseAddr("198.18.0.10"), Port: 80}
}

func newMonitor(t *testing.T, opts Options) *Monitor {
	t.Helper()
	m := New(opts)
	t.Cleanup(m.Close)
	return m
}

func TestMonitorTransitions(t *testing.T) {
	a, b := newFake("a"), newFake("b")
	rec := newRecorder()
	m := newMonitor(t, Options{OnUpdate: rec.on})
	vs := VirtualServer{Key: key80(), Sorry: &SorryServer{Addr: ap("198.18.9.9:80")}, Servers: []RealServer{
		{Addr: ap("198.18.1.1:80"), Weight: 2, Checks: []Check{fastCheck(a)}},
		{Addr: ap("198.18.1.2:80"), Weight: 1, Inhibit: true, Checks: []Check{fastCheck(b)}},
	}}
	if err := m.Apply([]VirtualServer{vs}); err != nil {
		t.Fatal(err)
	}
	u := rec.next(t)
	if u.Service != key80() || len(u.Events) != 0 || destString(u.Dests) != "198.18.1.1:80=2 198.18.1.2:80=1 sorry:198.18.9.9:80=-" {
		t.Fatalf("first update %+v", u)
	}
	rec.quiet(t, 10*tick)

	steps := []struct {
		do     func()
		events string
		dests  string
	}{
		{func() { a.set(errDown) }, "check-down 198.18.1.1:80, server-down 198.18.1.1:80", "198.18.1.1:80=- 198.18.1.2:80=1 sorry:198.18.9.9:80=-"},
		{func() { b.set(errDown) }, "check-down 198.18.1.2:80, server-down 198.18.1.2:80, quorum-lost 0/1, sorry-server-in 198.18.9.9:80",
			"198.18.1.1:80=- 198.18.1.2:80=0 sorry:198.18.9.9:80=1"},
		{func() { b.set(nil) }, "check-up 198.18.1.2:80, server-up 198.18.1.2:80, quorum-gained 1/1, sorry-server-out 198.18.9.9:80",
			"198.18.1.1:80=- 198.18.1.2:80=1 sorry:198.18.9.9:80=-"},
		{func() { a.set(nil) }, "check-up 198.18.1.1:80, server-up 198.18.1.1:80", "198.18.1.1:80=2 198.18.1.2:80=1 sorry:198.18.9.9:80=-"},
	}
	for i, st := range steps {
		st.do()
		u := rec.next(t)
		if got := kinds(u.Events); got != st.events {
			t.Errorf("step %d events:\n got %s\nwant %s", i, got, st.events)
		}
		if got := destString(u.Dests); got != st.dests {
			t.Errorf("step %d dests:\n got %s\nwant %s", i, got, st.dests)
		}
		// Exactly once: the checks keep running, nothing more is reported.
		rec.quiet(t, 10*tick)
	}
	for _, e := range u.Events {
		if e.Time.IsZero() || e.Service != key80() {
			t.Errorf("event without time or service: %+v", e)
		}
	}
	c := m.Counters()
	if c.Events[ServerDown] != 2 || c.Events[ServerUp] != 2 || c.Events[QuorumLost] != 1 || c.Events[SorryServerIn] != 1 || c.Checks == 0 || c.CheckFailures == 0 {
		t.Errorf("counters %+v", c)
	}
}

// TestMonitorRetries: a check that was up fails only after 1 + Retry failures.
func TestMonitorRetries(t *testing.T) {
	f := newFake("f")
	rec := newRecorder()
	m := newMonitor(t, Options{OnUpdate: rec.on})
	c := Check{Checker: f, Interval: 20 * time.Millisecond, Retry: 3, RetryDelay: time.Millisecond}
	if err := m.Apply([]VirtualServer{{Key: key80(), Servers: []RealServer{{Addr: ap("198.18.1.1:80"), Weight: 1, Checks: []Check{c}}}}}); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	for f.calls.Load() < 2 { // a success after start resets the retries
		time.Sleep(tick)
	}
	before := f.calls.Load()
	f.set(errDown)
	u := rec.next(t)
	if got := kinds(u.Events); got != "check-down 198.18.1.1:80, server-down 198.18.1.1:80, quorum-lost 0/1" {
		t.Fatalf("events %s", got)
	}
	// The failing runs: the first, then 3 retries (one more may have started before set).
	if n := f.calls.Load() - before; n < 4 || n > 5 {
		t.Errorf("%d checks until down, want 4 (1 + retry 3)", n)
	}
	if !errors.Is(u.Events[0].Err, errDown) {
		t.Errorf("check-down event carries %v", u.Events[0].Err)
	}
}

func TestMonitorAlpha(t *testing.T) {
	f := newFake("f")
	f.set(errDown)
	rec := newRecorder()
	m := newMonitor(t, Options{OnUpdate: rec.on})
	c := fastCheck(f)
	c.Alpha = true
	if err := m.Apply([]VirtualServer{{Key: key80(), Servers: []RealServer{{Addr: ap("198.18.1.1:80"), Weight: 4, Checks: []Check{c}}}}}); err != nil {
		t.Fatal(err)
	}
	if u := rec.next(t); destString(u.Dests) != "198.18.1.1:80=-" {
		t.Fatalf("alpha server in the pool before its first check: %s", destString(u.Dests))
	}
	rec.quiet(t, 10*tick) // failing while down is no transition
	f.set(nil)
	u := rec.next(t)
	if got := kinds(u.Events); got != "check-up 198.18.1.1:80, server-up 198.18.1.1:80, quorum-gained 4/1" {
		t.Errorf("events %s", got)
	}
	if destString(u.Dests) != "198.18.1.1:80=4" {
		t.Errorf("dests %s", destString(u.Dests))
	}
}

func TestMonitorDynamicWeight(t *testing.T) {
	f := newFake("misc")
	f.setResult(Result{Dynamic: true, Weight: 10})
	rec := newRecorder()
	m := newMonitor(t, Options{OnUpdate: rec.on})
	if err := m.Apply([]VirtualServer{{Key: key80(), Servers: []RealServer{{Addr: ap("198.18.1.1:80"), Weight: 3, Checks: []Check{fastCheck(f)}}}}}); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	u := rec.next(t)
	if kinds(u.Events) != "weight-changed 198.18.1.1:80" || destString(u.Dests) != "198.18.1.1:80=10" {
		t.Fatalf("update %s %s", kinds(u.Events), destString(u.Dests))
	}
	rec.quiet(t, 10*tick)
	f.setResult(Result{Dynamic: true, Weight: ConfiguredWeight})
	if u := rec.next(t); destString(u.Dests) != "198.18.1.1:80=3" {
		t.Errorf("configured weight not restored: %s", destString(u.Dests))
	}
}

// TestMonitorReload applies a changed configuration: unchanged checks keep running with
// their state, a new weight takes effect at once, removed services are reported.
func TestMonitorReload(t *testing.T) {
	a, b, c := newFake("a"), newFake("b"), newFake("c")
	rec := newRecorder()
	m := newMonitor(t, Options{OnUpdate: rec.on})
	other := ServiceKey{Protocol: "udp", Addr: netip.MustParseAddr("198.18.0.10"), Port: 53}
	cfg := []VirtualServer{
		{Key: key80(), Servers: []RealServer{
			{Addr: ap("198.18.1.1:80"), Weight: 1, Checks: []Check{fastCheck(a)}},
			{Addr: ap("198.18.1.2:80"), Weight: 1, Checks: []Check{fastCheck(b)}},
		}},
		{Key: other, Servers: []RealServer{{Addr: ap("198.18.1.1:53"), Weight: 1}}},
	}
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	rec.next(t)
	b.set(errDown)
	if u := rec.next(t); !strings.Contains(kinds(u.Events), "server-down 198.18.1.2:80") {
		t.Fatalf("events %s", kinds(u.Events))
	}

	// Same configuration: nothing to report.
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	rec.quiet(t, 10*tick)

	// New weight for a, b kept down, c added, the UDP service removed.
	callsB := b.calls.Load()
	cfg2 := []VirtualServer{{Key: key80(), Servers: []RealServer{
		{Addr: ap("198.18.1.2:80"), Weight: 1, Checks: []Check{fastCheck(b)}},
		{Addr: ap("198.18.1.1:80"), Weight: 5, Checks: []Check{fastCheck(a)}},
		{Addr: ap("198.18.1.3:80"), Weight: 2, Checks: []Check{fastCheck(c)}},
	}}}
	if err := m.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	u := rec.next(t)
	if u.Service != key80() || len(u.Events) != 0 || destString(u.Dests) != "198.18.1.2:80=- 198.18.1.1:80=5 198.18.1.3:80=2" {
		t.Errorf("reload update %s %s", kinds(u.Events), destString(u.Dests))
	}
	if u := rec.next(t); u.Service != other || !u.Removed || u.Dests != nil {
		t.Errorf("removal update %+v", u)
	}
	rec.quiet(t, 10*tick)
	if b.calls.Load() <= callsB {
		t.Errorf("the unchanged check of b stopped running")
	}
	// b's check was kept with its state: it comes back with one success.
	b.set(nil)
	if u := rec.next(t); kinds(u.Events) != "check-up 198.18.1.2:80, server-up 198.18.1.2:80" {
		t.Errorf("events %s", kinds(u.Events))
	}

	// A changed check of a down server starts down.
	c.set(errDown)
	if u := rec.next(t); !strings.Contains(kinds(u.Events), "server-down 198.18.1.3:80") {
		t.Fatalf("events %s", kinds(u.Events))
	}
	c2 := newFake("c2")
	c2.set(errDown)
	cfg2[0].Servers[2].Checks = []Check{fastCheck(c2)}
	if err := m.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	rec.quiet(t, 10*tick)
	callsC := c.calls.Load()
	time.Sleep(5 * tick)
	if c.calls.Load() > callsC+1 {
		t.Errorf("the replaced check still runs")
	}
	c2.set(nil)
	if u := rec.next(t); kinds(u.Events) != "check-up 198.18.1.3:80, server-up 198.18.1.3:80" {
		t.Errorf("events %s", kinds(u.Events))
	}

	st := m.State()
	if len(st) != 1 || st[0].Key != key80() || len(st[0].Servers) != 3 || !st[0].QuorumUp || st[0].LiveWeight != 8 {
		t.Fatalf("state %+v", st)
	}
	s := st[0].Servers[2]
	if !s.Alive || s.Weight != 2 || len(s.Checks) != 1 || s.Checks[0].Check != "fake c2" || s.Checks[0].Runs == 0 || s.Checks[0].LastRun.IsZero() {
		t.Errorf("server state %+v", s)
	}
}

func TestMonitorApplyInvalid(t *testing.T) {
	rec := newRecorder()
	m := newMonitor(t, Options{OnUpdate: rec.on})
	f := newFake("f")
	bad := []VirtualServer{{Key: key80(), Servers: []RealServer{{Addr: ap("198.18.1.1:80"), Weight: 1, Checks: []Check{{Checker: f}}}}}}
	if err := m.Apply(bad); !errors.Is(err, ErrSpec) {
		t.Errorf("Apply of a check without interval: %v", err)
	}
	rec.quiet(t, 5*tick)
	if f.calls.Load() != 0 {
		t.Errorf("an invalid configuration started checks")
	}
}

func TestValidate(t *testing.T) {
	f := newFake("f")
	ok := func() VirtualServer {
		return VirtualServer{Key: key80(), Servers: []RealServer{{Addr: ap("198.18.1.1:80"), Weight: 1, Checks: []Check{fastCheck(f)}}}}
	}
	tests := []struct {
		name string
		mod  func(vs []VirtualServer) []VirtualServer
		want string
	}{
		{"valid", func(vs []VirtualServer) []VirtualServer { return vs }, ""},
		{"no address", func(vs []VirtualServer) []VirtualServer { vs[0].Key.Addr = netip.Addr{}; return vs }, "has no address"},
		{"twice", func(vs []VirtualServer) []VirtualServer { return append(vs, ok()) }, "given twice"},
		{"hysteresis", func(vs []VirtualServer) []VirtualServer { vs[0].Quorum, vs[0].Hysteresis = 2, 2; return vs }, "hysteresis 2 must be below quorum 2"},
		{"weight", func(vs []VirtualServer) []VirtualServer { vs[0].Servers[0].Weight = 70000; return vs }, "weight 70000"},
		{"duplicate server", func(vs []VirtualServer) []VirtualServer {
			vs[0].Servers = append(vs[0].Servers, vs[0].Servers[0])
			return vs
		}, "real server 198.18.1.1:80 given twice"},
		{"nil checker", func(vs []VirtualServer) []VirtualServer { vs[0].Servers[0].Checks[0].Checker = nil; return vs }, "without a checker"},
		{"zero interval", func(vs []VirtualServer) []VirtualServer { vs[0].Servers[0].Checks[0].Interval = 0; return vs }, "must be positive"},
		{"negative retry", func(vs []VirtualServer) []VirtualServer { vs[0].Servers[0].Checks[0].Retry = -1; return vs }, "negative"},
		{"sorry weight", func(vs []VirtualServer) []VirtualServer {
			vs[0].Sorry = &SorryServer{Addr: ap("198.18.9.9:80"), Weight: -1}
			return vs
		}, "sorry server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.mod([]VirtualServer{ok()}))
			if tt.want == "" {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate: %v, want ErrSpec containing %q", err, tt.want)
			}
		})
	}
}

// TestMonitorConcurrencyBound: with MaxConcurrent 2, never more than two checks run.
func TestMonitorConcurrencyBound(t *testing.T) {
	var running, peak atomic.Int32
	m := newMonitor(t, Options{MaxConcurrent: 2})
	var servers []RealServer
	var fakes []*fake
	for i := range 10 {
		f := &fake{name: fmt.Sprint(i), hold: 10 * time.Millisecond, running: &running, peak: &peak}
		fakes = append(fakes, f)
		servers = append(servers, RealServer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}), 80), Weight: 1,
			Checks: []Check{{Checker: f, Interval: time.Millisecond}}})
	}
	if err := m.Apply([]VirtualServer{{Key: key80(), Servers: servers}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		done := true
		for _, f := range fakes {
			if f.calls.Load() < 2 {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.Close()
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrency %d, want 2", p)
	}
	for _, f := range fakes {
		if f.calls.Load() < 2 {
			t.Errorf("check %s ran %d times: starved", f.name, f.calls.Load())
		}
	}
}

// TestMonitorStaggeredStart: first checks spread over the warmup.
func TestMonitorStaggeredStart(t *testing.T) {
	m := newMonitor(t, Options{})
	var servers []RealServer
	var fakes []*fake
	const warmup = 300 * time.Millisecond
	for i := range 20 {
		f := newFake(fmt.Sprint(i))
		fakes = append(fakes, f)
		servers = append(servers, RealServer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}), 80), Weight: 1,
			Checks: []Check{{Checker: f, Interval: time.Hour, Warmup: warmup}}})
	}
	start := time.Now()
	if err := m.Apply([]VirtualServer{{Key: key80(), Servers: servers}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(warmup + 5*time.Second)
	for _, f := range fakes {
		for f.calls.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	var first, last time.Duration = time.Hour, 0
	for _, f := range fakes {
		if f.calls.Load() != 1 {
			t.Fatalf("check %s ran %d times during warmup, want once", f.name, f.calls.Load())
		}
		d := time.Unix(0, f.first.Load()).Sub(start)
		first, last = min(first, d), max(last, d)
	}
	if last-first < warmup/4 {
		t.Errorf("first checks between %v and %v: not staggered over %v", first, last, warmup)
	}
	if last > warmup+time.Second {
		t.Errorf("last first check at %v, after the %v warmup", last, warmup)
	}
}

func TestMonitorClose(t *testing.T) {
	f := newFake("f")
	m := New(Options{})
	if err := m.Apply([]VirtualServer{{Key: key80(), Servers: []RealServer{{Addr: ap("198.18.1.1:80"), Weight: 1, Checks: []Check{fastCheck(f)}}}}}); err != nil {
		t.Fatal(err)
	}
	for f.calls.Load() == 0 {
		time.Sleep(tick)
	}
	m.Close()
	n := f.calls.Load()
	time.Sleep(5 * tick)
	if f.calls.Load() != n {
		t.Errorf("checks run after Close")
	}
	if err := m.Apply(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close: %v", err)
	}
}

// TestMonitorRealTCP checks a real server on loopback: stopping its listener takes it
// out within Interval × (Retry+1) plus one interval, and listening again brings it back
// within one interval.
func TestMonitorRealTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(l.Addr().String())
	serve := func(l net.Listener) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}
	go serve(l)
	rec := newRecorder()
	m := newMonitor(t, Options{OnUpdate: rec.on})
	const interval = 50 * time.Millisecond
	c := Check{Checker: &TCP{Addr: addr, Timeout: time.Second}, Interval: interval, Retry: 1, RetryDelay: interval}
	if err := m.Apply([]VirtualServer{{Key: key80(), Servers: []RealServer{{Addr: addr, Weight: 1, Checks: []Check{c}}}}}); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	time.Sleep(2 * interval)
	stopped := time.Now()
	l.Close()
	u := rec.next(t)
	if kinds(u.Events) != "check-down "+addr.String()+", server-down "+addr.String()+", quorum-lost 0/1" {
		t.Fatalf("events %s", kinds(u.Events))
	}
	if d := time.Since(stopped); d > interval*2+interval+time.Second {
		t.Errorf("down after %v", d)
	}
	if !strings.Contains(u.Events[0].Err.Error(), "connection refused") {
		t.Errorf("error %v", u.Events[0].Err)
	}
	l2, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatalf("cannot listen on %s again (taken by another process meanwhile?): %v", addr, err)
	}
	defer l2.Close()
	go serve(l2)
	started := time.Now()
	u = rec.next(t)
	if !strings.Contains(kinds(u.Events), "server-up") {
		t.Fatalf("events %s", kinds(u.Events))
	}
	if d := time.Since(started); d > interval+time.Second {
		t.Errorf("up after %v", d)
	}
}
