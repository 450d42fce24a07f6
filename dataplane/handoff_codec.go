package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"xlvs/bpf"
	"xlvs/conntrack"
)

// The restart handoff's wire format: what a stopping xlvsd writes for its successor
// (connections, persistence templates, statistics, the shard key, the interfaces whose
// XDP links it hands over). Little-endian throughout.
//
//	header (HandoffHeaderLen bytes in version 1; a reader skips what it does not know)
//	  0  magic "XLVSHAND"
//	  8  u16 version (HandoffVersion)
//	 10  u16 header length (>= 40)
//	 12  u32 flags: must-understand features; none in version 1, a reader refuses any
//	 16  u64 body length: the bytes after the header
//	 24  u32 CRC-32C of the body
//	 28  u32 0
//	 32  i64 written: wall clock, Unix nanoseconds (timers left are counted from it)
//	body: sections, each
//	  u16 type, u16 0, u32 payload length, payload
//	  1 meta (once, first): shard key [16], u32 shards, u16 writer length, writer,
//	    u16 interfaces, each: i32 ifindex, u8 mode, u8 name length, name
//	  2 entries, 3 stats, 4 marked entries, 5 marked stats: u16 record size, u16 0,
//	    u32 count, count records
//	entry record (handoffEntrySize bytes in version 1):
//	  0 u8 proto, 1 u8 method, 2 u8 state, 3 u8 flags (1: template),
//	  4 u32 milliseconds left, 8 client [16], 24 virtual [16], 40 real server [16],
//	  56 local address [16] (FULLNAT), 72 u16 client port, 74 u16 virtual port,
//	  76 u16 real server port, 78 u16 local port
//	marked entry record (section 4, handoffMarkEntrySize bytes; added within version 1):
//	  0 an entry record (80 bytes, as above), 80 u32 firewall mark (1 or more)
//	  A connection or template of a firewall-mark service: the mark finds its service
//	  (a fwmark service has no address and port). A template has protocol 0 (IPPROTO_IP,
//	  as IPVS makes it) and the family's zero address as its virtual address. These go
//	  in a section of their own so that a reader of version 1 from before it skips them
//	  whole (an unknown section) instead of binding them by address to another service
//	  or refusing the handoff over a template of protocol 0; an entries (2) section
//	  holds no marked entry.
//	stats record (handoffStatSize bytes in version 1):
//	  0 u8 proto, 1 u8 flags (1: a real server's), 2 u16 virtual port,
//	  4 u16 real server port, 6 u16 0, 8 virtual [16], 24 real server [16],
//	  40 u64 conns, in packets, out packets, in bytes, out bytes
//	marked stats record (section 5, handoffMarkStatSize bytes; added within version 1):
//	  0 a stats record (80 bytes, as above), 80 u32 firewall mark (1 or more)
//	  The statistics of a firewall-mark service or of one of its real servers: protocol
//	  0, virtual port 0 and the family's zero address as the virtual address (the
//	  service's key, FWMarkKey), found by the mark and that family. In a section of
//	  their own for the reason marked entries are: a reader from before skips them.
//	sockets (section 6, added within version 1): u16 count, u16 0, then count sockets,
//	  each: u8 name length, interface name, u8 flags (1 copy, 2 zero-copy), u16 queue,
//	  i32 ifindex, u32 frames, u32 frame size, u32 fill, completion, RX and TX ring
//	  sizes, u32 free frames, and that many u32 frame numbers (address / frame size).
//	  The AF_XDP sockets whose descriptors (socket and UMEM memfd) go with the handoff:
//	  the successor adopts them (xsk.Adopt) and carries on at their rings' indices. A
//	  reader from before skips the section; it cannot bind the queues while the keeper
//	  holds these sockets (see README "Restarting and upgrading").
//
// Compatibility: HandoffVersion changes only when a field changes its meaning. Within a
// version a writer may add sections (readers skip unknown types), fields at the end of
// a record (readers take the record size from the section and read the part they know)
// and header fields (the header length says where the body starts), so binaries of one
// format version take over from each other in both directions. A reader refuses any
// other version (ErrHandoffVersion), truncated or corrupted input (CRC) and values out
// of range, as a whole: a successor then starts cold.

// HandoffVersion is the handoff format version this build writes and reads.
const HandoffVersion = 1

