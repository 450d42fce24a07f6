package conntrack

import (
	"testing"
)

// TestClose: Close gives the memory back and leaves an empty table that
// refuses inserts; a second Close does nothing. Both kinds of arena.
func TestClose(t *testing.T) {
	tests := []struct {
		name    string
		entries int
		mapped  bool
	}{
		{"go heap", 1000, false},
		{"mapping", 100000, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustNew(t, Config{MaxEntries: tc.entries, MaxDests: 4})
			if got := tb.mem.mapped != nil; got != tc.mapped && mapSupported {
				t.Fatalf("arena mapped: %v, want %v", got, tc.mapped)
			}
			tb.hint = hintsWork
			es := make([]Entry, 50)
			for i := range es {
				es[i] = mustInsert(t, tb, conn(i, ProtoTCP, MethodNAT, uint32(i%4)), TCPSyn, 0)
			}
			if err := tb.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := tb.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if tb.Len() != 0 {
				t.Fatalf("Len %d after Close", tb.Len())
			}
			for d := range uint32(4) {
				if a, i := tb.Conns(d); a != 0 || i != 0 {
					t.Fatalf("Conns(%d) = %d/%d after Close", d, a, i)
				}
			}
			var out Entry
			if st := tb.Lookup(DirOrig, &es[0].Orig, TCPSyn, sec, &out); st != NotFound {
				t.Fatalf("Lookup after Close: %v, want NotFound", st)
			}
			if tb.Get(DirReply, &es[1].Reply, sec, &out) {
				t.Fatal("Get found an entry after Close")
			}
			qs := []Query{{Key: es[2].Orig, Dir: DirOrig, TCPFlags: TCPSyn}, {Key: es[3].Reply, Dir: DirReply, TCPFlags: TCPAck}}
			tb.LookupBatch(qs, sec)
			if qs[0].Status != NotFound || qs[1].Status != NotFound {
				t.Fatalf("LookupBatch after Close: %v %v, want NotFound", qs[0].Status, qs[1].Status)
			}
			e := conn(99, ProtoTCP, MethodNAT, 0)
			if err := tb.Insert(&e, TCPSyn, sec); err != ErrClosed {
				t.Fatalf("Insert after Close: %v, want ErrClosed", err)
			}
			if n := tb.Reap(1e6*sec, tb.Cap()); n != 0 {
				t.Fatalf("Reap after Close expired %d", n)
			}
			if n := tb.RemoveDest(0, sec); n != 0 {
				t.Fatalf("RemoveDest after Close removed %d", n)
			}
			tb.Walk(sec, func(*Entry, int64) bool { t.Fatal("Walk after Close saw an entry"); return false })
			if st := tb.Stats(); st.Entries != 0 || st.Inserts != 50 {
				t.Fatalf("Stats after Close: %+v", st)
			}
		})
	}
}
