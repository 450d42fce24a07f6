package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"xlvs/bench/testbed"
)

// Ports of TestSchedulers' services: VIP:port → real server:port, one port per
// subtest. On each port every real server runs a name server: a connection gets the
// server's name and a newline, then is echoed until the client closes it. (Separate real
// server ports keep the connections of one subtest from colliding with another's in the
// director's connection table when the client reuses a source port.)
var schedPorts = []int{9101, 9102, 9103, 9104, 9105}

// nameServers starts the name servers and returns their accept counters, by real server.
func (e *env) nameServers() []*atomic.Int64 {
	e.t.Helper()
	counts := make([]*atomic.Int64, len(e.bed.Reals))
	for i, rs := range e.bed.Reals {
		name := fmt.Sprintf("rs%d", i+1)
		n := new(atomic.Int64)
		counts[i] = n
		for _, port := range schedPorts {
			ln, err := rs.NS.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				e.t.Fatal(err)
			}
			e.t.Cleanup(func() { ln.Close() })
			go serveName(ln, name, n)
		}
	}
	return counts
}

func serveName(ln net.Listener, name string, n *atomic.Int64) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		n.Add(1)
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			if _, err := io.WriteString(c, name+"\n"); err == nil {
				io.Copy(c, c)
			}
		}()
	}
}

// schedService defines a TCP service on the VIP at port with scheduler sched; reals adds
// each real server (same port, masquerading) with the given extra xlvsadm arguments, in
// that order — so the last one is first in the kernel's list.
func (e *env) schedService(port int, sched string, reals ...[]string) netip.AddrPort {
	e.t.Helper()
	vip := netip.AddrPortFrom(e.bed.VIP, uint16(port))
	e.adm("-A", "-t", vip.String(), "-s", sched)
	for i, args := range reals {
		rs := netip.AddrPortFrom(e.bed.Reals[i].Addr, uint16(port)).String()
		e.adm(append([]string{"-a", "-t", vip.String(), "-r", rs, "-m"}, args...)...)
	}
	return vip
}

// held is a client connection kept open, with the name of the server it reached.
type held struct {
	c    net.Conn
	r    *bufio.Reader
	name string
}

// connect opens n connections to vip from the client address src (invalid: the
// default), one after the other, and returns them with the names read. All sockets are
// made on one thread inside the client's namespace.
func (e *env) connect(vip netip.AddrPort, src netip.Addr, n int) []held {
	e.t.Helper()
	out := make([]held, 0, n)
	ctx, cancel := context.WithTimeout(e.ctx, 90*time.Second)
	defer cancel()
	err := e.bed.Client.NS.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		for i := 0; i < n; i++ {
			c, err := d.DialContext(ctx, "tcp", vip.String())
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			name, err := r.ReadString('\n')
			if err != nil {
				c.Close()
				return fmt.Errorf("connection %d: read the server name: %w", i, err)
			}
			out = append(out, held{c: c, r: r, name: strings.TrimSpace(name)})
		}
		return nil
	})
	if err != nil {
		closeAll(out)
		e.t.Fatal(err)
	}
	return out
}

// names opens n short connections and returns the servers they reached, in order.
func (e *env) names(vip netip.AddrPort, src netip.Addr, n int) []string {
	e.t.Helper()
	conns := e.connect(vip, src, n)
	closeAll(conns)
	out := make([]string, len(conns))
	for i, h := range conns {
		out[i] = h.name
	}
	return out
}

func closeAll(hs []held) {
	for _, h := range hs {
		h.c.Close()
	}
}

func tally(names []string) map[string]int {
	m := map[string]int{}
	for _, n := range names {
		m[n]++
	}
	return m
}