// Sizes of version 1's fixed parts.
const (
	HandoffHeaderLen = 40
	handoffEntrySize = 80
	// handoffMarkEntrySize: a marked entry record, an entry record and the mark.
	handoffMarkEntrySize = handoffEntrySize + 4
	handoffStatSize      = 80
	// handoffMarkStatSize: a marked stats record, a stats record and the mark.
	handoffMarkStatSize = handoffStatSize + 4
	handoffMagic        = "XLVSHAND"
)

const (
	secMeta    = 1
	secEntries = 2
	secStats   = 3
	// secMarkEntries holds the entries of fwmark services (added within version 1).
	secMarkEntries = 4
	// secMarkStats holds the statistics of fwmark services (added within version 1).
	secMarkStats = 5
	// secSockets describes the AF_XDP sockets handed over (added within version 1).
	secSockets = 6
)

// MaxHandoffBytes bounds what DecodeHandoff accepts (and EncodeHandoff writes): 16 M
// connections of 80 bytes and then some.
const MaxHandoffBytes = 2 << 30

var (
	// ErrHandoffVersion: the handoff was written in a format version this build does not
	// read.
	ErrHandoffVersion = errors.New("handoff format version not supported")
	// ErrHandoffCorrupt: the handoff is truncated, fails its checksum or holds values out
	// of range.
	ErrHandoffCorrupt = errors.New("handoff malformed")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// HandoffIface is an interface whose XDP link the predecessor hands over.
type HandoffIface struct {
	Name    string
	Ifindex int32
	Mode    bpf.Mode // what the predecessor attached with
}

// HandoffEntry is a connection or a persistence template by addresses (IDs differ
// between processes): as SyncConn, with the time left to the millisecond.
type HandoffEntry struct {
	Proto    uint8
	Method   conntrack.Method
	State    conntrack.State // templates: StateNone
	Template bool
	Left     time.Duration // time left on the timer when written (ms resolution)
	Client   [16]byte      // templates: the masked client address
	CPort    uint16        // templates: 0
	VAddr    [16]byte
	VPort    uint16
	DAddr    [16]byte
	DPort    uint16
	LAddr    [16]byte // FULLNAT
	LPort    uint16
	// FWMark is the mark of the entry's firewall-mark service, 0 for others. A
	// template of a fwmark service has Proto 0 and VAddr FWMarkKey(family).Addr, VPort
	// 0 (SvcKey of the service). Decoded entries of fwmark services follow the others.
	FWMark uint32
}

// HandoffStat is the statistics of a service, or of one of its real servers (Dest), as
// -L --stats showed them when written.
type HandoffStat struct {
	Service SvcKey
	Dest    bool
	DAddr   [16]byte
	DPort   uint16
	Stats   FlowStats
	// FWMark is the mark of a firewall-mark service, 0 for others; Service is then
	// FWMarkKey of the service's family. Decoded statistics of fwmark services follow
	// the others.
	FWMark uint32
}

// Handoff is what a stopping xlvsd hands its successor.
type Handoff struct {
	Written    time.Time
	Writer     string // the writing build, for the log
	ShardKey   [conntrack.ShardKeyLen]byte
	Shards     int // the writer's connection-table shard count
	Interfaces []HandoffIface
	Entries    []HandoffEntry
	Stats      []HandoffStat
	// Sockets are the AF_XDP sockets handed over (their descriptors travel beside the
	// handoff: SockFD and MemFD are not encoded).
	Sockets []HandoffSocket
}

// maxSocketsHandedOver bounds the sockets section: an interface's queues times a few
// interfaces.
const maxSocketsHandedOver = 4096

// socketsSize is the encoded size of the sockets section, 0 without sockets.
func socketsSize(socks []HandoffSocket) int {
	if len(socks) == 0 {
		return 0
	}
	n := 8 + 4
	for _, s := range socks {
		n += 1 + len(s.Ifname) + 1 + 2 + 4 + 6*4 + 4 + 4*len(s.Info.Free)
	}
	return n
}

func appendSockets(b []byte, socks []HandoffSocket) ([]byte, error) {
	le := binary.LittleEndian
	start := len(b)
	b = le.AppendUint16(b, secSockets)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 0) // length, below
	b = le.AppendUint16(b, uint16(len(socks)))
	b = le.AppendUint16(b, 0)
	for _, s := range socks {
		c := s.Info.Config
		if len(s.Ifname) == 0 || len(s.Ifname) > 255 {
			return nil, fmt.Errorf("encode handoff: socket of interface %q: want a name of 1 to 255 bytes", s.Ifname)
		}
		var flags uint8
		if c.Copy {
			flags |= 1
		}
		if c.ZeroCopy {
			flags |= 2
		}
		b = append(b, uint8(len(s.Ifname)))
		b = append(b, s.Ifname...)
		b = append(b, flags)
		b = le.AppendUint16(b, uint16(s.Info.Queue))
		b = le.AppendUint32(b, uint32(s.Info.Ifindex))
		for _, v := range []int{c.Frames, c.FrameSize, c.FillRing, c.CompRing, c.RxRing, c.TxRing, len(s.Info.Free)} {
			b = le.AppendUint32(b, uint32(v))
		}
		for _, a := range s.Info.Free {
			b = le.AppendUint32(b, uint32(a/uint64(c.FrameSize)))
		}
	}
	le.PutUint32(b[start+4:], uint32(len(b)-start-8))
	return b, nil
}

