package control

import (
	"fmt"
	"net/netip"
	"testing"

	"xlvs/control/api"
	"xlvs/dataplane"
)

// TestAdoptStats: a successor shows the predecessor's counts for the services and real
// servers it has under the same addresses (whatever their IDs), hands the same on at its
// own stop, and -Z still zeroes them.
func TestAdoptStats(t *testing.T) {
	d := newDaemon(t)
	// Another service first, so that IDs differ from the predecessor's.
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: svc("udp", "198.18.1.100", 53)})
	s := svc("tcp", "198.18.1.100", 80)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.11", 8080, 1)})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.12", 8080, 1)})

	key := dataplane.SvcKey{Addr: netip.MustParseAddr("198.18.1.100").As16(), Port: 80, Proto: 6}
	rs := func(a string) [16]byte { return netip.MustParseAddr(a).As16() }
	in := []dataplane.HandoffStat{
		{Service: key, Stats: dataplane.FlowStats{Conns: 5000, InPkts: 25027, OutPkts: 24989, InBytes: 1801404, OutBytes: 2109428}},
		{Service: key, Dest: true, DAddr: rs("198.18.2.11"), DPort: 8080, Stats: dataplane.FlowStats{Conns: 3750, InPkts: 18768, OutPkts: 18743, InBytes: 1350936, OutBytes: 1582136}},
		{Service: key, Dest: true, DAddr: rs("198.18.2.12"), DPort: 8080, Stats: dataplane.FlowStats{Conns: 1250, InPkts: 6259, OutPkts: 6246, InBytes: 450468, OutBytes: 527292}},
		// Gone from the rules: a real server, a service.
		{Service: key, Dest: true, DAddr: rs("198.18.2.13"), DPort: 8080, Stats: dataplane.FlowStats{Conns: 1}},
		{Service: dataplane.SvcKey{Addr: key.Addr, Port: 443, Proto: 6}, Stats: dataplane.FlowStats{Conns: 1}},
	}
	matched, unmatched := d.AdoptStats(in)
	if matched != 3 || unmatched != 2 {
		t.Fatalf("AdoptStats matched %d, unmatched %d; want 3 and 2", matched, unmatched)
	}
	want := map[string]api.Stats{}
	for _, st := range in[:3] {
		name := "service"
		if st.Dest {
			name = netip.AddrFrom16(st.DAddr).Unmap().String()
		}
		want[name] = api.Stats{Conns: st.Stats.Conns, InPkts: st.Stats.InPkts, OutPkts: st.Stats.OutPkts, InBytes: st.Stats.InBytes, OutBytes: st.Stats.OutBytes}
	}
	got := map[string]api.Stats{}
	for _, l := range mustOK(t, d, &api.Request{Op: api.OpList}).Services {
		if l.Port != 80 {
			if l.Stats != (api.Stats{}) {
				t.Errorf("udp/53 shows %+v, want nothing", l.Stats)
			}
			continue
		}
		got["service"] = l.Stats
		for _, ds := range l.Dests {
			got[ds.Addr.String()] = ds.Stats
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: -L --stats shows %+v, want %+v", k, got[k], w)
		}
	}
	// Handed on again at this process's stop: the same numbers.
	again := map[[16]byte]dataplane.FlowStats{}
	for _, st := range d.HandoffStats() {
		if st.Service == key {
			again[st.DAddr] = st.Stats
		}
	}
	if again[[16]byte{}] != in[0].Stats || again[rs("198.18.2.11")] != in[1].Stats || again[rs("198.18.2.12")] != in[2].Stats {
		t.Errorf("handed on %+v, want what was adopted", again)
	}
	mustOK(t, d, &api.Request{Op: api.OpZero})
	for _, l := range mustOK(t, d, &api.Request{Op: api.OpList}).Services {
		if l.Stats != (api.Stats{}) {
			t.Errorf("after -Z %v:%d shows %+v", l.Addr, l.Port, l.Stats)
		}
		for _, ds := range l.Dests {
			if ds.Stats != (api.Stats{}) {
				t.Errorf("after -Z %v shows %+v", ds.Addr, ds.Stats)
			}
		}
	}
}

