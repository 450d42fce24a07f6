package ipvssync

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// The golden messages below are written byte by byte from the kernel's structures
// (ip_vs_sync.c: struct ip_vs_sync_mesg, ip_vs_sync_v4, ip_vs_sync_v6, ip_vs_sync_mesg_v0,
// ip_vs_sync_conn_v0, struct ip_vs_seq; flag values from include/uapi/linux/ip_vs.h), field
// by field, as a kernel master would send them. They share nothing with the package's code.

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func a16(s string) [16]byte { return netip.MustParseAddr(s).As16() }

// v1 IPv4: one established TCP connection through a NAT service (flags 0 = MASQ), timeout
// 900 s, then a persistence template (flags TEMPLATE|ROUTE, protocol TCP, client port 0)
// with timeout 300, then a UDP connection with sequence data (flags IN_SEQ|OUT_SEQ|INACTIVE)
// — padding: every v4 entry without options is 36 bytes, so no padding is needed there;
// the entry with sequence data is 36+26 = 62 bytes and is last, so it has none either.
const goldenV1v4 = `
00 2a 00 8e  03 01 00 00          # reserved 0, syncid 42, size 142, 3 conns, version 1, spare 0
00 06 00 24  00 00 00 00          # type 0 (IPv4), TCP, ver 0 size 36, flags 0 (MASQ)
00 01 d4 31  00 50 1f 90          # state 1 ESTABLISHED, cport 54321, vport 80, dport 8080
00 00 00 00  00 00 03 84          # fwmark 0, timeout 900
c6 12 01 02  c6 12 01 64  c6 12 02 0b   # 198.18.1.2, 198.18.1.100, 198.18.2.11
00 06 00 24  00 00 10 03          # type 0, TCP, size 36, flags TEMPLATE|DROUTE
00 00 00 00  00 50 00 50          # state 0, cport 0, vport 80, dport 80
00 00 00 00  00 00 01 2c          # fwmark 0, timeout 300
c6 12 01 00  c6 12 01 64  c6 12 02 0c   # client 198.18.1.0 (masked), VIP, RS
00 11 00 3e  00 00 07 00          # type 0, UDP, size 62, flags INACTIVE|IN_SEQ|OUT_SEQ
00 00 13 88  00 35 00 35          # state 0, cport 5000, vport 53, dport 53
00 00 00 07  00 00 01 2c          # fwmark 7, timeout 300
c6 12 01 03  c6 12 01 65  c6 12 02 0d
01 18                             # option SEQ_DATA, 24 bytes
00 00 00 01  00 00 00 02  00 00 00 03   # in_seq: init 1, delta 2, previous 3
00 00 00 04  00 00 00 05  00 00 00 06   # out_seq
`

var wantV1v4 = []Conn{
	{Protocol: 6, Flags: 0, State: 1, CPort: 54321, VPort: 80, DPort: 8080, Timeout: 900,
		CAddr: a16("198.18.1.2"), VAddr: a16("198.18.1.100"), DAddr: a16("198.18.2.11")},
	{Protocol: 6, Flags: FlagTemplate | FwdRoute, CPort: 0, VPort: 80, DPort: 80, Timeout: 300,
		CAddr: a16("198.18.1.0"), VAddr: a16("198.18.1.100"), DAddr: a16("198.18.2.12")},
	{Protocol: 17, Flags: FlagInactive | FlagSeqMask, CPort: 5000, VPort: 53, DPort: 53, FWMark: 7, Timeout: 300,
		CAddr: a16("198.18.1.3"), VAddr: a16("198.18.1.101"), DAddr: a16("198.18.2.13"),
		InSeq: Seq{1, 2, 3}, OutSeq: Seq{4, 5, 6}},
}

