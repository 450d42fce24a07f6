package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"xlvs/bench/traffic"
)

func newTestBed(t *testing.T, o Options) *Bed {
	t.Helper()
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close bed: %v", err)
		}
	})
	return b
}

func url(a netip.Addr, port uint16) string {
	return "http://" + netip.AddrPortFrom(a, port).String() + "/"
}

// serve starts an HTTP server and a UDP echo server named name in ns on addr port 80.
func serve(t *testing.T, ns *NS, addr netip.Addr, name string) {
	t.Helper()
	ap := netip.AddrPortFrom(addr, 80).String()
	ln, err := ns.Listen("tcp", ap)
	if err != nil {
		t.Fatal(err)
	}
	srv := traffic.ServeHTTP(ln, name)
	t.Cleanup(func() { _ = srv.Close() })
	pc, err := ns.ListenPacket("udp", ap)
	if err != nil {
		t.Fatal(err)
	}
	stop := traffic.ServeUDPEcho(pc, name)
	t.Cleanup(func() { stop(); pc.Close() })
}

// checkHosts checks the addressing and settings New promises.
func checkHosts(t *testing.T, b *Bed, o Options) {
	t.Helper()
	if len(b.Reals) != o.Reals {
		t.Fatalf("%d real servers, want %d", len(b.Reals), o.Reals)
	}
	cli, real := 1, 2
	if o.Layout == L2 {
		cli, real = 0, 0
	}
	type want struct {
		h          *Host
		addr, mac  string
		v6         string
		txChecksum bool
	}
	wants := []want{
		{b.Client, fmt.Sprintf("198.18.%d.2", cli), fmt.Sprintf("02:00:5e:%02x:00:02", cli), fmt.Sprintf("fd00:%d::2", cli), false},
		{b.Ext, fmt.Sprintf("198.18.%d.1", cli), fmt.Sprintf("02:00:5e:%02x:00:01", cli), fmt.Sprintf("fd00:%d::1", cli), true},
	}
	if o.Layout == NATTwoArm {
		wants = append(wants, want{b.Int, "198.18.2.1", "02:00:5e:02:00:01", "fd00:2::1", true})
	} else if b.Int != b.Ext {
		t.Fatal("Ext and Int differ in a one-interface layout")
	}
	for i, r := range b.Reals {
		wants = append(wants, want{r, fmt.Sprintf("198.18.%d.%d", real, 11+i), fmt.Sprintf("02:00:5e:%02x:00:%02x", real, 11+i), fmt.Sprintf("fd00:%d::%d", real, 11+i), false})
	}
	for _, w := range wants {
		h := w.h
		if h.Addr.String() != w.addr || h.MAC.String() != w.mac {
			t.Errorf("%s: %v %v, want %s %s", h.Name, h.Addr, h.MAC, w.addr, w.mac)
		}
		if o.IPv6 != h.Addr6.IsValid() || o.IPv6 && h.Addr6 != netip.MustParseAddr(w.v6) {
			t.Errorf("%s: IPv6 %v, want %s (IPv6 %v)", h.Name, h.Addr6, w.v6, o.IPv6)
		}
		idx, err := h.NS.Ifindex(h.Iface)
		if err != nil || idx != h.Ifindex || idx <= 1 {
			t.Errorf("%s: ifindex %d, recorded %d (%v)", h.Name, idx, h.Ifindex, err)
		}
		err = h.NS.withNetlink(func(nh *netlink.Handle) error {
			l, err := nh.LinkByName(h.Iface)
			if err != nil {
				return err
			}
			if l.Attrs().HardwareAddr.String() != w.mac || l.Attrs().OperState != netlink.OperUp {
				return fmt.Errorf("link %s is %v %v, want %s up", h.Iface, l.Attrs().HardwareAddr, l.Attrs().OperState, w.mac)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", h.Name, err)
		}
		on, err := TxChecksum(h.NS, h.Iface)
		if err != nil || on != w.txChecksum {
			t.Errorf("%s: tx checksum %v (%v), want %v", h.Name, on, err, w.txChecksum)
		}
		if v, err := h.NS.Sysctl("net.ipv6.conf." + h.Iface + ".accept_dad"); err != nil || v != "0" {
			t.Errorf("%s: accept_dad %q (%v), want 0", h.Name, v, err)
		}
	}
	vip := fmt.Sprintf("198.18.%d.100", cli)
	if b.VIP.String() != vip || o.IPv6 && b.VIP6 != netip.MustParseAddr(fmt.Sprintf("fd00:%d::100", cli)) || !o.IPv6 && b.VIP6.IsValid() {
		t.Errorf("VIPs %v %v", b.VIP, b.VIP6)
	}
	if v, err := b.Director.Sysctl("net.ipv4.ip_forward"); err != nil || v != "0" {
		t.Errorf("director ip_forward %q (%v), want 0 after New", v, err)
	}
	for _, ns := range b.Namespaces() {
		if _, err := os.Stat(ns.Path()); err != nil {
			t.Errorf("namespace %s: %v", ns.Name(), err)
		}
	}
}

// httpTo runs a short HTTP load from the client to url and checks that name answered it all.
func httpTo(ctx context.Context, t *testing.T, b *Bed, u, name string) {
	t.Helper()
	res, err := traffic.HTTPLoad(ctx, traffic.HTTPLoadOptions{
		URL: u, Requests: 20, Concurrency: 4, Dial: b.Client.NS.DialContext, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 20 || res.ByServer[name] != 20 {
		t.Fatalf("%s: %v, want 20 answers from %s", u, res, name)
	}
}

func udpTo(ctx context.Context, t *testing.T, b *Bed, a netip.Addr, name string) {
	t.Helper()
	c, err := b.Client.NS.DialContext(ctx, "udp", netip.AddrPortFrom(a, 80).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := traffic.UDPEcho(ctx, c, 10, 1200, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != 10 || res.ByServer[name] != 10 {
		t.Fatalf("udp to %v: %+v, want 10 echoes from %s", a, res, name)
	}
}

func noChecksumErrors(t *testing.T, hosts ...*Host) {
	t.Helper()
	for _, h := range hosts {
		m, err := h.NS.Counters()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"Tcp.InCsumErrors", "Udp.InCsumErrors", "Udp6.InCsumErrors"} {
			if m[k] != 0 {
				t.Errorf("%s: %s = %d", h.Name, k, m[k])
			}
		}
	}
}

func TestBedNAT(t *testing.T) {
	requireRoot(t)
	for _, layout := range []Layout{NATTwoArm, NATOneArm} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v v6=%v", layout, v6), func(t *testing.T) {
				t.Parallel()
				ctx := testContext(t)
				o := Options{Layout: layout, Reals: 2, Prefix: "nat", IPv6: v6}
				b := newTestBed(t, o)
				checkHosts(t, b, o)
				for _, r := range b.Reals {
					serve(t, r.NS, r.AddrFor(v6), r.Name)
				}
				target := b.Reals[0].AddrFor(v6)

				// Without forwarding the client cannot reach a real server: its traffic
				// has to cross the director.
				dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				c, err := b.Client.NS.DialContext(dctx, "tcp", netip.AddrPortFrom(target, 80).String())
				cancel()
				if err == nil {
					c.Close()
					t.Fatal("client reached a real server with director forwarding off")
				}

				if err := b.SetForwarding(true); err != nil {
					t.Fatal(err)
				}
				rx0, _, _, _, err := b.Director.LinkStats(b.Ext.Iface)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range b.Reals {
					httpTo(ctx, t, b, url(r.AddrFor(v6), 80), r.Name)
					udpTo(ctx, t, b, r.AddrFor(v6), r.Name)
				}
				// Bulk data both ways, checked byte for byte, through kernel forwarding.
				base := url(target, 80)
				if _, err := traffic.Download(ctx, b.Client.NS.DialContext, base, 2<<20, 7); err != nil {
					t.Fatal(err)
				}
				if err := traffic.Upload(ctx, b.Client.NS.DialContext, base, traffic.Blob(1<<20, 8)); err != nil {
					t.Fatal(err)
				}
				rx1, _, _, _, err := b.Director.LinkStats(b.Ext.Iface)
				if err != nil {
					t.Fatal(err)
				}
				if rx1-rx0 < 100 {
					t.Fatalf("director %s received %d packets during the test, want the traffic", b.Ext.Iface, rx1-rx0)
				}
				// Replies came from the real servers' own addresses through the director;
				// nothing arrived with a bad checksum.
				noChecksumErrors(t, append([]*Host{b.Client}, b.Reals...)...)
			})
		}
	}
}

func TestBedL2(t *testing.T) {
	requireRoot(t)
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			o := Options{Layout: L2, Reals: 3, Prefix: "l2", IPv6: v6}
			b := newTestBed(t, o)
			checkHosts(t, b, o)
			vip := b.VIPFor(v6)
			for _, r := range b.Reals {
				// Each real server listens on its own address and on the VIP (on its lo).
				serve(t, r.NS, r.AddrFor(v6), r.Name)
				serve(t, r.NS, vip, r.Name+"-vip")
				if v, err := r.NS.Sysctl("net.ipv4.conf.eth0.arp_ignore"); err != nil || v != "1" {
					t.Errorf("%s arp_ignore %q (%v)", r.Name, v, err)
				}
			}
			serve(t, b.Director, vip, "director")

			// The client reaches each real server's own address directly.
			for _, r := range b.Reals {
				httpTo(ctx, t, b, url(r.AddrFor(v6), 80), r.Name)
				udpTo(ctx, t, b, r.AddrFor(v6), r.Name)
			}
			// The VIP resolves to the director only: real servers hide theirs.
			httpTo(ctx, t, b, url(vip, 80), "director")
			err := b.Client.NS.withNetlink(func(h *netlink.Handle) error {
				fam := netlink.FAMILY_V4
				if v6 {
					fam = netlink.FAMILY_V6
				}
				neighs, err := h.NeighList(b.Client.Ifindex, fam)
				if err != nil {
					return err
				}
				for _, n := range neighs {
					if a, _ := netip.AddrFromSlice(n.IP); a.Unmap() == vip {
						if n.HardwareAddr.String() != b.Ext.MAC.String() {
							return fmt.Errorf("VIP %v resolves to %v, want the director's %v", vip, n.HardwareAddr, b.Ext.MAC)
						}
						return nil
					}
				}
				return fmt.Errorf("no neighbour entry for VIP %v", vip)
			})
			if err != nil {
				t.Fatal(err)
			}
			// A real server answers for the VIP locally (DR/TUN delivery will rely on it).
			c, err := b.Reals[0].NS.DialContext(ctx, "tcp", netip.AddrPortFrom(vip, 80).String())
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			noChecksumErrors(t, append([]*Host{b.Client}, b.Reals...)...)
		})
	}
}

