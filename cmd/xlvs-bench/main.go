// Command xlvs-bench runs xlvs in network-namespace testbeds: `xlvs-bench demo` builds the
// classic LVS-NAT layout, balances HTTP over two real servers and prints the split.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"xlvs/bench"
)

const usage = `usage: xlvs-bench COMMAND [flags]

commands:
  demo    build an LVS-NAT testbed, balance HTTP through xlvsd with wrr 3:1, print the split
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "demo":
		err = demo(ctx, os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "xlvs-bench: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlvs-bench:", err)
		os.Exit(1)
	}
}

func demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var o bench.DemoOptions
	fs.IntVar(&o.Requests, "requests", 5000, "HTTP requests to send")
	fs.IntVar(&o.Concurrency, "concurrency", 100, "requests in flight")
	w1 := fs.Int("w1", 3, "weight of rs1")
	w2 := fs.Int("w2", 1, "weight of rs2")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Weights = [2]int{*w1, *w2}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo builds network namespaces and attaches XDP: run it as root (sudo make demo)")
	}
	bins, err := bench.FindBinaries()
	if err != nil {
		return err
	}
	_, err = bench.Demo(ctx, bins, o, os.Stdout)
	return err
}