func decodeSockets(p []byte) ([]HandoffSocket, error) {
	le := binary.LittleEndian
	if len(p) < 4 {
		return nil, corrupt("sockets section of %d bytes, at least 4", len(p))
	}
	n := int(le.Uint16(p))
	if n > maxSocketsHandedOver {
		return nil, corrupt("sockets section: %d sockets, at most %d", n, maxSocketsHandedOver)
	}
	p = p[4:]
	out := make([]HandoffSocket, 0, n)
	for i := 0; i < n; i++ {
		if len(p) < 1 || int(p[0]) == 0 || len(p) < 1+int(p[0])+1+2+4+7*4 {
			return nil, corrupt("sockets section: socket %d of %d truncated", i+1, n)
		}
		var s HandoffSocket
		nl := int(p[0])
		s.Ifname = string(p[1 : 1+nl])
		p = p[1+nl:]
		flags := p[0]
		s.Info.Config.Copy, s.Info.Config.ZeroCopy = flags&1 != 0, flags&2 != 0
		s.Info.Queue = int(le.Uint16(p[1:]))
		s.Queue = s.Info.Queue
		s.Info.Ifindex = int(int32(le.Uint32(p[3:])))
		v := make([]int, 7)
		for k := range v {
			v[k] = int(le.Uint32(p[7+4*k:]))
		}
		p = p[7+7*4:]
		c := &s.Info.Config
		c.Frames, c.FrameSize, c.FillRing, c.CompRing, c.RxRing, c.TxRing = v[0], v[1], v[2], v[3], v[4], v[5]
		if err := c.Validate(); err != nil {
			return nil, corrupt("sockets section: socket %d (%s queue %d): %v", i+1, s.Ifname, s.Queue, err)
		}
		if s.Info.Ifindex < 1 {
			return nil, corrupt("sockets section: socket %d has interface index %d, want 1 or more", i+1, s.Info.Ifindex)
		}
		nfree := v[6]
		if nfree > c.Frames || len(p) < 4*nfree {
			return nil, corrupt("sockets section: socket %d lists %d free frames of %d, %d bytes left", i+1, nfree, c.Frames, len(p))
		}
		s.Info.Free = make([]uint64, nfree)
		for k := range s.Info.Free {
			f := le.Uint32(p[4*k:])
			if int(f) >= c.Frames {
				return nil, corrupt("sockets section: socket %d: free frame %d of %d", i+1, f, c.Frames)
			}
			s.Info.Free[k] = uint64(f) * uint64(c.FrameSize)
		}
		p = p[4*nfree:]
		out = append(out, s)
	}
	return out, nil
}