func TestBedFailureCleansUp(t *testing.T) {
	requireRoot(t)
	steps := []string{"ns-sw", "ns-dir", "ns-cl", "ns-rs1", "ns-rs2", "sysctls", "bridge", "links", "offloads", "addrs", "routes", "ready"}
	// With a backup director, its namespace comes right after the director's.
	backupSteps := slices.Insert(slices.Clone(steps), 2, "ns-bak")
	injected := errors.New("injected failure")
	type config struct {
		layout Layout
		backup bool
		steps  []string
	}
	for _, c := range []config{{NATTwoArm, false, steps}, {L2, false, steps}, {NATOneArm, true, backupSteps}, {L2, true, backupSteps}} {
		for i, step := range c.steps {
			t.Run(fmt.Sprintf("%s %v backup=%v", step, c.layout, c.backup), func(t *testing.T) {
				prefix := fmt.Sprintf("fail%d%d%v", i, c.layout, c.backup)
				seen := false
				b, err := New(Options{Layout: c.layout, Prefix: prefix, IPv6: true, Backup: c.backup, hook: func(s string) error {
					if s == step {
						seen = true
						if n := len(leftovers(t, prefix)); n == 0 {
							t.Errorf("no namespace exists at step %s", s)
						}
						return injected
					}
					return nil
				}})
				if err == nil {
					b.Close()
					t.Fatal("New succeeded despite the injected failure")
				}
				if !seen || !errors.Is(err, injected) {
					t.Fatalf("error %v, want the injected failure at step %s", err, step)
				}
				if left := leftovers(t, prefix); len(left) != 0 {
					t.Fatalf("namespaces left after a failed New: %v", left)
				}
			})
		}
	}
}

