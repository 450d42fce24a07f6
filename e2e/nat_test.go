package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"xlvs/bench/testbed"
	"xlvs/bench/traffic"
)

var layouts = []struct {
	name   string
	layout testbed.Layout
}{
	{"two-armed", testbed.NATTwoArm},
	{"one-armed", testbed.NATOneArm},
}

// TestNAT sends real TCP and UDP through a NAT VIP, in the classic two-armed layout and
// one-armed, over IPv4 and IPv6, and checks what arrived. The two-armed layout runs again
// on asavie/xdp's sockets (--private-umem) as well as on xlvs's own shared ones.
func TestNAT(t *testing.T) {
	type variant struct {
		name   string
		layout testbed.Layout
		args   []string
	}
	var variants []variant
	for _, l := range layouts {
		variants = append(variants, variant{l.name, l.layout, nil})
	}
	variants = append(variants, variant{"two-armed, asavie sockets", testbed.NATTwoArm, []string{"--private-umem"}})
	for _, l := range variants {
		t.Run(l.name, func(t *testing.T) {
			e := setup(t, l.layout, l.args...)
			for _, fam := range []struct {
				name string
				vip  netip.Addr
			}{{"ipv4", e.bed.VIP}, {"ipv6", e.bed.VIP6}} {
				t.Run(fam.name, func(t *testing.T) {
					e.t = t
					testNATFamily(t, e, fam.vip)
				})
			}
			e.t = t
			e.noChecksumErrors()
			// Well-formed traffic to defined services with their servers up: no packet may
			// be dropped for a reason of its own or of the tables. Only the capacity drops
			// (no free frame, a full TX ring) depend on how fast the kernel drains the
			// rings; TCP retransmits what they cost, so they are logged, not failed.
			c := e.dataplaneCounters()
			capacity := map[string]bool{"drop_no_frame": true, "drop_tx_full": true}
			for k, v := range c {
				switch {
				case v == 0:
				case capacity[k]:
					t.Logf("dataplane %s = %d (capacity)", k, v)
				case strings.HasPrefix(k, "drop_"), k == "panics", k == "xdp_malformed":
					t.Errorf("dataplane %s = %d, want 0", k, v)
				}
			}
		})
	}
}

