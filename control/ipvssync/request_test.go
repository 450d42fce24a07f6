package ipvssync

import (
	"encoding/binary"
	"testing"
)

// kernelEntries models what a kernel backup takes from a datagram, by the checks of
// ip_vs_process_message (codesnas/linux-6.18.y 33ef1e6ac01f0ac6e67e0ed1324ee25def174c4e):
// at least the 4-byte version 0 header, size equal to the length, the sync ID filter,
// then for a version 1 header (version 1, reserved 0, spare 0) nr_conns entries. It
// returns how many entries the kernel would read, -1 for a dropped datagram.
func kernelEntries(msg []byte, backupSyncID uint8) int {
	if len(msg) < 4 || int(binary.BigEndian.Uint16(msg[2:])) != len(msg) {
		return -1
	}
	if backupSyncID != 0 && msg[1] != backupSyncID {
		return -1
	}
	if len(msg) >= 8 && msg[5] == 1 && msg[0] == 0 && msg[6] == 0 && msg[7] == 0 {
		return int(msg[4])
	}
	return int(msg[0]) // version 0: nr_conns is the first byte
}

// TestTableRequest: the request is 16 bytes, a version 1 header announcing no entry, then
// "XLVS" and type 1; a kernel backup (by the model) and Decode read no entry from it;
// IsTableRequest knows it and its sync ID, and nothing else.
func TestTableRequest(t *testing.T) {
	m := TableRequest(51)
	want := []byte{0, 51, 0, 16, 0, 1, 0, 0, 'X', 'L', 'V', 'S', 1, 0, 0, 0}
	if string(m) != string(want) {
		t.Fatalf("request % x, want % x", m, want)
	}
	for _, sid := range []uint8{0, 51} {
		if n := kernelEntries(m, sid); n != 0 {
			t.Fatalf("a kernel backup with sync ID %d would read %d entries, want 0", sid, n)
		}
	}
	if n := kernelEntries(m, 7); n != -1 {
		t.Fatalf("a kernel backup with another sync ID would read %d entries, want a drop", n)
	}
	conns, h, err := Decode(m, nil)
	if err != nil || len(conns) != 0 || h.Version != 1 || h.SyncID != 51 {
		t.Fatalf("Decode: %v %+v %v", conns, h, err)
	}
	if sid, ok := IsTableRequest(m); !ok || sid != 51 {
		t.Fatalf("IsTableRequest: %d %v", sid, ok)
	}
	if sid, ok := IsTableRequest(TableRequest(0)); !ok || sid != 0 {
		t.Fatalf("IsTableRequest of sync ID 0: %d %v", sid, ok)
	}
	// Anything else is not a request.
	w := NewWriter(51, 1500)
	for i, bad := range [][]byte{
		nil, m[:15], append(append([]byte(nil), m...), 0), w.Bytes(),
	} {
		if _, ok := IsTableRequest(bad); ok {
			t.Errorf("case %d: % x taken for a request", i, bad)
		}
	}
	for i := range m {
		if i == 1 { // the sync ID may be anything
			continue
		}
		b := append([]byte(nil), m...)
		b[i] ^= 0x80
		if _, ok := IsTableRequest(b); ok {
			t.Errorf("byte %d changed: % x taken for a request", i, b)
		}
	}
}
