package e2e

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xlvs/bench/testbed"
)

// gueTestPort is the UDP port the GUE real servers are configured with (ipvsadm
// --tun-port) and xlvs-decap listens on (--gue-port).
const gueTestPort = 6080

// tunEncapCase is a tunnel type and checksum option as ipvsadm writes them.
type tunEncapCase struct {
	name string
	args []string // after -i
	gue  bool
	csum bool
}

var tunEncapCases = []tunEncapCase{
	{"gue", []string{"--tun-type", "gue", "--tun-port", fmt.Sprint(gueTestPort)}, true, false},
	{"gue-csum", []string{"--tun-type", "gue", "--tun-port", fmt.Sprint(gueTestPort), "--tun-csum"}, true, true},
	{"gue-remcsum", []string{"--tun-type", "gue", "--tun-port", fmt.Sprint(gueTestPort), "--tun-remcsum"}, true, true},
	{"gre", []string{"--tun-type", "gre"}, false, false},
	{"gre-csum", []string{"--tun-type", "gre", "--tun-csum"}, false, true},
}

// TestTUNGUEGRE: TUN real servers with GUE and GRE tunnels (ipvsadm --tun-type gue
// --tun-port, --tun-type gre, and their checksum options), the real servers decapsulating
// with xlvs-decap at tc ingress: 1 MiB byte-exact each way over TCP and the UDP echo,
// over IPv4 and IPv6, the real server seeing the client's address. A packet socket on
// each real server's interface (it sees frames before tc ingress strips them) checks
// every tunnelled frame as the real server receives it: the outer protocol and port, the
// GUE header, a UDP checksum that verifies with csum and remcsum and is 0 without, a GRE
// checksum that verifies with csum and is absent without, and GUE source ports in
// [32768, 61000). The listing shows each tunnel as ipvsadm --tun-info does, and no host
// counts a checksum error. The uploads are the PMTU test, as in TestTUN. The director
// runs with --fastpath: every tunnel's connections are installed and the XDP program
// sends most of their packets (fastTCP, fastUDP: the packet socket checks those frames
// too, checksums included, and the decapsulator takes the ones a GRO-enabled peer
// merged).
func TestTUNGUEGRE(t *testing.T) {
	e := setup(t, testbed.L2, "--fastpath")
	e.fastPathPeers()
	bin := decapBinary(t)
	e.startDecap(bin, "tc", "--gue-port", fmt.Sprint(gueTestPort))
	for _, v6 := range []bool{false, true} {
		e.serveVIPEcho(e.bed.VIPFor(v6))
	}
	icmpBefore := e.dataplaneCounters()["icmp_sent"]
	for _, c := range tunEncapCases {
		t.Run(c.name, func(t *testing.T) {
			e.eachFamily(t, func(t *testing.T, v6 bool) {
				vip := e.bed.VIPFor(v6)
				e.tunServices(vip, c.args...)
				defer e.adm("-C")
				wantInfo := map[string]string{"gue": "gue:6080:-c", "gue-csum": "gue:6080:+c", "gue-remcsum": "gue:6080:r+c", "gre": "gre:-c", "gre-csum": "gre:+c"}[c.name]
				if out := e.adm("-L", "-n", "--tun-info"); !strings.Contains(out, wantInfo) {
					t.Fatalf("listing lacks %q:\n%s", wantInfo, out)
				}
				var caps []*tunCapture
				for _, rs := range e.bed.Reals {
					caps = append(caps, captureTunnels(t, rs, c))
				}
				before := e.fastCounters()
				// Long enough for the fast path: installed 25 ms after the handshake,
				// it must then carry most of the segments (fastTCP) and datagrams
				// (fastUDP, which also checks -L --stats).
				size := 16 << 20
				e.fastTCP(vip, e.bed.Client.AddrFor(v6))
				e.fastUDP(vip, vipEchoPort, 2000, 512, false)
				after := e.fastCounters()
				// What the workers encapsulated and what the program sent.
				fast := after["xdp_fastpath_tx"] - before["xdp_fastpath_tx"]
				enc := after["encapsulated"] - before["encapsulated"] + fast
				if enc < uint64(size/1500) {
					t.Errorf("the director encapsulated %d packets (%d in XDP), want at least %d for the %d-byte upload", enc, fast, size/1500, size)
				}
				total := 0
				for i, cp := range caps {
					r := cp.stop()
					t.Logf("%s: %d tunnelled frames checked, %d GUE source ports", e.bed.Reals[i].NS.Name(), r.good, len(r.sports))
					if len(r.bad) > 0 {
						t.Errorf("%s: %d bad tunnelled frames, the first: %s", e.bed.Reals[i].NS.Name(), len(r.bad), r.bad[0])
					}
					if r.err != nil {
						t.Errorf("%s: capture: %v", e.bed.Reals[i].NS.Name(), r.err)
					}
					total += r.good
				}
				// The capture may miss frames (its socket buffer; a GRO-merged packet
				// is one frame for many), never most of them.
				if total < int(min(enc, 2000))/2 {
					t.Errorf("the real servers' interfaces showed %d good tunnelled frames of the %d the director sent", total, enc)
				}
				if st := e.service("tcp", vip, httpPort).Stats; st.InBytes < uint64(size) || st.OutPkts != 0 {
					t.Errorf("tcp stats %+v: want ≥ %d bytes in and no packets out (TUN replies bypass the director)", st, size)
				}
			})
		})
	}
	e.t = t
	// The uploads' full-size segments (DF in IPv4) fit the link, not the tunnels: they
	// complete because the director answers with the MTU each tunnel leaves (the client
	// keeps what it learnt, so not every case needs an answer).
	if e.dataplaneCounters()["icmp_sent"] == icmpBefore {
		t.Error("the director sent no ICMP while the client uploaded full-size packets: the PMTU path was not exercised")
	}
	e.logDrops()
	e.noChecksumErrors()
}

