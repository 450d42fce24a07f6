//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

func TestKeyEncode(t *testing.T) {
	tests := []struct {
		name    string
		key     Key
		want    mapKey
		wantErr error
	}{
		{"ipv4 mapped", Key{netip.MustParseAddr("198.18.0.1"), 80, ProtoTCP},
			mapKey{Addr: [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 0, 15: 1}, Port: [2]byte{0, 80}, Proto: 6}, nil},
		{"ipv4-mapped ipv6 is the same key", Key{netip.MustParseAddr("::ffff:198.18.0.1"), 80, ProtoTCP},
			mapKey{Addr: [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 0, 15: 1}, Port: [2]byte{0, 80}, Proto: 6}, nil},
		{"ipv6 udp, port in network order", Key{netip.MustParseAddr("2001:db8::1"), 0x1234, ProtoUDP},
			mapKey{Addr: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}, Port: [2]byte{0x12, 0x34}, Proto: 17}, nil},
		{"port 0 allowed", Key{netip.MustParseAddr("198.18.0.1"), 0, ProtoUDP},
			mapKey{Addr: [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 0, 15: 1}, Proto: 17}, nil},
		{"zero addr", Key{netip.Addr{}, 80, ProtoTCP}, mapKey{}, ErrInvalidKey},
		{"zoned addr", Key{netip.MustParseAddr("fe80::1%eth0"), 80, ProtoTCP}, mapKey{}, ErrInvalidKey},
		{"sctp", Key{netip.MustParseAddr("198.18.0.1"), 38412, ProtoSCTP},
			mapKey{Addr: [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 14: 0, 15: 1}, Port: [2]byte{0x96, 0x0c}, Proto: 132}, nil},
		{"dccp", Key{netip.MustParseAddr("198.18.0.1"), 80, 33}, mapKey{}, ErrInvalidKey},
		{"proto 0", Key{netip.MustParseAddr("198.18.0.1"), 80, 0}, mapKey{}, ErrInvalidKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.key.encode()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("encode(%v) error %v, want %v", tc.key, err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("encode(%v) = %+v, want %+v", tc.key, got, tc.want)
			}
			if err != nil {
				return
			}
			back := got.decode()
			if back.Addr != tc.key.Addr.Unmap() || back.Port != tc.key.Port || back.Proto != tc.key.Proto {
				t.Errorf("decode(encode(%v)) = %v", tc.key, back)
			}
		})
	}
}

func TestKeyEncodeAllocs(t *testing.T) {
	k := Key{netip.MustParseAddr("2001:db8::1"), 443, ProtoTCP}
	if n := testing.AllocsPerRun(100, func() { _, _ = k.encode() }); n != 0 {
		t.Errorf("encode allocates %v times per key, want 0", n)
	}
}

// TestMapLayout checks, from the object's BTF, that struct svc_key and struct svc_val in
// xlvs.c are laid out as mapKey and mapVal. Needs no privileges.
func TestMapLayout(t *testing.T) {
	spec, err := loadXlvs()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSpec(spec); err != nil {
		t.Fatal(err)
	}
	type member struct {
		name        string
		offset, len uint32
	}
	layout := func(typ btf.Type) (string, []member, uint32) {
		s, ok := btf.UnderlyingType(typ).(*btf.Struct)
		if !ok {
			t.Fatalf("map type %v is not a struct", typ)
		}
		var ms []member
		for _, m := range s.Members {
			size, err := btf.Sizeof(m.Type)
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, member{m.Name, m.Offset.Bytes(), uint32(size)})
		}
		return s.Name, ms, s.Size
	}
	var mk mapKey
	wantKey := []member{
		{"addr", uint32(unsafe.Offsetof(mk.Addr)), 16},
		{"port", uint32(unsafe.Offsetof(mk.Port)), 2},
		{"proto", uint32(unsafe.Offsetof(mk.Proto)), 1},
		{"pad", uint32(unsafe.Offsetof(mk.Pad)), 1},
	}
	for _, name := range []string{xlvsMapServices, xlvsMapReals} {
		m := spec.Maps[name]
		sname, members, size := layout(m.Key)
		if sname != "svc_key" || !slices.Equal(members, wantKey) || size != uint32(unsafe.Sizeof(mk)) {
			t.Errorf("map %s key: struct %s %+v size %d, want svc_key %+v size %d", name, sname, members, size, wantKey, unsafe.Sizeof(mk))
		}
		sname, members, size = layout(m.Value)
		wantVal := []member{{"flags", 0, 4}}
		if sname != "svc_val" || !slices.Equal(members, wantVal) || size != uint32(unsafe.Sizeof(mapVal{})) {
			t.Errorf("map %s value: struct %s %+v size %d, want svc_val %+v", name, sname, members, size, wantVal)
		}
	}
}

