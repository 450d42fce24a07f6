package health

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// DefaultMaxConcurrent is how many checks run at once when Options.MaxConcurrent is 0.
const DefaultMaxConcurrent = 64

// Options configure a Monitor.
type Options struct {
	// MaxConcurrent bounds the checks running at the same time; 0 means
	// DefaultMaxConcurrent. A check waiting for a slot starts late, it is not skipped.
	MaxConcurrent int
	// OnUpdate receives every Update, one call at a time, in the order the changes
	// happened (Apply's updates before the transitions that follow them). It runs with the
	// Monitor's state lock held: it must not call Apply or Close (State and Counters are
	// fine), and it should be quick, since checks wait for it to report.
	OnUpdate func(Update)
	// Logger receives every event once, at Info level (CheckDown at Warn); nil discards.
	Logger *slog.Logger
}

// Monitor runs the checks of a set of virtual servers and keeps each one's pool state.
// Create it with New, give it the configuration with Apply (again on reload), read it
// with State and Counters, and stop it with Close.
type Monitor struct {
	opts Options
	log  *slog.Logger
	sem  chan struct{}
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	// apply serialises every state change together with its OnUpdate call, so updates
	// are delivered in order. mu guards the state itself; State takes only mu.
	apply    sync.Mutex
	mu       sync.Mutex
	services map[ServiceKey]*service
	order    []ServiceKey
	closed   bool
	counts   Counters
}

type service struct {
	spec    VirtualServer
	pool    *pool
	runners [][]*runner // [server][check]
	dests   []DestState // last delivered
}

// runner is one check's goroutine. si and ci locate it in its service (they change when
// a reload reorders servers); the statistics are read by State. All guarded by mu.
type runner struct {
	key    ServiceKey
	name   string
	cancel context.CancelFunc
	si, ci int

	lastRun     time.Time
	lastErr     error
	runs, fails uint64
}

// Counters are cumulative totals since New.
type Counters struct {
	Checks        uint64 // checks run
	CheckFailures uint64 // of which failed
	// Events counts transitions by kind (index EventKind).
	Events [SorryServerOut + 1]uint64
}

// New returns a Monitor that watches nothing yet.
func New(opts Options) *Monitor {
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Monitor{
		opts:     opts,
		log:      log,
		sem:      make(chan struct{}, opts.MaxConcurrent),
		ctx:      ctx,
		stop:     stop,
		services: map[ServiceKey]*service{},
	}
}

// Apply makes vss the watched configuration, keeping the state of everything unchanged:
// a real server whose checks are the same (same String and timing) keeps its checks
// running and their state; a server whose checks changed starts its new checks in the
// server's current state; a new server starts up (down when a check has alpha); a
// changed configured weight replaces a dynamic one. Services not in vss stop being
// watched. It delivers an Update for every service added, removed or whose desired
// state changed, before returning. An invalid vss changes nothing.
func (m *Monitor) Apply(vss []VirtualServer) error {
	if err := Validate(vss); err != nil {
		return err
	}
	m.apply.Lock()
	defer m.apply.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	now := time.Now()
	var updates []Update
	keep := map[ServiceKey]bool{}
	order := make([]ServiceKey, 0, len(vss))
	for _, vs := range vss {
		vs = cloneVS(vs) // the caller may reuse its slices
		keep[vs.Key] = true
		order = append(order, vs.Key)
		old := m.services[vs.Key]
		svc, events := m.build(vs, old, now)
		m.services[vs.Key] = svc
		if old == nil || len(events) > 0 || !slices.Equal(old.dests, svc.dests) || !slices.Equal(old.spec.Members, vs.Members) {
			m.count(events)
			updates = append(updates, Update{Service: vs.Key, Events: events, Dests: svc.dests})
		}
	}
	for _, key := range m.order {
		if keep[key] {
			continue
		}
		for _, rs := range m.services[key].runners {
			for _, r := range rs {
				r.cancel()
			}
		}
		delete(m.services, key)
		updates = append(updates, Update{Service: key, Removed: true})
	}
	m.order = order
	m.mu.Unlock()
	for _, u := range updates {
		m.deliver(u)
	}
	return nil
}

// cloneVS copies the slices of vs.
func cloneVS(vs VirtualServer) VirtualServer {
	if vs.Sorry != nil {
		s := *vs.Sorry
		vs.Sorry = &s
	}
	vs.Members = slices.Clone(vs.Members)
	vs.Servers = slices.Clone(vs.Servers)
	for i := range vs.Servers {
		vs.Servers[i].Checks = slices.Clone(vs.Servers[i].Checks)
	}
	return vs
}

// build makes the service state for vs, migrating what old (nil for a new service) had.
// Called with mu held.
func (m *Monitor) build(vs VirtualServer, old *service, now time.Time) (*service, []Event) {
	svc := &service{spec: vs, runners: make([][]*runner, len(vs.Servers))}
	initial := make([][]bool, len(vs.Servers))
	oldIdx := map[netip.AddrPort]int{}
	kept := map[int]bool{}
	if old != nil {
		for i, rs := range old.spec.Servers {
			oldIdx[rs.Addr] = i
		}
	}
	for i, rs := range vs.Servers {
		initial[i] = make([]bool, len(rs.Checks))
		oi, existed := oldIdx[rs.Addr]
		if existed && sameChecks(old.spec.Servers[oi].Checks, rs.Checks) {
			kept[oi] = true
			svc.runners[i] = old.runners[oi]
			for j, r := range svc.runners[i] {
				r.si, r.ci = i, j
				initial[i][j] = old.pool.servers[oi].checkUp[j]
			}
			continue
		}
		svc.runners[i] = make([]*runner, len(rs.Checks))
		for j, c := range rs.Checks {
			up := !c.Alpha
			if existed {
				up = old.pool.servers[oi].alive
			}
			initial[i][j] = up
			svc.runners[i][j] = m.start(vs.Key, i, j, c, newCheckState(up, c))
		}
	}
	if old != nil {
		for oi, rs := range old.runners {
			if !kept[oi] {
				for _, r := range rs {
					r.cancel()
				}
			}
		}
	}
	svc.pool = newPool(vs, initial)
	var events []Event
	if old != nil {
		svc.pool.quorumUp = old.pool.quorumUp
		for i, rs := range vs.Servers {
			if oi, ok := oldIdx[rs.Addr]; ok && old.spec.Servers[oi].Weight == rs.Weight {
				svc.pool.servers[i].weight = old.pool.servers[oi].weight
			}
		}
		events = svc.pool.updateQuorum(nil, now)
	}
	svc.dests = svc.pool.dests()
	return svc, events
}

