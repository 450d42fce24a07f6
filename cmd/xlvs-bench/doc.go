// Command xlvs-bench runs xlvs in network-namespace testbeds: `xlvs-bench demo` builds the
// classic LVS-NAT layout, balances HTTP over two real servers and prints the split;
// `xlvs-bench run` measures packet rates and connections through xlvs (NAT, DR, TUN,
// FULLNAT) and the kernel's alternatives side by side and writes JSON, Markdown and SVG
// reports.
//
// # Role
//
// A thin main over bench (the harness, targets and reports) and bench/testbed; it reads
// the flags and exits. Measurements, their method and the numbers are in BENCHMARKS.md.
//
// # Invariants
//
// --min-pps turns a stalled or broken forwarding path into exit status 1: a sanity floor,
// not a speed target.
package main