// EncodeHandoff writes h in the current format.
func EncodeHandoff(h *Handoff) ([]byte, error) {
	if len(h.Writer) > 1024 {
		return nil, fmt.Errorf("encode handoff: writer %d bytes, at most 1024", len(h.Writer))
	}
	if len(h.Interfaces) > 0xffff {
		return nil, fmt.Errorf("encode handoff: %d interfaces, at most 65535", len(h.Interfaces))
	}
	marked, markedStats := 0, 0
	for i := range h.Entries {
		if h.Entries[i].FWMark != 0 {
			marked++
		}
	}
	for i := range h.Stats {
		if h.Stats[i].FWMark != 0 {
			markedStats++
		}
	}
	size := HandoffHeaderLen + 8 + 16 + 4 + 2 + len(h.Writer) + 2 + 8 + (len(h.Entries)-marked)*handoffEntrySize + 8 + 8 + (len(h.Stats)-markedStats)*handoffStatSize
	if marked > 0 {
		size += 8 + 8 + marked*handoffMarkEntrySize
	}
	if markedStats > 0 {
		size += 8 + 8 + markedStats*handoffMarkStatSize
	}
	if len(h.Sockets) > maxSocketsHandedOver {
		return nil, fmt.Errorf("encode handoff: %d sockets, at most %d", len(h.Sockets), maxSocketsHandedOver)
	}
	size += socketsSize(h.Sockets)
	for _, ifc := range h.Interfaces {
		if len(ifc.Name) == 0 || len(ifc.Name) > 255 {
			return nil, fmt.Errorf("encode handoff: interface name %q: want 1 to 255 bytes", ifc.Name)
		}
		size += 6 + len(ifc.Name)
	}
	if size > MaxHandoffBytes {
		return nil, fmt.Errorf("encode handoff: %d bytes, more than the %d a reader takes", size, MaxHandoffBytes)
	}
	b := make([]byte, HandoffHeaderLen, size)
	le := binary.LittleEndian

	// meta
	start := len(b)
	b = le.AppendUint16(b, secMeta)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 0) // length, below
	b = append(b, h.ShardKey[:]...)
	b = le.AppendUint32(b, uint32(h.Shards))
	b = le.AppendUint16(b, uint16(len(h.Writer)))
	b = append(b, h.Writer...)
	b = le.AppendUint16(b, uint16(len(h.Interfaces)))
	for _, ifc := range h.Interfaces {
		b = le.AppendUint32(b, uint32(ifc.Ifindex))
		b = append(b, uint8(ifc.Mode), uint8(len(ifc.Name)))
		b = append(b, ifc.Name...)
	}
	le.PutUint32(b[start+4:], uint32(len(b)-start-8))

	// entries, then those of fwmark services in their own section
	b = appendRecordsHeader(b, secEntries, handoffEntrySize, len(h.Entries)-marked)
	for i := range h.Entries {
		if e := &h.Entries[i]; e.FWMark == 0 {
			var r [handoffEntrySize]byte
			putEntry(r[:], e)
			b = append(b, r[:]...)
		}
	}
	if marked > 0 {
		b = appendRecordsHeader(b, secMarkEntries, handoffMarkEntrySize, marked)
		for i := range h.Entries {
			if e := &h.Entries[i]; e.FWMark != 0 {
				var r [handoffMarkEntrySize]byte
				putEntry(r[:], e)
				le.PutUint32(r[handoffEntrySize:], e.FWMark)
				b = append(b, r[:]...)
			}
		}
	}

	// stats, then those of fwmark services in their own section
	b = appendRecordsHeader(b, secStats, handoffStatSize, len(h.Stats)-markedStats)
	for i := range h.Stats {
		if st := &h.Stats[i]; st.FWMark == 0 {
			var r [handoffStatSize]byte
			putStat(r[:], st)
			b = append(b, r[:]...)
		}
	}
	if markedStats > 0 {
		b = appendRecordsHeader(b, secMarkStats, handoffMarkStatSize, markedStats)
		for i := range h.Stats {
			if st := &h.Stats[i]; st.FWMark != 0 {
				var r [handoffMarkStatSize]byte
				putStat(r[:], st)
				le.PutUint32(r[handoffStatSize:], st.FWMark)
				b = append(b, r[:]...)
			}
		}
	}

	if len(h.Sockets) > 0 {
		var err error
		if b, err = appendSockets(b, h.Sockets); err != nil {
			return nil, err
		}
	}

	copy(b, handoffMagic)
	le.PutUint16(b[8:], HandoffVersion)
	le.PutUint16(b[10:], HandoffHeaderLen)
	le.PutUint64(b[16:], uint64(len(b)-HandoffHeaderLen))
	le.PutUint32(b[24:], crc32.Checksum(b[HandoffHeaderLen:], castagnoli))
	written := h.Written
	if written.IsZero() {
		written = time.Now()
	}
	le.PutUint64(b[32:], uint64(written.UnixNano()))
	return b, nil
}

