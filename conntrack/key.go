package conntrack

import (
	"encoding/binary"
	"math/bits"
	"strconv"
)

// Protocol numbers the table knows (IANA).
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// TCP header flag bits, as in byte 13 of the TCP header. Lookup, Insert and
// MayCreate take the packet's flags in this form.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
)

// Key identifies one direction of a connection.
//
// Addresses are 16 bytes; IPv4 addresses are stored IPv4-mapped
// (::ffff:a.b.c.d). Ports are in host byte order. The padding is never read:
// two keys with equal named fields are the same key.
type Key struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
	_                [3]byte
}

// Dir is the direction a packet travels relative to its connection.
type Dir uint8

const (
	// DirOrig is client → virtual service, the key the connection was
	// created from (Entry.Orig).
	DirOrig Dir = iota
	// DirReply is real server → client (NAT) or real server → local address
	// (FULLNAT): the key of Entry.Reply.
	DirReply
)

func (d Dir) String() string {
	switch d {
	case DirOrig:
		return "orig"
	case DirReply:
		return "reply"
	}
	return "Dir(" + strconv.Itoa(int(d)) + ")"
}

// Method is the forwarding method of a connection. NAT and FULLNAT
// connections see both directions; DR and TUN connections see only the
// client's (IPVS's IP_VS_CONN_F_NOOUTPUT) and use the input-only TCP table.
type Method uint8

const (
	MethodNAT Method = iota
	MethodDR
	MethodTUN
	MethodFullNAT
	numMethods
)

// String gives ipvsadm's "Forward" column names; FULLNAT is not in
// ipvsadm and is shown as "FullNat".
func (m Method) String() string {
	switch m {
	case MethodNAT:
		return "Masq"
	case MethodDR:
		return "Route"
	case MethodTUN:
		return "Tunnel"
	case MethodFullNAT:
		return "FullNat"
	}
	return "Method(" + strconv.Itoa(int(m)) + ")"
}

// twoWay reports whether connections of m have a reply path through the
// director (and so a Reply key and the two-direction TCP table).
func (m Method) twoWay() bool { return m == MethodNAT || m == MethodFullNAT }

// MayCreate reports whether a packet of protocol proto with TCP flags
// tcpFlags may create a connection, as IPVS decides in tcp_conn_schedule:
// TCP needs SYN (or any flags when sloppy, sloppy_tcp) and never RST; UDP
// always may. For SCTP tcpFlags is the packet's event chunk type (sctp.go):
// an INIT may, and with sloppy (sloppy_sctp) any chunk but an ABORT
// (sctp_conn_schedule). sloppy is the protocol's own setting: sloppy_tcp for
// TCP, sloppy_sctp for SCTP. Other protocols are not tracked by this table and
// never may.
func MayCreate(proto, tcpFlags uint8, sloppy bool) bool {
	switch proto {
	case ProtoTCP:
		return (tcpFlags&TCPSyn != 0 || sloppy) && tcpFlags&TCPRst == 0
	case ProtoUDP:
		return true
	case ProtoSCTP:
		return tcpFlags == SCTPInit || sloppy && tcpFlags != SCTPAbort
	}
	return false
}

// Hashing. Keys are hashed with a few rounds of 64×64→128-bit multiplication
// folded with xor (the "mum" step of wyhash-style hashes), keyed by random
// words chosen in New, so that a remote sender cannot predict which index
// slots or shards its packets land in.

// seedWords is how many random words New draws.
const seedWords = 14

// shardSeedWord is the first of the seed words hashEndpoint uses (6 to 9).
const shardSeedWord = 6

// homeSeedWord is the first of the seed words homeHash uses (10 to 13): random
// whatever Config.ShardKey is, as the rest of the index hash.
const homeSeedWord = 10

