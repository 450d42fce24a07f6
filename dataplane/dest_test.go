package dataplane

import (
	"reflect"
	"testing"

	"xlvs/conntrack"
	"xlvs/sched"
)

// TestDestSched: Sched carries every field a scheduler reads, by name, unchanged — so a
// field added to sched.Dest and not to Dest (or not copied) fails here.
func TestDestSched(t *testing.T) {
	d := Dest{ID: 7, Addr: [16]byte{10: 0xff, 11: 0xff, 12: 10, 15: 11}, Port: 8080, Method: conntrack.MethodFullNAT,
		Weight: 3, UThreshold: 100, LThreshold: 60}
	got := d.Sched()
	want := sched.Dest{ID: 7, Weight: 3, UThreshold: 100, LThreshold: 60, Addr: d.Addr, Port: 8080}
	if got != want {
		t.Fatalf("Sched() = %+v, want %+v", got, want)
	}
	gv, dv := reflect.ValueOf(got), reflect.ValueOf(d)
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		f := dv.FieldByName(name)
		if !f.IsValid() {
			t.Errorf("sched.Dest.%s has no field of that name in dataplane.Dest", name)
			continue
		}
		if !reflect.DeepEqual(f.Interface(), gv.Field(i).Interface()) {
			t.Errorf("Sched().%s = %v, want the Dest's %v", name, gv.Field(i).Interface(), f.Interface())
		}
	}
}

// TestICMPRateDefaults: Config's ICMP rate means one thing: 0 takes DefaultICMPRate (and
// DefaultICMPBurst), NoICMPLimit stays (the workers' bucket then sends every error, as
// TestICMPRateLimit's "unlimited" checks), a rate given stays.
func TestICMPRateDefaults(t *testing.T) {
	for _, tc := range []struct{ rate, burst, wantRate, wantBurst int }{
		{0, 0, DefaultICMPRate, DefaultICMPBurst},
		{NoICMPLimit, 0, NoICMPLimit, DefaultICMPBurst},
		{5, 2, 5, 2},
	} {
		c := Config{ICMPRate: tc.rate, ICMPBurst: tc.burst}
		c.defaults()
		if c.ICMPRate != tc.wantRate || c.ICMPBurst != tc.wantBurst {
			t.Errorf("ICMPRate %d, ICMPBurst %d: defaults give %d, %d; want %d, %d", tc.rate, tc.burst, c.ICMPRate, c.ICMPBurst, tc.wantRate, tc.wantBurst)
		}
		if b := newTokenBucket(c.ICMPRate, c.ICMPBurst); (b.cost == 0) != (tc.wantRate == NoICMPLimit) {
			t.Errorf("ICMPRate %d: bucket %+v, unlimited %v", tc.rate, b, tc.wantRate == NoICMPLimit)
		}
	}
}
