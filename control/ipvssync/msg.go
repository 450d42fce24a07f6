package ipvssync

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Defaults of the kernel's sync daemon (ip_vs_sync.c, start_sync_thread).
const (
	DefaultPort = 8848 // IP_VS_SYNC_PORT; sync thread N uses DefaultPort+N
	DefaultTTL  = 1
)

// DefaultGroup4 is IP_VS_SYNC_GROUP, 224.0.0.81.
var DefaultGroup4 = [4]byte{224, 0, 0, 81}

// Connection flags (include/uapi/linux/ip_vs.h, IP_VS_CONN_F_*) as they travel in a message.
const (
	FlagFwdMask   = 0x0007 // forwarding method: FwdMasq, FwdLocal, FwdTunnel, FwdRoute, FwdBypass
	FlagSync      = 0x0020 // created by sync (set by the receiver)
	FlagHashed    = 0x0040 // never sent
	FlagNoOutput  = 0x0080
	FlagInactive  = 0x0100 // not in an active state (the sender's InActConn)
	FlagOutSeq    = 0x0200
	FlagInSeq     = 0x0400
	FlagSeqMask   = 0x0600 // the connection carries sequence data
	FlagNoCPort   = 0x0800
	FlagTemplate  = 0x1000 // a persistence template, not a connection
	FlagOnePacket = 0x2000 // never synced

	// FlagBackupMask is IP_VS_CONN_F_BACKUP_MASK: the bits a backup takes from a message.
	FlagBackupMask = FlagFwdMask | FlagNoOutput | FlagInactive | FlagSeqMask | FlagNoCPort | FlagTemplate
	// FlagBackupUpdMask is IP_VS_CONN_F_BACKUP_UPD_MASK: the bits a message may change on a
	// connection the backup already has.
	FlagBackupUpdMask = FlagInactive | FlagSeqMask
)

// Forwarding methods in FlagFwdMask.
const (
	FwdMasq   = 0
	FwdLocal  = 1
	FwdTunnel = 2
	FwdRoute  = 3
	FwdBypass = 4
)

// Option types.
const (
	OptSeqData   = 1    // IPVS_OPT_SEQ_DATA
	OptPEData    = 2    // IPVS_OPT_PE_DATA
	OptPEName    = 3    // IPVS_OPT_PE_NAME
	OptParamFlag = 0x40 // IPVS_OPT_F_PARAM: a receiver that does not know the option skips it
	// OptLocalAddr carries a FULLNAT connection's local address and port (xlvs only;
	// optional, so kernel receivers skip it).
	OptLocalAddr = OptParamFlag | 16
)

// Limits of the kernel's format.
const (
	PEDataMax = 255 // IP_VS_PEDATA_MAXLEN
	PENameMax = 16  // IP_VS_PENAME_MAXLEN
	MaxConns  = 255 // nr_conns is a byte

	headerLenV1 = 8
	headerLenV0 = 4
	connLenV4   = 36 // struct ip_vs_sync_v4
	connLenV6   = 72 // struct ip_vs_sync_v6
	connLenV0   = 24 // struct ip_vs_sync_conn_v0
	seqLen      = 24 // struct ip_vs_sync_conn_options: two struct ip_vs_seq
	verShift    = 12 // SVER_SHIFT
	sizeMask    = 0x0fff
)

// Seq is struct ip_vs_seq: the sequence-number adjustment of a connection whose payload an
// application helper changed in length.
type Seq struct {
	InitSeq, Delta, PreviousDelta uint32
}

// Conn is one connection (or persistence template) of a message. Addresses are 16 bytes,
// IPv4 ones IPv4-mapped (::ffff:a.b.c.d) as everywhere in xlvs; IPv6 says which family the
// entry has on the wire. Ports are host-order integers.
type Conn struct {
	IPv6     bool
	Protocol uint8
	Flags    uint32 // FlagX bits as sent (the sender's IP_VS_CONN_F_*, without FlagHashed)
	State    uint16 // the protocol's state number (IP_VS_TCP_S_*, ...) or a template's
	CPort    uint16
	VPort    uint16
	DPort    uint16
	FWMark   uint32
	Timeout  uint32 // seconds; 0 in version 0 messages (the receiver uses its own)
	CAddr    [16]byte
	VAddr    [16]byte
	DAddr    [16]byte

	// Sequence data, present when Flags has FlagSeqMask bits.
	InSeq, OutSeq Seq

	// Persistence-engine data and name (sip), both or neither.
	PEData []byte
	PEName string

	// HasLocal says LAddr and LPort (OptLocalAddr) are set: a FULLNAT connection's local
	// address, of the entry's family.
	HasLocal bool
	LAddr    [16]byte
	LPort    uint16

	// Skip is set by Decode on an entry the kernel would drop on its own: it carries an
	// option the receiver must understand and does not (its type without OptParamFlag).
	Skip bool
}