// tunServices defines vip's TCP services (httpPort, whoPort) and its UDP echo service
// (vipEchoPort) to every real server, tunnelling (-i) with the options args.
func (e *env) tunServices(vip netip.Addr, args ...string) {
	e.t.Helper()
	args = append([]string{"-i"}, args...)
	for _, port := range []int{httpPort, whoPort} {
		e.modeService("-t", vip, port, args...)
	}
	e.modeService("-u", vip, vipEchoPort, args...)
}

// tunCapture reads the frames one real server's interface receives (tc ingress, where
// xlvs-decap strips them, runs after packet sockets) and checks the tunnelled ones.
type tunCapture struct {
	fd     int
	done   chan struct{}
	stopFn func()
	mu     sync.Mutex
	res    tunCaptureResult
}

type tunCaptureResult struct {
	good   int
	bad    []string
	sports map[uint16]bool
	err    error
}

// captureTunnels starts checking rs's tunnelled frames of case c; stop ends it and
// returns what it saw.
func captureTunnels(t *testing.T, rs *testbed.Host, c tunEncapCase) *tunCapture {
	t.Helper()
	raw := openRaw(t, rs.NS, rs.Iface)
	cp := &tunCapture{fd: raw.fd, done: make(chan struct{}), res: tunCaptureResult{sports: map[uint16]bool{}}}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(raw.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptInt(raw.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	stopping := make(chan struct{})
	go func() {
		defer close(cp.done)
		buf := make([]byte, 4096)
		for {
			select {
			case <-stopping:
				return
			default:
			}
			n, _, err := unix.Recvfrom(raw.fd, buf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil {
				cp.mu.Lock()
				cp.res.err = err
				cp.mu.Unlock()
				return
			}
			tunnelled, sport, why := checkTunnelFrame(buf[:n], c)
			if !tunnelled {
				continue
			}
			cp.mu.Lock()
			if why != "" {
				cp.res.bad = append(cp.res.bad, why)
			} else {
				cp.res.good++
				if c.gue {
					cp.res.sports[sport] = true
				}
			}
			cp.mu.Unlock()
		}
	}()
	cp.stopFn = func() { close(stopping) }
	return cp
}

func (cp *tunCapture) stop() tunCaptureResult {
	cp.stopFn()
	<-cp.done
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.res
}

// tunLinkMTU is the testbed links' MTU: a tunnelled packet longer than it was merged by
// GRO on its way to the real server.
const tunLinkMTU = 1500

// checkTunnelFrame checks frame f if it is a tunnelled one of case c (UDP to the GUE port,
// or GRE): tunnelled says whether it was, why what is wrong with it ("" if nothing), sport
// its GUE source port.
func checkTunnelFrame(f []byte, c tunEncapCase) (tunnelled bool, sport uint16, why string) {
	if len(f) < 14 {
		return false, 0, ""
	}
	var ip, payload []byte
	var proto uint8
	var pseudo uint32
	var merged bool
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		ip = f[14:]
		if len(ip) < 20 {
			return false, 0, ""
		}
		tl := int(binary.BigEndian.Uint16(ip[2:]))
		if tl > len(ip) || tl < 20 {
			return false, 0, ""
		}
		proto, payload = ip[9], ip[20:tl]
		pseudo = onesSum(ip[12:20], 0) + uint32(proto) + uint32(len(payload))
		merged = tl > tunLinkMTU
	case 0x86dd:
		ip = f[14:]
		if len(ip) < 40 {
			return false, 0, ""
		}
		pl := int(binary.BigEndian.Uint16(ip[4:]))
		if 40+pl > len(ip) {
			return false, 0, ""
		}
		proto, payload = ip[6], ip[40:40+pl]
		pseudo = onesSum(ip[8:40], 0) + uint32(proto) + uint32(len(payload))
		merged = 40+pl > tunLinkMTU
	default:
		return false, 0, ""
	}
	innerV := map[bool]byte{true: 4, false: 6}[ip[0]>>4 == 4] // xlvs tunnels a family in itself
	switch {
	case c.gue && proto == 17:
		if len(payload) < 12 || binary.BigEndian.Uint16(payload[2:]) != gueTestPort {
			return false, 0, ""
		}
		sport = binary.BigEndian.Uint16(payload[0:])
		csum := binary.BigEndian.Uint16(payload[6:])
		innerProto := map[byte]byte{4: 4, 6: 41}[innerV]
		switch {
		case int(binary.BigEndian.Uint16(payload[4:])) != len(payload):
			why = fmt.Sprintf("UDP length %d, the datagram is %d bytes", binary.BigEndian.Uint16(payload[4:]), len(payload))
		case sport < 32768 || sport >= 61000:
			why = fmt.Sprintf("GUE source port %d outside [32768, 61000)", sport)
		case !c.csum && csum != 0:
			why = fmt.Sprintf("UDP checksum %#04x, want 0 without --tun-csum", csum)
		case c.csum && (csum == 0 || fold(onesSum(payload, pseudo)) != 0xffff):
			why = fmt.Sprintf("UDP checksum %#04x does not verify", csum)
		case payload[8] != 0 || payload[9] != innerProto || payload[10] != 0 || payload[11] != 0:
			why = fmt.Sprintf("GUE header % x, want 00 %02x 00 00", payload[8:12], innerProto)
		case len(payload) < 13 || payload[12]>>4 != innerV:
			why = "the inner packet is not of the outer's family"
		}
		return true, sport, why
	case !c.gue && proto == 47:
		hl := 4
		wantFlags := uint16(0)
		if c.csum {
			hl, wantFlags = 8, 0x8000
		}
		et := map[byte]uint16{4: 0x0800, 6: 0x86dd}[innerV]
		switch {
		case len(payload) < hl+1:
			why = fmt.Sprintf("GRE packet of %d bytes", len(payload))
		case binary.BigEndian.Uint16(payload[0:]) != wantFlags || binary.BigEndian.Uint16(payload[2:]) != et:
			why = fmt.Sprintf("GRE header % x, want flags %#04x, protocol %#04x", payload[:4], wantFlags, et)
		case c.csum && !merged && fold(onesSum(payload, 0)) != 0xffff:
			// A packet longer than the link's MTU is GRO's merge of several (the
			// capture sees the real server's skb): the kernel's GRE GRO verified each
			// one's checksum before merging them (gre_gro_receive), and the merged
			// packet's field is the first one's.
			why = fmt.Sprintf("GRE checksum does not verify (a frame of %d bytes)", len(f))
		case payload[hl]>>4 != innerV:
			why = "the inner packet is not of the outer's family"
		}
		return true, 0, why
	}
	return false, 0, ""
}

// onesSum adds b as big-endian 16-bit words (an odd last byte padded) to sum, without
// folding: RFC 1071, written here apart from the dataplane's.
func onesSum(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// TestTUNOtherFamily: TUN real servers of the service's other family, as IPVS allows for
// tunnelling — an IPv4 service's requests reach IPv6 real servers inside IPv6, an IPv6
// service's reach IPv4 ones inside IPv4 — with IPIP (4 in 6, 6 in 4) and GUE, the real
// servers decapsulating with xlvs-decap in XDP: 1 MiB byte-exact each way over TCP (the
// upload is the PMTU test: the MTU left by the other family's header) and the UDP echo,
// the real server seeing the client's address, and the listing shows the real servers
// in their own family. The director runs with --fastpath, whose program writes
// same-family IPIP only: it installs none of these connections, and they work all the
// same through the workers.
func TestTUNOtherFamily(t *testing.T) {
	e := setup(t, testbed.L2, "--fastpath")
	bin := decapBinary(t)
	e.startDecap(bin, "xdp", "--gue-port", fmt.Sprint(gueTestPort))
	for _, v6 := range []bool{false, true} {
		e.serveVIPEcho(e.bed.VIPFor(v6))
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"ipip", nil},
		{"gue-csum", []string{"--tun-type", "gue", "--tun-port", fmt.Sprint(gueTestPort), "--tun-csum"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.eachFamily(t, func(t *testing.T, v6 bool) {
				vip := e.bed.VIPFor(v6)
				for _, s := range []struct {
					proto string
					port  int
				}{{"-t", httpPort}, {"-t", whoPort}, {"-u", vipEchoPort}} {
					svc := netip.AddrPortFrom(vip, uint16(s.port)).String()
					e.adm("-A", s.proto, svc, "-s", "rr")
					for _, rs := range e.bed.Reals {
						real := netip.AddrPortFrom(rs.AddrFor(!v6), uint16(s.port)).String()
						e.adm(append(append([]string{"-a", s.proto, svc, "-r", real, "-i"}, c.args...), "-w", "1")...)
					}
				}
				defer e.adm("-C")
				if out, want := e.adm("-L", "-n"), netip.AddrPortFrom(e.bed.Reals[0].AddrFor(!v6), httpPort).String(); !strings.Contains(out, want) {
					t.Fatalf("listing lacks the real server %s:\n%s", want, out)
				}
				before := e.dataplaneCounters()["encapsulated"]
				const size = 1 << 20
				e.transferBothWays(vip, size, e.bed.Client.AddrFor(v6))
				e.udpEcho(vip)
				if enc := e.dataplaneCounters()["encapsulated"] - before; enc < size/1500 {
					t.Errorf("the director encapsulated %d packets, want at least %d for the %d-byte upload", enc, size/1500, size)
				}
				if st := e.service("tcp", vip, httpPort).Stats; st.InBytes < size || st.OutPkts != 0 {
					t.Errorf("tcp stats %+v: want ≥ %d bytes in and no packets out (TUN replies bypass the director)", st, size)
				}
			})
		})
	}
	e.t = t
	c := fastOnly(e.dataplaneCounters())
	if _, ok := c["fastpath_installed"]; !ok {
		t.Fatalf("no fast path counters (is --fastpath on?): %v", c)
	}
	if c["fastpath_installed"] != 0 || c["xdp_fastpath_tx"] != 0 {
		t.Errorf("the fast path took connections to real servers of the other family: %v", c)
	}
	e.logDrops()
	e.noChecksumErrors()
}

// TestFastPathTUNEncap: with --fastpath, connections to GUE and GRE real servers, with and
// without a tunnel checksum, are installed, and the XDP program sends most of their
// packets with the tunnel's headers (the same bytes as the workers': bpf
// TestFastPathTUNEncap), the real servers decapsulating with xlvs-decap in XDP: 16 MiB
// byte-exact each way over TCP and a UDP flow whose -L --stats counters equal what was
// sent (fastTCP, fastUDP), over IPv4 and IPv6. TestTUNGUEGRE checks the checksums of the
// frames as the real servers receive them.
func TestFastPathTUNEncap(t *testing.T) {
	e := setup(t, testbed.L2, "--fastpath")
	e.fastPathPeers()
	e.startDecap(decapBinary(t), "xdp", "--gue-port", fmt.Sprint(gueTestPort))
	for _, v6 := range []bool{false, true} {
		e.serveVIPEcho(e.bed.VIPFor(v6))
	}
	for _, c := range tunEncapCases {
		t.Run(c.name, func(t *testing.T) {
			e.eachFamily(t, func(t *testing.T, v6 bool) {
				vip := e.bed.VIPFor(v6)
				e.tunServices(vip, c.args...)
				defer e.adm("-C")
				e.fastTCP(vip, e.bed.Client.AddrFor(v6))
				e.fastUDP(vip, vipEchoPort, 2000, 512, false)
			})
		})
	}
	e.t = t
	e.noChecksumErrors()
}
