package main

import (
	"flag"
	"fmt"
	"strings"

	"xlvs/bench"
	"xlvs/cmd/internal/manpage"
)

// commands are xlvs-bench's commands: -h prints them, the man page lists them.
var commands = []struct{ name, text string }{
	{"demo", "build an LVS-NAT testbed, balance HTTP through xlvsd with wrr 3:1, print the split"},
	{"run", "benchmark: UDP packet rate (no-drop and overload), short HTTP connections and a long TCP stream through xlvs NAT (two- and one-armed), DR, TUN and FULLNAT, iptables/nftables DNAT, kernel forwarding and a minimal AF_XDP forwarder (run --help for the flags)"},
	{"--quick", "the CI smoke: run --quick"},
	{"--version", "print the version"},
}

func topUsage() string {
	var b strings.Builder
	b.WriteString("usage: xlvs-bench COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands {
		lines := strings.Split(wrapText(c.text, 78), "\n")
		fmt.Fprintf(&b, "  %-11s%s\n", c.name, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(&b, "             %s\n", l)
		}
	}
	return b.String()
}

func wrapText(s string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(s) {
		if n > 0 && n+1+len(w) > width {
			b.WriteByte('\n')
			n = 0
		} else if n > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// demoFlags is the demo command's flag set.
func demoFlags(o *bench.DemoOptions) (fs *flag.FlagSet, w1, w2 *int) {
	fs = flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.IntVar(&o.Requests, "requests", 5000, "HTTP requests to send")
	fs.IntVar(&o.Concurrency, "concurrency", 100, "requests in flight")
	w1 = fs.Int("w1", 3, "weight of rs1")
	w2 = fs.Int("w2", 1, "weight of rs2")
	return fs, w1, w2
}

// manual is xlvs-bench(1); its OPTIONS are run's flag set, runFS.
func manual(runFS *flag.FlagSet) *manpage.Page {
	var cmds []manpage.Item
	for _, c := range commands {
		cmds = append(cmds, manpage.Item{Term: c.name, Text: c.text})
	}
	var o bench.DemoOptions
	demoFS, _, _ := demoFlags(&o)
	return &manpage.Page{
		Name:    "xlvs-bench",
		Section: 1,
		Summary: "run xlvs in network-namespace testbeds: the LVS-NAT demo and the benchmark harness",
		Synopsis: []string{
			"demo [--requests N] [--concurrency N] [--w1 N] [--w2 N]",
			"run [options]",
			"--quick",
			"--version",
		},
		Description: `xlvs-bench builds testbeds of network namespaces wired by veth pairs and runs xlvsd in
them. "xlvs-bench demo" builds the classic LVS-NAT layout (a client, a director with an
external and an internal interface, two real servers), starts xlvsd, configures a
virtual service with xlvsadm, sends HTTP requests through it and prints how they were
split. "xlvs-bench run" measures packet rates and connections through xlvs (NAT, DR, TUN,
FULLNAT) and the kernel's alternatives side by side, and writes report.json, report.md
and report.svg.

Both need root (namespaces, XDP) and the xlvsd and xlvsadm binaries: in $XLVS_BIN,
next to xlvs-bench, in ./bin, or on $PATH. Every namespace made is removed at the end, also
after a failure.`,
		Lists: []manpage.List{{Title: "Commands", Items: cmds}},
		Flags: runFS,
		ArgNames: map[string]string{
			"runs": "N", "duration": "DURATION", "cpus": "GEN,DIR", "targets": "LIST",
			"workloads": "LIST", "xlvsd": "FLAGS", "sweep": "SETS", "gen-batch": "N",
			"out": "DIR", "max-loss": "FRACTION", "min-pps": "PPS", "quiet-wait": "DURATION",
			"concurrency": "N", "reals": "LIST", "sched": "NAME",
		},
		Sections: []manpage.Section{
			{Title: "Demo options", Items: manpage.FlagItems(demoFS, nil)},
			{Title: "Exit status", Body: "0 when every target forwarded (run) or every request succeeded (demo); 1 when a target that should forward delivered under --min-pps, a measurement failed, or a request failed; 2 for an unknown command."},
			{Title: "Examples", Body: "\tsudo xlvs-bench demo\n\tsudo xlvs-bench --quick\n\tsudo xlvs-bench run --targets xlvs-nat,iptables-dnat --workloads 64x1000 --sweep \"--batch 16;--batch 64\""},
		},
		SeeAlso: []string{"xlvsd(8)", "xlvsadm(8)"},
	}
}