// putStat writes s's stats record (without the mark) into r.
func putStat(r []byte, s *HandoffStat) {
	le := binary.LittleEndian
	r[0] = s.Service.Proto
	if s.Dest {
		r[1] = 1
	}
	le.PutUint16(r[2:], s.Service.Port)
	le.PutUint16(r[4:], s.DPort)
	copy(r[8:], s.Service.Addr[:])
	copy(r[24:], s.DAddr[:])
	for j, v := range []uint64{s.Stats.Conns, s.Stats.InPkts, s.Stats.OutPkts, s.Stats.InBytes, s.Stats.OutBytes} {
		le.PutUint64(r[40+8*j:], v)
	}
}

// putEntry writes e's entry record (without the mark) into r.
func putEntry(r []byte, e *HandoffEntry) {
	le := binary.LittleEndian
	r[0], r[1], r[2] = e.Proto, uint8(e.Method), uint8(e.State)
	if e.Template {
		r[3] = 1
	}
	le.PutUint32(r[4:], leftMillis(e.Left))
	copy(r[8:], e.Client[:])
	copy(r[24:], e.VAddr[:])
	copy(r[40:], e.DAddr[:])
	copy(r[56:], e.LAddr[:])
	le.PutUint16(r[72:], e.CPort)
	le.PutUint16(r[74:], e.VPort)
	le.PutUint16(r[76:], e.DPort)
	le.PutUint16(r[78:], e.LPort)
}

func appendRecordsHeader(b []byte, typ, recSize, n int) []byte {
	le := binary.LittleEndian
	b = le.AppendUint16(b, uint16(typ))
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, uint32(8+n*recSize))
	b = le.AppendUint16(b, uint16(recSize))
	b = le.AppendUint16(b, 0)
	return le.AppendUint32(b, uint32(n))
}

// leftMillis rounds d up to whole milliseconds, within a u32.
func leftMillis(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return uint32(min(ms, 1<<32-1))
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrHandoffCorrupt}, args...)...)
}

// DecodeHandoff reads a handoff. Anything but a complete, intact handoff of a version
// this build reads is refused with an error that says what was wrong (wrapping
// ErrHandoffVersion or ErrHandoffCorrupt); nothing of it is used then.
func DecodeHandoff(b []byte) (*Handoff, error) {
	le := binary.LittleEndian
	if len(b) < 12 {
		return nil, corrupt("%d bytes, shorter than a header (%d)", len(b), HandoffHeaderLen)
	}
	if string(b[:8]) != handoffMagic {
		return nil, corrupt("does not start with %q: not an xlvsd handoff", handoffMagic)
	}
	if v := le.Uint16(b[8:]); v != HandoffVersion {
		return nil, fmt.Errorf("%w: written in format version %d, this xlvsd reads version %d", ErrHandoffVersion, v, HandoffVersion)
	}
	if len(b) < HandoffHeaderLen {
		return nil, corrupt("truncated: %d bytes, shorter than a header (%d)", len(b), HandoffHeaderLen)
	}
	if f := le.Uint32(b[12:]); f != 0 {
		return nil, corrupt("header flags %#x: this xlvsd knows none (a writer sets them only for what a reader must understand)", f)
	}
	hlen := int(le.Uint16(b[10:]))
	if hlen < HandoffHeaderLen {
		return nil, corrupt("header length %d, at least %d in version %d", hlen, HandoffHeaderLen, HandoffVersion)
	}
	if len(b) < hlen {
		return nil, corrupt("truncated: %d bytes, the header alone has %d", len(b), hlen)
	}
	if len(b) > MaxHandoffBytes {
		return nil, corrupt("%d bytes, at most %d", len(b), MaxHandoffBytes)
	}
	body := b[hlen:]
	if n := le.Uint64(b[16:]); n != uint64(len(body)) {
		return nil, corrupt("the header announces %d bytes of body, there are %d (truncated or padded)", n, len(body))
	}
	if sum := crc32.Checksum(body, castagnoli); sum != le.Uint32(b[24:]) {
		return nil, corrupt("checksum %08x, the header says %08x", sum, le.Uint32(b[24:]))
	}
	h := &Handoff{Written: time.Unix(0, int64(le.Uint64(b[32:])))}
	var marked []HandoffEntry
	var markedStats []HandoffStat
	seenMeta := false
	for off := 0; off < len(body); {
		if len(body)-off < 8 {
			return nil, corrupt("section header at body offset %d: %d bytes left, want 8", off, len(body)-off)
		}
		typ, n := le.Uint16(body[off:]), int(le.Uint32(body[off+4:]))
		off += 8
		if n > len(body)-off {
			return nil, corrupt("section %d at body offset %d: %d bytes announced, %d left", typ, off-8, n, len(body)-off)
		}
		p := body[off : off+n]
		off += n
		if !seenMeta && typ != secMeta {
			return nil, corrupt("section %d before the meta section (1)", typ)
		}
		var err error
		switch typ {
		case secMeta:
			if seenMeta {
				return nil, corrupt("a second meta section")
			}
			seenMeta = true
			err = h.decodeMeta(p)
		case secEntries:
			err = decodeRecords(p, "entries", handoffEntrySize, func(r []byte) error {
				e, err := decodeEntry(r, false)
				h.Entries = append(h.Entries, e)
				return err
			})
		case secMarkEntries:
			err = decodeRecords(p, "marked entries", handoffMarkEntrySize, func(r []byte) error {
				e, err := decodeEntry(r, true)
				marked = append(marked, e)
				return err
			})
		case secStats:
			err = decodeRecords(p, "stats", handoffStatSize, func(r []byte) error {
				s, err := decodeStat(r, false)
				h.Stats = append(h.Stats, s)
				return err
			})
		case secMarkStats:
			err = decodeRecords(p, "marked stats", handoffMarkStatSize, func(r []byte) error {
				s, err := decodeStat(r, true)
				markedStats = append(markedStats, s)
				return err
			})
		case secSockets:
			if h.Sockets != nil {
				return nil, corrupt("a second sockets section")
			}
			h.Sockets, err = decodeSockets(p)
		default:
			// a section of a newer writer: skipped
		}
		if err != nil {
			return nil, err
		}
	}
	if !seenMeta {
		return nil, corrupt("no meta section")
	}
	h.Entries = append(h.Entries, marked...)
	h.Stats = append(h.Stats, markedStats...)
	return h, nil
}

