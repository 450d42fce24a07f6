package version

import "runtime/debug"

// version is set by the linker (-X xlvs/version.version=...); empty otherwise.
var version string

// String returns xlvs's version: the linker's, else the stamped git commit, else "devel".
func String() string {
	if version != "" {
		return version
	}
	return fromBuildInfo(debug.ReadBuildInfo())
}

// fromBuildInfo reads the revision the Go toolchain stamped (go build -buildvcs).
func fromBuildInfo(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return "devel"
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "g" + rev
}
