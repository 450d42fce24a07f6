package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestCPUMask(t *testing.T) {
	for n, want := range map[int]string{0: "0", 1: "1", 2: "3", 4: "f", 32: "ffffffff", 33: "1,ffffffff", 64: "ffffffff,ffffffff"} {
		if got := cpuMask(n); got != want {
			t.Errorf("cpuMask(%d) = %q, want %q", n, got, want)
		}
	}
}

// rxQueuePackets reads the per-queue receive counters of a veth (`ethtool -S`:
// rx_queue_N_xdp_packets, counted by the veth's NAPI poll, which runs when the veth has
// GRO or XDP on).
func rxQueuePackets(t *testing.T, ctx context.Context, ns *NS, ifname string, queues int) []uint64 {
	t.Helper()
	out, err := ns.Run(ctx, "ethtool", "-S", ifname)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]uint64, queues)
	found := 0
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		for q := range got {
			if k == fmt.Sprintf("rx_queue_%d_xdp_packets", q) {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				if err != nil {
					t.Fatalf("ethtool -S %s: %q: %v", ifname, line, err)
				}
				got[q] = n
				found++
			}
		}
	}
	if found != queues {
		t.Fatalf("ethtool -S %s: %d of %d rx_queue_N_xdp_packets counters:\n%s", ifname, found, queues, out)
	}
	return got
}

// TestQueues builds a bed with two queues per veth and checks, with real datagrams and
// the receiving veth's own per-queue counters, what the package doc says: every veth end
// has the queues, a sender's UDP sockets spread over the peer's RX queues, and SetXPS
// puts all of a host's traffic on one queue.
func TestQueues(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	b, err := New(Options{Layout: NATTwoArm, Reals: 1, Prefix: "mq", Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	port, err := b.SwitchPort(b.Int)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		ns    *NS
		iface string
	}{{b.Client.NS, b.Client.Iface}, {b.Director, b.Ext.Iface}, {b.Director, b.Int.Iface}, {b.Switch, port}, {b.Reals[0].NS, b.Reals[0].Iface}} {
		rx, tx, err := Queues(e.ns, e.iface)
		if err != nil {
			t.Fatal(err)
		}
		if rx != 2 || tx != 2 {
			t.Errorf("%s in %s: %d RX and %d TX queues, want 2 and 2", e.iface, e.ns.Name(), rx, tx)
		}
	}
	// GRO on gives the director's veths their NAPI instances, which count per queue; the
	// switch port sends to int0 through them only with TSO off (drivers/net/veth.c,
	// veth_skb_is_eligible_for_gro), as it is when XDP runs on int0.
	for _, i := range []string{b.Ext.Iface, b.Int.Iface} {
		if err := SetGRO(b.Director, i, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := SetTSO(b.Switch, port, false); err != nil {
		t.Fatal(err)
	}
	const socks, per = 64, 5
	// send sends per datagrams from each of socks sockets of from to the director's
	// address on to, and returns how many went out.
	send := func(from *Host, to *Host) uint64 {
		t.Helper()
		sent := uint64(0)
		for i := range socks {
			c, err := from.NS.DialContext(ctx, "udp", netip.AddrPortFrom(to.Addr, uint16(20000+i)).String())
			if err != nil {
				t.Fatal(err)
			}
			for range per {
				// The director has no socket there: its port unreachable makes a
				// later write fail with ECONNREFUSED (that datagram is not sent).
				_, err := c.Write([]byte("queue test"))
				switch {
				case err == nil:
					sent++
				case !errors.Is(err, syscall.ECONNREFUSED):
					t.Fatal(err)
				}
			}
			c.Close()
		}
		return sent
	}
	delta := func(a, b []uint64) []uint64 { return []uint64{b[0] - a[0], b[1] - a[1]} }

	// Hashed: the client straight to ext0, a real server through the bridge to int0.
	for _, path := range []struct {
		name     string
		from, to *Host
	}{{"client to ext0", b.Client, b.Ext}, {"real server through the bridge to int0", b.Reals[0], b.Int}} {
		before := rxQueuePackets(t, ctx, b.Director, path.to.Iface, 2)
		sent := send(path.from, path.to)
		d := delta(before, rxQueuePackets(t, ctx, b.Director, path.to.Iface, 2))
		t.Logf("%s: %d datagrams from %d sockets arrived %d on queue 0, %d on queue 1", path.name, sent, socks, d[0], d[1])
		if d[0] == 0 || d[1] == 0 || d[0]+d[1] < sent {
			t.Errorf("%s: queues received %v, want both some and %d in all", path.name, d, sent)
		}
	}
	// XPS: all on one queue.
	for q := range 2 {
		if err := SetXPS(b.Client.NS, b.Client.Iface, q); err != nil {
			t.Fatal(err)
		}
		before := rxQueuePackets(t, ctx, b.Director, b.Ext.Iface, 2)
		sent := send(b.Client, b.Ext)
		d := delta(before, rxQueuePackets(t, ctx, b.Director, b.Ext.Iface, 2))
		if d[q] < sent || d[1-q] != 0 {
			t.Errorf("XPS to queue %d: queues received %v, want all %d on queue %d", q, d, sent, q)
		}
	}
	if err := SetXPS(b.Client.NS, b.Client.Iface, 2); err == nil {
		t.Error("SetXPS to queue 2 of a two-queue veth: no error")
	}
	if err := SetXPS(b.Client.NS, b.Client.Iface, -1); err != nil {
		t.Errorf("clear XPS: %v", err)
	}
}
