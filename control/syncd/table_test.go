package syncd

import (
	"errors"
	"testing"
	"time"

	"xlvs/dataplane"
)

// TestTableExchange: a backup that starts asks for the whole table (xlvs's table request)
// and a master in another namespace answers with every entry its dataplane walks, each
// applied as walked; the send is paced to TableRate messages a second. A master answers
// requests for its sync ID or for any (0), not for another; SendTable sends the table
// unasked; RequestTable asks again; neither works without a role.
func TestTableExchange(t *testing.T) {
	a, b := pair(t)
	const rate = 400
	m := newNode(t, a, Options{TableRate: rate})
	table := sample()
	for p := range 1000 {
		e := table[0]
		e.CPort = uint16(20000 + p)
		table = append(table, e)
	}
	m.dp.table = table
	m.start(t, cfg(Master, "", 7))

	bk := newNode(t, b, Options{})
	start := time.Now()
	bk.start(t, cfg(Backup, "", 7)) // asks by itself
	if !waitFor(10*time.Second, func() bool { return len(bk.dp.got()) >= len(table) }) {
		t.Fatalf("the backup applied %d of the master's %d entries; master %+v backup %+v", len(bk.dp.got()), len(table), m.d.Stats(), bk.d.Stats())
	}
	took := time.Since(start)
	index := map[dataplane.SyncConn]int{}
	for _, e := range bk.dp.got() {
		index[e]++
	}
	for i, e := range table {
		if index[e] != 1 {
			t.Errorf("entry %d applied %d times, want once: %+v", i, index[e], e)
		}
	}
	// The master counts a message once its send returns, which may be after the backup
	// applied it.
	waitFor(2*time.Second, func() bool { return m.d.Stats().Conns >= uint64(len(table)) })
	ms, bs := m.d.Stats(), bk.d.Stats()
	if bs.RequestsSent != 1 || ms.RequestsReceived != 1 || ms.TableSends != 1 || ms.TableConns != uint64(len(table)) || ms.Conns != uint64(len(table)) {
		t.Errorf("master %+v\nbackup %+v: want one request sent and heard, one send of %d entries", ms, bs, len(table))
	}
	// Paced: n messages take at least (n-1)/rate, less the pacer's millisecond of slack.
	if min := time.Duration(ms.Messages-1) * time.Second / rate; took < min-2*time.Millisecond {
		t.Errorf("%d messages in %v, want at least %v at %d messages/s", ms.Messages, took, min, rate)
	}
	t.Logf("%d entries in %d messages in %v", len(table), ms.Messages, took)

	// SendTable: the same table again, unasked. A second call while that send runs (it
	// takes ms.Messages/rate, about 60 ms) makes one more send follow, whole: whoever
	// asked may have missed the entries already sent.
	bk.dp.reset()
	before := ms.TableSends
	if err := m.d.SendTable(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return m.d.Stats().TableSends == before+1 }) {
		t.Fatalf("SendTable did not start a send: master %+v", m.d.Stats())
	}
	if err := m.d.SendTable(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return len(bk.dp.got()) >= 2*len(table) }) {
		t.Fatalf("after two SendTable calls the backup applied %d of 2×%d; master %+v", len(bk.dp.got()), len(table), m.d.Stats())
	}
	if s := m.d.Stats().TableSends; s != before+2 {
		t.Fatalf("two SendTable calls, the second during the first's send: %d sends, want 2", s-before)
	}

	// Requests of another sync ID are not answered; those of sync ID 0 are.
	small := sample()
	m.dp.mu.Lock()
	m.dp.table = small
	m.dp.mu.Unlock()
	for _, tc := range []struct {
		syncid uint8
		answer bool
	}{{8, false}, {0, true}, {7, true}} {
		before := m.d.Stats().TableSends
		bk.dp.reset()
		bk2 := newNode(t, b, Options{})
		// A second backup on the same director, its own sync ID: its start asks.
		bk2.start(t, Config{Role: Backup, Sock: cfg(Backup, "", 0).Sock, SyncID: tc.syncid})
		if tc.answer {
			if !waitFor(5*time.Second, func() bool { return m.d.Stats().TableSends == before+1 }) {
				t.Fatalf("sync ID %d: the master did not answer", tc.syncid)
			}
			if !waitFor(5*time.Second, func() bool { return len(bk2.dp.got()) >= len(small) }) {
				t.Fatalf("sync ID %d: the asking backup applied %d of %d", tc.syncid, len(bk2.dp.got()), len(small))
			}
			// RequestTable asks again.
			if err := bk2.d.RequestTable(); err != nil { // from any namespace: the socket is the role's
				t.Fatal(err)
			}
			if !waitFor(5*time.Second, func() bool { return m.d.Stats().TableSends == before+2 }) {
				t.Fatalf("sync ID %d: RequestTable was not answered", tc.syncid)
			}
		} else {
			time.Sleep(300 * time.Millisecond)
			if s := m.d.Stats().TableSends; s != before {
				t.Fatalf("sync ID %d: the master of sync ID 7 answered (%d sends)", tc.syncid, s-before)
			}
		}
		if err := bk2.d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := bk.d.Stop(Backup); err != nil {
		t.Fatal(err)
	}
	if err := m.d.Stop(Master); err != nil {
		t.Fatal(err)
	}
	if err := m.d.SendTable(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("SendTable without a master: %v", err)
	}
	if err := bk.d.RequestTable(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("RequestTable without a role: %v", err)
	}
}
