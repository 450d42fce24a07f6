package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"xlvs/conntrack"
	"xlvs/dataplane"
	"xlvs/dataplane/xsk"
)

// TestREADMEDefaults: the defaults the README and docs/bare-metal.md state are the ones
// xlvsd uses, whose single source is the libraries' Default* constants (ARCHITECTURE.md,
// "Where to change a behaviour"): every default in README's xlvsd flags table that is not
// "none" is the flag's default, and the numbers the prose repeats are the constants'.
func TestREADMEDefaults(t *testing.T) {
	o, err := parseFlags([]string{"-i", "eth0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	readme := readDoc(t, "../../README.md")
	table := readme[strings.Index(readme, "### xlvsd flags"):]
	table = table[:strings.Index(table, "\n\n###")]
	flagName := regexp.MustCompile("--?([a-z][a-z-]*)")
	checked := 0
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) < 3 || strings.HasPrefix(line, "| flag") || strings.HasPrefix(line, "|---") {
			continue
		}
		var flags []*flag.Flag
		for _, m := range flagName.FindAllStringSubmatch(cells[0], -1) {
			if f := o.flags.Lookup(m[1]); f != nil {
				flags = append(flags, f)
			}
		}
		defs := strings.Split(strings.ReplaceAll(cells[1], "`", ""), ", ")
		for i, f := range flags {
			def := defs[min(i, len(defs)-1)]
			want := f.DefValue
			if b, err := strconv.ParseBool(want); err == nil && isBool(f) {
				if def != "off" && def != "on" {
					continue // --copy / --zerocopy: "kernel's choice", together
				}
				want = map[bool]string{false: "off", true: "on"}[b]
			}
			if want == "" || want == "0" {
				continue // "none", "from memory", "all RX queues": said in words
			}
			checked++
			if def != want {
				t.Errorf("README: --%s's default is %q, xlvsd's is %q", f.Name, def, want)
			}
		}
	}
	if checked < 15 {
		t.Fatalf("only %d defaults found in README's xlvsd flags table: has its layout changed?", checked)
	}

	bareMetal := readDoc(t, "../../docs/bare-metal.md")
	def := xsk.DefaultConfig()
	for _, c := range []struct {
		doc, re string
		want    int
	}{
		{readme, `(\d+) bytes per entry \(conntrack\.EntryBytes\)`, conntrack.EntryBytes},
		{bareMetal, `about (\d+) bytes \(conntrack\.EntryBytes\)`, conntrack.EntryBytes},
		{readme, `queue per worker \((\d+) entries`, dataplane.DefaultSyncQueue},
		{readme, `icmp_msgs_burst \((\d+)/s`, dataplane.DefaultICMPRate},
		{readme, `icmp_msgs_burst \(\d+/s, burst (\d+)`, dataplane.DefaultICMPBurst},
		{bareMetal, "`--comp-ring`, (\\d+) each by default", def.RxRing},
		{bareMetal, "`--batch` \\((\\d+)\\)", dataplane.DefaultBatch},
		{bareMetal, `\((\d+) × \d+ = \d+ MiB by default`, def.Frames},
		{bareMetal, `\(\d+ × (\d+) = \d+ MiB by default`, def.FrameSize},
		{bareMetal, `\(\d+ × \d+ = (\d+) MiB by default`, def.Frames * def.FrameSize >> 20},
	} {
		m := regexp.MustCompile(c.re).FindStringSubmatch(c.doc)
		if m == nil {
			t.Errorf("%q not found in the docs", c.re)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n != c.want {
			t.Errorf("docs say %q, the source %d", m[0], c.want)
		}
	}
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