// Fwd is the connection's forwarding method (FwdMasq, FwdRoute, ...).
func (c *Conn) Fwd() uint32 { return c.Flags & FlagFwdMask }

// wireLen is the entry's length as the kernel counts it (ver_size's size): fixed part and
// options, no padding.
func (c *Conn) wireLen() int {
	n := connLenV4
	if c.IPv6 {
		n = connLenV6
	}
	if c.Flags&FlagSeqMask != 0 {
		n += 2 + seqLen
	}
	if len(c.PEData) > 0 {
		n += 2 + len(c.PEData)
		if c.PEName != "" {
			n += 2 + len(c.PEName)
		}
	}
	if c.HasLocal {
		n += 2 + 2 + addrLen(c.IPv6)
	}
	return n
}

func addrLen(v6 bool) int {
	if v6 {
		return 16
	}
	return 4
}

// MaxLen is the kernel's sync_maxlen: the UDP payload size of a sync daemon's messages.
// requested is --sync-maxlen (0: from the MTU). A master computes from 1500 whatever its
// interface's MTU (so that any backup can receive what it sends) and takes any requested
// size from 1 up; a backup computes from its interface's MTU clamped to 1500..65535 and takes
// requested sizes from 1024 up. Either way the size stays within a datagram (65535 less the
// IP and UDP headers). ipv6 is the family of the multicast group.
func MaxLen(mtu int, ipv6, backup bool, requested int) int {
	hlen := 20 + 8
	if ipv6 {
		hlen = 40 + 8
	}
	m, lo := 1500, 1
	if backup {
		m, lo = min(max(mtu, 1500), 65535), 1024
	}
	if requested != 0 {
		return min(max(requested, lo), 65535-hlen)
	}
	return m - hlen
}

// Writer builds one version 1 message. NewWriter sizes its buffer once; Add appends entries
// until the next one does not fit; Bytes is the datagram to send; Reset starts the next.
type Writer struct {
	buf    []byte
	maxlen int
	n      int // entries
}

// NewWriter returns a Writer for messages of at most maxlen bytes (MaxLen) from syncid.
// Like the kernel, a message always takes at least one entry, even one longer than maxlen
// (PE data can make an entry up to ~400 bytes; maxlen can be set as low as 1).
func NewWriter(syncid uint8, maxlen int) *Writer {
	const largest = headerLenV1 + connLenV6 + 2 + seqLen + 2 + PEDataMax + 2 + PENameMax + 4 + 18
	w := &Writer{buf: make([]byte, 0, max(maxlen, largest)), maxlen: maxlen}
	w.buf = w.buf[:headerLenV1]
	w.buf[1] = syncid
	w.Reset()
	return w
}

// Reset empties the message (keeping the syncid).
func (w *Writer) Reset() {
	w.buf = w.buf[:headerLenV1]
	w.buf[0] = 0 // reserved: version 0 receivers take it as nr_conns 0 and ignore the message
	binary.BigEndian.PutUint16(w.buf[2:], headerLenV1)
	w.buf[4] = 0
	w.buf[5] = 1 // version
	w.buf[6], w.buf[7] = 0, 0
	w.n = 0
}

// Len is the number of entries in the message.
func (w *Writer) Len() int { return w.n }

// Bytes is the message as it goes on the wire; it is valid until the next Add or Reset.
func (w *Writer) Bytes() []byte { return w.buf }

// ErrEntry is returned by Add for an entry that cannot be encoded.
var ErrEntry = errors.New("sync entry cannot be encoded")

