package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"xlvs/conntrack"
	"xlvs/control"
	"xlvs/control/api"
	"xlvs/control/ipvsadm"
	"xlvs/control/keepalived"
	"xlvs/dataplane"
	"xlvs/dataplane/xsk"
)

// errCheckFailed is --check-config's result for a configuration xlvsd would not start
// with; the reasons are already on stderr.
var errCheckFailed = errors.New("configuration check failed: xlvsd would not start with it")

// checkConfig is xlvsd --check-config, as keepalived -t: it loads and checks what xlvsd
// would at start with the same flags — the rules of --keepalived-conf (services, FULLNAT
// local addresses, and the real servers the health checks start with: all but those
// waiting for an alpha check) or of --config, and the --health-check blocks — on a
// daemon over an in-memory dataplane: no interface is attached, no BPF program loaded,
// no check run, no state file written, so it needs no privilege. It prints warnings and
// errors on stderr as "file:line: ...", the resulting rules on stdout as ipvsadm -S -n
// prints them, and returns errCheckFailed when xlvsd would not start.
func checkConfig(o *options, stdout, stderr io.Writer) error {
	if o.keepalived == "" && o.config == "" {
		return errors.New("--check-config: give --keepalived-conf FILE or --config FILE to check")
	}
	d, closeDP, err := checkDaemon(o)
	if err != nil {
		return err
	}
	defer closeDP()
	ok := true
	fail := func(err error) {
		fmt.Fprintln(stderr, err)
		ok = false
	}
	switch {
	case o.keepalived != "":
		warn := func(w keepalived.Warning) { fmt.Fprintln(stderr, w) }
		cfg, err := d.CheckKeepalived(o.keepalived, keepalived.Options{Warn: warn})
		if err != nil {
			fail(err)
			break
		}
		reportSync(stderr, cfg.SyncDaemon)
	default:
		if err := checkRules(d, o.config); err != nil {
			fail(err)
		}
	}
	if o.healthCheck != "" {
		if err := control.CheckRuleChecks(o.healthCheck); err != nil {
			fail(fmt.Errorf("--health-check: %w", err))
		}
	}
	if !ok {
		return errCheckFailed
	}
	return printRules(d, stdout)
}

// reportSync says which sync daemon roles xlvsd would start for lvs_sync_daemon (they are
// not started by the check: no socket is opened, the interface may be another host's).
func reportSync(w io.Writer, sd *keepalived.SyncDaemon) {
	for _, r := range control.KeepalivedSyncDaemons(sd) {
		fmt.Fprintf(w, "%s: warning: lvs_sync_daemon: xlvsd starts the %s sync daemon (mcast=%s, syncid=%d)", sd.Pos, r.State, r.Interface, r.SyncID)
		switch {
		case sd.VRRPInstance != "" && sd.NotifyFIFO != "":
			fmt.Fprintf(w, "; both roles run, and vrrp_instance %s's transitions (read from keepalived's notify FIFO %s) exchange the whole table", sd.VRRPInstance, sd.NotifyFIFO)
		case sd.VRRPInstance != "":
			fmt.Fprintf(w, "; both roles run, but without vrrp_notify_fifo (or notify_fifo) in global_defs xlvsd cannot follow vrrp_instance %s's transitions", sd.VRRPInstance)
		}
		fmt.Fprintln(w)
	}
}

// checkDaemon is a daemon as xlvsd's (same limits) over a dataplane that has one fake
// port and is never started.
func checkDaemon(o *options) (*control.Daemon, func(), error) {
	sock := xsk.Config{Frames: 64, FrameSize: 2048, FillRing: 16, CompRing: 16, RxRing: 16, TxRing: 16}
	f, err := xsk.NewFake(sock)
	if err != nil {
		return nil, nil, fmt.Errorf("--check-config: %w", err)
	}
	dp, err := dataplane.NewWithPorts(dataplane.Config{Socket: sock, Batch: 8, Conntrack: conntrack.Config{MaxEntries: 4096}},
		[]dataplane.Port{{Name: "check", Ifindex: 1, Sockets: []xsk.Socket{f}}})
	if err != nil {
		return nil, nil, fmt.Errorf("--check-config: %w", err)
	}
	d := control.New(dp, control.Options{ConnTable: o.connMax, ExpireNodestConn: o.expireNodest})
	return d, func() { dp.Close() }, nil
}

// checkRules applies an ipvsadm -S rules file as Daemon.LoadConfig does, naming the file
// and line of a rule that does not parse or that the daemon refuses.
func checkRules(d *control.Daemon, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	req, err := ipvsadm.ParseRules(f)
	if err != nil {
		var re *ipvsadm.RuleError
		if errors.As(err, &re) {
			return fmt.Errorf("%s:%d: %v", path, re.Line, re.Err)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	req.Batch = append([]api.Request{{Op: api.OpClear}}, req.Batch...)
	if e := d.Handle(context.Background(), req).Error; e != nil {
		if e.Line > 0 {
			return fmt.Errorf("%s:%d: %s", path, e.Line, strings.TrimPrefix(e.Message, fmt.Sprintf("line %d: ", e.Line)))
		}
		return fmt.Errorf("%s: %s", path, e.Message)
	}
	return nil
}

// printRules writes the daemon's rules as xlvsadm -S -n does.
func printRules(d *control.Daemon, w io.Writer) error {
	cmd, err := ipvsadm.Parse([]string{"-S", "-n"})
	if err != nil {
		return err
	}
	resps := make([]*api.Response, len(cmd.Requests))
	for i := range cmd.Requests {
		resps[i] = d.Handle(context.Background(), &cmd.Requests[i])
		if e := resps[i].Error; e != nil {
			return fmt.Errorf("list rules: %s", e.Message)
		}
	}
	return ipvsadm.Format(w, cmd, resps...)
}
