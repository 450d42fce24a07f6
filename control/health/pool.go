package health

import (
	"time"
)

// checkState is one check's keepalived state: up or down, and the retries used since the
// last success. It decides when the check runs next.
type checkState struct {
	up      bool
	retries int
}

// newCheckState is a check's state before its first run: up unless alpha, and with its
// retries used up, so that at start-up one failure is enough (keepalived does the same).
func newCheckState(up bool, c Check) checkState {
	return checkState{up: up, retries: c.Retry}
}

// observe records one result; it reports whether the check changed state and the delay
// to the next run.
func (s *checkState) observe(ok bool, c Check) (changed bool, next time.Duration) {
	if ok {
		s.retries = 0
		if !s.up {
			s.up = true
			return true, c.Interval
		}
		return false, c.Interval
	}
	if !s.up {
		return false, c.Interval // known down: no retries, check at the normal pace
	}
	if s.retries < c.Retry {
		s.retries++
		return false, c.RetryDelay
	}
	s.retries = 0
	s.up = false
	return true, c.Interval
}

// pool is the state machine of one virtual server (keepalived's ipwrapper.c): which real
// servers are alive, their effective weights, the quorum and the sorry server. It is
// pure: methods take observations and return the transitions they cause; the desired
// destinations are a function of the state (dests).
type pool struct {
	key        ServiceKey
	quorum     int64
	hysteresis int64
	sorry      *SorryServer
	servers    []*server
	quorumUp   bool
}

type server struct {
	cfg     RealServer
	checkUp []bool
	failed  int   // checks down
	weight  int32 // effective weight: configured, or set by a dynamic check
	alive   bool
}

// newPool builds the state of vs; initial[i][j] is whether check j of server i starts up.
// The quorum state is computed, not transitioned: no events.
func newPool(vs VirtualServer, initial [][]bool) *pool {
	p := &pool{key: vs.Key, quorum: vs.quorum(), hysteresis: int64(vs.Hysteresis)}
	if vs.Sorry != nil {
		s := *vs.Sorry
		p.sorry = &s
	}
	for i, rs := range vs.Servers {
		sv := &server{cfg: rs, weight: rs.Weight, checkUp: make([]bool, len(rs.Checks))}
		for j := range rs.Checks {
			sv.checkUp[j] = initial[i][j]
			if !sv.checkUp[j] {
				sv.failed++
			}
		}
		sv.alive = sv.failed == 0
		p.servers = append(p.servers, sv)
	}
	p.quorumUp = p.liveWeight() >= p.quorum+p.hysteresis
	return p
}

// liveWeight is the total effective weight of the alive servers.
func (p *pool) liveWeight() int64 {
	var sum int64
	for _, s := range p.servers {
		if s.alive {
			sum += int64(s.weight)
		}
	}
	return sum
}

func (p *pool) sorryActive() bool { return p.sorry != nil && !p.quorumUp }

// setCheck records that check j of server i is now up or down.
func (p *pool) setCheck(i, j int, up bool, now time.Time, check string, err error) []Event {
	s := p.servers[i]
	if s.checkUp[j] == up {
		return nil
	}
	s.checkUp[j] = up
	ev := Event{Time: now, Service: p.key, Server: s.cfg.Addr, Check: check}
	if up {
		s.failed--
		ev.Kind = CheckUp
	} else {
		s.failed++
		ev.Kind, ev.Err = CheckDown, err
	}
	events := []Event{ev}
	if alive := s.failed == 0; alive != s.alive {
		s.alive = alive
		sev := Event{Time: now, Service: p.key, Server: s.cfg.Addr, Inhibit: s.cfg.Inhibit, Weight: s.weight, Kind: ServerDown}
		if alive {
			sev.Kind = ServerUp
		} else {
			sev.Weight = 0
		}
		events = append(events, sev)
		events = p.updateQuorum(events, now)
	}
	return events
}

// setWeight records a dynamic weight for server i (ConfiguredWeight restores it).
func (p *pool) setWeight(i int, w int32, now time.Time) []Event {
	s := p.servers[i]
	if w == ConfiguredWeight {
		w = s.cfg.Weight
	}
	w = max(0, min(w, 65535))
	if w == s.weight {
		return nil
	}
	s.weight = w
	events := []Event{{Kind: WeightChanged, Time: now, Service: p.key, Server: s.cfg.Addr, Weight: w}}
	if s.alive {
		events = p.updateQuorum(events, now)
	}
	return events
}

// updateQuorum applies keepalived's update_quorum_state: the threshold is quorum minus
// hysteresis while up and plus it while down; a live weight of 0 always loses it.
func (p *pool) updateQuorum(events []Event, now time.Time) []Event {
	sum := p.liveWeight()
	if !p.quorumUp {
		thr := p.quorum + p.hysteresis
		if sum < thr {
			return events
		}
		p.quorumUp = true
		events = append(events, Event{Kind: QuorumGained, Time: now, Service: p.key, WeightSum: sum, Threshold: thr})
		if p.sorry != nil {
			events = append(events, Event{Kind: SorryServerOut, Time: now, Service: p.key, Server: p.sorry.Addr})
		}
		return events
	}
	thr := p.quorum - p.hysteresis
	if sum != 0 && sum >= thr {
		return events
	}
	p.quorumUp = false
	events = append(events, Event{Kind: QuorumLost, Time: now, Service: p.key, WeightSum: sum, Threshold: thr})
	if p.sorry != nil {
		events = append(events, Event{Kind: SorryServerIn, Time: now, Service: p.key, Server: p.sorry.Addr, Weight: p.sorry.weight()})
	}
	return events
}

// dests is the desired state of every managed destination:
//   - a real server is in the pool with its effective weight while alive, unless the
//     sorry server has replaced the real servers;
//   - otherwise an inhibited real server stays with weight 0 and any other leaves;
//   - the sorry server is in with its weight while the quorum is lost, else it stays
//     with weight 0 when inhibited, else it leaves.
//
// A sorry server that is also a real server is one destination: in the pool if either
// role wants it, with the larger weight.
func (p *pool) dests() []DestState {
	sorry := p.sorryActive()
	out := make([]DestState, 0, len(p.servers)+1)
	for _, s := range p.servers {
		d := DestState{Addr: s.cfg.Addr}
		switch {
		case s.alive && !sorry:
			d.InPool, d.Weight = true, s.weight
		case s.cfg.Inhibit:
			d.InPool = true
		}
		out = append(out, d)
	}
	if p.sorry == nil {
		return out
	}
	d := DestState{Addr: p.sorry.Addr, Sorry: true}
	switch {
	case sorry:
		d.InPool, d.Weight = true, p.sorry.weight()
	case p.sorry.Inhibit:
		d.InPool = true
	}
	for i := range out {
		if out[i].Addr == d.Addr {
			out[i].InPool = out[i].InPool || d.InPool
			out[i].Weight = max(out[i].Weight, d.Weight)
			return out
		}
	}
	return append(out, d)
}
