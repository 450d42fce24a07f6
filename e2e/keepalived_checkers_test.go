package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// Ports of TestKeepalivedCheckers' services (the real servers use the same).
const (
	checkDNSPort  = 5353
	checkSMTPPort = 2525
	checkUDPPort  = 9053
)

// TestKeepalivedCheckers runs keepalived's newer checkers through xlvsd against servers
// in the real servers' namespaces, each service with rs1 and rs2: DNS_CHECK (a DNS
// responder that answers NOERROR, then REFUSED), SMTP_CHECK (an SMTP greeter that greets
// with 220, then 554), UDP_CHECK (a UDP echo that is closed: the real server's ICMP port
// unreachable takes it down). rs2's server turns bad, rs2 leaves that service only, the
// client's traffic through the VIP then reaches rs1 only; rs2's server turns good again
// and rs2 comes back.
func TestKeepalivedCheckers(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	type server struct {
		bad  atomic.Bool // answer as a failing server
		stop func()
	}
	var dns, smtp, udp [2]*server
	for i, rs := range e.bed.Reals {
		name := fmt.Sprintf("rs%d", i+1)
		dns[i], smtp[i], udp[i] = &server{}, &server{}, &server{}
		dns[i].stop = serveDNS(t, rs.NS, name, &dns[i].bad)
		smtp[i].stop = serveSMTP(t, rs.NS, name, &smtp[i].bad)
		udp[i].stop = serveUDPName(t, rs.NS, checkUDPPort, name)
	}
	rs1, rs2 := e.bed.Reals[0].Addr, e.bed.Reals[1].Addr
	conf := fmt.Sprintf(`! keepalived's newer checkers
virtual_server %[1]s %[4]d {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol UDP
    real_server %[2]s %[4]d {
        DNS_CHECK {
            type A
            name checker.test
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
    real_server %[3]s %[4]d {
        DNS_CHECK {
            type A
            name checker.test
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
}
virtual_server %[1]s %[5]d {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server %[2]s %[5]d {
        SMTP_CHECK {
            helo_name director.test
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
    real_server %[3]s %[5]d {
        SMTP_CHECK {
            helo_name director.test
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
}
virtual_server %[1]s %[6]d {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol UDP
    real_server %[2]s %[6]d {
        UDP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
    real_server %[3]s %[6]d {
        UDP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
}
`, e.bed.VIP, rs1, rs2, checkDNSPort, checkSMTPPort, checkUDPPort)
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	e.restart("-i", e.bed.Ext.Iface, "-i", e.bed.Int.Iface, "--keepalived-conf", path)

	dests := func(proto string, port int) int {
		for _, s := range e.list() {
			if s.Protocol == proto && s.Addr == e.bed.VIP && int(s.Port) == port {
				return len(s.Dests)
			}
		}
		return -1
	}
	wait := func(what, proto string, port, want int) {
		t.Helper()
		var n int
		for begin := time.Now(); time.Since(begin) < 15*time.Second; time.Sleep(50 * time.Millisecond) {
			if n = dests(proto, port); n == want {
				return
			}
		}
		t.Fatalf("%s: %d real servers, want %d:\n%s", what, n, want, e.adm("-L", "-n"))
	}
	// through sends n requests of the service through the VIP and returns who answered.
	through := func(proto string, port, n int) map[string]int {
		t.Helper()
		seen := map[string]int{}
		for range n {
			var name string
			switch port {
			case checkSMTPPort:
				c, err := e.bed.Client.NS.DialContext(e.ctx, "tcp", netip.AddrPortFrom(e.bed.VIP, uint16(port)).String())
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if err != nil {
					t.Fatalf("SMTP greeting through the VIP: %v", err)
				}
				f := strings.Fields(line)
				name = f[len(f)-1]
			default:
				c, err := e.bed.Client.NS.DialContext(e.ctx, "udp", netip.AddrPortFrom(e.bed.VIP, uint16(port)).String())
				if err != nil {
					t.Fatal(err)
				}
				name = checkerAsk(t, c, port)
				c.Close()
			}
			seen[name]++
		}
		return seen
	}
	for _, c := range []struct {
		name  string
		proto string
		port  int
		fail  func(bool)
	}{
		{"DNS_CHECK", "udp", checkDNSPort, func(bad bool) { dns[1].bad.Store(bad) }},
		{"SMTP_CHECK", "tcp", checkSMTPPort, func(bad bool) { smtp[1].bad.Store(bad) }},
		{"UDP_CHECK", "udp", checkUDPPort, func(bad bool) {
			if bad {
				udp[1].stop()
			} else {
				udp[1].stop = serveUDPName(t, e.bed.Reals[1].NS, checkUDPPort, "rs2")
			}
		}},
	} {
		wait(c.name+" at start", c.proto, c.port, 2)
		if got := through(c.proto, c.port, 4); got["rs1"] != 2 || got["rs2"] != 2 {
			t.Fatalf("%s: answered by %v, want rs1 and rs2 twice each", c.name, got)
		}
		c.fail(true)
		wait(c.name+" with rs2 failing", c.proto, c.port, 1)
		if got := through(c.proto, c.port, 4); got["rs1"] != 4 {
			t.Fatalf("%s: answered by %v with rs2 down, want rs1 only", c.name, got)
		}
		c.fail(false)
		wait(c.name+" with rs2 back", c.proto, c.port, 2)
	}
}

