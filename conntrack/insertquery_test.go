package conntrack

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestInsertQueryDifferential: InsertQuery, which reuses the hash and shard LookupBatch
// computed, leaves every outcome, every returned entry and the table's whole state as
// Insert does. Two tables with the same hash seed take the same random batches
// (LookupBatch), then each missing client packet's connection is inserted with Insert
// into one and InsertQuery into the other: errors, entries, Walk, Stats and counts must
// agree. The batches mix protocols, methods, IPv4 and IPv6, repeated keys (ErrExists,
// Reused), invalid directions, replies, tiny tables (eviction, ErrFull), FULLNAT reply
// keys in another shard (ErrShardMismatch), NAT replies to another endpoint, the NAT
// hint on or off (LookupBatch prefetches the reply key's home slot or not), and
// entries whose Orig is not the query's key (InsertQuery falls back to Insert). The
// batches' queries also give their client endpoint's shard (OrigShard) as ShardOf does.
func TestInsertQueryDifferential(t *testing.T) {
	for _, cfg := range []Config{
		{MaxEntries: 64, Shards: 4, MaxDests: 8},
		{MaxEntries: 1024, MaxDests: 8},
		{MaxEntries: 1 << 17, MaxDests: 8}, // large enough to prefetch (hintMin)
	} {
		a, b := mustNew(t, cfg), mustNew(t, cfg)
		b.seed = a.seed
		rng := rand.New(rand.NewPCG(uint64(cfg.MaxEntries), 19))
		now := int64(1e12)
		var qa, qb [40]Query
		for round := range 300 {
			n := 1 + rng.IntN(len(qa))
			for i := range n {
				c := rng.IntN(200)
				proto := []uint8{ProtoTCP, ProtoUDP, ProtoSCTP}[rng.IntN(3)]
				m := Method(rng.IntN(int(numMethods)))
				e := conn(c, proto, m, uint32(rng.IntN(8)))
				q := Query{Key: e.Orig, Dir: DirOrig, TCPFlags: TCPSyn}
				switch r := rng.IntN(20); {
				case r == 0:
					q.Dir = Dir(7) // invalid: Status Invalid, never hashed
				case r == 1 && e.Method.twoWay():
					q.Key, q.Dir, q.TCPFlags = e.Reply, DirReply, TCPAck
				case r == 2:
					q.TCPFlags = TCPAck // may not open
				case r == 3 && proto == ProtoTCP:
					q.TCPFlags = TCPFin | TCPAck // advances a found entry (FIN_WAIT, later reuse)
				}
				qa[i] = q
			}
			qb = qa
			now += int64(rng.IntN(3000)) * 1e6
			a.LookupBatch(qa[:n], now)
			b.LookupBatch(qb[:n], now)
			for i := range n {
				if qa[i].Status != qb[i].Status || qa[i].Entry != qb[i].Entry {
					t.Fatalf("cfg %+v round %d query %d: lookups differ: %v %+v vs %v %+v", cfg, round, i, qa[i].Status, qa[i].Entry, qb[i].Status, qb[i].Entry)
				}
				// OrigShard: the client endpoint's shard, for client packets only.
				s, ok := qb[i].OrigShard()
				if want := qb[i].Dir == DirOrig; ok != want || ok && s != b.ShardOf(qb[i].Key.Src, qb[i].Key.SrcPort) {
					t.Fatalf("cfg %+v round %d query %d (dir %d): OrigShard %d %v, want %v and shard %d", cfg, round, i, qb[i].Dir, s, ok, want, b.ShardOf(qb[i].Key.Src, qb[i].Key.SrcPort))
				}
			}
			for i := range n {
				if qa[i].Dir != DirOrig || (qa[i].Status != NotFound && qa[i].Status != Reused) {
					continue
				}
				k := qa[i].Key
				e := Entry{Orig: k, Dest: uint32(rng.IntN(9)), Service: 3, Method: Method(rng.IntN(int(numMethods) + 1)), Flags: uint16(i)}
				switch rng.IntN(6) {
				case 0: // another real server's port; same client endpoint
					e.Reply = Key{Src: rs1, Dst: k.Src, SrcPort: uint16(rng.IntN(4)), DstPort: k.SrcPort, Proto: k.Proto}
				case 1: // a FULLNAT-like local endpoint, most likely in another shard
					e.Reply = Key{Src: rs1, Dst: client(rng.IntN(1000)), SrcPort: 8080, DstPort: uint16(rng.Uint32()), Proto: k.Proto}
				case 2: // Orig is not the query's key: InsertQuery falls back to Insert
					e.Orig.SrcPort++
					e.Reply = Key{Src: rs1, Dst: e.Orig.Src, SrcPort: 8080, DstPort: e.Orig.SrcPort, Proto: k.Proto}
				case 3: // a reply of another protocol
					e.Reply = Key{Src: rs1, Dst: k.Src, SrcPort: 8080, DstPort: k.SrcPort, Proto: ProtoUDP}
				default:
					e.Reply = Key{Src: rs1, Dst: k.Src, SrcPort: 8080, DstPort: k.SrcPort, Proto: k.Proto}
				}
				ea := e
				qb[i].Entry = e
				errA := a.Insert(&ea, qa[i].TCPFlags, now)
				errB := b.InsertQuery(&qb[i], qb[i].TCPFlags, now)
				if errA != errB || ea != qb[i].Entry {
					t.Fatalf("cfg %+v round %d query %d: Insert %v %+v, InsertQuery %v %+v", cfg, round, i, errA, ea, errB, qb[i].Entry)
				}
			}
			if round%50 == 49 {
				compareTables(t, a, b, now)
			}
		}
		compareTables(t, a, b, now)
		checkInvariants(t, b)
		t.Logf("MaxEntries %d: %+v", cfg.MaxEntries, b.Stats())
		a.Close()
		b.Close()
	}
}

// compareTables fails unless a and b hold the same entries in the same places, with the
// same statistics and per-destination counts.
func compareTables(t *testing.T, a, b *Table, now int64) {
	t.Helper()
	type walked struct {
		e  Entry
		in int64
	}
	var wa, wb []walked
	a.Walk(now, func(e *Entry, in int64) bool { wa = append(wa, walked{*e, in}); return true })
	b.Walk(now, func(e *Entry, in int64) bool { wb = append(wb, walked{*e, in}); return true })
	if !slices.Equal(wa, wb) {
		t.Fatalf("tables differ: %d entries walked vs %d", len(wa), len(wb))
	}
	if sa, sb := a.Stats(), b.Stats(); sa != sb {
		t.Fatalf("stats differ: Insert %+v, InsertQuery %+v", sa, sb)
	}
	for d := range uint32(8) {
		a1, i1 := a.Conns(d)
		a2, i2 := b.Conns(d)
		if a1 != a2 || i1 != i2 {
			t.Fatalf("dest %d: counts %d/%d vs %d/%d", d, a1, i1, a2, i2)
		}
	}
	if sa := a.Stats(); sa.Inserts == 0 {
		t.Fatalf("no insert succeeded: the test exercises nothing (%+v)", sa)
	}
}
