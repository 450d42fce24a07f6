package control

import (
	"path/filepath"
	"strings"
	"testing"

	"xlvs/control/api"
	"xlvs/control/ipvsadm"
	"xlvs/control/keepalived"
)

// TestCheckKeepalivedOctaviaShape: a configuration in the shape OpenStack Octavia renders
// for UDP (with ops) and SCTP listeners loads the services it describes.
func TestCheckKeepalivedOctaviaShape(t *testing.T) {
	d := newDaemonOpts(t, Options{MaxServices: 16, MaxDests: 32})
	var warns []string
	_, err := d.CheckKeepalived(filepath.Join("keepalived", "testdata", "groups", "octavia-shape.conf"),
		keepalived.Options{Warn: func(w keepalived.Warning) { warns = append(warns, w.String()) }})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := ipvsadm.Save(&out, mustOK(t, d, &api.Request{Op: api.OpList}).Services, true); err != nil {
		t.Fatal(err)
	}
	want := `-A -u 203.0.113.10:53 -s rr -o
-a -u 203.0.113.10:53 -r 192.0.2.11:5353 -m -w 10
-a -u 203.0.113.10:53 -r 192.0.2.12:5353 -m -w 5
-A --sctp-service 203.0.113.10:36412 -s wrr
-a --sctp-service 203.0.113.10:36412 -r 192.0.2.11:36412 -m -w 1`
	if got := strings.TrimSpace(out.String()); got != want {
		t.Errorf("rules\n%s\nwant\n%s\nwarnings %q", got, want, warns)
	}
	// Octavia runs keepalived in its own network namespace: xlvsd is started inside the
	// one it serves, so the keyword is only warned about.
	if len(warns) != 1 || !strings.Contains(warns[0], ":5: warning: net_namespace ignored") {
		t.Errorf("warnings %q, want one about net_namespace at line 5", warns)
	}
}