// checkerAsk sends one datagram on c and returns the server name in the answer: the DNS
// responder's answer carries it after the header, the UDP server's is the name.
func checkerAsk(t *testing.T, c net.Conn, port int) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	q := []byte{0x12, 0x34, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0} // a DNS header, no question
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("UDP port %d through the VIP: %v", port, err)
	}
	if port == checkDNSPort {
		if n < 12 {
			t.Fatalf("DNS answer of %d bytes", n)
		}
		return string(buf[12:n])
	}
	return string(buf[:n])
}

// serveDNS answers every query on checkDNSPort with its ID, QR set and RCODE 0 (or 5,
// REFUSED, while bad), the question echoed and, after it, name (for the test's own
// queries, which have no question, right after the header).
func serveDNS(t *testing.T, ns *testbed.NS, name string, bad *atomic.Bool) func() {
	pc, err := ns.ListenPacket("udp", fmt.Sprintf(":%d", checkDNSPort))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1024)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			out := append([]byte(nil), buf[:n]...)
			out[2] |= 0x80 // QR
			out[3] = 0
			if bad.Load() {
				out[3] = 5 // REFUSED
			}
			out = append(out, name...)
			pc.WriteTo(out, from)
		}
	}()
	stop := func() { pc.Close() }
	t.Cleanup(stop)
	return stop
}

// serveSMTP greets "220 ... NAME" (554 while bad), answers HELO with 250 and QUIT with 221.
func serveSMTP(t *testing.T, ns *testbed.NS, name string, bad *atomic.Bool) func() {
	ln, err := ns.Listen("tcp", fmt.Sprintf(":%d", checkSMTPPort))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				code := "220"
				if bad.Load() {
					code = "554"
				}
				fmt.Fprintf(c, "%s smtp.test ESMTP %s\r\n", code, name)
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.Fields(line + " x")[0]); cmd {
					case "HELO", "EHLO":
						fmt.Fprintf(c, "250 %s\r\n", name)
					case "QUIT":
						fmt.Fprintf(c, "221 bye\r\n")
						return
					default:
						fmt.Fprintf(c, "502 unknown\r\n")
					}
				}
			}()
		}
	}()
	stop := func() { ln.Close() }
	t.Cleanup(stop)
	return stop
}

// serveUDPName answers every datagram on port with name; stop closes it (the kernel
// then answers with ICMP port unreachable).
func serveUDPName(t *testing.T, ns *testbed.NS, port int, name string) func() {
	pc, err := ns.ListenPacket("udp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1024)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(name), from)
		}
	}()
	var once atomic.Bool
	stop := func() {
		if once.CompareAndSwap(false, true) {
			pc.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}
