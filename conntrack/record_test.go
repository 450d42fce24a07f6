package conntrack

import (
	"testing"
	"unsafe"
)

// TestRecordLayout: a record is one cache line and its cold part half of one, so that
// records carved 64-byte aligned never straddle two lines.
func TestRecordLayout(t *testing.T) {
	if s := unsafe.Sizeof(record{}); s != 64 {
		t.Errorf("record is %d bytes, want 64 (one cache line)", s)
	}
	if s := unsafe.Sizeof(coldRec{}); s != 32 {
		t.Errorf("cold part is %d bytes, want 32", s)
	}
}

// TestRecordForms: an entry is stored in v4 form exactly when all its addresses are
// IPv4-mapped, each form gives back the keys it was given, and a key matches only its
// own record: an IPv6 key whose low 32 bits equal a v4-form record's IPv4 addresses
// does not, and an IPv4-mapped key does match a v6-form record holding that address.
func TestRecordForms(t *testing.T) {
	c4, c6 := v4(198, 19, 0, 5), v6(0xc613, 5) // same low 32 bits
	// alias is 2001:db8::<a's IPv4 address>.
	alias := func(a [16]byte) [16]byte {
		b := v6(0, 0)
		copy(b[12:], a[12:])
		return b
	}
	rs6 := v6(0xfd00, 1)
	cases := []struct {
		name   string
		e      Entry
		wantV4 bool
	}{
		{"NAT v4", Entry{Orig: Key{Src: c4, Dst: vip, SrcPort: 1000, DstPort: 80, Proto: ProtoTCP}, Reply: Key{Src: rs1, Dst: c4, SrcPort: 8080, DstPort: 1000, Proto: ProtoTCP}, Method: MethodNAT, Dest: 3, Service: 9, Flags: 0xbeef}, true},
		{"NAT v6", Entry{Orig: Key{Src: c6, Dst: v6(1, 1), SrcPort: 1000, DstPort: 80, Proto: ProtoUDP}, Reply: Key{Src: rs6, Dst: c6, SrcPort: 8080, DstPort: 1000, Proto: ProtoUDP}, Method: MethodNAT, Dest: 1 << 23, Service: 1 << 31}, false},
		{"FULLNAT v4 to v6 real server", Entry{Orig: Key{Src: c4, Dst: vip, SrcPort: 1000, DstPort: 80, Proto: ProtoSCTP}, Reply: Key{Src: rs6, Dst: v6(0xfd00, 2), SrcPort: 8080, DstPort: 40000, Proto: ProtoSCTP}, Method: MethodFullNAT}, false},
		{"DR v4", Entry{Orig: Key{Src: c4, Dst: vip, SrcPort: 1000, DstPort: 80, Proto: ProtoTCP}, Method: MethodDR}, true},
		{"TUN v6", Entry{Orig: Key{Src: c6, Dst: v6(1, 1), SrcPort: 1000, DstPort: 80, Proto: ProtoTCP}, Method: MethodTUN}, false},
		{"DR mixed", Entry{Orig: Key{Src: c6, Dst: vip, SrcPort: 1000, DstPort: 80, Proto: ProtoTCP}, Method: MethodDR}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r record
			var c coldRec
			r.set(&c, &tc.e, StateSynRecv)
			if r.v4() != tc.wantV4 {
				t.Fatalf("v4 form %v, want %v", r.v4(), tc.wantV4)
			}
			var got Entry
			r.copyOut(&c, &got)
			want := tc.e
			want.State = StateSynRecv
			if got != want {
				t.Fatalf("copied out\n%+v\nwant\n%+v", got, want)
			}
			keys := []struct {
				dir Dir
				k   Key
			}{{DirOrig, tc.e.Orig}}
			if tc.e.Method.twoWay() {
				keys = append(keys, struct {
					dir Dir
					k   Key
				}{DirReply, tc.e.Reply})
			}
			for _, dk := range keys {
				if !r.matches(&c, dk.dir, &dk.k) {
					t.Errorf("%v key %v does not match its record", dk.dir, dk.k)
				}
				other := DirOrig + DirReply - dk.dir
				if tc.e.Method.twoWay() && dk.k != tc.e.Orig && dk.k != tc.e.Reply && r.matches(&c, other, &dk.k) {
					t.Errorf("%v key matches as %v", dk.dir, other)
				}
				for _, mut := range []func(k *Key){
					func(k *Key) { k.Src = alias(k.Src) },
					func(k *Key) { k.Dst = alias(k.Dst) },
					func(k *Key) { k.Src[15] ^= 1 },
					func(k *Key) { k.Dst[3] ^= 1 },
					func(k *Key) { k.SrcPort++ },
					func(k *Key) { k.DstPort++ },
					func(k *Key) { k.Proto = ProtoUDP + ProtoTCP - k.Proto },
				} {
					k := dk.k
					mut(&k)
					if k != dk.k && r.matches(&c, dk.dir, &k) {
						t.Errorf("%v key %v matches the record of %v", dk.dir, k, dk.k)
					}
				}
			}
		})
	}
}
