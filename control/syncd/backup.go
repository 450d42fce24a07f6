package syncd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"xlvs/control/ipvssync"
	"xlvs/dataplane"
)

type backup struct {
	d      *Daemon
	syncid uint8
	maxlen int
	rx     []*ipvssync.Receiver
	// req sends the backup's table requests (Daemon.RequestTable), to the group's first
	// port; opened with the role, so it works from any goroutine and network namespace.
	req  *ipvssync.Sender
	quit chan struct{}
	wg   sync.WaitGroup
}

func (d *Daemon) newBackup(r Running) (*backup, error) {
	b := &backup{d: d, syncid: r.SyncID, maxlen: r.MaxLen, quit: make(chan struct{})}
	for i := range d.opts.Ports {
		rx, err := ipvssync.OpenReceiver(sockConfig(r), i)
		if err != nil {
			for _, o := range b.rx {
				o.Close()
			}
			return nil, err
		}
		b.rx = append(b.rx, rx)
	}
	req, err := ipvssync.OpenSender(sockConfig(r), 0)
	if err != nil {
		for _, o := range b.rx {
			o.Close()
		}
		return nil, fmt.Errorf("sync daemon: open the socket for table requests: %w", err)
	}
	b.req = req
	return b, nil
}

func (b *backup) start() {
	for _, rx := range b.rx {
		b.wg.Add(1)
		go b.run(rx)
	}
}

// recvWait is how long one receive waits before looking for a stop.
const recvWait = 200 * time.Millisecond

// run receives and applies messages until stopped; it closes its socket.
func (b *backup) run(rx *ipvssync.Receiver) {
	defer b.wg.Done()
	defer rx.Close()
	buf := make([]byte, b.maxlen)
	conns := make([]ipvssync.Conn, 0, ipvssync.MaxConns)
	for {
		select {
		case <-b.quit:
			return
		default:
		}
		n, _, err := rx.Recv(buf, time.Now().Add(recvWait))
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			b.d.st.bRecvErrs.Add(1)
			b.d.log.Debug("receive sync message", "err", err)
			select {
			case <-b.quit:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		conns = b.process(buf[:n], conns[:0])
	}
}

// process checks, decodes and applies one datagram as ip_vs_process_message does: the
// header's length and size first, then the sync ID, then the entries (all or nothing).
// It returns conns for reuse.
func (b *backup) process(msg []byte, conns []ipvssync.Conn) []ipvssync.Conn {
	st := &b.d.st
	st.bMsgs.Add(1)
	if len(msg) < 4 {
		st.bDrop[dropShort].Add(1)
		return conns
	}
	if int(binary.BigEndian.Uint16(msg[2:])) != len(msg) {
		st.bDrop[dropMalformed].Add(1)
		return conns
	}
	// Byte 1 is the sync ID in both versions' headers.
	if b.syncid != 0 && msg[1] != b.syncid {
		st.bDrop[dropSyncID].Add(1)
		return conns
	}
	conns, _, err := ipvssync.Decode(msg, conns)
	switch {
	case err == nil:
	case errors.Is(err, ipvssync.ErrShort):
		st.bDrop[dropShort].Add(1)
		return conns
	case errors.Is(err, ipvssync.ErrVersion):
		st.bDrop[dropVersion].Add(1)
		return conns
	default:
		st.bDrop[dropMalformed].Add(1)
		return conns
	}
	st.bConns.Add(uint64(len(conns)))
	var e dataplane.SyncConn
	for i := range conns {
		c := &conns[i]
		if r := fromWire(c, &e); r >= 0 {
			st.bDrop[r].Add(1)
			continue
		}
		if c.Flags&ipvssync.FlagSeqMask != 0 {
			st.ignored[ignSeqData].Add(1)
		}
		if len(c.PEData) > 0 {
			st.ignored[ignPEData].Add(1)
		}
		if err := b.d.dp.ApplySync(&e); err != nil {
			st.apply[b.d.applyReason(err)].Add(1)
			continue
		}
		st.bApplied.Add(1)
	}
	clear(conns) // drop PE data references
	return conns
}

func (d *Daemon) applyReason(err error) int {
	for i, r := range d.opts.ApplyReasons {
		if errors.Is(err, r.Err) {
			return i
		}
	}
	return len(d.opts.ApplyReasons)
}

// stop ends the goroutines, which close their sockets, waiting at most wait.
func (b *backup) stop(wait time.Duration) error {
	close(b.quit)
	b.req.Close()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(wait):
		return errors.New("sync daemon: the backup did not stop within " + wait.String() + "; it closes its sockets when it does")
	}
}
