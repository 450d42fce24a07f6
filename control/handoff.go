package control

import (
	"xlvs/control/api"
	"xlvs/dataplane"
)

// Statistics across a restart handoff (dataplane/handoff.go). Counters live in the
// dataplane's workers and die with the process; -L --stats shows them minus a per-ID
// base (-Z, ID reuse). A stopping xlvsd hands over what -L --stats shows, by address
// (IDs differ between processes); its successor sets its bases so that each service and
// real server it has under the same address shows the predecessor's counts plus its
// own from then on: the counters continue, as the kernel's do across an ipvsadm or
// keepalived restart. Rates (--rate) are estimated afresh. A firewall-mark service has
// no address: its statistics go by its mark and family (HandoffStat.FWMark).

// HandoffStats returns every service's and real server's statistics as -L --stats
// shows them now, by address.
func (d *Daemon) HandoffStats() []dataplane.HandoffStat {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []dataplane.HandoffStat
	for _, s := range d.r.services {
		key, mark := statKey(s)
		out = append(out, dataplane.HandoffStat{Service: key, FWMark: mark, Stats: minusStats(d.dp.ServiceStats(s.id), d.svcBase[s.id])})
		for _, ds := range s.dests {
			out = append(out, dataplane.HandoffStat{Service: key, FWMark: mark, Dest: true, DAddr: ds.cfg.Addr.As16(), DPort: ds.cfg.Port,
				Stats: minusStats(d.dp.DestStats(ds.id), d.destBase[ds.id])})
		}
	}
	return out
}

// AdoptStats makes the handed-over statistics continue on the services and real servers
// defined here under the same addresses (restore the rules first), and returns how many
// it matched and how many it found no service or real server for.
func (d *Daemon) AdoptStats(stats []dataplane.HandoffStat) (matched, unmatched int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	type svcKey struct {
		key  dataplane.SvcKey
		mark uint32
	}
	type destKey struct {
		svc  svcKey
		addr [16]byte
		port uint16
	}
	svcs := map[svcKey]uint32{}
	dests := map[destKey]uint32{}
	for _, s := range d.r.services {
		key, mark := statKey(s)
		svcs[svcKey{key, mark}] = s.id
		for _, ds := range s.dests {
			dests[destKey{svcKey{key, mark}, ds.cfg.Addr.As16(), ds.cfg.Port}] = ds.id
		}
	}
	for _, st := range stats {
		sk := svcKey{st.Service, st.FWMark}
		if !st.Dest {
			id, ok := svcs[sk]
			if !ok {
				unmatched++
				continue
			}
			// shown = now - base = (now - raw) + old, with unsigned wrap-around
			d.svcBase[id] = minusStats(d.dp.ServiceStats(id), st.Stats)
			matched++
			continue
		}
		id, ok := dests[destKey{sk, st.DAddr, st.DPort}]
		if !ok {
			unmatched++
			continue
		}
		d.destBase[id] = minusStats(d.dp.DestStats(id), st.Stats)
		matched++
	}
	return matched, unmatched
}

// statKey is how a service's statistics are handed over: by address, port and
// protocol, or for a firewall-mark service by its family's key and its mark.
func statKey(s *ruleSvc) (dataplane.SvcKey, uint32) {
	if s.cfg.Protocol == api.ProtoFWMark {
		return dataplane.FWMarkKey(uint8(s.cfg.Family)), s.cfg.FWMark
	}
	return dataplane.SvcKey{Addr: s.cfg.Addr.As16(), Port: s.cfg.Port, Proto: protoNum(s.cfg.Protocol)}, 0
}

func minusStats(a, b dataplane.FlowStats) dataplane.FlowStats {
	return dataplane.FlowStats{
		Conns: a.Conns - b.Conns, InPkts: a.InPkts - b.InPkts, OutPkts: a.OutPkts - b.OutPkts,
		InBytes: a.InBytes - b.InBytes, OutBytes: a.OutBytes - b.OutBytes,
	}
}
