package dataplane

import (
	"testing"

	"xlvs/bpf"
)

// TestFastPathBatch: one drain's installs and removals reach a real fastpath map as
// batches, with the outcome of one update per entry: three NAT connections (six
// directions) offered together into a map of five entries install five, count one as
// map full and remember exactly what the map holds; two FINs in one drain remove both
// connections' entries that are in (and nothing of the one never installed).
func TestFastPathBatch(t *testing.T) {
	r := newRig(t, "rr", 1)
	f, cls := withFastMap(t, r, 5)
	send := func(sport uint16, fromClient bool, p pkt) { natSend(t, r, sport, fromClient, p) }
	ports := []uint16{41000, 41001, 41002}
	for _, sport := range ports {
		send(sport, true, pkt{syn: true})
		send(sport, false, pkt{syn: true, ack: true})
		send(sport, true, pkt{ack: true})
	}
	f.drain(r.dp.now() + fastInstallDelay)
	if st := f.Stats(); st.Installed != 5 || st.MapFull != 1 || st.Failed != 0 || st.Entries != 5 {
		t.Fatalf("after one drain of three connections: %+v, want 5 installed, 1 map full", st)
	}
	inMap := func() map[bpf.FastKey]bool {
		m := map[bpf.FastKey]bool{}
		if err := cls.FastWalk(func(k *bpf.FastKey, _ *bpf.FastVal) bool { m[*k] = true; return true }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := inMap()
	if len(m) != len(f.flows) {
		t.Fatalf("the map holds %d entries, the fast path remembers %d", len(m), len(f.flows))
	}
	for k := range f.flows {
		if !m[k] {
			t.Fatalf("remembered %+v, not in the map", k)
		}
	}
	// The last direction offered did not fit: the third connection's reply.
	if _, ok := f.flows[fkey(rs1, client, 8080, ports[2], 6)]; ok {
		t.Fatal("the entry that did not fit is remembered")
	}

	// Two FINs, one drain: four entries out, the third connection's request stays.
	send(ports[0], true, pkt{fin: true, ack: true})
	send(ports[1], true, pkt{fin: true, ack: true})
	f.drain(r.dp.now())
	if st := f.Stats(); st.Removed != 4 || st.Entries != 1 || st.Failed != 0 {
		t.Fatalf("after two FINs: %+v, want 4 removed, 1 entry", st)
	}
	m = inMap()
	if len(m) != 1 || !m[fkey(client, vip, ports[2], 80, 6)] {
		t.Fatalf("the map holds %v, want only the third connection's request", m)
	}
}
