package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"xlvs/cmd/internal/manpage"
	"xlvs/control/api"
	"xlvs/control/ipvsadm"
)

// Exit statuses.
//
// As ipvsadm: 2 for a command line or rules that do not parse and for a daemon that
// cannot be reached (ipvsadm's "Can't initialize ipvs"), 255 when the daemon refuses a
// command (ipvsadm returns -1 from main when the kernel refuses).
const (
	exitOK      = 0
	exitFail    = 1   // local failures (writing the output)
	exitUsage   = 2   // the command line or the rules do not parse; no daemon to talk to
	exitRefused = 255 // the daemon refused the command
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, api.SocketPath(""))
	stop()
	os.Exit(code)
}

// run executes one xlvsadm invocation against the daemon at socket.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, socket string) int {
	if len(args) == 1 && args[0] == "--"+manpage.HelpManFlag {
		if err := writeManual(stdout); err != nil {
			fmt.Fprintln(stderr, err)
			return exitFail
		}
		return exitOK
	}
	cmd, err := ipvsadm.Parse(args)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	switch cmd.Kind {
	case ipvsadm.KindHelp:
		if err := ipvsadm.Usage(stdout, ipvsadm.Program); err != nil {
			return exitFail
		}
		return exitOK
	case ipvsadm.KindVersion:
		fmt.Fprintln(stdout, ipvsadm.VersionText)
		return exitOK
	case ipvsadm.KindRestore:
		req, err := ipvsadm.ParseRules(stdin)
		if err != nil {
			fmt.Fprintln(stderr, err)
			var re *ipvsadm.RuleError
			if errors.As(err, &re) {
				return exitUsage
			}
			return exitFail
		}
		cmd.Requests = []api.Request{*req}
	}

	client := api.NewClient(socket)
	resps := make([]*api.Response, 0, len(cmd.Requests))
	for i := range cmd.Requests {
		resp, err := client.Do(ctx, &cmd.Requests[i])
		if err != nil {
			var e *api.Error
			if errors.As(err, &e) {
				fmt.Fprintln(stderr, ipvsadm.ErrorMessage(&cmd.Requests[i], e))
				return exitRefused
			}
			fmt.Fprintf(stderr, "Can't initialize ipvs: %v\nAre you sure that xlvsd is running?\n", err)
			return exitUsage
		}
		resps = append(resps, resp)
	}
	if err := ipvsadm.Format(stdout, cmd, resps...); err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	return exitOK
}
