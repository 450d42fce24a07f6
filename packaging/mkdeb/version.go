package main

import (
	"fmt"
	"regexp"
	"strings"
)

// describeRE splits git describe's output: a tag vX.Y[.Z...] with an optional
// pre-release suffix ("-rc1"), then, past the tag, "-N-gHASH", then "-dirty".
var describeRE = regexp.MustCompile(`^v?([0-9]+(?:\.[0-9]+)*)(?:-([0-9A-Za-z][0-9A-Za-z.]*?))??(?:-([0-9]+)-g([0-9a-f]{4,40}))?(-dirty)?$`)

// debVersion turns git describe's output into a Debian version that sorts as the commits
// do: v1.2.3 → 1.2.3, v1.2.3-rc1 → 1.2.3~rc1 (before 1.2.3), v1.2.3-4-gabc → 1.2.3+4.gabc
// (after it), and "-dirty" → ".dirty" / "+dirty".
func debVersion(describe string) (string, error) {
	m := describeRE.FindStringSubmatch(strings.TrimSpace(describe))
	if m == nil {
		return "", fmt.Errorf("version %q: want git describe's form, e.g. v1.2.3, v1.2.3-rc1, v1.2.3-4-gabcdef0 or v1.2.3-4-gabcdef0-dirty (tag the release vX.Y.Z)", describe)
	}
	v := m[1]
	if m[2] != "" {
		v += "~" + m[2]
	}
	var extra []string
	if m[3] != "" {
		extra = append(extra, m[3], "g"+m[4])
	}
	if m[5] != "" {
		extra = append(extra, "dirty")
	}
	if len(extra) > 0 {
		v += "+" + strings.Join(extra, ".")
	}
	return v, nil
}
