package health

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of SMTP_CHECK, DNS_CHECK, UDP_CHECK and FILE_CHECK against real servers the test
// starts on loopback: each checker passes, fails in the ways keepalived says it fails,
// and passes again when the server recovers. PING_CHECK is in ping_test.go (it needs a
// network namespace).

// smtpServer is an SMTP responder on loopback whose answers the test sets.
type smtpServer struct {
	addr     netip.AddrPort
	greeting atomic.Value // string, without CRLF
	heloResp atomic.Value
	silent   atomic.Bool // accept and say nothing
	mu       sync.Mutex
	got      []string // lines received
}

func newSMTPServer(t *testing.T) *smtpServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := &smtpServer{addr: netip.MustParseAddrPort(l.Addr().String())}
	s.greeting.Store("220 mx.test ESMTP ready")
	s.heloResp.Store("250 mx.test Hello")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if s.silent.Load() {
		one := make([]byte, 1)
		c.Read(one)
		return
	}
	r := bufio.NewReader(c)
	c.Write([]byte(s.greeting.Load().(string) + "\r\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		s.mu.Lock()
		s.got = append(s.got, line)
		s.mu.Unlock()
		switch {
		case strings.HasPrefix(line, "HELO "):
			c.Write([]byte(s.heloResp.Load().(string) + "\r\n"))
		case line == "QUIT\r\n":
			c.Write([]byte("221 Bye\r\n"))
			return
		default:
			c.Write([]byte("500 what?\r\n"))
		}
	}
}

func (s *smtpServer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.got
	s.got = nil
	return out
}

func TestSMTP(t *testing.T) {
	srv := newSMTPServer(t)
	c, err := NewSMTP(SMTP{Addr: srv.addr, Timeout: 300 * time.Millisecond, HeloName: "lb1.example.net"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	checkErr(t, c.Check(ctx).Err, "")
	// The dialogue keepalived has: HELO with the name, then QUIT (lines end in CRLF).
	if got := srv.lines(); strings.Join(got, "|") != "HELO lb1.example.net\r\n|QUIT\r\n" {
		t.Errorf("server got %q, want HELO lb1.example.net and QUIT", got)
	}

	srv.greeting.Store("554 mx.test no service")
	res := c.Check(ctx)
	checkErr(t, res.Err, `greeting "554 mx.test no service", want 220`)
	if !errors.Is(res.Err, ErrSMTP) {
		t.Errorf("err %v is not ErrSMTP", res.Err)
	}
	if got := srv.lines(); len(got) != 0 {
		t.Errorf("after a bad greeting the checker sent %q, want nothing", got)
	}
	srv.greeting.Store("220 mx.test ESMTP ready")
	srv.heloResp.Store("501 bad HELO")
	checkErr(t, c.Check(ctx).Err, `reply to HELO "501 bad HELO", want 250`)
	srv.heloResp.Store("250 mx.test Hello")
	checkErr(t, c.Check(ctx).Err, "") // recovery

	srv.silent.Store(true)
	start := time.Now()
	checkErr(t, c.Check(ctx).Err, "greeting: timed out")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a silent server took %v to fail, want about the 300ms timeout", d)
	}
	srv.silent.Store(false)
	checkErr(t, c.Check(ctx).Err, "")

	refused, err := NewSMTP(SMTP{Addr: closedPort(t), Timeout: time.Second, HeloName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	checkErr(t, refused.Check(ctx).Err, "connection refused")

	for _, bad := range []SMTP{
		{Addr: srv.addr, Timeout: time.Second, HeloName: "a\r\nMAIL FROM:<x>"},
		{Addr: srv.addr, Timeout: time.Second},
		{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Timeout: time.Second, HeloName: "x"},
	} {
		if _, err := NewSMTP(bad); !errors.Is(err, ErrSpec) {
			t.Errorf("NewSMTP(%+v) = %v, want ErrSpec", bad, err)
		}
	}
}

// dnsServer is a DNS responder on loopback: it answers each query with the rcode the
// test sets, after a datagram with another ID when decoy is set, or not at all.
type dnsServer struct {
	addr   netip.AddrPort
	conn   net.PacketConn
	rcode  atomic.Int32
	mute   atomic.Bool
	decoy  atomic.Bool
	mu     sync.Mutex
	last   []byte // last query received
	closed atomic.Bool
}

func newDNSServer(t *testing.T, at string) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", at)
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{addr: netip.MustParseAddrPort(pc.LocalAddr().String()), conn: pc}
	t.Cleanup(s.close)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := append([]byte(nil), buf[:n]...)
			s.mu.Lock()
			s.last = q
			s.mu.Unlock()
			if s.mute.Load() || n < 12 {
				continue
			}
			ans := append([]byte(nil), q...)
			ans[2] |= 0x80 // QR
			ans[3] = ans[3]&0xf0 | byte(s.rcode.Load())
			if s.decoy.Load() {
				d := append([]byte(nil), ans...)
				d[0] ^= 0xff
				d[3] &^= 0x0f
				pc.WriteTo(d, from)
			}
			pc.WriteTo(ans, from)
		}
	}()
	return s
}

