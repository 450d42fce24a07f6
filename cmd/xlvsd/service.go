package main

// Running under a service manager: the capabilities xlvsd needs instead of root, the
// locked-memory limit of its UMEMs, systemd's readiness protocol, SIGHUP, and a control
// socket shared with a group of operators.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// capability is one Linux capability xlvsd needs, and why.
type capability struct {
	bit  int
	name string
	why  string
}

// requiredCaps are the capabilities xlvsd needs, and all it needs: xlvsd.service grants
// exactly these (AmbientCapabilities=, CapabilityBoundingSet=) to an unprivileged user,
// and packaging's installed-package test runs xlvsd with only them (setpriv) and forwards
// NAT traffic through it. Leaving out any one fails the start (the test checks each).
// CAP_SYS_ADMIN is not among them.
//
// The kernel's rules (intel-lab-lkp/linux): net/xdp/xsk.c at 01997894e797 (xsk_create:
// CAP_NET_RAW for an AF_XDP socket); net/xdp/xdp_umem.c at 1ccbb9e6e1c0
// (xdp_umem_account_pages: without CAP_IPC_LOCK a UMEM counts against RLIMIT_MEMLOCK,
// hence LimitMEMLOCK=infinity in the unit instead of that capability); kernel/bpf/syscall.c
// (map and program creation need CAP_BPF when unprivileged BPF is off; XDP and tc
// programs, the XSKMAP and the bpf_link attach need CAP_NET_ADMIN); include/linux/bpf.h
// (bpf_allow_ptr_leaks is CAP_PERFMON: without it the verifier refuses the classifier's
// packet-pointer arithmetic, "pointer arithmetic with it prohibited for !root").
var requiredCaps = []capability{
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN", "attach XDP, load XDP programs, create the XSKMAP, update neighbours"},
	{unix.CAP_NET_RAW, "CAP_NET_RAW", "open AF_XDP sockets"},
	{unix.CAP_BPF, "CAP_BPF", "create BPF maps and load programs"},
	{unix.CAP_PERFMON, "CAP_PERFMON", "let the verifier accept the classifier's pointer arithmetic"},
}

// effectiveCaps returns the process's effective capability set.
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

// missingCaps names the required capabilities not in eff. On kernels before 5.8 (no
// CAP_BPF, CAP_PERFMON) CAP_SYS_ADMIN stands in for those two, as the kernel's checks
// fall back to it.
func missingCaps(eff uint64) []capability {
	has := func(bit int) bool { return eff&(1<<uint(bit)) != 0 }
	var out []capability
	for _, c := range requiredCaps {
		if has(c.bit) || (c.bit == unix.CAP_BPF || c.bit == unix.CAP_PERFMON) && has(unix.CAP_SYS_ADMIN) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// capCheckEnv turns the start-up capability check off ("off"): the kernel alone then
// decides, as for diagnosis (packaging's test shows each capability is needed this way).
const capCheckEnv = "XLVSD_CAPABILITY_CHECK"

// checkPrivileges refuses to start without the capabilities xlvsd needs, naming them.
func checkPrivileges() error {
	if os.Getenv(capCheckEnv) == "off" {
		return nil
	}
	eff, err := effectiveCaps()
	if err != nil {
		return err
	}
	miss := missingCaps(eff)
	if len(miss) == 0 {
		return nil
	}
	var parts []string
	for _, c := range miss {
		parts = append(parts, c.name+" ("+c.why+")")
	}
	return fmt.Errorf("missing capabilities: %s; run as root, or as xlvsd.service grants them (AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_PERFMON)", strings.Join(parts, ", "))
}

// checkMemlock refuses a UMEM the locked-memory limit cannot hold: the kernel's ENOBUFS
// from XDP_UMEM_REG names no cause. Without CAP_IPC_LOCK every UMEM of the user counts
// against RLIMIT_MEMLOCK (net/xdp/xdp_umem.c, see requiredCaps); xlvsd.service sets
// LimitMEMLOCK=infinity.
func checkMemlock(frames, frameSize int) error {
	eff, err := effectiveCaps()
	if err != nil {
		return err
	}
	if eff&(1<<unix.CAP_IPC_LOCK) != 0 {
		return nil
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return fmt.Errorf("read RLIMIT_MEMLOCK: %w", err)
	}
	need := uint64(frames) * uint64(frameSize)
	if rl.Cur == unix.RLIM_INFINITY || need <= rl.Cur {
		return nil
	}
	return fmt.Errorf("locked-memory limit %d KiB is below one socket's UMEM (--frames %d x --frame-size %d = %d KiB; each queue has one): raise it (LimitMEMLOCK=infinity, as xlvsd.service sets; ulimit -l) or lower --frames",
		rl.Cur>>10, frames, frameSize, need>>10)
}

// notify sends state to the service manager (sd_notify(3): one datagram to the unix
// socket $NOTIFY_SOCKET, "@" for the abstract namespace; sdNotify in handoff.go writes it).
// Without NOTIFY_SOCKET it does nothing. The protocol is a few lines, so no library.
func notify(state string) error {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil
	}
	return sdNotify(state)
}

// notifyLog is notify that logs a failure: readiness is the service manager's concern,
// not a reason to stop forwarding.
func notifyLog(log *slog.Logger, state string) {
	if err := notify(state); err != nil {
		log.Warn("service manager notification failed", "err", err)
	}
}

// handleHUP serves SIGHUP until ctx ends: reload (nil: nothing to reload, logged). The
// signal is caught from the start, so a HUP (ExecReload=) never kills the daemon.
func handleHUP(ctx context.Context, log *slog.Logger, hup <-chan os.Signal, reload func() error) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if reload == nil {
				log.Info("SIGHUP: nothing to reload (only --keepalived-conf is re-read; the rules stay as xlvsadm set them)")
				continue
			}
			notifyLog(log, "RELOADING=1")
			if err := reload(); err != nil {
				log.Error("SIGHUP", "err", err)
			}
			notifyLog(log, "READY=1")
		}
	}
}

// catchHUP starts catching SIGHUP; the caller stops it with signal.Stop.
func catchHUP() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// shareSocket gives the control socket to group (a name or a number) with mode 0660, so
// that its members run xlvsadm without root. The daemon must be the socket's owner and a
// member of the group (xlvsd.service: SupplementaryGroups=xlvsadm).
func shareSocket(path, group string) error {
	gid, err := strconv.Atoi(group)
	if err != nil {
		g, lerr := user.LookupGroup(group)
		if lerr != nil {
			return fmt.Errorf("--socket-group %s: %w (create it, e.g. groupadd --system %s, or give a number)", group, lerr, group)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return fmt.Errorf("--socket-group %s: gid %q is not a number", group, g.Gid)
		}
	}
	if err := os.Chown(path, -1, gid); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("--socket-group %s: give the socket to group %d: %w (xlvsd must be a member of the group: SupplementaryGroups= in the unit)", group, gid, err)
		}
		return fmt.Errorf("--socket-group %s: %w", group, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		return fmt.Errorf("--socket-group %s: %w", group, err)
	}
	return nil
}
