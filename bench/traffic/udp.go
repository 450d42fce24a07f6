package traffic

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// MaxUDPPayload bounds UDPEcho's size so that the echo (name, NUL, payload) still fits in
// one IPv4 UDP datagram with a name of up to 500 bytes.
const MaxUDPPayload = 65000

// UDPEchoResult is what UDPEcho saw.
type UDPEchoResult struct {
	Sent       int            // datagrams written
	Received   int            // echoes whose payload matched byte for byte
	Mismatched int            // replies that were malformed or carried other bytes
	ByServer   map[string]int // matching echoes by server name
	// FirstErrors holds up to 5 messages about lost, refused or mismatched datagrams.
	FirstErrors []string
}

// Lost is the number of datagrams sent that got no reply at all.
func (r UDPEchoResult) Lost() int { return r.Sent - r.Received - r.Mismatched }

func (r *UDPEchoResult) addError(format string, args ...any) {
	if len(r.FirstErrors) < maxFirstErrors {
		r.FirstErrors = append(r.FirstErrors, fmt.Sprintf(format, args...))
	}
}

// UDPEcho sends count datagrams of size bytes on conn (a connected UDP socket, e.g. from
// testbed.NS.DialContext(ctx, "udp", vip)), one at a time, and waits up to timeout (0
// means 5s) for each echo from ServeUDPEcho, checking the payload byte for byte. Payloads
// differ per datagram (the first 8 bytes number it when size >= 8), so a late echo of an
// earlier datagram is recognised and skipped, not counted as a mismatch. When ctx ends,
// UDPEcho stops and returns what it saw. conn's read deadline is cleared on return. The
// error is only for bad arguments.
func UDPEcho(ctx context.Context, conn net.Conn, count, size int, timeout time.Duration) (UDPEchoResult, error) {
	switch {
	case conn == nil:
		return UDPEchoResult{}, fmt.Errorf("udp echo: %w: nil conn", ErrBadOptions)
	case count < 0:
		return UDPEchoResult{}, fmt.Errorf("udp echo: %w: count %d, want >= 0", ErrBadOptions, count)
	case size < 0 || size > MaxUDPPayload:
		return UDPEchoResult{}, fmt.Errorf("udp echo: %w: size %d, want 0 to %d", ErrBadOptions, size, MaxUDPPayload)
	case timeout < 0:
		return UDPEchoResult{}, fmt.Errorf("udp echo: %w: timeout %v, want >= 0", ErrBadOptions, timeout)
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	res := UDPEchoResult{ByServer: map[string]int{}}
	// Wake a blocked Read when ctx ends. On return, the wake-up has either been cancelled or
	// has finished, and the read deadline is cleared.
	woken := make(chan struct{})
	stopWake := context.AfterFunc(ctx, func() {
		defer close(woken)
		_ = conn.SetReadDeadline(time.Unix(1, 0))
	})
	defer func() {
		if !stopWake() {
			<-woken
		}
		_ = conn.SetReadDeadline(time.Time{})
	}()

	payload := make([]byte, size)
	older := make([]byte, size)
	buf := make([]byte, 64<<10)
	for seq := uint64(1); seq <= uint64(count) && ctx.Err() == nil; seq++ {
		fillEchoPayload(payload, seq)
		if _, err := conn.Write(payload); err != nil {
			res.addError("send datagram %d: %v", seq, err)
			continue
		}
		res.Sent++
		deadline := time.Now().Add(timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		if err := conn.SetReadDeadline(deadline); err != nil {
			res.addError("set read deadline: %v", err)
			break
		}
		if ctx.Err() != nil {
			break
		}
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					if ctx.Err() == nil {
						res.addError("datagram %d: no echo within %v", seq, timeout)
					}
				} else {
					res.addError("datagram %d: read echo: %v", seq, err)
				}
				break
			}
			name, got, ok := parseEcho(buf[:n])
			if ok && bytes.Equal(got, payload) {
				res.Received++
				res.ByServer[name]++
				break
			}
			if ok && isStaleEcho(got, seq, older) {
				continue // a late echo of an earlier datagram
			}
			res.Mismatched++
			if !ok {
				res.addError("datagram %d: malformed echo of %d bytes without a NUL after the server name", seq, n)
			} else {
				res.addError("datagram %d: %v: echo from %q has %d bytes, want %d; first difference at byte %d",
					seq, ErrMismatch, name, len(got), len(payload), firstDiffLen(got, payload))
			}
			break
		}
	}
	return res, nil
}

// fillEchoPayload makes datagram seq's payload: seq big-endian in the first 8 bytes (if
// they fit), then blob bytes for seed seq.
func fillEchoPayload(p []byte, seq uint64) {
	if len(p) < 8 {
		fillBlob(p, seq, 0)
		return
	}
	binary.BigEndian.PutUint64(p, seq)
	fillBlob(p[8:], seq, 0)
}

// isStaleEcho reports whether got is exactly the payload of an earlier datagram than seq;
// scratch is len(got) bytes of room.
func isStaleEcho(got []byte, seq uint64, scratch []byte) bool {
	if len(got) < 8 || len(got) != len(scratch) {
		return false
	}
	s := binary.BigEndian.Uint64(got)
	if s == 0 || s >= seq {
		return false
	}
	fillEchoPayload(scratch, s)
	return bytes.Equal(got, scratch)
}

// parseEcho splits "NAME\x00payload".
func parseEcho(b []byte) (name string, payload []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// firstDiffLen is the first index where a and b differ, or the shorter length.
func firstDiffLen(a, b []byte) int {
	n := min(len(a), len(b))
	if i := firstDiff(a[:n], b[:n]); i >= 0 {
		return i
	}
	return n
}