// Add appends c to the message. It returns false, nil when c does not fit (the message is
// full: send it, Reset, Add again) and an error wrapping ErrEntry when c can never be
// encoded (PE data over PEDataMax, a name without data, ...). It does not allocate.
func (w *Writer) Add(c *Conn) (bool, error) {
	if len(c.PEData) > PEDataMax || len(c.PEName) > PENameMax || (c.PEName != "" && len(c.PEData) == 0) {
		return false, fmt.Errorf("add: %w: persistence-engine data of %d bytes (at most %d) and name of %d (at most %d, only with data)",
			ErrEntry, len(c.PEData), PEDataMax, len(c.PEName), PENameMax)
	}
	n := c.wireLen()
	pad := (4 - len(w.buf)) & 3
	if w.n == MaxConns || (w.n > 0 && len(w.buf)+pad+n > w.maxlen) {
		return false, nil
	}
	if len(w.buf)+pad+n > cap(w.buf) {
		return false, nil // cannot happen with NewWriter's sizing; never grow
	}
	start := len(w.buf) + pad
	w.buf = w.buf[:start+n]
	for i := start - pad; i < start; i++ {
		w.buf[i] = 0
	}
	e := w.buf[start:]
	e[0] = 0
	if c.IPv6 {
		e[0] = 1 // STYPE_F_INET6
	}
	e[1] = c.Protocol
	binary.BigEndian.PutUint16(e[2:], uint16(n)&sizeMask) // version 0 of the entry format
	binary.BigEndian.PutUint32(e[4:], c.Flags&^FlagHashed)
	binary.BigEndian.PutUint16(e[8:], c.State)
	binary.BigEndian.PutUint16(e[10:], c.CPort)
	binary.BigEndian.PutUint16(e[12:], c.VPort)
	binary.BigEndian.PutUint16(e[14:], c.DPort)
	binary.BigEndian.PutUint32(e[16:], c.FWMark)
	binary.BigEndian.PutUint32(e[20:], c.Timeout)
	p := 24
	al := addrLen(c.IPv6)
	for _, a := range [3]*[16]byte{&c.CAddr, &c.VAddr, &c.DAddr} {
		p += copy(e[p:p+al], a[16-al:])
	}
	if c.Flags&FlagSeqMask != 0 {
		e[p], e[p+1] = OptSeqData, seqLen
		p += 2
		for _, s := range [2]*Seq{&c.InSeq, &c.OutSeq} {
			binary.BigEndian.PutUint32(e[p:], s.InitSeq)
			binary.BigEndian.PutUint32(e[p+4:], s.Delta)
			binary.BigEndian.PutUint32(e[p+8:], s.PreviousDelta)
			p += 12
		}
	}
	if len(c.PEData) > 0 {
		e[p], e[p+1] = OptPEData, byte(len(c.PEData))
		p += 2 + copy(e[p+2:], c.PEData)
		if c.PEName != "" {
			e[p], e[p+1] = OptPEName, byte(len(c.PEName))
			p += 2 + copy(e[p+2:], c.PEName)
		}
	}
	if c.HasLocal {
		e[p], e[p+1] = OptLocalAddr, byte(al+2)
		p += 2 + copy(e[p+2:p+2+al], c.LAddr[16-al:])
		binary.BigEndian.PutUint16(e[p:], c.LPort)
	}
	w.n++
	w.buf[4] = byte(w.n)
	binary.BigEndian.PutUint16(w.buf[2:], uint16(len(w.buf)))
	return true, nil
}

// Header is what Decode read of a message's header.
type Header struct {
	Version uint8 // 0 or 1
	SyncID  uint8
	Count   int // nr_conns
}

// Decoding errors: every one means the whole datagram was dropped.
var (
	ErrShort     = errors.New("sync message shorter than its header")
	ErrSize      = errors.New("sync message size differs from the datagram's")
	ErrTruncated = errors.New("sync message ends inside an entry")
	ErrVersion   = errors.New("sync entry of an unknown version")
	ErrType      = errors.New("sync entry of an unknown type")
	ErrOption    = errors.New("sync entry with a malformed option")
)

// Decode parses one datagram and appends its entries to out. On an error it returns out as
// given (nothing of the message), the header as far as it was read, and the reason, which
// wraps one of the Err values above. It never panics. The data of PE options is copied.
func Decode(msg []byte, out []Conn) ([]Conn, Header, error) {
	var h Header
	if len(msg) < headerLenV0 {
		return out, h, fmt.Errorf("decode: %w: %d bytes, want at least %d", ErrShort, len(msg), headerLenV0)
	}
	size := int(binary.BigEndian.Uint16(msg[2:]))
	h.SyncID = msg[1]
	if size != len(msg) {
		return out, h, fmt.Errorf("decode: %w: header says %d bytes, datagram has %d", ErrSize, size, len(msg))
	}
	// Version 1 has reserved 0, version 1 and spare 0; anything else is a version 0 message
	// (whose first byte is nr_conns), as ip_vs_process_message decides.
	if len(msg) >= headerLenV1 && msg[0] == 0 && msg[5] == 1 && msg[6] == 0 && msg[7] == 0 {
		h.Version, h.Count = 1, int(msg[4])
		n0 := len(out)
		out, err := decodeV1(msg, h.Count, out)
		if err != nil {
			return out[:n0], h, err
		}
		return out, h, nil
	}
	h.Count = int(msg[0])
	n0 := len(out)
	out, err := decodeV0(msg, h.Count, out)
	if err != nil {
		return out[:n0], h, err
	}
	return out, h, nil
}

