package testbed

import (
	"net/netip"
	"testing"
	"time"
)

// newTestChain builds a chain and removes it when the test ends, checking that no
// namespace of its prefix is left behind.
func newTestChain(t *testing.T, opts ChainOptions) *Bed {
	t.Helper()
	b, err := NewChain(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if l := leftovers(t, opts.Prefix); len(l) > 0 {
			t.Errorf("namespaces left behind: %v", l)
		}
	})
	return b
}

// acceptOne listens on TCP addr in ns until the test ends and accepts (and closes) one
// connection.
func acceptOne(t *testing.T, ns *NS, addr string) {
	t.Helper()
	ln, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
	}()
}

func TestChain(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	b := newTestChain(t, ChainOptions{Prefix: "tchain", ThreadedNAPI: true})
	if b.Switch != nil || len(b.Reals) != 1 || b.Ext == b.Int {
		t.Fatalf("chain shape: switch %v, %d reals, ext==int %v; want no switch, one sink, two director interfaces", b.Switch, len(b.Reals), b.Ext == b.Int)
	}
	for _, h := range []*Host{b.Client, b.Ext, b.Int, b.Reals[0]} {
		if len(h.Iface) > 9 {
			t.Errorf("interface name %q longer than 9 bytes: napi thread names would be truncated", h.Iface)
		}
		if err := PinNAPI(h.Iface, 0); err != nil {
			t.Errorf("pin napi of %s: %v", h.Iface, err)
		}
	}
	for _, h := range []*Host{b.Client, b.Reals[0]} {
		on, err := TxChecksum(h.NS, h.Iface)
		if err != nil || on {
			t.Errorf("tx checksum offload of %s: on=%v err=%v; want off", h.Name, on, err)
		}
	}
	// The director forwards only when asked: the sink is reachable through it then.
	if err := b.SetForwarding(true); err != nil {
		t.Fatal(err)
	}
	acceptOne(t, b.Reals[0].NS, ":80")
	c, err := b.Client.NS.DialContext(ctx, "tcp", netip.AddrPortFrom(b.Reals[0].Addr, 80).String())
	if err != nil {
		t.Fatalf("generator to sink through the forwarding director: %v", err)
	}
	c.Close()
}

// TestChainOneArm builds the one-armed chain and checks its shape, that the generator
// reaches the sink through the director's one interface (in and out of the same veth),
// and that the bridge does not flood the sink's traffic: the sink drops everything and
// never answers, yet the generator receives none of the frames the director sends it.
func TestChainOneArm(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	b := newTestChain(t, ChainOptions{Prefix: "tchain1", ThreadedNAPI: true, OneArm: true})
	ports := b.SwitchPorts()
	if b.Layout != NATOneArm || b.Switch == nil || len(b.Reals) != 1 || b.Ext != b.Int || len(ports) != 3 {
		t.Fatalf("chain shape: layout %v, switch %v, %d reals, ext==int %v, ports %v; want nat-one-arm, a switch, one sink, one director interface, three ports",
			b.Layout, b.Switch, len(b.Reals), b.Ext == b.Int, ports)
	}
	if b.RealGateway(false) == b.ClientGateway(false) || b.Ext.Addr != b.ClientGateway(false) {
		t.Fatalf("gateways %v (client side) and %v (sink side): want two addresses, the first the director's", b.ClientGateway(false), b.RealGateway(false))
	}
	for _, i := range append(ports, b.Client.Iface, b.Ext.Iface, b.Reals[0].Iface) {
		if len(i) > 9 {
			t.Errorf("interface name %q longer than 9 bytes: napi thread names would be truncated", i)
		}
	}
	// What the director sends is bridged in the switch's NAPI threads (see NewChain).
	if on, err := TSO(b.Director, b.Ext.Iface); err != nil || on {
		t.Errorf("tso on the director's interface: on=%v err=%v; want off", on, err)
	}
	if err := b.PinChain(0, 0); err != nil {
		t.Fatalf("pin the chain's napi threads: %v", err)
	}
	if err := b.SetForwarding(true); err != nil {
		t.Fatal(err)
	}
	sink := b.Reals[0]
	// No flooding: the sink drops everything (it has sent nothing yet: neighbours are
	// static), so the bridge can learn its address from no frame of its own.
	drop, err := AttachXDPDrop(sink.NS, sink.Iface)
	if err != nil {
		t.Fatal(err)
	}
	// (Removed with the namespaces if the test fails before closing it.)
	genRx0, _, _, _, err := b.Client.NS.LinkStats(b.Client.Iface)
	if err != nil {
		t.Fatal(err)
	}
	sinkRx0, _, _, _, err := sink.NS.LinkStats(sink.Iface)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	u, err := b.Client.NS.DialContext(ctx, "udp", netip.AddrPortFrom(sink.Addr, 9).String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for range n {
		if _, err := u.Write([]byte("one-armed")); err != nil {
			t.Fatal(err)
		}
	}
	var sinkRx, genRx uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if sinkRx, _, _, _, err = sink.NS.LinkStats(sink.Iface); err != nil {
			t.Fatal(err)
		}
		if sinkRx-sinkRx0 >= n {
			break
		}
	}
	if genRx, _, _, _, err = b.Client.NS.LinkStats(b.Client.Iface); err != nil {
		t.Fatal(err)
	}
	if sinkRx-sinkRx0 < n {
		t.Fatalf("the sink received %d of %d datagrams", sinkRx-sinkRx0, n)
	}
	if genRx-genRx0 >= n/2 {
		t.Fatalf("the generator received %d frames while sending %d to the sink: the bridge floods the sink's traffic", genRx-genRx0, n)
	}
	if err := drop.Close(); err != nil {
		t.Fatal(err)
	}

	acceptOne(t, sink.NS, ":80")
	dirRx0, dirTx0, _, _, err := b.Director.LinkStats(b.Ext.Iface)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Client.NS.DialContext(ctx, "tcp", netip.AddrPortFrom(sink.Addr, 80).String())
	if err != nil {
		t.Fatalf("generator to sink through the forwarding director: %v", err)
	}
	c.Close()
	dirRx, dirTx, _, _, err := b.Director.LinkStats(b.Ext.Iface)
	if err != nil {
		t.Fatal(err)
	}
	if dirRx-dirRx0 < 2 || dirTx-dirTx0 < 2 {
		t.Fatalf("director's one interface received %d and sent %d packets during a TCP connection through it: want both, both ways", dirRx-dirRx0, dirTx-dirTx0)
	}
}