func sortedKeys(keys []Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		mk, err := k.encode()
		if err != nil {
			out[i] = "invalid " + k.String()
			continue
		}
		out[i] = mk.decode().String() // IPv4-mapped → IPv4
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestSetServicesSync(t *testing.T) {
	requirePrivileged(t)
	c, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })

	a := Key{netip.MustParseAddr("198.18.0.1"), 80, ProtoTCP}
	b := Key{netip.MustParseAddr("198.18.0.1"), 80, ProtoUDP}
	d := Key{netip.MustParseAddr("2001:db8::1"), 443, ProtoTCP}
	e := Key{netip.MustParseAddr("2001:db8::1"), 53, ProtoUDP}
	aMapped := Key{netip.MustParseAddr("::ffff:198.18.0.1"), 80, ProtoTCP}

	type setFunc struct {
		name string
		set  func([]Key) error
		m    *ebpf.Map
	}
	for _, sf := range []setFunc{{"services", c.SetServices, c.services}, {"reals", c.SetReals, c.reals}} {
		t.Run(sf.name, func(t *testing.T) {
			steps := []struct {
				name    string
				keys    []Key
				want    []Key
				wantErr error
			}{
				{"add to empty", []Key{a, b}, []Key{a, b}, nil},
				{"idempotent", []Key{a, b}, []Key{a, b}, nil},
				{"add one", []Key{a, b, d}, []Key{a, b, d}, nil},
				{"remove one add one", []Key{a, d, e}, []Key{a, d, e}, nil},
				{"duplicates and mapped form", []Key{a, aMapped, a, e}, []Key{a, e}, nil},
				{"invalid key changes nothing", []Key{b, {netip.Addr{}, 1, ProtoTCP}}, []Key{a, e}, ErrInvalidKey},
				{"unsupported proto changes nothing", []Key{{a.Addr, 80, 1}}, []Key{a, e}, ErrInvalidKey},
				{"remove all", nil, nil, nil},
				{"remove all again", []Key{}, nil, nil},
				{"re-add", []Key{e}, []Key{e}, nil},
			}
			for _, st := range steps {
				err := sf.set(st.keys)
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("%s: error %v, want %v", st.name, err, st.wantErr)
				}
				got, err := dumpKeys(sf.m)
				if err != nil {
					t.Fatal(err)
				}
				if g, w := sortedKeys(got), sortedKeys(st.want); !slices.Equal(g, w) {
					t.Fatalf("%s: map holds %v, want %v", st.name, g, w)
				}
			}
		})
	}
}

// TestSetServicesLarge fills the map to capacity, then replaces every key: deleting
// before adding keeps the map within its 65536 entries.
func TestSetServicesLarge(t *testing.T) {
	requirePrivileged(t)
	c, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	keys := func(proto Proto) []Key {
		ks := make([]Key, MaxServices)
		for i := range ks {
			ks[i] = Key{netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 80, proto}
		}
		return ks
	}
	if err := c.SetServices(keys(ProtoTCP)); err != nil {
		t.Fatalf("fill: %v", err)
	}
	if err := c.SetServices(keys(ProtoUDP)); err != nil {
		t.Fatalf("replace all: %v", err)
	}
	got, err := dumpKeys(c.services)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != MaxServices {
		t.Fatalf("map holds %d keys, want %d", len(got), MaxServices)
	}
	for _, k := range got {
		if k.Proto != ProtoUDP {
			t.Fatalf("key %v survived the replacement", k)
		}
	}
	over := append(keys(ProtoTCP), Key{netip.MustParseAddr("198.19.0.1"), 80, ProtoTCP})
	if err := c.SetServices(over); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("%d keys: error %v, want ErrInvalidKey", len(over), err)
	}
}

func TestClosed(t *testing.T) {
	requirePrivileged(t)
	c, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	p, err := c.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"SetServices": c.SetServices(nil),
		"SetReals":    c.SetReals(nil),
		"SetLocals":   c.SetLocals(nil),
		"SetLaddrs":   c.SetLaddrs(nil),
		"Load":        func() error { _, err := c.Load(); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	// The Port outlives the Classifier: it holds its own references to the shared maps.
	frame := flow{proto: ProtoTCP, src: cip4, dst: vip4, sport: 1, dport: 80}.frame(t)
	if _, slot := classify(t, p, frame, nil); slot != statPassed {
		t.Errorf("Port after Classifier.Close: slot %d, want %d", slot, statPassed)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Port.Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Port.Close: %v", err)
	}
	if _, err := p.Counters(); !errors.Is(err, ErrClosed) {
		t.Errorf("Counters after Close: %v, want ErrClosed", err)
	}
	if err := p.RegisterSocket(0, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("RegisterSocket after Close: %v, want ErrClosed", err)
	}
}

func TestQueueRange(t *testing.T) {
	h := newHarness(t)
	for _, q := range []int{-1, MaxQueues, 1 << 20} {
		if err := h.p.RegisterSocket(q, 3); !errors.Is(err, ErrInvalidQueue) {
			t.Errorf("RegisterSocket(%d): %v, want ErrInvalidQueue", q, err)
		}
		if err := h.p.UnregisterSocket(q); !errors.Is(err, ErrInvalidQueue) {
			t.Errorf("UnregisterSocket(%d): %v, want ErrInvalidQueue", q, err)
		}
	}
	if err := h.p.UnregisterSocket(5); err != nil {
		t.Errorf("UnregisterSocket of an empty queue: %v, want nil", err)
	}
	// Not an AF_XDP socket: the kernel refuses it.
	if err := h.p.RegisterSocket(0, 0); err == nil {
		t.Error("RegisterSocket(0, stdin) succeeded, want an error")
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{ModeAuto, ModeNative, ModeGeneric} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("offload"); err == nil {
		t.Error("ParseMode(offload) succeeded")
	}
	if s := fmt.Sprint(Mode(7)); s != "mode(7)" {
		t.Errorf("Mode(7) prints %q", s)
	}
}
