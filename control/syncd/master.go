package syncd

import (
	"errors"
	"fmt"
	"net"
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
	syncid  uint8
	senders []sender
	buf     []dataplane.SyncConn
	conn    ipvssync.Conn
	flush   time.Duration
	poll    time.Duration
	quit    chan struct{}
	done    chan struct{}
	// stopping makes send give up at once on a full socket buffer.
	stopping atomic.Bool

	// The whole-table send: walkReq asks the goroutine for one (a request heard by
	// listen, or SendTable). Requests pending when a walk starts are covered by it; one
	// that arrives while a walk runs makes one more walk follow (its asker may have
	// missed the entries already sent).
	// rx is the socket listen hears requests on; listenDone is closed when listen ends.
	walkReq    chan struct{}
	rx         *ipvssync.Receiver
	listenDone chan struct{}
	walking    bool // the goroutine is in walk; send counts walkMsgs then
	walkMsgs   int
}

func (d *Daemon) newMaster(r Running, cfg Config) (*master, error) {
	m := &master{
		d:          d,
		syncid:     r.SyncID,
		walkReq:    make(chan struct{}, 1),
		listenDone: make(chan struct{}),
		senders:    make([]sender, d.opts.Ports),
		buf:        make([]dataplane.SyncConn, drainBatch),
		flush:      cfg.FlushTime,
		poll:       cfg.PollInterval,
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
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
	// Table requests come to the group and first port, as sync messages do; the socket
	// shares them with a backup role's on the same director (each gets a copy).
	rx, err := ipvssync.OpenReceiver(sockConfig(r), 0)
	if err != nil {
		for i := range m.senders {
			m.senders[i].tx.Close()
		}
		return nil, fmt.Errorf("sync daemon: listen for table requests: %w", err)
	}
	m.rx = rx
	return m, nil
}

// listen hears table requests until the socket is closed: a request for the master's
// sync ID (or for any, sync ID 0) asks the goroutine for a whole-table send. Every
// other datagram — another master's sync messages — is not the master's business.
func (m *master) listen() {
	defer close(m.listenDone)
	buf := make([]byte, 2048)
	for {
		n, _, err := m.rx.Recv(buf, time.Time{})
		if err != nil {
			if errors.Is(err, net.ErrClosed) || m.stopping.Load() {
				return
			}
			m.d.log.Debug("listen for table requests", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		sid, ok := ipvssync.IsTableRequest(buf[:n])
		if !ok || (sid != 0 && sid != m.syncid) {
			continue
		}
		m.d.st.reqRecv.Add(1)
		m.requestWalk()
	}
}

// requestWalk asks the goroutine for a whole-table send; it never waits.
func (m *master) requestWalk() {
	select {
	case m.walkReq <- struct{}{}:
	default: // one is pending already
	}
}

// walk sends the whole table (dataplane.WalkSync) through the usual messages, paced to
// Options.TableRate messages a second so that a backup's socket buffer keeps up, and
// drains the workers' queues as it goes so that their entries are not lost meanwhile.
// The last partial messages go at once. It returns early when the master stops.
func (m *master) walk() {
	st := &m.d.st
	// Requests pending now are answered by this walk; later ones, by the next.
	select {
	case <-m.walkReq:
	default:
	}
	st.tableSends.Add(1)
	m.walking, m.walkMsgs = true, 0
	defer func() { m.walking = false }()
	start := time.Now()
	rate := float64(m.d.opts.TableRate)
	n := 0
	m.d.dp.WalkSync(func(c *dataplane.SyncConn) bool {
		m.add(c)
		st.tableConns.Add(1)
		n++
		if n%drainBatch == 0 {
			m.drain()
			m.flushOld(time.Now())
		}
		if ahead := time.Duration(float64(m.walkMsgs)/rate*float64(time.Second)) - time.Since(start); ahead > time.Millisecond {
			select {
			case <-m.quit:
				return false
			case <-time.After(ahead):
			}
		}
		return !m.stopping.Load()
	})
	for i := range m.senders {
		if m.senders[i].w.Len() > 0 {
			m.send(&m.senders[i], m.d.opts.SendTries)
		}
	}
	m.d.log.Info("sync daemon sent the whole table", "entries", n, "messages", m.walkMsgs, "took", time.Since(start).Round(time.Millisecond))
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
	go m.listen()
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
		case <-m.walkReq:
			m.walk()
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
	if m.walking {
		m.walkMsgs++
	}
	now := m.d.dp.Now()
	for i := range n {
		st.lag(now-s.queued[i], i == 0)
	}
}

// stop ends the goroutine, which closes the sockets, waiting at most wait.
func (m *master) stop(wait time.Duration) error {
	m.stopping.Store(true)
	close(m.quit)
	m.rx.Close()
	timeout := time.After(wait)
	select {
	case <-m.listenDone:
	case <-timeout:
		return errors.New("sync daemon: the master's request listener did not stop within " + wait.String())
	}
	select {
	case <-m.done:
		return nil
	case <-timeout:
		return errors.New("sync daemon: the master did not stop within " + wait.String() + "; it closes its sockets when it does")
	}
}