func (s *dnsServer) close() {
	if s.closed.CompareAndSwap(false, true) {
		s.conn.Close()
	}
}

func (s *dnsServer) query() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// wantQuery is the query RFC 1035 §4.1 describes for name and type, class IN, RD set,
// after the 2-byte ID: written out here from the RFC, not from the checker.
func wantQuery(labels []string, qtype uint16) []byte {
	b := []byte{0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0}
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0, byte(qtype>>8), byte(qtype), 0, 1)
	return b
}

func TestDNS(t *testing.T) {
	srv := newDNSServer(t, "127.0.0.1:0")
	ctx := context.Background()
	for _, tc := range []struct {
		typ, name string
		labels    []string
		qtype     uint16
	}{
		{"SOA", ".", nil, 6},
		{"A", "www.example.com", []string{"www", "example", "com"}, 1},
		{"aaaa", "example.org.", []string{"example", "org"}, 28},
		{"MX", "example.net", []string{"example", "net"}, 15},
		{"TXT", "a.b", []string{"a", "b"}, 16},
	} {
		c, err := NewDNS(DNS{Addr: srv.addr, Timeout: time.Second, Type: tc.typ, Name: tc.name})
		if err != nil {
			t.Fatal(err)
		}
		checkErr(t, c.Check(ctx).Err, "")
		q := srv.query()
		if want := wantQuery(tc.labels, tc.qtype); len(q) < 2 || string(q[2:]) != string(want) {
			t.Errorf("%s %s: query %x, want <id>%x", tc.typ, tc.name, q, want)
		}
	}

	c, err := NewDNS(DNS{Addr: srv.addr, Timeout: 300 * time.Millisecond, Type: "A", Name: "www.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	srv.rcode.Store(2) // SERVFAIL
	res := c.Check(ctx)
	checkErr(t, res.Err, "answered with rcode 2")
	if !errors.Is(res.Err, ErrDNS) {
		t.Errorf("%v is not ErrDNS", res.Err)
	}
	srv.rcode.Store(3) // NXDOMAIN is a failure too: only rcode 0 passes
	checkErr(t, c.Check(ctx).Err, "rcode 3")
	srv.rcode.Store(0)
	checkErr(t, c.Check(ctx).Err, "") // recovery

	// An answer with another ID first is skipped, as keepalived skips it.
	srv.decoy.Store(true)
	checkErr(t, c.Check(ctx).Err, "")
	srv.decoy.Store(false)

	srv.mute.Store(true)
	checkErr(t, c.Check(ctx).Err, "no answer: timed out")
	srv.mute.Store(false)
	checkErr(t, c.Check(ctx).Err, "")

	// The server goes away: the ICMP port unreachable fails the check at once.
	srv.close()
	start := time.Now()
	checkErr(t, c.Check(ctx).Err, "connection refused")
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("a closed port took %v to fail, want the ICMP error at once", d)
	}
	// And comes back on the same port.
	srv2 := newDNSServer(t, srv.addr.String())
	_ = srv2
	checkErr(t, c.Check(ctx).Err, "")

	for _, bad := range []DNS{
		{Addr: srv.addr, Timeout: time.Second, Type: "PTR", Name: "."},
		{Addr: srv.addr, Timeout: time.Second, Type: "A", Name: "a..b"},
		{Addr: srv.addr, Timeout: time.Second, Type: "A", Name: strings.Repeat("x", 64) + ".com"},
	} {
		if _, err := NewDNS(bad); !errors.Is(err, ErrSpec) {
			t.Errorf("NewDNS(%+v) = %v, want ErrSpec", bad, err)
		}
	}
}

// udpServer answers each datagram with reply(datagram), nothing when it returns nil.
type udpServer struct {
	addr   netip.AddrPort
	conn   net.PacketConn
	reply  atomic.Value // func([]byte) []byte
	mu     sync.Mutex
	got    [][]byte
	closed atomic.Bool
}

func newUDPServer(t *testing.T, at string) *udpServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", at)
	if err != nil {
		t.Fatal(err)
	}
	s := &udpServer{addr: netip.MustParseAddrPort(pc.LocalAddr().String()), conn: pc}
	s.reply.Store(func(b []byte) []byte { return nil })
	t.Cleanup(s.close)
	go func() {
		buf := make([]byte, 70000)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			d := append([]byte(nil), buf[:n]...)
			s.mu.Lock()
			s.got = append(s.got, d)
			s.mu.Unlock()
			if r := s.reply.Load().(func([]byte) []byte)(d); r != nil {
				pc.WriteTo(r, from)
			}
		}
	}()
	return s
}

