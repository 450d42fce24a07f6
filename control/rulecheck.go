package control

import (
	"fmt"
	"maps"
	"net/netip"
	"sync"

	"xlvs/control/api"
	"xlvs/control/health"
)

// RuleChecks health-checks the real servers of rules made with xlvsadm (or loaded from
// --config or the state file), with one set of checker blocks in keepalived's syntax
// (xlvsd --health-check TEXT). A server failing its checks is scheduled with weight 0 —
// no new connections, established ones continue — as keepalived's inhibit_on_failure
// does, and gets its configured weight back when it passes. The failure is an overlay:
// the rules, -S and the state file keep the configured weight; -L shows 0 while it lasts.
type RuleChecks struct {
	d    *Daemon
	text string
	mon  *health.Monitor
	mu   sync.Mutex // serialises sync
	ids  map[health.ServiceKey]map[netip.AddrPort]uint32
}

// CheckRuleChecks validates the checker blocks text as StartRuleChecks does, without
// starting anything (xlvsd --check-config). Its error names no flag: the command adds it.
func CheckRuleChecks(text string) error {
	probe := health.ServiceKey{Protocol: api.ProtoTCP, Addr: netip.MustParseAddr("192.0.2.1"), Port: 80}
	if _, err := health.ParseChecks(probe, netip.MustParseAddrPort("192.0.2.2:80"), text); err != nil {
		return fmt.Errorf("parse checker blocks: %w (want keepalived checker blocks, e.g. \"TCP_CHECK { connect_timeout 3 }\" on separate lines)", err)
	}
	return nil
}

// StartRuleChecks validates text (CheckRuleChecks) and starts checking every real server
// of the rules.
func (d *Daemon) StartRuleChecks(text string) (*RuleChecks, error) {
	if err := CheckRuleChecks(text); err != nil {
		return nil, err
	}
	rc := &RuleChecks{d: d, text: text}
	rc.mon = health.New(health.Options{Logger: d.log.With("component", "health"), OnUpdate: rc.update})
	d.mu.Lock()
	d.rc = rc
	d.mu.Unlock()
	if err := rc.sync(); err != nil {
		rc.Close()
		return nil, err
	}
	return rc, nil
}

// sync hands the current rules to the monitor. It runs after every change, outside the
// daemon's lock (the monitor reports through update, which takes it).
func (rc *RuleChecks) sync() error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d := rc.d
	var vss []health.VirtualServer
	ids := map[health.ServiceKey]map[netip.AddrPort]uint32{}
	d.mu.Lock()
	for _, s := range d.r.services {
		key := health.ServiceKey{Protocol: s.cfg.Protocol, Addr: s.cfg.Addr, Port: s.cfg.Port}
		if s.cfg.Protocol == api.ProtoFWMark {
			key = health.ServiceKey{Protocol: api.ProtoTCP, Addr: svcAddr(&s.cfg), FWMark: s.cfg.FWMark}
		}
		vs := health.VirtualServer{Key: key}
		ids[key] = map[netip.AddrPort]uint32{}
		for _, ds := range s.dests {
			addr := netip.AddrPortFrom(ds.cfg.Addr, ds.cfg.Port)
			checks, err := health.ParseChecks(key, addr, rc.text)
			if err != nil {
				d.mu.Unlock()
				return fmt.Errorf("health checks for %v: %w", addr, err)
			}
			ids[key][addr] = ds.id
			vs.Servers = append(vs.Servers, health.RealServer{Addr: addr, Weight: max(ds.cfg.Weight, 1), Inhibit: true, Checks: checks})
		}
		vss = append(vss, vs)
	}
	rc.ids = ids
	for id := range d.down { // forget servers that are gone (their IDs get reused)
		gone := true
		for _, m := range ids {
			for _, v := range m {
				if v == id {
					gone = false
				}
			}
		}
		if gone {
			delete(d.down, id)
		}
	}
	d.mu.Unlock()
	return rc.mon.Apply(vss)
}

// update marks servers failed or recovered and republishes the dataplane's snapshot.
func (rc *RuleChecks) update(u health.Update) {
	if u.Removed {
		return
	}
	d := rc.d
	d.healthEvents.Add(uint64(len(u.Events)))
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := false
	hooks := schedHooks{}
	for _, ds := range u.Dests {
		id, ok := rc.ids[u.Service][ds.Addr]
		if !ok {
			continue
		}
		failed := !ds.InPool || ds.Weight == 0
		if d.down[id] != failed {
			changed = true
			// keepalived's inhibit_on_failure edits the weight: the service's upd_dest.
			if s := d.r.serviceOf(id); s != nil {
				hooks.call(s, d.down, false)
			}
			if failed {
				d.down[id] = true
			} else {
				delete(d.down, id)
			}
			d.log.Info("health check", "service", u.Service, "server", ds.Addr, "up", !failed)
		}
	}
	if !changed {
		return
	}
	snap, built, err := d.snapshotOf(d.r, maps.Clone(d.draining), maps.Clone(d.drainingReals), hooks)
	if err == nil {
		err = d.dp.Publish(snap)
	}
	if err != nil {
		d.log.Error("apply health-check result", "err", err)
		return
	}
	d.scheds = built
}

// Close stops the checks.
func (rc *RuleChecks) Close() { rc.mon.Close() }
