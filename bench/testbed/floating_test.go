package testbed

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestBedFloatingUnassigned: with Options.FloatingUnassigned neither director holds the
// floating addresses after New (their own ones only, as the layout rules say), Active
// reports the director, and a Failover still puts them on the backup; SwitchPort names
// every host's port on br0, and none for a host that has none. Without Backup the option
// is refused.
func TestBedFloatingUnassigned(t *testing.T) {
	requireRoot(t)
	for _, l := range []Layout{NATOneArm, L2} {
		t.Run(l.String(), func(t *testing.T) {
			b := newTestBed(t, Options{Layout: l, Reals: 2, Prefix: "bkfloat", Backup: true, FloatingUnassigned: true})
			m := modelBackup(l, false)
			if got := ifaceAddrs(t, b.Ext); !samePrefixes(got, m.dirAddrs) {
				t.Errorf("director eth0 holds %v, want only its own %v", got, m.dirAddrs)
			}
			if got := ifaceAddrs(t, b.BackupHost); !samePrefixes(got, m.bakAddrs) {
				t.Errorf("backup eth0 holds %v, want only its own %v", got, m.bakAddrs)
			}
			if !slices.Equal(b.Floating(), m.floating) || b.Active() != b.Ext {
				t.Errorf("Floating %v (want %v), Active %v", b.Floating(), m.floating, b.Active().Name)
			}
			if err := b.Failover(); err != nil {
				t.Fatal(err)
			}
			checkOwner(t, b, m, b.BackupHost)
			for h, want := range map[*Host]string{b.Ext: "p-dir", b.BackupHost: "p-bak", b.Client: "p-cl", b.Reals[0]: "p-rs1", b.Reals[1]: "p-rs2"} {
				if got, err := b.SwitchPort(h); err != nil || got != want {
					t.Errorf("SwitchPort(%s) = %q %v, want %q", h.Name, got, err, want)
				}
			}
		})
	}
	if _, err := (&Bed{}).SwitchPort(&Host{Name: "x", Iface: "ext0"}); err == nil || !strings.Contains(err.Error(), "no port on br0") {
		t.Errorf("SwitchPort of a host without a port: %v", err)
	}
	if _, err := New(Options{Layout: L2, FloatingUnassigned: true}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("FloatingUnassigned without Backup: %v, want ErrBadOptions", err)
	}
}
