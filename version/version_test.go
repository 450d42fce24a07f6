package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	rev := "0123456789abcdef0123456789abcdef01234567"
	for _, c := range []struct {
		name     string
		settings []debug.BuildSetting
		ok       bool
		want     string
	}{
		{"no build info", nil, false, "devel"},
		{"no vcs stamp", []debug.BuildSetting{{Key: "-compiler", Value: "gc"}}, true, "devel"},
		{"clean", []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}}, true, "g0123456789ab"},
		{"dirty", []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, {Key: "vcs.revision", Value: rev}}, true, "g0123456789ab-dirty"},
		{"short revision", []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}, true, "gabc"},
	} {
		var bi *debug.BuildInfo
		if c.ok {
			bi = &debug.BuildInfo{Settings: c.settings}
		}
		if got := fromBuildInfo(bi, c.ok); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestLinkerVersionWins(t *testing.T) {
	old := version
	defer func() { version = old }()
	version = "v1.2.3-4-gabcdef"
	if got := String(); got != "v1.2.3-4-gabcdef" {
		t.Fatalf("String() = %q, want the linker's version", got)
	}
	version = ""
	if got := String(); got == "" {
		t.Fatal("String() is empty without a linker version")
	}
}
