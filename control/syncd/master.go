package syncd

import (
	"errors"
	"sync/atomic"
	"time"

	"xlvs/control/ipvssync"
	"xlvs/dataplane"
)

// sender is one sending socket and the message being filled for it.
type sender struct {
	tx     *ipvssync.Sender
	w      *ipvssync.Writer
	first  time.Time                    // when the message's first entry was added
	queued [ipvssync.MaxConns + 1]int64 // each entry's SyncConn.Queued, for the lag
}

type master struct {
	d       *Daemon
	senders []sender
	buf     []dataplane.SyncConn
	conn    ipvssync.Conn
	flush   time.Duration
	poll    time.Duration
	quit    chan struct{}
	done    chan struct{}
	// stopping makes send give up at once on a full socket buffer.
	stopping atomic.Bool
}

func (d *Daemon) newMaster(r Running, cfg Config) (*master, error) {
	m := &master{
		d:       d,
		senders: make([]sender, d.opts.Ports),
		buf:     make([]dataplane.SyncConn, drainBatch),
		flush:   cfg.FlushTime,
		poll:    cfg.PollInterval,
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for i := range m.senders {
		tx, err := ipvssync.OpenSender(sockConfig(r), i)
		if err != nil {
			for j := range i {
				m.senders[j].tx.Close()
			}
			return nil, err
		}
		m.senders[i] = sender{tx: tx, w: ipvssync.NewWriter(r.SyncID, r.MaxLen)}
	}
	return m, nil
}

// run drains the dataplane every poll interval until stopped, then sends what it holds
// and closes the sockets (here, so that no send can meet a closed, reused descriptor).
func (m *master) run() {
	defer close(m.done)
	defer func() {
		for i := range m.senders {
			m.senders[i].tx.Close()
		}
	}()
	t := time.NewTicker(m.poll)
	defer t.Stop()
	for {
		m.drain()
		m.flushOld(time.Now())
		select {
		case <-m.quit:
			m.drain()
			for i := range m.senders {
				if m.senders[i].w.Len() > 0 {
					m.send(&m.senders[i], 1)
				}
			}
			return
		case <-t.C:
		}
	}
}

// maxDrains bounds one poll's work so that a stop is noticed under any load.
const maxDrains = 64

func (m *master) drain() {
	for range maxDrains {
		n := m.d.dp.DrainSync(m.buf)
		for i := range n {
			m.add(&m.buf[i])
		}
		if n < len(m.buf) {
			return
		}
	}
}

// add puts one entry into its sender's message, sending the message first when the entry
// does not fit. It does not allocate.
func (m *master) add(e *dataplane.SyncConn) {
	st := &m.d.st
	if !toWire(e, &m.conn) {
		st.mDrop[dropMixedFamily].Add(1)
		return
	}
	s := &m.senders[senderOf(e, len(m.senders))]
	ok, err := s.w.Add(&m.conn)
	if err != nil {
		st.mDrop[dropEncode].Add(1)
		return
	}
	if !ok {
		m.send(s, m.d.opts.SendTries)
		if ok, err = s.w.Add(&m.conn); !ok || err != nil {
			st.mDrop[dropEncode].Add(1) // cannot happen: an empty message takes any entry
			return
		}
	}
	n := s.w.Len()
	if n == 1 {
		s.first = time.Now()
	}
	s.queued[n-1] = e.Queued
}

// flushOld sends the partial messages whose first entry is FlushTime old.
func (m *master) flushOld(now time.Time) {
	for i := range m.senders {
		s := &m.senders[i]
		if s.w.Len() > 0 && now.Sub(s.first) >= m.flush {
			m.send(s, m.d.opts.SendTries)
		}
	}
}

// send sends s's message, waiting for room in a full socket buffer at most tries times,
// and empties it whatever happens.
func (m *master) send(s *sender, tries int) {
	st := &m.d.st
	n := s.w.Len()
	defer s.w.Reset()
	for try := 1; ; try++ {
		err := s.tx.Send(s.w.Bytes())
		if err == nil {
			break
		}
		if !errors.Is(err, ipvssync.ErrWouldBlock) {
			st.mSendErrs.Add(1)
			st.mDrop[dropSendError].Add(uint64(n))
			m.d.log.Debug("send sync message", "err", err)
			return
		}
		if try >= tries || m.stopping.Load() {
			st.mDrop[dropWouldBlock].Add(uint64(n))
			return
		}
		st.mWaits.Add(1)
		s.tx.Wait(m.d.opts.SendWait)
	}
	st.mMsgs.Add(1)
	st.mConns.Add(uint64(n))
	now := m.d.dp.Now()
	for i := range n {
		st.lag(now-s.queued[i], i == 0)
	}
}

// stop ends the goroutine, which closes the sockets, waiting at most wait.
func (m *master) stop(wait time.Duration) error {
	m.stopping.Store(true)
	close(m.quit)
	select {
	case <-m.done:
		return nil
	case <-time.After(wait):
		return errors.New("sync daemon: the master did not stop within " + wait.String() + "; it closes its sockets when it does")
	}
}
