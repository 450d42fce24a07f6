package ipvssync

import "encoding/binary"

// # The xlvs table request
//
// IPVS has no way for a backup to ask for what it missed: a kernel master sends a
// connection only when its packets make it (sync_threshold, state changes), so a director
// that (re)joins learns the long-lived idle connections of its peer only if they wake up.
// xlvs adds one message, TableRequest: a version 1 header with no connection
// (nr_conns 0, size 16) followed by 8 bytes, "XLVS", the request type 1 and three zero
// bytes. An xlvs master that receives it sends its whole table (dataplane.WalkSync).
//
// A kernel backup ignores it: ip_vs_process_message (net/netfilter/ipvs/ip_vs_sync.c of
// codesnas/linux-6.18.y at commit 33ef1e6ac01f0ac6e67e0ed1324ee25def174c4e) checks only
// the header's size against the datagram's length and the sync ID, and then, for a version
// 1 header, reads nr_conns entries — none here — never what follows. So does an older
// xlvs backup (Decode returns no entry and no error).

// TableRequestLen is the size of a table request.
const TableRequestLen = headerLenV1 + 8

// requestMagic and the request types follow the version 1 header of an xlvs request.
var requestMagic = [4]byte{'X', 'L', 'V', 'S'}

const reqTable = 1

// TableRequest returns a table request with sync ID syncid: the requester wants the
// connections of that sync ID, or of any when it is 0 (as a backup's sync ID filters).
func TableRequest(syncid uint8) []byte {
	m := make([]byte, TableRequestLen)
	m[1] = syncid
	binary.BigEndian.PutUint16(m[2:], TableRequestLen)
	m[4], m[5] = 0, 1 // nr_conns 0, version 1
	copy(m[headerLenV1:], requestMagic[:])
	m[headerLenV1+4] = reqTable
	return m
}

// IsTableRequest tells whether msg is a table request, and returns its sync ID. Anything
// else — a sync message, a request of another type or length — is not one.
func IsTableRequest(msg []byte) (syncid uint8, ok bool) {
	if len(msg) != TableRequestLen || msg[0] != 0 || int(binary.BigEndian.Uint16(msg[2:])) != len(msg) ||
		msg[4] != 0 || msg[5] != 1 || msg[6] != 0 || msg[7] != 0 {
		return 0, false
	}
	r := msg[headerLenV1:]
	if [4]byte(r[:4]) != requestMagic || r[4] != reqTable || r[5] != 0 || r[6] != 0 || r[7] != 0 {
		return 0, false
	}
	return msg[1], true
}