// ShardKeyLen is Config.ShardKey's length in bytes.
const ShardKeyLen = 16

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// fmix is a bijective xorshift-multiply finalizer (splitmix64's). A mum
// step is close to linear in inputs that differ only in a few low bits
// (sequential ports of one client): without a finalizer, shard and slot
// choices form a lattice that some seeds make badly uneven.
func fmix(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// hashParts hashes one direction's key given as its parts. Index slots use
// the low 32 bits for the home position and the top bits as a tag.
func hashParts(s *[seedWords]uint64, src, dst *[16]byte, sport, dport uint16, proto uint8) uint64 {
	a := mum(le64(src[0:8])^s[0], le64(src[8:16])^s[1])
	b := mum(le64(dst[0:8])^s[2], le64(dst[8:16])^s[3])
	p := uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32
	return fmix(mum(a^p^s[4], b^s[5]))
}

// hashEndpoint hashes an (address, port) pair for shard selection, with
// seed words of its own so it is independent of the key hash.
func hashEndpoint(s *[seedWords]uint64, addr *[16]byte, port uint16) uint64 {
	a := mum(le64(addr[0:8])^s[6], le64(addr[8:16])^s[7])
	return fmix(mum(a^uint64(port)^s[8], s[9]))
}

// homeHash hashes an (address, port) pair for a reply key's home slot: a reply key
// (NAT's RS:rport → client:cport, FULLNAT's RS:rport → LIP:lport) is placed in the
// index by its destination endpoint alone, the one its connection's original key
// already names as its source for NAT, so that LookupBatch can prefetch the reply
// key's slot for a connection it has not yet created, before scheduling picks the
// real server (see replyHash). IPVS's own table buckets every connection by its
// protocol and client endpoint alone (ip_vs_conn_hashkey_conn, ip_vs_conn.c).
func homeHash(s *[seedWords]uint64, addr *[16]byte, port uint16) uint64 {
	return homeWords(s, le64(addr[0:8]), le64(addr[8:16]), port)
}

// homeWords is homeHash of the address whose two words are a0 and a1 (keyHash has
// them loaded already).
func homeWords(s *[seedWords]uint64, a0, a1 uint64, port uint16) uint64 {
	a := mum(a0^s[homeSeedWord], a1^s[homeSeedWord+1])
	return fmix(mum(a^uint64(port)^s[homeSeedWord+2], s[homeSeedWord+3]))
}

// withHome is the index hash whose tag (top bits) is full's and whose home (low 32
// bits, see home) is ep's.
func withHome(full, ep uint64) uint64 { return full&^0xffffffff | ep&0xffffffff }

// replyHash is the index hash of a reply key: its tag from the whole key, as every
// key's, its home from its destination endpoint (homeHash). Keys that share a
// destination endpoint share a home slot: NAT's reply keys only when one client
// endpoint has connections to several real server endpoints; FULLNAT's when a local
// endpoint is in use towards several real servers (the port allocator draws local
// ports at random, so about connections ÷ (local addresses × 64 Ki) of them).
func (t *Table) replyHash(k *Key) uint64 {
	return withHome(hashParts(&t.seed, &k.Src, &k.Dst, k.SrcPort, k.DstPort, k.Proto), homeHash(&t.seed, &k.Dst, k.DstPort))
}

// origHash is the index hash of an original key: its tag from the whole key, its home
// from its source endpoint, the client's (homeHash). A NAT connection's two keys so
// share a home slot, and the record of a connection is taken from the page of its
// original key's home (see alloc): a lookup of either direction of an IPv4 NAT
// connection reads one 4 KiB page of the table.
func (t *Table) origHash(k *Key) uint64 {
	return withHome(hashParts(&t.seed, &k.Src, &k.Dst, k.SrcPort, k.DstPort, k.Proto), homeHash(&t.seed, &k.Src, k.SrcPort))
}

// dirHash is the index hash of key k travelling in dir: origHash for an original
// key, replyHash for a reply key.
func (t *Table) dirHash(dir Dir, k *Key) uint64 {
	if dir == DirReply {
		return t.replyHash(k)
	}
	return t.origHash(k)
}

// keyHash is keyShard and dirHash of k in one call, for LookupBatch: the shard
// of k travelling in dir (hashEndpoint of its client endpoint), its index hash, and
// false for a bad dir. The key's words are loaded once for all the hashes.
func (t *Table) keyHash(dir Dir, k *Key) (si int, h uint64, ok bool) {
	s := &t.seed
	s0, s1 := le64(k.Src[0:8]), le64(k.Src[8:16])
	d0, d1 := le64(k.Dst[0:8]), le64(k.Dst[8:16])
	e0, e1, port := s0, s1, k.SrcPort
	switch dir {
	case DirOrig:
	case DirReply:
		e0, e1, port = d0, d1, k.DstPort
	default:
		return 0, 0, false
	}
	if t.shardBits != 0 {
		a := mum(e0^s[6], e1^s[7])
		si = int(fmix(mum(a^uint64(port)^s[8], s[9])) >> (64 - t.shardBits))
	}
	a := mum(s0^s[0], s1^s[1])
	b := mum(d0^s[2], d1^s[3])
	p := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
	h = fmix(mum(a^p^s[4], b^s[5]))
	// The home from the client endpoint, in either direction (origHash, replyHash).
	h = withHome(h, homeWords(s, e0, e1, port))
	return si, h, true
}
