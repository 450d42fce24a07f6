package conntrack

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// TestShardKey: tables sharing a ShardKey put every endpoint in the same shard, so a
// FULLNAT connection made in one (its local port picked for its client's shard) can be
// applied to the other; tables with random keys disagree, and Apply refuses it.
func TestShardKey(t *testing.T) {
	key := [ShardKeyLen]byte{1, 2, 3}
	mk := func(k [ShardKeyLen]byte) *Table {
		tb, err := New(Config{MaxEntries: 1 << 12, ShardKey: k})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tb.Close() })
		return tb
	}
	a, b, c := mk(key), mk(key), mk([ShardKeyLen]byte{})
	rng := rand.New(rand.NewPCG(1, 2))
	differ := 0
	for i := 0; i < 1000; i++ {
		var addr [16]byte
		addr[10], addr[11] = 0xff, 0xff
		addr[12], addr[13], addr[14], addr[15] = byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())
		port := uint16(rng.Uint32())
		if a.ShardOf(addr, port) != b.ShardOf(addr, port) {
			t.Fatalf("tables with one key put %v:%d in shards %d and %d", addr, port, a.ShardOf(addr, port), b.ShardOf(addr, port))
		}
		if a.ShardOf(addr, port) != c.ShardOf(addr, port) {
			differ++
		}
	}
	if differ < 900 {
		t.Fatalf("a random key agreed with the shared one on %d of 1000 endpoints", 1000-differ)
	}
	// A FULLNAT connection whose local port shares the client's shard in a.
	client := [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 1, 15: 2}
	laddr := [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 2, 15: 1}
	e := Entry{
		Orig:   Key{Src: client, Dst: [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 1, 15: 100}, SrcPort: 40000, DstPort: 80, Proto: ProtoTCP},
		Reply:  Key{Src: [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 2, 15: 11}, Dst: laddr, SrcPort: 80, Proto: ProtoTCP},
		Dest:   1,
		Method: MethodFullNAT,
		State:  StateEstablished,
	}
	want := a.ShardOf(client, 40000)
	for p := 1024; ; p++ {
		if a.ShardOf(laddr, uint16(p)) == want && c.ShardOf(laddr, uint16(p)) != c.ShardOf(client, 40000) {
			e.Reply.DstPort = uint16(p)
			break
		}
	}
	if _, err := b.Apply(&e, 0, 0); err != nil {
		t.Fatalf("apply to a table with the same key: %v", err)
	}
	if _, err := c.Apply(&e, 0, 0); !errors.Is(err, ErrShardMismatch) {
		t.Fatalf("apply to a table with another key: %v, want ErrShardMismatch", err)
	}
}
