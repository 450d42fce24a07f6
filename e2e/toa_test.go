package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"xlvs/bench/testbed"
)

// toaSeg is a TCP segment a real server received from a FULLNAT local address.
type toaSeg struct {
	lport    uint16
	syn, ack bool
	payload  int
	toa      []byte // the TOA option's data (port, address); nil: none
	toaFirst bool   // the TOA option came first among the TCP options
	csumOK   bool   // the TCP checksum verifies (gopacket's computation)
}

// captureFromLIP reads, on rs's interface, the TCP segments from lip to port until stop
// is called, and returns them in arrival order.
func captureFromLIP(t *testing.T, rs *testbed.Host, lip netip.Addr, port uint16) (stop func() []toaSeg) {
	t.Helper()
	raw := openRaw(t, rs.NS, rs.Iface)
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(raw.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		segs     []toaSeg
		stopping = make(chan struct{})
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		buf := make([]byte, 9000)
		for {
			n, _, err := unix.Recvfrom(raw.fd, buf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				select {
				case <-stopping: // the queue is drained
					return
				default:
					continue
				}
			}
			if err != nil {
				return
			}
			s, ok := parseTOASeg(buf[:n], lip, port)
			if ok {
				mu.Lock()
				segs = append(segs, s)
				mu.Unlock()
			}
		}
	}()
	return func() []toaSeg {
		close(stopping)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return segs
	}
}

// parseTOASeg decodes frame (gopacket) if it is a TCP segment from lip to port.
func parseTOASeg(frame []byte, lip netip.Addr, port uint16) (toaSeg, bool) {
	pk := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	tcp, _ := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil || uint16(tcp.DstPort) != port {
		return toaSeg{}, false
	}
	var src netip.Addr
	var nl gopacket.NetworkLayer
	switch ip := pk.NetworkLayer().(type) {
	case *layers.IPv4:
		src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		nl = ip
	case *layers.IPv6:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		nl = ip
	default:
		return toaSeg{}, false
	}
	if src != lip {
		return toaSeg{}, false
	}
	s := toaSeg{lport: uint16(tcp.SrcPort), syn: tcp.SYN, ack: tcp.ACK, payload: len(tcp.Payload)}
	for i, o := range tcp.Options {
		if o.OptionType == 254 {
			s.toa, s.toaFirst = append([]byte(nil), o.OptionData...), i == 0
		}
	}
	// The checksum, recomputed by gopacket over the segment as received.
	got := tcp.Checksum
	if err := tcp.SetNetworkLayerForChecksum(nl); err == nil {
		buf := gopacket.NewSerializeBuffer()
		if gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, tcp, gopacket.Payload(tcp.Payload)) == nil {
			s.csumOK = binary.BigEndian.Uint16(buf.Bytes()[16:18]) == got
		}
	}
	return s, true
}

// checkTOA connects from the client to the who service on vip (a
// FULLNAT service whose local address is lip) and checks what the real servers
// received: the SYN and the handshake's ACK carry the client's address and port in the
// TOA option (kind 254, first among the options), no segment with data carries it, every
// checksum verifies, and the dataplane counted the options (toa_added). The who server
// answers with the address it sees: lip and the connection's local port, which -L -n -c
// shows in its local column.
func checkTOA(t *testing.T, e *env, vip, lip netip.Addr) {
	t.Helper()
	var stops []func() []toaSeg
	for _, rs := range e.bed.Reals {
		stops = append(stops, captureFromLIP(t, rs, lip, whoPort))
	}
	before := e.dataplaneCounters()
	client := e.bed.Client.AddrFor(vip.Is6())
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	var cport uint16 // the client's port, the kernel's choice
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := e.bed.Client.NS.DialContext(ctx, network, addr)
		if err == nil {
			cport = netip.MustParseAddrPort(c.LocalAddr().String()).Port()
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", httpURL(vip, whoPort, "/"), nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET from %v: %v", client, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	seen, err := netip.ParseAddrPort(strings.TrimSpace(string(b)))
	if err != nil || seen.Addr() != lip {
		t.Fatalf("the real server saw %q, want %v and a port", b, lip)
	}
	var segs []toaSeg
	for _, stop := range stops {
		for _, s := range stop() {
			if s.lport == seen.Port() {
				segs = append(segs, s)
			}
		}
	}
	want := binary.BigEndian.AppendUint16(nil, cport)
	want = append(want, client.AsSlice()...)
	var syns, acks, data int
	for i, s := range segs {
		desc := fmt.Sprintf("segment %d of %d (SYN %v, ACK %v, %d bytes, TOA %x)", i, len(segs), s.syn, s.ack, s.payload, s.toa)
		if !s.csumOK {
			t.Errorf("%s: bad TCP checksum", desc)
		}
		switch {
		case s.syn:
			syns++
			if !bytes.Equal(s.toa, want) || !s.toaFirst {
				t.Errorf("%s: want TOA %x first", desc, want)
			}
		case s.payload > 0:
			data++
			if s.toa != nil {
				t.Errorf("%s: data with a TOA option", desc)
			}
		case s.toa != nil:
			acks++
			if !bytes.Equal(s.toa, want) || !s.toaFirst || syns == 0 || data > 0 || acks > 1 {
				t.Errorf("%s: a TOA option other than the handshake's ACK's (want %x, first)", desc, want)
			}
		}
	}
	if syns == 0 || acks != 1 || data == 0 {
		t.Fatalf("the real servers received %d SYNs, %d ACKs with TOA and %d segments with data from %v:%d: want ≥ 1, 1, ≥ 1", syns, acks, data, lip, seen.Port())
	}
	// -L -n -c shows the connection's local endpoint, what the real server saw.
	list := e.adm("-L", "-n", "-c")
	found := false
	for _, l := range strings.Split(list, "\n") {
		f := strings.Fields(l)
		found = found || len(f) == 7 && f[3] == netip.AddrPortFrom(client, cport).String() && f[5] == seen.String()
	}
	if !strings.Contains(list, " local ") || !found {
		t.Errorf("-L -n -c does not show %v:%d's local endpoint %v:\n%s", client, cport, seen, list)
	}
	t.Logf("TOA: %d SYN, %d handshake ACK, %d data segments from %v to the real server, %x in the options", syns, acks, data, netip.AddrPortFrom(lip, seen.Port()), want)
	after := e.dataplaneCounters()
	if d := after["toa_added"] - before["toa_added"]; d < 2 {
		t.Errorf("toa_added grew by %d, want ≥ 2", d)
	}
	if after["toa_skipped"] != before["toa_skipped"] {
		t.Errorf("toa_skipped %d → %d", before["toa_skipped"], after["toa_skipped"])
	}
}
