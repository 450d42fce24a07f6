package sched

import (
	"testing"
)

const hour = int64(3600e9)

func lblcFlow(dst string, now int64) *Flow {
	return &Flow{Src: v4("198.18.1.2"), Dst: v4(dst), Proto: 6, Now: now}
}

func TestLBLCExpiry(t *testing.T) {
	s := mustNew(t, "lblc", dests(5, 5), 0)
	idle := sliceCounts{}
	if got := s.Schedule(idle, lblcFlow("198.18.3.1", 0)); got != 0 {
		t.Fatalf("first: %d, want 0 (wlc tie → first)", got)
	}
	// a now has one active connection: wlc would pick b, but the entry keeps a (not busy:
	// 1 active <= weight 5).
	load := sliceCounts{{1, 0}}
	for _, tc := range []struct {
		name string
		now  int64
		want int
	}{
		{"remembered", 1 * hour, 0},
		{"another address goes by wlc", 1 * hour, 1},
		{"used 23 h ago: still remembered", 24 * hour, 0},
		{"unused for 24 h: forgotten", 48 * hour, 1},
		{"the new choice is remembered", 49 * hour, 1},
	} {
		dst := "198.18.3.1"
		if tc.name == "another address goes by wlc" {
			dst = "198.18.3.2"
		}
		if got := s.Schedule(load, lblcFlow(dst, tc.now)); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestLBLCBusyAndQuiesced(t *testing.T) {
	d := dests(2, 4)
	s := mustNew(t, "lblc", d, 0)
	s.Schedule(sliceCounts{}, lblcFlow("198.18.3.1", 0)) // → a
	// a has 3 active > weight 2 and b has 1 active, 1*2 < 4: a is busy, b taken and kept.
	if got := s.Schedule(sliceCounts{{3, 0}, {1, 0}}, lblcFlow("198.18.3.1", 1)); got != 1 {
		t.Fatalf("busy: got %d, want 1", got)
	}
	if got := s.Schedule(sliceCounts{{0, 0}, {1, 0}}, lblcFlow("198.18.3.1", 2)); got != 1 {
		t.Fatalf("after rescheduling: got %d, want the new entry 1", got)
	}
	// Busy needs a lightly loaded server somewhere: b 2 active, 2*2 < 4 is false.
	s2 := mustNew(t, "lblc", d, 0)
	s2.Schedule(sliceCounts{}, lblcFlow("198.18.3.1", 0))
	if got := s2.Schedule(sliceCounts{{3, 0}, {2, 0}}, lblcFlow("198.18.3.1", 1)); got != 0 {
		t.Fatalf("no lighter server: got %d, want the remembered 0", got)
	}
	// Quiesced: weight 0 by an edit sends the address elsewhere.
	q := append([]Dest(nil), d...)
	q[0].Weight = 0
	s3, _ := Rebuild(s2, nil, "lblc", q, 0)
	if got := s3.Schedule(sliceCounts{}, lblcFlow("198.18.3.1", 2)); got != 1 {
		t.Fatalf("quiesced: got %d, want 1", got)
	}
}

// TestLBLCRebuildKeepsTable: the table follows the servers, not their list positions.
func TestLBLCRebuildKeepsTable(t *testing.T) {
	d := dests(1, 1)
	s := mustNew(t, "lblc", d, 0)
	s.Schedule(sliceCounts{}, lblcFlow("198.18.3.1", 0))                                 // → a (ID 0)
	s.Schedule(sliceCounts{{1, 0}}, lblcFlow("198.18.3.2", 0))                           // → b (ID 1)
	added := append([]Dest{{ID: 7, Weight: 1, Addr: v4("198.18.2.99"), Port: 80}}, d...) // new server first
	s2, err := Rebuild(s, nil, "lblc", added, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := s2.Schedule(sliceCounts{}, lblcFlow("198.18.3.1", 1)), s2.Schedule(sliceCounts{}, lblcFlow("198.18.3.2", 1)); a != 1 || b != 2 {
		t.Fatalf("after adding a server: %d %d, want 1 2 (the same servers)", a, b)
	}
	// A deleted server's addresses are scheduled anew; a server whose ID is reused for
	// another address does not inherit them.
	reused := []Dest{{ID: 0, Weight: 1, Addr: v4("198.18.2.200"), Port: 80}, d[1]}
	s3, _ := Rebuild(s2, nil, "lblc", reused, 0)
	if got := s3.Schedule(sliceCounts{{5, 0}}, lblcFlow("198.18.3.1", 2)); got != 1 {
		t.Fatalf("ID reused: got %d, want a fresh wlc choice (1)", got)
	}
}

func TestLBLCRSets(t *testing.T) {
	d := dests(2, 4, 4)
	s := mustNew(t, "lblcr", d, 0)
	x := "198.18.3.1"
	if got := s.Schedule(sliceCounts{}, lblcFlow(x, 0)); got != 0 {
		t.Fatalf("first: %d", got)
	}
	// a busy (3 active > 2) and c light: wlc → b or c; b 1 active, c 0 → c; set {c, a}.
	busy := sliceCounts{{3, 0}, {1, 0}, {0, 0}}
	if got := s.Schedule(busy, lblcFlow(x, hour)); got != 2 {
		t.Fatalf("busy: got %d, want 2", got)
	}
	// The set's least loaded: a (0/2) over c (256/4).
	if got := s.Schedule(sliceCounts{{0, 0}, {0, 0}, {1, 0}}, lblcFlow(x, 2*hour)); got != 0 {
		t.Fatalf("set min: got %d, want 0", got)
	}
	// 24 h after the set last changed (used meanwhile), the most loaded member is dropped:
	// c (3 active / 4) over a (1/2); then a is the only one.
	s.Schedule(sliceCounts{}, lblcFlow(x, 20*hour))
	if got := s.Schedule(sliceCounts{{1, 0}, {0, 0}, {3, 0}}, lblcFlow(x, 25*hour+1)); got != 0 {
		t.Fatalf("after the shrink: got %d, want 0", got)
	}
	var e locEntry
	if !s.(*lblcr).tbl.get(&lblcFlow(x, 0).Dst, 25*hour+1, &e) || e.n != 1 || s.(*lblcr).ids.find(e.refs[0]) != 0 {
		t.Fatalf("set after the shrink: %+v, want just a", e)
	}
}

func TestLBLCRSetCap(t *testing.T) {
	n := lblcrSetMax + 3
	w := make([]int32, n)
	for i := range w {
		w[i] = 2
	}
	s := mustNew(t, "lblcr", dests(w...), 0).(*lblcr)
	x := lblcFlow("198.18.3.1", 0)
	// Each round: every server but the next one is busy-loaded, so the set's choice is
	// busy and the next server joins the set.
	for k := 0; k < n; k++ {
		c := make(sliceCounts, n)
		for i := range c {
			c[i] = [2]int32{3, 0}
		}
		c[k] = [2]int32{0, 0}
		if got := s.Schedule(c, x); got != k {
			t.Fatalf("round %d: got %d", k, got)
		}
	}
	var e locEntry
	if !s.tbl.get(&x.Dst, 0, &e) || e.n != lblcrSetMax {
		t.Fatalf("set size %d, want the cap %d", e.n, lblcrSetMax)
	}
	if newest := s.ids.find(e.refs[0]); newest != n-1 {
		t.Fatalf("newest member %d, want %d", newest, n-1)
	}
}

// TestLocalityTableWindow fills an address's window: a new address then replaces the
// least recently used entry if it is idle for 6 minutes, else is not remembered.
func TestLocalityTableWindow(t *testing.T) {
	tb := newLocTable(1)
	key := v4("198.18.3.1")
	hi, lo := splitAddr(&key)
	h := locHome(hi, lo)
	for w := 0; w < localityWindow; w++ {
		s := &tb.slots[(h+w)&(localitySlots-1)]
		s.hi.Store(uint64(w + 1)) // other addresses
		s.n.Store(1)
		s.lastuse.Store(int64(w) * 1e9)
	}
	now := int64(5 * 60e9) // nobody idle for 6 minutes yet
	if tb.insert(&key, 42, now) {
		t.Fatal("inserted into a full window of fresh entries")
	}
	now = int64(6*60e9) + 2e9 // slots 0, 1 and 2 are idle for 6 minutes: 0 is the oldest
	if !tb.insert(&key, 42, now) {
		t.Fatal("not inserted although entries were idle for 6 minutes")
	}
	var e locEntry
	if !tb.get(&key, now, &e) || e.slot != h || e.refs[0] != 42 {
		t.Fatalf("entry %+v, want in the oldest slot %d", e, h)
	}
	// Entries idle for 24 h are dead.
	if tb.get(&key, now+localityExpiration, &e) {
		t.Fatal("a 24 h idle entry is still found")
	}
}