// TestAdoptStatsFWMark: firewall-mark services' statistics are handed over by mark and
// family (they have no address): the IPv4 and the IPv6 service of one mark each get
// their own, a real server of one its own, a mark no service has any more matches
// nothing; HandoffStats hands them on again with their marks.
func TestAdoptStatsFWMark(t *testing.T) {
	d := newDaemon(t)
	// Another service first, so that IDs differ from the predecessor's.
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: svc("udp", "198.18.1.100", 53)})
	v4, v6 := fwmSvc(1, 4), fwmSvc(1, 6)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: v6})
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: v4})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: v4, Dest: dest("198.18.2.11", 443, 1)})

	rs := netip.MustParseAddr("198.18.2.11").As16()
	in := []dataplane.HandoffStat{
		{Service: dataplane.FWMarkKey(4), FWMark: 1, Stats: dataplane.FlowStats{Conns: 40, InPkts: 400, OutPkts: 390, InBytes: 40000, OutBytes: 39000}},
		{Service: dataplane.FWMarkKey(4), FWMark: 1, Dest: true, DAddr: rs, DPort: 443, Stats: dataplane.FlowStats{Conns: 30, InPkts: 300, OutPkts: 290, InBytes: 30000, OutBytes: 29000}},
		{Service: dataplane.FWMarkKey(6), FWMark: 1, Stats: dataplane.FlowStats{Conns: 6, InPkts: 66, OutPkts: 60, InBytes: 6600, OutBytes: 6000}},
		// Gone: mark 3's service.
		{Service: dataplane.FWMarkKey(4), FWMark: 3, Stats: dataplane.FlowStats{Conns: 1}},
		// An address-keyed service of protocol 0 is not a fwmark service.
		{Service: dataplane.FWMarkKey(4), Stats: dataplane.FlowStats{Conns: 1}},
	}
	matched, unmatched := d.AdoptStats(in)
	if matched != 3 || unmatched != 2 {
		t.Fatalf("AdoptStats matched %d, unmatched %d; want 3 and 2", matched, unmatched)
	}
	toAPI := func(s dataplane.FlowStats) api.Stats {
		return api.Stats{Conns: s.Conns, InPkts: s.InPkts, OutPkts: s.OutPkts, InBytes: s.InBytes, OutBytes: s.OutBytes}
	}
	seen := 0
	for _, l := range mustOK(t, d, &api.Request{Op: api.OpList}).Services {
		switch {
		case l.Protocol != api.ProtoFWMark:
			if l.Stats != (api.Stats{}) {
				t.Errorf("%s %v:%d shows %+v, want nothing", l.Protocol, l.Addr, l.Port, l.Stats)
			}
		case l.Family == 6:
			seen++
			if l.Stats != toAPI(in[2].Stats) {
				t.Errorf("FWM 1 IPv6: -L --stats shows %+v, want %+v", l.Stats, toAPI(in[2].Stats))
			}
		default:
			seen++
			if l.Stats != toAPI(in[0].Stats) {
				t.Errorf("FWM 1 IPv4: -L --stats shows %+v, want %+v", l.Stats, toAPI(in[0].Stats))
			}
			if len(l.Dests) != 1 || l.Dests[0].Stats != toAPI(in[1].Stats) {
				t.Errorf("FWM 1 IPv4 real servers: %+v, want one showing %+v", l.Dests, toAPI(in[1].Stats))
			}
		}
	}
	if seen != 2 {
		t.Fatalf("%d fwmark services listed, want 2", seen)
	}
	// Handed on again at this process's stop: the same numbers, with their marks.
	got := map[string]dataplane.FlowStats{}
	for _, st := range d.HandoffStats() {
		got[fmt.Sprintf("%v mark %d dest %v %v", netip.AddrFrom16(st.Service.Addr).Unmap(), st.FWMark, st.Dest, netip.AddrFrom16(st.DAddr).Unmap())] = st.Stats
	}
	for _, st := range in[:3] {
		k := fmt.Sprintf("%v mark %d dest %v %v", netip.AddrFrom16(st.Service.Addr).Unmap(), st.FWMark, st.Dest, netip.AddrFrom16(st.DAddr).Unmap())
		if got[k] != st.Stats {
			t.Errorf("handed on %s: %+v, want %+v (all: %v)", k, got[k], st.Stats, got)
		}
	}
}