// TestSchedulers drives schedulers through the real dataplane: every decision here is
// a new TCP connection from the client, forwarded by xlvsd to a real server.
func TestSchedulers(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	accepted := e.nameServers()
	top := t

	t.Run("wrr 3:1 over 4000 connections", func(t *testing.T) {
		e.t = t
		vip := e.schedService(9101, "wrr", []string{"-w", "3"}, []string{"-w", "1"})
		before := []int64{accepted[0].Load(), accepted[1].Load()}
		const n = 4000
		got := tally(e.names(vip, netip.Addr{}, n))
		if got["rs1"] != 3000 || got["rs2"] != 1000 {
			t.Errorf("client saw %v, want rs1 3000 and rs2 1000", got)
		}
		if a, b := accepted[0].Load()-before[0], accepted[1].Load()-before[1]; a != 3000 || b != 1000 {
			t.Errorf("servers accepted rs1 %d, rs2 %d; want 3000 and 1000", a, b)
		}
		var conns [2]uint64
		for _, d := range e.service("tcp", vip.Addr(), int(vip.Port())).Dests {
			for i, rs := range e.bed.Reals {
				if d.Addr == rs.Addr {
					conns[i] = d.Stats.Conns
				}
			}
		}
		if conns != [2]uint64{3000, 1000} {
			t.Errorf("director counted %v connections, want [3000 1000]", conns)
		}
	})

	t.Run("rr alternates, newest server first", func(t *testing.T) {
		e.t = t
		vip := e.schedService(9102, "rr", []string{"-w", "1"}, []string{"-w", "5"})
		got := e.names(vip, netip.Addr{}, 40)
		for i, name := range got {
			want := []string{"rs2", "rs1"}[i%2] // rs2 was added last: the head of the list
			if name != want {
				t.Fatalf("connection %d went to %s, want %s: %v", i, name, want, got)
			}
		}
	})

	t.Run("sh keeps each client address on one server", func(t *testing.T) {
		e.t = t
		vip := e.schedService(9103, "sh", []string{"-w", "1"}, []string{"-w", "1"})
		// Client addresses 198.18.1.2 to .5; the server is the kernel model's
		// (sh_kernel_test.go). Two servers of weight 1 alternate over the buckets from the
		// head of the list (rs2): even buckets → rs2, odd → rs1.
		for _, last := range []byte{2, 3, 4, 5} {
			src := e.bed.Client.Addr.As4()
			src[3] = last
			a := netip.AddrFrom4(src)
			if a != e.bed.Client.Addr {
				if out, err := e.bed.Client.NS.Run(e.ctx, "ip", "addr", "add", a.String()+"/24", "dev", e.bed.Client.Iface); err != nil {
					t.Fatalf("add %v to the client: %v %s", a, err, out)
				}
			}
			want := []string{"rs2", "rs1"}[kernelSHChoice(a, []int{1, 1})]
			got := tally(e.names(vip, a, 25))
			if got[want] != 25 {
				t.Errorf("client %v reached %v, want all 25 on %s", a, got, want)
			}
		}
	})

	t.Run("weight 0 stops new connections, keeps established ones", func(t *testing.T) {
		e.t = t
		vip := e.schedService(9104, "rr", []string{"-w", "1"}, []string{"-w", "1"})
		kept := e.connect(vip, netip.Addr{}, 1) // rs2, the head of the list
		defer closeAll(kept)
		if kept[0].name != "rs2" {
			t.Fatalf("first connection reached %s, want rs2", kept[0].name)
		}
		rs2 := netip.AddrPortFrom(e.bed.Reals[1].Addr, vip.Port()).String()
		e.adm("-e", "-t", vip.String(), "-r", rs2, "-m", "-w", "0")
		if got := tally(e.names(vip, netip.Addr{}, 20)); got["rs1"] != 20 {
			t.Errorf("after weight 0 on rs2: %v, want all 20 on rs1", got)
		}
		// The established connection to rs2 still carries data both ways.
		h := kept[0]
		h.c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(h.c, "still there\n"); err != nil {
			t.Fatalf("write on the established connection: %v", err)
		}
		if line, err := h.r.ReadString('\n'); err != nil || line != "still there\n" {
			t.Fatalf("echo on the established connection: %q %v", line, err)
		}
		for _, d := range e.service("tcp", vip.Addr(), int(vip.Port())).Dests {
			if d.Addr == e.bed.Reals[1].Addr && (d.Weight != 0 || d.ActiveConns != 1) {
				t.Errorf("rs2 listed with weight %d, %d active connections; want 0 and 1", d.Weight, d.ActiveConns)
			}
		}
	})

	t.Run("-x stops new connections at the threshold", func(t *testing.T) {
		e.t = t
		vip := e.schedService(9105, "rr", []string{"-w", "1", "-x", "3"}, []string{"-w", "1"})
		// rr from the head: rs2, rs1, rs2, rs1, rs2, rs1 — rs1 now holds 3 — then rs2 only.
		conns := e.connect(vip, netip.Addr{}, 12)
		defer closeAll(conns)
		got := map[string]int{}
		for _, h := range conns {
			got[h.name]++
		}
		if got["rs1"] != 3 || got["rs2"] != 9 {
			t.Errorf("12 held connections: %v, want rs1 3 (its -x) and rs2 9", got)
		}
	})

	e.t = top
	e.noChecksumErrors()
}