func (s *udpServer) close() {
	if s.closed.CompareAndSwap(false, true) {
		s.conn.Close()
	}
}

func (s *udpServer) received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.got
	s.got = nil
	return out
}

func TestUDP(t *testing.T) {
	srv := newUDPServer(t, "127.0.0.1:0")
	ctx := context.Background()
	quick := 200 * time.Millisecond

	// No reply and none required: up (only an ICMP error means down).
	c, _ := NewUDP(UDP{Addr: srv.addr, Timeout: quick, MaxReplyLen: 255})
	checkErr(t, c.Check(ctx).Err, "")
	if got := srv.received(); len(got) != 1 || len(got[0]) != udpRandomPayload {
		t.Errorf("without a payload the server got %d datagrams %x, want one of %d random bytes", len(got), got, udpRandomPayload)
	}

	// The payload is sent as written.
	c, _ = NewUDP(UDP{Addr: srv.addr, Timeout: quick, Payload: []byte("PING"), MaxReplyLen: 255})
	checkErr(t, c.Check(ctx).Err, "")
	if got := srv.received(); len(got) != 1 || string(got[0]) != "PING" {
		t.Errorf("server got %q, want PING", got)
	}

	// require_reply with data and a mask: 'P' 'O' 'N' x? (the last byte's low nibble free).
	req, err := NewUDP(UDP{Addr: srv.addr, Timeout: quick, Payload: []byte("PING"), RequireReply: true,
		ReplyData: []byte{'P', 'O', 'N', 0x40}, ReplyMask: []byte{0, 0, 0, 0x0f}, MinReplyLen: 4, MaxReplyLen: 8})
	if err != nil {
		t.Fatal(err)
	}
	checkErr(t, req.Check(ctx).Err, "no reply: timed out") // silent server, reply required
	srv.reply.Store(func(b []byte) []byte { return []byte("PONG") })
	checkErr(t, req.Check(ctx).Err, "") // 'G' = 0x47 matches 0x4x
	srv.reply.Store(func(b []byte) []byte { return []byte("PONS-extra") })
	checkErr(t, req.Check(ctx).Err, "reply of 10 bytes, want 4 to 8")
	srv.reply.Store(func(b []byte) []byte { return []byte("PANG") })
	checkErr(t, req.Check(ctx).Err, "reply byte 1 is 0x41, want 0x4f")
	srv.reply.Store(func(b []byte) []byte { return []byte("PO") })
	checkErr(t, req.Check(ctx).Err, "reply of 2 bytes")
	srv.reply.Store(func(b []byte) []byte { return []byte("PON\x5a") })
	checkErr(t, req.Check(ctx).Err, "reply byte 3 is 0x5a, want 0x40")
	srv.reply.Store(func(b []byte) []byte { return []byte("PONG!") }) // only the bytes both have are compared
	checkErr(t, req.Check(ctx).Err, "")

	// The port closes: ICMP port unreachable, down at once; reopened: up.
	srv.close()
	start := time.Now()
	for _, cc := range []*UDP{c, req} {
		res := cc.Check(ctx)
		checkErr(t, res.Err, "port unreachable")
		if !errors.Is(res.Err, ErrUDP) {
			t.Errorf("%v is not ErrUDP", res.Err)
		}
	}
	if d := time.Since(start); d > quick {
		t.Errorf("closed port took %v to fail, want the ICMP error before the timeout", d)
	}
	srv2 := newUDPServer(t, srv.addr.String())
	checkErr(t, c.Check(ctx).Err, "")
	srv2.reply.Store(func(b []byte) []byte { return []byte("PONG") })
	checkErr(t, req.Check(ctx).Err, "")

	if _, err := NewUDP(UDP{Addr: srv.addr, Timeout: quick, ReplyData: []byte{1, 2}, ReplyMask: []byte{1}, MaxReplyLen: 3}); !errors.Is(err, ErrSpec) {
		t.Errorf("mask shorter than data: %v, want ErrSpec", err)
	}
}