// v1 IPv6 with persistence-engine data: the sip engine's call-id "ab12" (4 bytes) and its
// name "sip" (3 bytes): 72 + 6 + 5 = 83 bytes, so the next entry starts after one byte of
// padding at 84; then a FIN_WAIT TCP connection with an option the receiver does not know
// but may skip (type 0x45 = F_PARAM|5, 2 bytes) and one it must know (type 0x06): that
// entry is to be skipped alone.
const goldenV1v6 = `
00 07 00 f4  03 01 00 00          # syncid 7, size 244, 3 conns
01 11 00 53  00 00 00 00          # type 1 (IPv6), UDP, size 83, flags MASQ
00 00 13 c4  13 c4 13 c4          # state 0, cport 5060, vport 5060, dport 5060
00 00 00 00  00 00 00 b4          # fwmark 0, timeout 180
fd 00 00 01  00 00 00 00  00 00 00 00  00 00 00 02   # fd00:1::2
fd 00 00 01  00 00 00 00  00 00 00 00  00 00 01 00   # fd00:1::100
fd 00 00 02  00 00 00 00  00 00 00 00  00 00 00 11   # fd00:2::11
02 04 61 62 31 32                 # PE_DATA "ab12"
03 03 73 69 70                    # PE_NAME "sip"
00                                # padding to 84
01 06 00 4c  00 00 00 03          # type 1, TCP, size 76, flags DROUTE
00 04 9c 40  01 bb 01 bb          # state 4 FIN_WAIT, cport 40000, vport 443, dport 443
00 00 00 00  00 00 00 78          # timeout 120
fd 00 00 01  00 00 00 00  00 00 00 00  00 00 00 03
fd 00 00 01  00 00 00 00  00 00 00 00  00 00 01 00
fd 00 00 02  00 00 00 00  00 00 00 00  00 00 00 12
45 02 ab cd                       # skippable unknown option
01 06 00 4c  00 00 00 03          # at 168: type 1, TCP, size 76, DROUTE
00 01 9c 41  01 bb 01 bb          # ESTABLISHED, cport 40001
00 00 00 00  00 00 03 84
fd 00 00 01  00 00 00 00  00 00 00 00  00 00 00 04
fd 00 00 01  00 00 00 00  00 00 00 00  00 00 01 00
fd 00 00 02  00 00 00 00  00 00 00 00  00 00 00 12
06 02 ab cd                       # mandatory unknown option: skip this entry
`

// v0: nr_conns 2, syncid 3, size 4+24+48; the second entry carries sequence data in the
// sender's (little-endian) byte order.
const goldenV0 = `
02 03 00 4c                       # nr_conns 2, syncid 3, size 76
00 06 d4 31 00 50 1f 90           # reserved, TCP, cport 54321, vport 80, dport 8080
c6 12 01 02  c6 12 01 64  c6 12 02 0b
00 00 00 01                       # flags MASQ, state ESTABLISHED
00 06 d4 32 00 50 1f 90
c6 12 01 02  c6 12 01 64  c6 12 02 0b
06 00 00 05                       # flags IN_SEQ|OUT_SEQ, state 5 TIME_WAIT
01 00 00 00  02 00 00 00  03 00 00 00   # in_seq, little-endian
04 00 00 00  05 00 00 00  06 00 00 00
`

func TestDecodeGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  string
		hdr  Header
		want []Conn
	}{
		{"v1 IPv4, template and sequence data", goldenV1v4, Header{1, 42, 3}, wantV1v4},
		{"v1 IPv6, PE data, unknown options", goldenV1v6, Header{1, 7, 3}, []Conn{
			{IPv6: true, Protocol: 17, CPort: 5060, VPort: 5060, DPort: 5060, Timeout: 180,
				CAddr: a16("fd00:1::2"), VAddr: a16("fd00:1::100"), DAddr: a16("fd00:2::11"),
				PEData: []byte("ab12"), PEName: "sip"},
			{IPv6: true, Protocol: 6, Flags: FwdRoute, State: TCPFinWait, CPort: 40000, VPort: 443, DPort: 443, Timeout: 120,
				CAddr: a16("fd00:1::3"), VAddr: a16("fd00:1::100"), DAddr: a16("fd00:2::12")},
			{IPv6: true, Protocol: 6, Flags: FwdRoute, State: TCPEstablished, CPort: 40001, VPort: 443, DPort: 443, Timeout: 900,
				CAddr: a16("fd00:1::4"), VAddr: a16("fd00:1::100"), DAddr: a16("fd00:2::12"), Skip: true},
		}},
		{"v0 with sequence data", goldenV0, Header{0, 3, 2}, []Conn{
			{Protocol: 6, State: TCPEstablished, CPort: 54321, VPort: 80, DPort: 8080,
				CAddr: a16("198.18.1.2"), VAddr: a16("198.18.1.100"), DAddr: a16("198.18.2.11")},
			{Protocol: 6, Flags: FlagSeqMask, State: TCPTimeWait, CPort: 54322, VPort: 80, DPort: 8080,
				CAddr: a16("198.18.1.2"), VAddr: a16("198.18.1.100"), DAddr: a16("198.18.2.11"),
				InSeq: Seq{1, 2, 3}, OutSeq: Seq{4, 5, 6}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := unhex(t, tc.msg)
			if got := int(binary.BigEndian.Uint16(msg[2:])); got != len(msg) {
				t.Fatalf("golden message's size field %d, length %d: the test data is wrong", got, len(msg))
			}
			got, h, err := Decode(msg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if h != tc.hdr {
				t.Errorf("header %+v, want %+v", h, tc.hdr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// TestWriterGolden: what the Writer sends for the golden v1 IPv4 connections is the golden
// message byte for byte.
func TestWriterGolden(t *testing.T) {
	w := NewWriter(42, 1472)
	for i := range wantV1v4 {
		if ok, err := w.Add(&wantV1v4[i]); !ok || err != nil {
			t.Fatalf("add %d: %v %v", i, ok, err)
		}
	}
	if want := unhex(t, goldenV1v4); !bytes.Equal(w.Bytes(), want) {
		t.Fatalf("writer sent\n%x\nwant\n%x", w.Bytes(), want)
	}
}

// refEntry is an independent decoder of one version 1 entry, from the kernel's layout:
// what a kernel backup reads of what xlvs sends.
type refEntry struct {
	typ, proto                 uint8
	ver, size                  int
	flags                      uint32
	state, cport, vport, dport uint16
	fwmark, timeout            uint32
	caddr, vaddr, daddr        netip.Addr
	opts                       map[uint8][]byte
}

func refDecode(t *testing.T, msg []byte) (syncid uint8, out []refEntry) {
	t.Helper()
	if msg[0] != 0 || msg[5] != 1 || msg[6] != 0 || msg[7] != 0 {
		t.Fatalf("header %x is not a version 1 header", msg[:8])
	}
	if int(msg[2])<<8|int(msg[3]) != len(msg) {
		t.Fatalf("size field %d, datagram %d", int(msg[2])<<8|int(msg[3]), len(msg))
	}
	off := 8
	for i := 0; i < int(msg[4]); i++ {
		var e refEntry
		b := msg[off:]
		e.typ, e.proto = b[0], b[1]
		e.ver, e.size = int(b[2]>>4), int(b[2]&0xf)<<8|int(b[3])
		be32 := func(o int) uint32 { return uint32(b[o])<<24 | uint32(b[o+1])<<16 | uint32(b[o+2])<<8 | uint32(b[o+3]) }
		be16 := func(o int) uint16 { return uint16(b[o])<<8 | uint16(b[o+1]) }
		e.flags, e.state = be32(4), be16(8)
		e.cport, e.vport, e.dport = be16(10), be16(12), be16(14)
		e.fwmark, e.timeout = be32(16), be32(20)
		al := 4
		if e.typ&1 != 0 {
			al = 16
		}
		addr := func(o int) netip.Addr { a, _ := netip.AddrFromSlice(b[o : o+al]); return a }
		e.caddr, e.vaddr, e.daddr = addr(24), addr(24+al), addr(24+2*al)
		e.opts = map[uint8][]byte{}
		for p := 24 + 3*al; p < e.size; {
			typ, n := b[p], int(b[p+1])
			e.opts[typ] = b[p+2 : p+2+n]
			p += 2 + n
		}
		out = append(out, e)
		off += (e.size + 3) &^ 3
	}
	if off-((out[len(out)-1].size+3)&^3)+out[len(out)-1].size != len(msg) {
		t.Fatalf("entries end at %d, message at %d", off, len(msg))
	}
	return msg[1], out
}

// TestWriterMatchesKernelLayout: a mix of entries encoded by the Writer reads back through
// the independent decoder with every field where the kernel's structures put it.
func TestWriterMatchesKernelLayout(t *testing.T) {
	conns := []Conn{
		{Protocol: 6, Flags: FlagInactive, State: TCPSynRecv, CPort: 1, VPort: 2, DPort: 3, FWMark: 9, Timeout: 60,
			CAddr: a16("192.0.2.1"), VAddr: a16("192.0.2.2"), DAddr: a16("192.0.2.3")},
		{IPv6: true, Protocol: 17, Flags: FlagHashed | FwdTunnel, CPort: 4, VPort: 5, DPort: 6, Timeout: 300,
			CAddr: a16("2001:db8::1"), VAddr: a16("2001:db8::2"), DAddr: a16("2001:db8::3"),
			PEData: []byte{1, 2, 3}, PEName: "sip"},
		{Protocol: 6, State: TCPEstablished, CPort: 7, VPort: 8, DPort: 9, Timeout: 900,
			CAddr: a16("192.0.2.4"), VAddr: a16("192.0.2.2"), DAddr: a16("192.0.2.5"),
			HasLocal: true, LAddr: a16("192.0.2.50"), LPort: 40000},
	}
	w := NewWriter(5, 1472)
	for i := range conns {
		if ok, err := w.Add(&conns[i]); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	syncid, got := refDecode(t, w.Bytes())
	if syncid != 5 || len(got) != 3 {
		t.Fatalf("syncid %d, %d entries", syncid, len(got))
	}
	e := got[0]
	if e.typ != 0 || e.proto != 6 || e.ver != 0 || e.size != 36 || e.flags != FlagInactive || e.state != 3 ||
		e.cport != 1 || e.vport != 2 || e.dport != 3 || e.fwmark != 9 || e.timeout != 60 ||
		e.caddr.String() != "192.0.2.1" || e.daddr.String() != "192.0.2.3" || len(e.opts) != 0 {
		t.Errorf("entry 1: %+v", e)
	}
	e = got[1]
	if e.typ != 1 || e.size != 72+5+5 || e.flags != FwdTunnel || e.vaddr.String() != "2001:db8::2" ||
		!bytes.Equal(e.opts[2], []byte{1, 2, 3}) || string(e.opts[3]) != "sip" {
		t.Errorf("entry 2 (HASHED must not be sent, PE options): %+v", e)
	}
	e = got[2]
	lo := e.opts[0x50]
	if e.size != 36+8 || len(lo) != 6 || netip.AddrFrom4([4]byte(lo[:4])).String() != "192.0.2.50" || int(lo[4])<<8|int(lo[5]) != 40000 {
		t.Errorf("entry 3 (local address option 0x50, F_PARAM set so a kernel skips it): %+v", e)
	}
	back, _, err := Decode(w.Bytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	conns[1].Flags &^= FlagHashed
	if !reflect.DeepEqual(back, conns) {
		t.Errorf("round trip\n%+v\nwant\n%+v", back, conns)
	}
}

// TestWriterFills: entries go in until the next would pass maxlen; nr_conns stops at 255.
func TestWriterFills(t *testing.T) {
	c := Conn{Protocol: 6, State: 1, CAddr: a16("192.0.2.1"), VAddr: a16("192.0.2.2"), DAddr: a16("192.0.2.3")}
	w := NewWriter(0, 1472)
	n := 0
	for {
		ok, err := w.Add(&c)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		n++
	}
	if want := (1472 - 8) / 36; n != want || len(w.Bytes()) != 8+36*n {
		t.Fatalf("%d entries in %d bytes, want %d in %d", n, len(w.Bytes()), want, 8+36*want)
	}
	w = NewWriter(0, 65507)
	for n = 0; ; n++ {
		if ok, _ := w.Add(&c); !ok {
			break
		}
	}
	if n != 255 {
		t.Fatalf("%d entries in a large message, want 255 (nr_conns is a byte)", n)
	}
	w.Reset()
	if w.Len() != 0 || len(w.Bytes()) != 8 {
		t.Fatalf("after Reset: %d entries, %d bytes", w.Len(), len(w.Bytes()))
	}
	// A message takes at least one entry, however small maxlen is (as the kernel's buffer).
	w = NewWriter(0, 1)
	if ok, _ := w.Add(&Conn{IPv6: true, PEData: make([]byte, 255), PEName: "sip", Flags: FlagSeqMask}); !ok {
		t.Fatal("a large entry did not go into an empty message")
	}
	if ok, err := w.Add(&Conn{PEData: make([]byte, 256)}); ok || !errors.Is(err, ErrEntry) {
		t.Fatalf("PE data of 256 bytes: %v %v, want ErrEntry", ok, err)
	}
}

func TestWriterAllocs(t *testing.T) {
	c := Conn{IPv6: true, Protocol: 6, Flags: FlagSeqMask, HasLocal: true}
	w := NewWriter(1, 1472)
	if n := testing.AllocsPerRun(1000, func() {
		if ok, _ := w.Add(&c); !ok {
			w.Reset()
		}
	}); n != 0 {
		t.Fatalf("%v allocations per Add", n)
	}
}

// TestDecodeRejects: every malformed datagram is dropped whole, with the reason.
func TestDecodeRejects(t *testing.T) {
	good := unhex(t, goldenV1v4)
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	setSize := func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], uint16(len(b))); return b }
	for _, tc := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"three bytes", []byte{0, 1, 0}, ErrShort},
		{"size field too large", mut(func(b []byte) []byte { b[3]++; return b }), ErrSize},
		{"datagram cut", good[:len(good)-1], ErrSize},
		{"more conns than bytes", mut(func(b []byte) []byte { b[4] = 4; return b }), ErrTruncated},
		{"entry size past the end", mut(func(b []byte) []byte { b[8+36+36+3] = 0x40; return b }), ErrTruncated},
		{"entry version 1", mut(func(b []byte) []byte { b[8+2] |= 0x10; return b }), ErrVersion},
		{"entry type 2", mut(func(b []byte) []byte { b[8] = 2; return b }), ErrType},
		{"entry size 0", mut(func(b []byte) []byte { b[8+2], b[8+3] = 0, 0; return b }), ErrTruncated},
		{"IPv6 type in a 36-byte entry", mut(func(b []byte) []byte { b[8] = 1; return b }), ErrTruncated},
		{"option length 0", mut(func(b []byte) []byte { b[8+72+37] = 0; return b }), ErrOption},
		{"option past the entry", mut(func(b []byte) []byte { b[8+72+37] = 30; return b }), ErrOption},
		{"sequence data of 23 bytes", mut(func(b []byte) []byte {
			b[8+72+37] = 23
			b[8+72+3]--
			return setSize(b[:len(b)-1])
		}), ErrOption},
		{"version 0 entry cut", unhex(t, "01 00 00 10  00 06 00 01 00 02 00 03 01 02 03 04"), ErrTruncated},
		{"version 0 sequence data cut", unhex(t, `01 00 00 20  00 06 00 01 00 02 00 03
			01 02 03 04  05 06 07 08  09 0a 0b 0c  06 00 00 01  00 00 00 00`), ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep := []Conn{{Protocol: 99}}
			got, _, err := Decode(tc.msg, keep)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if len(got) != 1 || got[0].Protocol != 99 {
				t.Fatalf("a dropped message returned entries: %+v", got)
			}
		})
	}
}

func TestMaxLen(t *testing.T) {
	for _, tc := range []struct {
		mtu            int
		v6, backup     bool
		requested, out int
	}{
		{1500, false, false, 0, 1472},  // ipvsadm's default maxlen
		{9000, false, false, 0, 1472},  // a master sends what any backup takes
		{9000, false, true, 0, 8972},   // a backup takes what its MTU allows
		{1280, false, true, 0, 1472},   // ... never less than 1500's
		{1500, true, false, 0, 1452},   // IPv6 group
		{1500, false, false, 100, 100}, // --sync-maxlen
		{1500, false, true, 100, 1024}, // a backup's floor
		{1500, false, false, 70000, 65507},
		{1500, true, true, 70000, 65487},
	} {
		if got := MaxLen(tc.mtu, tc.v6, tc.backup, tc.requested); got != tc.out {
			t.Errorf("MaxLen(%d, v6=%v, backup=%v, %d) = %d, want %d", tc.mtu, tc.v6, tc.backup, tc.requested, got, tc.out)
		}
	}
}

func TestValidState(t *testing.T) {
	for _, tc := range []struct {
		c  Conn
		ok bool
	}{
		{Conn{Protocol: 6, State: 10}, true}, // SYNACK, the last TCP state
		{Conn{Protocol: 6, State: 11}, false},
		{Conn{Protocol: 17, State: 0}, true},
		{Conn{Protocol: 17, State: 1}, false},
		{Conn{Protocol: 132, State: 13}, true},                   // SCTP CLOSED, the last SCTP state
		{Conn{Protocol: 132, State: 14}, false},                  // IP_VS_SCTP_S_LAST
		{Conn{Protocol: 33, State: 0}, false},                    // DCCP: not an xlvs protocol
		{Conn{Protocol: 6, State: 1, Flags: FlagTemplate}, true}, // ASSURED
		{Conn{Protocol: 6, State: 2, Flags: FlagTemplate}, false},
		{Conn{Protocol: 6, State: 500, Flags: FlagTemplate}, false},
	} {
		if got := ValidState(&tc.c); got != tc.ok {
			t.Errorf("ValidState(proto %d state %d flags %#x) = %v", tc.c.Protocol, tc.c.State, tc.c.Flags, got)
		}
	}
}

// FuzzDecode: Decode never panics; whatever it accepts, the Writer encodes to a message
// that decodes to the same entries (for version 1 input without unknown options).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{goldenV1v4, goldenV1v6, goldenV0} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		conns, h, err := Decode(msg, nil)
		if err != nil {
			if len(conns) != 0 {
				t.Fatalf("error %v with %d entries", err, len(conns))
			}
			return
		}
		if len(conns) != h.Count {
			t.Fatalf("%d entries, header says %d", len(conns), h.Count)
		}
		w := NewWriter(h.SyncID, 65507)
		for i := range conns {
			c := conns[i]
			if c.Skip || len(c.PEData) > 0 && c.PEName == "" {
				return
			}
			if c.PEName != "" && len(c.PEData) == 0 {
				c.PEName = "" // a name without data is dropped by the kernel's reader too
			}
			if ok, err := w.Add(&c); !ok || err != nil {
				t.Fatalf("re-encoding entry %d: %v %v", i, ok, err)
			}
		}
		if h.Count == 0 {
			return
		}
		back, _, err := Decode(w.Bytes(), nil)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		for i := range back {
			a, b := back[i], conns[i]
			if b.Flags&FlagSeqMask == 0 {
				// sequence data goes out only with the flags that ask for it
				b.InSeq, b.OutSeq = Seq{}, Seq{}
			}
			a.Flags, b.Flags = 0, 0
			b.Timeout, a.Timeout = 0, 0
			if h.Version == 0 {
				a.InSeq, a.OutSeq, b.InSeq, b.OutSeq = Seq{}, Seq{}, Seq{}, Seq{}
			}
			if len(b.PEData) == 0 {
				b.PEName = ""
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("entry %d changed in a round trip:\n%+v\n%+v", i, a, b)
			}
		}
	})
}
