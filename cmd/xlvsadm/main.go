package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"xlvs/control/api"
	"xlvs/control/ipvsadm"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // the daemon refused, or could not be reached
	exitUsage = 2 // the command line or the rules do not parse
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, api.SocketPath(""))
	stop()
	os.Exit(code)
}

// run executes one xlvsadm invocation against the daemon at socket.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, socket string) int {
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
			} else {
				fmt.Fprintf(stderr, "%s: %v\n", ipvsadm.Program, err)
			}
			return exitFail
		}
		resps = append(resps, resp)
	}
	if err := ipvsadm.Format(stdout, cmd, resps...); err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	return exitOK
}
