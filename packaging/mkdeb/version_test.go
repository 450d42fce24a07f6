package main

import (
	"os/exec"
	"testing"
)

func TestDebVersion(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v0.1", "0.1"},
		{"v1.2.3-rc1", "1.2.3~rc1"},
		{"v1.2.3-4-gabcdef0", "1.2.3+4.gabcdef0"},
		{"v1.2.3-rc1-4-gabcdef0", "1.2.3~rc1+4.gabcdef0"},
		{"v0.0.0-414-g4da872d-dirty", "0.0.0+414.g4da872d.dirty"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
	} {
		got, err := debVersion(c.in)
		if err != nil || got != c.want {
			t.Errorf("debVersion(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "4da872d", "vX", "v1.2.3 extra", "v1.2.3-4-gxyz"} {
		if got, err := debVersion(bad); err == nil {
			t.Errorf("debVersion(%q) = %q, want an error", bad, got)
		}
	}
}

// TestDebVersionOrder: dpkg orders the versions as git's history does: a release
// candidate before its release, commits after a tag after it, the next tag after those.
func TestDebVersionOrder(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Fatal("dpkg not found: the package is for Debian, where dpkg always is")
	}
	order := []string{"v0.0.0-414-g4da872d", "v1.2.3-rc1", "v1.2.3-rc1-2-gabcdef0", "v1.2.3", "v1.2.3-1-g0123456", "v1.2.3-12-g0123456", "v1.2.4"}
	for i := 1; i < len(order); i++ {
		a, _ := debVersion(order[i-1])
		b, _ := debVersion(order[i])
		if err := exec.Command(dpkg, "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg does not order %s (%s) before %s (%s): %v", a, order[i-1], b, order[i], err)
		}
	}
}