func decodeV1(msg []byte, count int, out []Conn) ([]Conn, error) {
	next := headerLenV1
	for i := 0; i < count; i++ {
		p := next
		if p+connLenV4 > len(msg) {
			return out, fmt.Errorf("decode: %w: entry %d at byte %d needs %d bytes, %d left", ErrTruncated, i+1, p, connLenV4, len(msg)-p)
		}
		vs := binary.BigEndian.Uint16(msg[p+2:])
		size := int(vs & sizeMask)
		end := p + size
		if end > len(msg) {
			return out, fmt.Errorf("decode: %w: entry %d of %d bytes at byte %d, %d left", ErrTruncated, i+1, size, p, len(msg)-p)
		}
		if v := vs >> verShift; v != 0 {
			return out, fmt.Errorf("decode: %w: entry %d has version %d, want 0", ErrVersion, i+1, v)
		}
		out = append(out, Conn{})
		if err := decodeEntry(msg[p:end], &out[len(out)-1]); err != nil {
			return out, fmt.Errorf("decode: entry %d: %w", i+1, err)
		}
		next = p + (size+3)&^3
	}
	return out, nil
}

// decodeEntry reads one version 1 entry, e being exactly its size.
func decodeEntry(e []byte, c *Conn) error {
	if len(e) < connLenV4 {
		return fmt.Errorf("%w: entry size %d, at least %d", ErrTruncated, len(e), connLenV4)
	}
	fixed := connLenV4
	switch e[0] {
	case 0:
	case 1:
		c.IPv6, fixed = true, connLenV6
	default:
		return fmt.Errorf("%w %d (0 is IPv4, 1 IPv6)", ErrType, e[0])
	}
	if len(e) < fixed {
		return fmt.Errorf("%w: %d bytes, a %s entry has at least %d", ErrTruncated, len(e), family(c.IPv6), fixed)
	}
	c.Protocol = e[1]
	c.Flags = binary.BigEndian.Uint32(e[4:])
	c.State = binary.BigEndian.Uint16(e[8:])
	c.CPort = binary.BigEndian.Uint16(e[10:])
	c.VPort = binary.BigEndian.Uint16(e[12:])
	c.DPort = binary.BigEndian.Uint16(e[14:])
	c.FWMark = binary.BigEndian.Uint32(e[16:])
	c.Timeout = binary.BigEndian.Uint32(e[20:])
	al := addrLen(c.IPv6)
	p := 24
	for _, a := range [3]*[16]byte{&c.CAddr, &c.VAddr, &c.DAddr} {
		setAddr(a, e[p:p+al])
		p += al
	}
	var seen uint8
	for p < len(e) {
		if p+2 > len(e) {
			return fmt.Errorf("%w: option header at byte %d cut short", ErrOption, p)
		}
		typ, n := e[p], int(e[p+1])
		p += 2
		if n == 0 || p+n > len(e) {
			return fmt.Errorf("%w: option %d of length %d at byte %d, %d bytes left", ErrOption, typ, n, p-2, len(e)-p)
		}
		d := e[p : p+n]
		p += n
		switch typ &^ OptParamFlag {
		case OptSeqData:
			if n != seqLen || seen&1 != 0 {
				return fmt.Errorf("%w: sequence data of %d bytes (want %d, once)", ErrOption, n, seqLen)
			}
			seen |= 1
			c.InSeq = Seq{binary.BigEndian.Uint32(d), binary.BigEndian.Uint32(d[4:]), binary.BigEndian.Uint32(d[8:])}
			c.OutSeq = Seq{binary.BigEndian.Uint32(d[12:]), binary.BigEndian.Uint32(d[16:]), binary.BigEndian.Uint32(d[20:])}
		case OptPEData:
			if seen&2 != 0 {
				return fmt.Errorf("%w: persistence-engine data twice", ErrOption)
			}
			seen |= 2
			c.PEData = append([]byte(nil), d...)
		case OptPEName:
			if n > PENameMax || seen&4 != 0 {
				return fmt.Errorf("%w: persistence-engine name of %d bytes (at most %d, once)", ErrOption, n, PENameMax)
			}
			seen |= 4
			c.PEName = string(d)
		default:
			if typ == OptLocalAddr && n == al+2 && !c.HasLocal {
				c.HasLocal = true
				setAddr(&c.LAddr, d[:al])
				c.LPort = binary.BigEndian.Uint16(d[al:])
				continue
			}
			if typ&OptParamFlag == 0 {
				c.Skip = true // an option we must understand and do not: the kernel drops the entry
			}
		}
	}
	if len(c.PEData) > 0 && c.PEName == "" {
		c.Skip = true // ip_vs_conn_fill_param_sync: PE data needs its engine's name
	}
	return nil
}