// start launches the goroutine of one check. Called with mu held.
func (m *Monitor) start(key ServiceKey, si, ci int, c Check, st checkState) *runner {
	ctx, cancel := context.WithCancel(m.ctx)
	r := &runner{key: key, name: c.Checker.String(), cancel: cancel, si: si, ci: ci}
	m.wg.Add(1)
	go m.run(ctx, r, c, st)
	return r
}

// run checks at the check's pace: after a random warmup, then Interval after each
// result (RetryDelay while retrying), one slot of the concurrency bound per check.
func (m *Monitor) run(ctx context.Context, r *runner, c Check, st checkState) {
	defer m.wg.Done()
	var delay time.Duration
	if c.Warmup > 0 {
		delay = time.Duration(rand.Int64N(int64(c.Warmup)))
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case m.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		at := time.Now()
		res := c.Checker.Check(ctx)
		<-m.sem
		if ctx.Err() != nil {
			return // stopped mid-check: the result means nothing
		}
		_, next := st.observe(res.Err == nil, c)
		m.report(r, res, st.up, at)
		t.Reset(next)
	}
}

// report feeds one result to the service's pool and delivers the resulting update.
func (m *Monitor) report(r *runner, res Result, up bool, at time.Time) {
	m.apply.Lock()
	defer m.apply.Unlock()
	m.mu.Lock()
	svc := m.services[r.key]
	if svc == nil || r.si >= len(svc.runners) || r.ci >= len(svc.runners[r.si]) || svc.runners[r.si][r.ci] != r {
		m.mu.Unlock()
		return // the check was removed while it ran
	}
	r.lastRun, r.lastErr = at, res.Err
	r.runs++
	m.counts.Checks++
	if res.Err != nil {
		r.fails++
		m.counts.CheckFailures++
	}
	events := svc.pool.setCheck(r.si, r.ci, up, at, r.name, res.Err)
	if res.Err == nil && res.Dynamic {
		events = append(events, svc.pool.setWeight(r.si, res.Weight, at)...)
	}
	if len(events) == 0 {
		m.mu.Unlock()
		return
	}
	m.count(events)
	svc.dests = svc.pool.dests()
	u := Update{Service: r.key, Events: events, Dests: svc.dests}
	m.mu.Unlock()
	m.deliver(u)
}

// count adds events to the counters. Called with mu held.
func (m *Monitor) count(events []Event) {
	for _, e := range events {
		if int(e.Kind) < len(m.counts.Events) {
			m.counts.Events[e.Kind]++
		}
	}
}

// deliver logs the update's events and hands it to OnUpdate. Called with apply held.
func (m *Monitor) deliver(u Update) {
	for _, e := range u.Events {
		level := slog.LevelInfo
		if e.Kind == CheckDown {
			level = slog.LevelWarn
		}
		m.log.Log(context.Background(), level, e.String(), "event", e.Kind.String(), "service", e.Service.String())
	}
	if m.opts.OnUpdate != nil {
		m.opts.OnUpdate(u)
	}
}

// Close stops every check and waits for them. Apply fails with ErrClosed afterwards.
func (m *Monitor) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.stop()
	m.wg.Wait()
}

// ServiceState is a snapshot of one watched service.
type ServiceState struct {
	Key         ServiceKey
	QuorumUp    bool
	SorryActive bool
	LiveWeight  int64
	Servers     []ServerState
	Dests       []DestState
}

// ServerState is a snapshot of one real server.
type ServerState struct {
	Addr   netip.AddrPort
	Alive  bool
	Weight int32 // effective weight
	Checks []CheckState
}

// CheckState is a snapshot of one check.
type CheckState struct {
	Check          string
	Up             bool
	LastRun        time.Time // zero before the first run
	LastErr        error     // the last run's failure, nil if it passed
	Runs, Failures uint64
}

// State returns a snapshot of every watched service, in Apply order.
func (m *Monitor) State() []ServiceState {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ServiceState, 0, len(m.order))
	for _, key := range m.order {
		svc := m.services[key]
		p := svc.pool
		ss := ServiceState{Key: key, QuorumUp: p.quorumUp, SorryActive: p.sorryActive(), LiveWeight: p.liveWeight(), Dests: slices.Clone(svc.dests)}
		for i, s := range p.servers {
			st := ServerState{Addr: s.cfg.Addr, Alive: s.alive, Weight: s.weight}
			for j, r := range svc.runners[i] {
				st.Checks = append(st.Checks, CheckState{Check: r.name, Up: s.checkUp[j], LastRun: r.lastRun, LastErr: r.lastErr, Runs: r.runs, Failures: r.fails})
			}
			ss.Servers = append(ss.Servers, st)
		}
		out = append(out, ss)
	}
	return out
}

// Counters returns the totals since New.
func (m *Monitor) Counters() Counters {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts
}