func (h *Handoff) decodeMeta(p []byte) error {
	le := binary.LittleEndian
	const fixed = conntrack.ShardKeyLen + 4 + 2
	if len(p) < fixed {
		return corrupt("meta section %d bytes, at least %d", len(p), fixed)
	}
	copy(h.ShardKey[:], p)
	h.Shards = int(le.Uint32(p[16:]))
	wl := int(le.Uint16(p[20:]))
	p = p[fixed:]
	if wl > len(p) || len(p)-wl < 2 {
		return corrupt("meta section: writer of %d bytes and the interface count do not fit in %d bytes", wl, len(p))
	}
	h.Writer = string(p[:wl])
	p = p[wl:]
	n := int(le.Uint16(p))
	p = p[2:]
	for i := 0; i < n; i++ {
		if len(p) < 6 {
			return corrupt("meta section: interface %d of %d truncated", i+1, n)
		}
		ifc := HandoffIface{Ifindex: int32(le.Uint32(p)), Mode: bpf.Mode(p[4])}
		nl := int(p[5])
		if nl == 0 || nl > len(p)-6 {
			return corrupt("meta section: interface %d name of %d bytes, %d left", i+1, nl, len(p)-6)
		}
		if ifc.Ifindex < 1 {
			return corrupt("meta section: interface %d has index %d, want 1 or more", i+1, ifc.Ifindex)
		}
		if ifc.Mode != bpf.ModeNative && ifc.Mode != bpf.ModeGeneric {
			return corrupt("meta section: interface %d attached in mode %d, want native (%d) or generic (%d)", i+1, p[4], bpf.ModeNative, bpf.ModeGeneric)
		}
		ifc.Name = string(p[6 : 6+nl])
		p = p[6+nl:]
		h.Interfaces = append(h.Interfaces, ifc)
	}
	// Bytes after the interfaces: fields of a newer writer, skipped.
	return nil
}

func decodeRecords(p []byte, what string, min int, f func([]byte) error) error {
	le := binary.LittleEndian
	if len(p) < 8 {
		return corrupt("%s section of %d bytes, want at least 8", what, len(p))
	}
	size, n := int(le.Uint16(p)), int(le.Uint32(p[4:]))
	if size < min {
		return corrupt("%s records of %d bytes, at least %d in version %d", what, size, min, HandoffVersion)
	}
	p = p[8:]
	if uint64(size)*uint64(n) != uint64(len(p)) {
		return corrupt("%s section: %d records of %d bytes announced, the section holds %d bytes", what, n, size, len(p))
	}
	for i := 0; i < n; i++ {
		if err := f(p[i*size : i*size+min]); err != nil {
			return fmt.Errorf("%s record %d: %w", what, i+1, err)
		}
	}
	return nil
}