func TestBedCloseIdempotentAndParallel(t *testing.T) {
	requireRoot(t)
	var beds [3]*Bed
	t.Run("group", func(t *testing.T) {
		for i := range beds {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				b, err := New(Options{Layout: Layout(i), Prefix: "same", Reals: 1})
				if err != nil {
					t.Fatal(err)
				}
				beds[i] = b
			})
		}
	})
	names := map[string]bool{}
	for _, b := range beds {
		if b == nil {
			t.Fatal("a bed failed")
		}
		for _, ns := range b.Namespaces() {
			if names[ns.Name()] {
				t.Errorf("namespace %s in two beds", ns.Name())
			}
			names[ns.Name()] = true
		}
	}
	if len(leftovers(t, "same")) != len(names) {
		t.Fatalf("%d namespaces on disk, want %d", len(leftovers(t, "same")), len(names))
	}
	for _, b := range beds {
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	if left := leftovers(t, "same"); len(left) != 0 {
		t.Fatalf("namespaces left after Close: %v", left)
	}
}

func TestBedBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want error
	}{
		{"negative reals", Options{Reals: -1}, ErrBadOptions},
		{"too many reals", Options{Reals: MaxReals + 1}, ErrBadOptions},
		{"unknown layout", Options{Layout: 7}, ErrBadOptions},
		{"bad prefix", Options{Prefix: "a/b"}, ErrBadPrefix},
		{"negative queues", Options{Queues: -1}, ErrBadOptions},
		{"too many queues", Options{Queues: MaxQueues + 1}, ErrBadOptions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.o); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestLayoutString(t *testing.T) {
	for l, want := range map[Layout]string{NATTwoArm: "nat-two-arm", NATOneArm: "nat-one-arm", L2: "l2", 9: "layout(9)"} {
		if got := l.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(l), got, want)
		}
	}
}

// NS.DialContext fits http.Transport.
var _ = http.Transport{DialContext: (&NS{}).DialContext}