func TestStrtol(t *testing.T) {
	// C's strtol(s, NULL, 0) as the C standard defines it (7.22.1.4).
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"12\n", 12, true}, {"  -7", -7, true}, {"+3", 3, true},
		{"0x1F", 31, true}, {"0X10", 16, true}, {"010", 8, true}, {"09", 0, true},
		{"42abc", 42, true}, {"abc", 0, true}, {"", 0, true}, {"0x", 0, true}, {"-0x8", -8, true},
		{"99999999999999999999", 0, false},
	} {
		got, ok := strtol(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("strtol(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()

	// Weight 0: a non-zero number fails the server, zero (or no file) passes.
	c, err := NewFile(File{Path: path, ConfiguredWeight: 5})
	if err != nil {
		t.Fatal(err)
	}
	checkErr(t, c.Check(ctx).Err, "") // no file: 0
	write("1\n")
	res := c.Check(ctx)
	checkErr(t, res.Err, "holds 1")
	if !errors.Is(res.Err, ErrFile) {
		t.Errorf("%v is not ErrFile", res.Err)
	}
	write("0\n")
	checkErr(t, c.Check(ctx).Err, "") // recovery
	write("")
	checkErr(t, c.Check(ctx).Err, "")
	write("-2")
	checkErr(t, c.Check(ctx).Err, "holds -2")
	os.Remove(path)
	checkErr(t, c.Check(ctx).Err, "")

	// Reverse: zero fails.
	r, _ := NewFile(File{Path: path, Reverse: true, ConfiguredWeight: 5})
	checkErr(t, r.Check(ctx).Err, "holds 0")
	write("3")
	checkErr(t, r.Check(ctx).Err, "")

	// Weight W: up, with configured + number*W (negated with reverse), clamped 0..65535.
	for _, tc := range []struct {
		file    string
		weight  int32
		reverse bool
		want    int32
	}{
		{"3", 10, false, 35},
		{"3", 10, true, 0},
		{"-1", 2, false, 3},
		{"0x10", 1, false, 21},
		{"100000", 1000, false, 65535},
		{"junk", 7, false, 5},
	} {
		write(tc.file)
		w, _ := NewFile(File{Path: path, Weight: tc.weight, Reverse: tc.reverse, ConfiguredWeight: 5})
		res := w.Check(ctx)
		if res.Err != nil || !res.Dynamic || res.Weight != tc.want {
			t.Errorf("file %q weight %d reverse %v: %+v, want up with weight %d", tc.file, tc.weight, tc.reverse, res, tc.want)
		}
	}

	// A number out of range is ignored: the previous value stays.
	write("4")
	k, _ := NewFile(File{Path: path, Weight: 1, ConfiguredWeight: 1})
	if res := k.Check(ctx); res.Weight != 5 {
		t.Fatalf("weight %d, want 5", res.Weight)
	}
	write("99999999999")
	if res := k.Check(ctx); res.Weight != 5 {
		t.Errorf("after an out-of-range number weight %d, want 5 (previous value kept)", res.Weight)
	}

	// init_file: written when missing, left alone when present unless overwrite.
	ip := filepath.Join(dir, "init")
	i1, _ := NewFile(File{Path: ip, Init: true, InitValue: 7})
	checkErr(t, i1.Check(ctx).Err, "holds 7")
	os.WriteFile(ip, []byte("0"), 0o644)
	i2, _ := NewFile(File{Path: ip, Init: true, InitValue: 9})
	checkErr(t, i2.Check(ctx).Err, "")
	i3, _ := NewFile(File{Path: ip, Init: true, InitValue: 9, Overwrite: true})
	checkErr(t, i3.Check(ctx).Err, "holds 9")
	os.WriteFile(ip, []byte("0"), 0o644)
	checkErr(t, i3.Check(ctx).Err, "") // written once, before the first read only
}

// TestKeepalivedNewCheckers: a keepalived.conf with SMTP_CHECK, DNS_CHECK, UDP_CHECK and
// FILE_CHECK runs through the Monitor against the test's servers: the real server goes
// down when its server fails and comes back when it recovers.
func TestKeepalivedNewCheckers(t *testing.T) {
	smtp := newSMTPServer(t)
	dns := newDNSServer(t, "127.0.0.1:0")
	udp := newUDPServer(t, "127.0.0.1:0")
	udp.reply.Store(func(b []byte) []byte { return []byte("OK") })
	state := filepath.Join(t.TempDir(), "drain")
	src := `
track_file drain {
    file "` + state + `"
    weight 0
}
virtual_server 192.0.2.1 25 {
    protocol TCP
    lb_kind DR
    real_server 127.0.0.1 25 {
        SMTP_CHECK {
            connect_port ` + itoa(smtp.addr.Port()) + `
            helo_name lb.test
            connect_timeout 0.3
            delay_loop 0.05
            retry 0
        }
        DNS_CHECK {
            connect_port ` + itoa(dns.addr.Port()) + `
            type A
            name www.example.com
            connect_timeout 0.3
            delay_loop 0.05
            retry 0
        }
        UDP_CHECK {
            connect_port ` + itoa(udp.addr.Port()) + `
            payload 50494e47
            require_reply 4f4b
            connect_timeout 0.3
            delay_loop 0.05
            retry 0
        }
        FILE_CHECK {
            track_file drain
        }
    }
}
`
	cfg := parseConf(t, src)
	vss, err := FromKeepalived(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(vss[0].Servers[0].Checks); n != 4 {
		t.Fatalf("%d checks, want 4", n)
	}
	rec := newRecorder()
	m := newMonitor(t, Options{OnUpdate: rec.on})
	for i := range vss[0].Servers[0].Checks {
		vss[0].Servers[0].Checks[i].Warmup = 0
	}
	if err := m.Apply(vss); err != nil {
		t.Fatal(err)
	}
	inPool := func(want bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			for _, s := range m.State() {
				if len(s.Dests) == 1 && s.Dests[0].InPool == want {
					return
				}
			}
			select {
			case <-deadline:
				t.Fatalf("real server not InPool=%v within 5 s: %+v", want, m.State())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	inPool(true)
	for _, fail := range []struct {
		name        string
		break_, fix func()
	}{
		{"SMTP greeting", func() { smtp.greeting.Store("421 busy") }, func() { smtp.greeting.Store("220 ok") }},
		{"DNS rcode", func() { dns.rcode.Store(5) }, func() { dns.rcode.Store(0) }},
		{"UDP reply", func() { udp.reply.Store(func([]byte) []byte { return []byte("NO") }) }, func() { udp.reply.Store(func([]byte) []byte { return []byte("OK") }) }},
		{"track file", func() { os.WriteFile(state, []byte("1"), 0o644) }, func() { os.WriteFile(state, []byte("0"), 0o644) }},
	} {
		t.Run(fail.name, func(t *testing.T) {
			fail.break_()
			inPool(false)
			fail.fix()
			inPool(true)
		})
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// TestFromKeepalivedGroup: the services of a virtual_server group share one entry per
// protocol and family, unless a member's pool differs (a real server without a port
// takes the member's port, so its checks differ); an Apply that adds a member delivers
// an Update for the shared entry even though its checks did not change.
func TestFromKeepalivedGroup(t *testing.T) {
	conf := func(entries string) string {
		return "virtual_server_group G {\n" + entries + "}\nvirtual_server group G {\n protocol TCP\n lb_kind NAT\n" +
			" real_server 198.18.1.1 8080 {\n  TCP_CHECK {\n   connect_timeout 1\n  }\n }\n" +
			" real_server 198.18.1.2 {\n  TCP_CHECK {\n   connect_port 8080\n  }\n }\n}\n"
	}
	keys := func(vss []VirtualServer) []string {
		var out []string
		for _, vs := range vss {
			s := vs.Key.String()
			for _, m := range vs.Members {
				s += " " + m.String()
			}
			out = append(out, s)
		}
		return out
	}
	vss, err := FromKeepalived(parseConf(t, conf(" 192.0.2.1-3 80\n")))
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(vss); strings.Join(got, "|") != "tcp group G (IPv4) tcp 192.0.2.1:80 tcp 192.0.2.2:80 tcp 192.0.2.3:80" {
		t.Errorf("entries %q, want one shared by the three members", got)
	}
	// 198.18.1.2 has no port: it is 198.18.1.2:80 for the port-80 members and
	// 198.18.1.2:443 for the other, whose pool is its own.
	vss, err = FromKeepalived(parseConf(t, conf(" 192.0.2.1-2 80\n 192.0.2.9 443\n")))
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(vss); strings.Join(got, "|") != "tcp group G (IPv4) tcp 192.0.2.1:80 tcp 192.0.2.2:80|tcp 192.0.2.9:443" {
		t.Errorf("entries %q", got)
	}

	rec := newRecorder()
	m := newMonitor(t, Options{OnUpdate: rec.on})
	two, _ := FromKeepalived(parseConf(t, conf(" 192.0.2.1-2 80\n")))
	three, _ := FromKeepalived(parseConf(t, conf(" 192.0.2.1-3 80\n")))
	if err := m.Apply(two); err != nil {
		t.Fatal(err)
	}
	if u := rec.next(t); len(u.Dests) != 2 || u.Service.Group != "G" {
		t.Fatalf("first update %+v", u)
	}
	if err := m.Apply(three); err != nil {
		t.Fatal(err)
	}
	if u := rec.next(t); u.Service.Group != "G" || len(u.Dests) != 2 {
		t.Errorf("no update for the group when a member joined: %+v", u)
	}
	if err := m.Apply(three); err != nil {
		t.Fatal(err)
	}
	rec.quiet(t, 100*time.Millisecond)
}