func testNATFamily(t *testing.T, e *env, vip netip.Addr) {
	e.natService("-t", vip, httpPort, "rr")
	e.natService("-t", vip, whoPort, "rr")
	e.natService("-u", vip, echoPort, "rr")

	// Byte-exact downloads of 4 MiB; rr sends consecutive connections to both servers.
	before := e.dataplaneCounters()
	for i := 0; i < 2; i++ {
		const size = 4 << 20
		n, err := traffic.Download(e.ctx, e.dial(), httpURL(vip, httpPort, "/blob?size=4194304&seed=7"), size, 7)
		if err != nil || n != size {
			t.Fatalf("download %d: %d bytes, %v", i, n, err)
		}
	}
	// Byte-exact upload of 2 MiB.
	up := make([]byte, 2<<20)
	rand.Read(up)
	if err := traffic.Upload(e.ctx, e.dial(), httpURL(vip, httpPort, "/upload"), up); err != nil {
		t.Fatalf("upload: %v", err)
	}
	e.burstGrew(before)
	// The real server sees the client's own address (NAT rewrites only the destination).
	who, err := e.get(httpURL(vip, whoPort, "/"))
	if err != nil {
		t.Fatal(err)
	}
	client := e.bed.Client.Addr
	if vip.Is6() {
		client = e.bed.Client.Addr6
	}
	if ap, err := netip.ParseAddrPort(who); err != nil || ap.Addr() != client {
		t.Fatalf("real server saw %q, want the client address %v", who, client)
	}

	// UDP echo: 200 datagrams on one flow, every reply byte-exact.
	conn, err := e.bed.Client.NS.DialContext(e.ctx, "udp", netip.AddrPortFrom(vip, echoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const count, size = 200, 512
	res, err := traffic.UDPEcho(e.ctx, conn, count, size, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != count || res.Mismatched != 0 || len(res.ByServer) != 1 {
		t.Fatalf("udp echo: %+v", res)
	}
	var server string
	for s := range res.ByServer {
		server = s
	}

	// The director's counters match what was sent: one connection, count packets each
	// way, and IP-level bytes (IPv4 20 / IPv6 40 + UDP 8 + payload; replies carry
	// "NAME\x00" before the payload).
	ipHdr := uint64(20)
	if vip.Is6() {
		ipHdr = 40
	}
	// A worker adds a batch's counts when the batch ends, after transmitting it, so the
	// last reply can reach the client before it is counted: wait (1 s at most) for the
	// counters to settle.
	wantIn := uint64(count) * (ipHdr + 8 + size)
	wantOut := uint64(count) * (ipHdr + 8 + uint64(len(server)) + 1 + size)
	st := e.service("udp", vip, echoPort).Stats
	for settle := time.Now().Add(time.Second); st.OutPkts < count && time.Now().Before(settle); {
		time.Sleep(10 * time.Millisecond)
		st = e.service("udp", vip, echoPort).Stats
	}
	if st.Conns != 1 || st.InPkts != count || st.OutPkts != count || st.InBytes != wantIn || st.OutBytes != wantOut {
		t.Errorf("udp service stats %+v; want conns 1, pkts %d/%d, bytes %d/%d", st, count, count, wantIn, wantOut)
	}
	// And per real server: exactly one of them has it all.
	var withConn int
	for _, d := range e.service("udp", vip, echoPort).Dests {
		if d.Stats.Conns == 1 && d.Stats.InPkts == count && d.Stats.OutPkts == count {
			withConn++
		} else if d.Stats.Conns != 0 || d.Stats.InPkts != 0 {
			t.Errorf("dest %v stats %+v: expected all traffic on one server", d.Addr, d.Stats)
		}
	}
	if withConn != 1 {
		t.Errorf("%d real servers carry the UDP flow, want 1", withConn)
	}
	// TCP: ActiveConn/InActConn exist for the connections made above.
	tcp := e.service("tcp", vip, httpPort)
	if tcp.Stats.Conns != 3 {
		t.Errorf("tcp service conns %d, want 3 (2 downloads, 1 upload)", tcp.Stats.Conns)
	}
	if tcp.Stats.InBytes < 2<<20 || tcp.Stats.OutBytes < 8<<20 {
		t.Errorf("tcp service bytes in %d out %d: want at least the 2 MiB uploaded and 8 MiB downloaded", tcp.Stats.InBytes, tcp.Stats.OutBytes)
	}
}

// TestNeighbourResolution: with the director's neighbour table flushed, the first packet
// to a real server has no next-hop MAC; xlvsd holds it (as the kernel queues packets on
// an incomplete neighbour), asks the kernel to resolve, and sends it once resolved — no
// datagram is lost.
func TestNeighbourResolution(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	vip := e.bed.VIP
	e.natService("-u", vip, echoPort, "rr")
	time.Sleep(200 * time.Millisecond)
	if out, err := e.bed.Director.Run(e.ctx, "ip", "neigh", "flush", "dev", e.bed.Int.Iface); err != nil {
		t.Fatalf("flush neighbours: %v %s", err, out)
	}
	if out, _ := e.bed.Director.Run(e.ctx, "ip", "neigh", "show", "dev", e.bed.Int.Iface); strings.Contains(out, "lladdr") {
		t.Fatalf("neighbours left after flush:\n%s", out)
	}
	before := e.dataplaneCounters()
	conn, err := e.bed.Client.NS.DialContext(e.ctx, "udp", netip.AddrPortFrom(vip, echoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := traffic.UDPEcho(e.ctx, conn, 20, 100, 3*time.Second)
	if err != nil || res.Received != 20 || res.Mismatched != 0 {
		t.Fatalf("echo across an unresolved neighbour: %+v %v", res, err)
	}
	after := e.dataplaneCounters()
	if after["neigh_queued"] == before["neigh_queued"] {
		t.Fatal("no frame was held for neighbour resolution: the flush did not take effect?")
	}
	if after["drop_no_neighbour"] != before["drop_no_neighbour"] {
		t.Fatalf("%d frames dropped for want of a neighbour", after["drop_no_neighbour"]-before["drop_no_neighbour"])
	}
}

// TestShutdownDetaches: SIGTERM makes xlvsd detach XDP and exit cleanly, and traffic to
// the VIP then goes to the kernel (which has no listener: connection refused), not into a
// black hole.
func TestShutdownDetaches(t *testing.T) {
	e := setup(t, testbed.NATTwoArm)
	e.natService("-t", e.bed.VIP, httpPort, "rr")
	if _, err := e.get(httpURL(e.bed.VIP, httpPort, "/")); err != nil {
		t.Fatalf("through xlvsd: %v", err)
	}
	if err := e.d.Stop(); err != nil {
		t.Fatalf("xlvsd exit after SIGTERM: %v\n%s", err, e.d.Log())
	}
	out, err := e.bed.Director.Run(e.ctx, "ip", "link", "show", e.bed.Ext.Iface)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "xdp") {
		t.Fatalf("XDP still attached after exit:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	c, err := e.bed.Client.NS.DialContext(ctx, "tcp", netip.AddrPortFrom(e.bed.VIP, httpPort).String())
	if err == nil {
		c.Close()
		t.Fatal("connected to the VIP with xlvsd stopped: expected the director's kernel to refuse")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after shutdown: %v, want connection refused from the director's kernel", err)
	}
}
