package traffic

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func listenUDP(t *testing.T) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func dialUDP(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fakeEcho answers datagrams with reply(i, payload), or not at all when it returns nil.
func fakeEcho(t *testing.T, reply func(i int, p []byte) [][]byte) net.Addr {
	t.Helper()
	pc := listenUDP(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 70000)
		for i := 0; ; i++ {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, r := range reply(i, append([]byte(nil), buf[:n]...)) {
				_, _ = pc.WriteTo(r, addr)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr()
}

func echoOf(name string, p []byte) []byte { return append([]byte(name+"\x00"), p...) }

func TestUDPEchoServer(t *testing.T) {
	ctx := testContext(t)
	pc := listenUDP(t)
	stop := ServeUDPEcho(pc, "u1")
	defer stop()
	for _, size := range []int{0, 1, 7, 8, 1400, 9000, MaxUDPPayload} {
		conn := dialUDP(t, pc.LocalAddr())
		res, err := UDPEcho(ctx, conn, 20, size, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if res.Sent != 20 || res.Received != 20 || res.Mismatched != 0 || res.ByServer["u1"] != 20 || res.Lost() != 0 {
			t.Fatalf("size %d: %+v, want 20 echoes from u1", size, res)
		}
	}
}

func TestUDPEchoStopKeepsConnUsable(t *testing.T) {
	ctx := testContext(t)
	pc := listenUDP(t)
	stop := ServeUDPEcho(pc, "u1")
	done := make(chan struct{})
	go func() { stop(); stop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("stop did not return")
	}
	// The server is gone: nothing answers.
	conn := dialUDP(t, pc.LocalAddr())
	res, err := UDPEcho(ctx, conn, 1, 10, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != 0 || res.Lost() != 1 {
		t.Fatalf("%+v after stop, want the datagram lost", res)
	}
	// pc is still open and its deadline cleared: a new server works on it.
	stop2 := ServeUDPEcho(pc, "u2")
	defer stop2()
	res, err = UDPEcho(ctx, conn, 3, 10, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.ByServer["u2"] != 3 {
		t.Fatalf("%+v, want 3 echoes from u2", res)
	}
}

func TestUDPEchoServerEndsWhenConnCloses(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := ServeUDPEcho(pc, "u")
	pc.Close()
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("server did not end after its conn closed")
	}
}

func TestUDPEchoChecksReplies(t *testing.T) {
	tests := []struct {
		name     string
		reply    func(i int, p []byte) [][]byte
		count    int
		want     UDPEchoResult
		wantErr  string
		size     int
		timeoutD time.Duration
	}{
		{
			name:  "corrupted byte",
			reply: func(i int, p []byte) [][]byte { p[len(p)-1] ^= 1; return [][]byte{echoOf("x", p)} },
			count: 3, size: 100,
			want:    UDPEchoResult{Sent: 3, Mismatched: 3},
			wantErr: "first difference at byte 99",
		},
		{
			name:  "truncated",
			reply: func(i int, p []byte) [][]byte { return [][]byte{echoOf("x", p[:len(p)-1])} },
			count: 2, size: 100,
			want:    UDPEchoResult{Sent: 2, Mismatched: 2},
			wantErr: "has 99 bytes, want 100",
		},
		{
			name:  "no name separator",
			reply: func(i int, p []byte) [][]byte { return [][]byte{[]byte("garbage")} },
			count: 2, size: 10,
			want:    UDPEchoResult{Sent: 2, Mismatched: 2},
			wantErr: "malformed",
		},
		{
			name: "every other lost",
			reply: func(i int, p []byte) [][]byte {
				if i%2 == 1 {
					return nil
				}
				return [][]byte{echoOf("x", p)}
			},
			count: 4, size: 10, timeoutD: 50 * time.Millisecond,
			want:    UDPEchoResult{Sent: 4, Received: 2, ByServer: map[string]int{"x": 2}},
			wantErr: "no echo within",
		},
		{
			// Datagram 1 is answered late, together with datagram 2: the late echo is
			// skipped, not counted as a mismatch.
			name:  "late echo skipped",
			reply: lateFirstEcho(),
			count: 3, size: 64, timeoutD: 100 * time.Millisecond,
			want:    UDPEchoResult{Sent: 3, Received: 2, ByServer: map[string]int{"x": 2}},
			wantErr: "datagram 1: no echo",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			addr := fakeEcho(t, tc.reply)
			timeout := tc.timeoutD
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			res, err := UDPEcho(ctx, dialUDP(t, addr), tc.count, tc.size, timeout)
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != tc.want.Sent || res.Received != tc.want.Received || res.Mismatched != tc.want.Mismatched {
				t.Fatalf("%+v, want %+v", res, tc.want)
			}
			for k, v := range tc.want.ByServer {
				if res.ByServer[k] != v {
					t.Fatalf("ByServer %v, want %v", res.ByServer, tc.want.ByServer)
				}
			}
			if len(res.FirstErrors) == 0 || !strings.Contains(res.FirstErrors[0], tc.wantErr) {
				t.Fatalf("errors %q, want the first to contain %q", res.FirstErrors, tc.wantErr)
			}
		})
	}
}

// lateFirstEcho holds back the echo of the first datagram and sends it just before the
// echo of the second.
func lateFirstEcho() func(i int, p []byte) [][]byte {
	var held []byte
	return func(i int, p []byte) [][]byte {
		switch i {
		case 0:
			held = p
			return nil
		case 1:
			return [][]byte{echoOf("x", held), echoOf("x", p)}
		}
		return [][]byte{echoOf("x", p)}
	}
}

func TestUDPEchoStopsWithContext(t *testing.T) {
	addr := fakeEcho(t, func(int, []byte) [][]byte { return nil }) // never answers
	ctx, cancel := context.WithCancel(testContext(t))
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	res, err := UDPEcho(ctx, dialUDP(t, addr), 1000, 10, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v after the context ended", d)
	}
	if res.Sent != 1 || res.Received != 0 {
		t.Fatalf("%+v, want one datagram sent and none answered", res)
	}
}

func TestUDPEchoBadOptions(t *testing.T) {
	ctx := testContext(t)
	conn := dialUDP(t, listenUDP(t).LocalAddr())
	tests := []struct {
		name    string
		conn    net.Conn
		count   int
		size    int
		timeout time.Duration
	}{
		{"nil conn", nil, 1, 1, time.Second},
		{"negative count", conn, -1, 1, time.Second},
		{"negative size", conn, 1, -1, time.Second},
		{"size too big", conn, 1, MaxUDPPayload + 1, time.Second},
		{"negative timeout", conn, 1, 1, -time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := UDPEcho(ctx, tc.conn, tc.count, tc.size, tc.timeout); !errors.Is(err, ErrBadOptions) {
				t.Fatalf("error %v, want ErrBadOptions", err)
			}
		})
	}
}

func TestEchoPayloadsDiffer(t *testing.T) {
	a, b := make([]byte, 64), make([]byte, 64)
	fillEchoPayload(a, 1)
	fillEchoPayload(b, 2)
	if bytes.Equal(a, b) {
		t.Fatal("payloads of datagrams 1 and 2 are equal")
	}
	scratch := make([]byte, 64)
	if !isStaleEcho(a, 2, scratch) {
		t.Fatal("echo of datagram 1 not recognised as stale while waiting for 2")
	}
	if isStaleEcho(b, 2, scratch) || isStaleEcho(a, 1, scratch) {
		t.Fatal("current echo taken for a stale one")
	}
	a[40] ^= 1
	if isStaleEcho(a, 2, scratch) {
		t.Fatal("corrupted old echo taken for a stale one")
	}
}

func FuzzParseEcho(f *testing.F) {
	f.Add("rs1", []byte("payload"))
	f.Add("", []byte{})
	f.Add("a\x00b", []byte{0, 0})
	f.Fuzz(func(t *testing.T, name string, payload []byte) {
		b := echoOf(name, payload)
		gotName, gotPayload, ok := parseEcho(b)
		if !ok {
			t.Fatalf("parseEcho(%q) failed", b)
		}
		// The name ends at the first NUL; name and payload always rebuild the input.
		if !bytes.Equal(echoOf(gotName, gotPayload), b) {
			t.Fatalf("parseEcho(%q) = %q, %q, which does not rebuild the input", b, gotName, gotPayload)
		}
		if !strings.Contains(name, "\x00") && (gotName != name || !bytes.Equal(gotPayload, payload)) {
			t.Fatalf("parseEcho(%q) = %q, %q; want %q, %q", b, gotName, gotPayload, name, payload)
		}
	})
}