func family(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// setAddr stores a 4- or 16-byte wire address as a 16-byte one (IPv4-mapped).
func setAddr(dst *[16]byte, b []byte) {
	if len(b) == 4 {
		*dst = [16]byte{10: 0xff, 11: 0xff}
		copy(dst[12:], b)
		return
	}
	copy(dst[:], b)
}

func decodeV0(msg []byte, count int, out []Conn) ([]Conn, error) {
	p := headerLenV0
	for i := 0; i < count; i++ {
		if p+connLenV0 > len(msg) {
			return out, fmt.Errorf("decode: %w: version 0 entry %d at byte %d needs %d bytes, %d left", ErrTruncated, i+1, p, connLenV0, len(msg)-p)
		}
		e := msg[p : p+connLenV0]
		var c Conn
		c.Protocol = e[1]
		c.CPort = binary.BigEndian.Uint16(e[2:])
		c.VPort = binary.BigEndian.Uint16(e[4:])
		c.DPort = binary.BigEndian.Uint16(e[6:])
		setAddr(&c.CAddr, e[8:12])
		setAddr(&c.VAddr, e[12:16])
		setAddr(&c.DAddr, e[16:20])
		c.Flags = uint32(binary.BigEndian.Uint16(e[20:]))
		c.State = binary.BigEndian.Uint16(e[22:])
		p += connLenV0
		if c.Flags&FlagSeqMask != 0 {
			if p+seqLen > len(msg) {
				return out, fmt.Errorf("decode: %w: version 0 entry %d's sequence data cut short", ErrTruncated, i+1)
			}
			d := msg[p : p+seqLen]
			// Copied from the sender's memory: host order, little-endian on x86 and arm64.
			c.InSeq = Seq{binary.LittleEndian.Uint32(d), binary.LittleEndian.Uint32(d[4:]), binary.LittleEndian.Uint32(d[8:])}
			c.OutSeq = Seq{binary.LittleEndian.Uint32(d[12:]), binary.LittleEndian.Uint32(d[16:]), binary.LittleEndian.Uint32(d[20:])}
			p += seqLen
		}
		out = append(out, c)
	}
	return out, nil
}

// Protocol states as the kernel numbers them, for ValidState and callers that map them.
const (
	TCPNone        = 0 // IP_VS_TCP_S_NONE
	TCPEstablished = 1
	TCPSynSent     = 2
	TCPSynRecv     = 3
	TCPFinWait     = 4
	TCPTimeWait    = 5
	TCPClose       = 6
	TCPCloseWait   = 7
	TCPLastAck     = 8
	TCPListen      = 9
	TCPSynAck      = 10
	tcpStates      = 11 // IP_VS_TCP_S_LAST

	UDPNormal = 0 // IP_VS_UDP_S_NORMAL
	udpStates = 1 // IP_VS_UDP_S_LAST

	ctplStates = 2 // IP_VS_CTPL_S_LAST: a template is NONE (0) or ASSURED (1)

	// SCTP states are IP_VS_SCTP_S_NONE (0), INIT1 (1) ... CLOSED (13)
	// (conntrack.SCTPState maps them).
	sctpStates = 14 // IP_VS_SCTP_S_LAST
)

// ValidState reports whether a receiver that knows proto takes an entry of that protocol in
// state (ip_vs_proc_sync_conn: an unknown protocol or a state at or past the protocol's last
// skips the entry; a template's state must be below IP_VS_CTPL_S_LAST, 2 — older kernels
// only logged it, 6.18's skips it: codesnas/linux-6.18.y net/netfilter/ipvs/ip_vs_sync.c
// at 33ef1e6a). Of the kernel's protocols xlvs knows TCP, UDP and SCTP.
func ValidState(c *Conn) bool {
	if c.Flags&FlagTemplate != 0 {
		return c.State < ctplStates
	}
	switch c.Protocol {
	case 6:
		return c.State < tcpStates
	case 17:
		return c.State < udpStates
	case 132:
		return c.State < sctpStates
	}
	return false
}
