package testbed

import (
	"net/netip"
	"testing"
)

func TestChain(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	b, err := NewChain(ChainOptions{Prefix: "tchain", ThreadedNAPI: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if l := leftovers(t, "tchain"); len(l) > 0 {
			t.Errorf("namespaces left behind: %v", l)
		}
	})
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
	ln, err := b.Reals[0].NS.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
	}()
	c, err := b.Client.NS.DialContext(ctx, "tcp", netip.AddrPortFrom(b.Reals[0].Addr, 80).String())
	if err != nil {
		t.Fatalf("generator to sink through the forwarding director: %v", err)
	}
	c.Close()
}