// decodeEntry reads an entry record; marked: a marked entry record (section 4).
func decodeEntry(r []byte, marked bool) (HandoffEntry, error) {
	le := binary.LittleEndian
	e := HandoffEntry{
		Proto: r[0], Method: conntrack.Method(r[1]), State: conntrack.State(r[2]), Template: r[3]&1 != 0,
		Left:  time.Duration(le.Uint32(r[4:])) * time.Millisecond,
		CPort: le.Uint16(r[72:]), VPort: le.Uint16(r[74:]), DPort: le.Uint16(r[76:]), LPort: le.Uint16(r[78:]),
	}
	copy(e.Client[:], r[8:])
	copy(e.VAddr[:], r[24:])
	copy(e.DAddr[:], r[40:])
	copy(e.LAddr[:], r[56:])
	if r[3]&^1 != 0 {
		return e, corrupt("flags %#x, only 1 (template) is defined", r[3])
	}
	if marked {
		e.FWMark = le.Uint32(r[handoffEntrySize:])
		if e.FWMark == 0 {
			return e, corrupt("marked entry with mark 0: marks start at 1")
		}
		if e.Template && e.Proto != 0 {
			return e, corrupt("template of a fwmark service with protocol %d, want 0 (IPPROTO_IP)", e.Proto)
		}
	}
	if e.Proto != conntrack.ProtoTCP && e.Proto != conntrack.ProtoUDP && e.Proto != conntrack.ProtoSCTP && !(marked && e.Template) {
		return e, corrupt("protocol %d, want 6 (TCP), 17 (UDP) or 132 (SCTP)", e.Proto)
	}
	if e.Method > conntrack.MethodFullNAT {
		return e, corrupt("forwarding method %d, want 0 to %d", e.Method, conntrack.MethodFullNAT)
	}
	switch {
	case e.Template:
		if e.State != conntrack.StateNone {
			return e, corrupt("template in state %v, want NONE", e.State)
		}
	case e.Proto == conntrack.ProtoTCP:
		if e.State > conntrack.StateSynAck {
			return e, corrupt("TCP connection in state %v, want a TCP state", e.State)
		}
	case e.Proto == conntrack.ProtoSCTP:
		if _, ok := e.State.SCTPNumber(); !ok {
			return e, corrupt("SCTP connection in state %v, want an SCTP state", e.State)
		}
	default:
		if e.State != conntrack.StateUDP {
			return e, corrupt("UDP connection in state %v, want UDP", e.State)
		}
	}
	return e, nil
}

// decodeStat reads a stats record; marked: a marked stats record (section 5).
func decodeStat(r []byte, marked bool) (HandoffStat, error) {
	le := binary.LittleEndian
	s := HandoffStat{Dest: r[1]&1 != 0, DPort: le.Uint16(r[4:])}
	s.Service.Proto, s.Service.Port = r[0], le.Uint16(r[2:])
	copy(s.Service.Addr[:], r[8:])
	copy(s.DAddr[:], r[24:])
	v := func(i int) uint64 { return le.Uint64(r[40+8*i:]) }
	s.Stats = FlowStats{Conns: v(0), InPkts: v(1), OutPkts: v(2), InBytes: v(3), OutBytes: v(4)}
	if r[1]&^1 != 0 {
		return s, corrupt("flags %#x, only 1 (real server) is defined", r[1])
	}
	if marked {
		s.FWMark = le.Uint32(r[handoffStatSize:])
		if s.FWMark == 0 {
			return s, corrupt("marked statistics with mark 0: marks start at 1")
		}
		if s.Service.Proto != 0 || s.Service.Port != 0 || s.Service != FWMarkKey(4) && s.Service != FWMarkKey(6) {
			return s, corrupt("statistics of fwmark service %d under protocol %d, port %d, address %v; want a fwmark service's key (protocol 0, port 0, the family's zero address)",
				s.FWMark, s.Service.Proto, s.Service.Port, netipFrom16(s.Service.Addr))
		}
		return s, nil
	}
	if s.Service.Proto != conntrack.ProtoTCP && s.Service.Proto != conntrack.ProtoUDP && s.Service.Proto != conntrack.ProtoSCTP {
		return s, corrupt("protocol %d, want 6 (TCP), 17 (UDP) or 132 (SCTP)", s.Service.Proto)
	}
	return s, nil
}
