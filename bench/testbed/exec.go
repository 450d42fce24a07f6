package testbed

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// waitDelay bounds how long Wait waits for a killed command's output pipes to close.
const waitDelay = 2 * time.Second

// ipPath finds the ip binary, also where PATH lacks the sbin directories.
func ipPath() string {
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	return "ip" // let Start report it missing
}

// Command prepares `ip netns exec NAME name args...`. The command runs in a process group
// of its own; when ctx ends, the whole group gets SIGKILL (so do children it left behind),
// and Wait gives up on its output pipes shortly after.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", n.name, name}, args...)
	cmd := exec.CommandContext(ctx, ipPath(), full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		// The group id is the leader's pid. Kill the group, then the leader in case it
		// moved to another group.
		gerr := unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		perr := cmd.Process.Kill()
		if gerr != nil && perr != nil {
			return perr
		}
		return nil
	}
	cmd.WaitDelay = waitDelay
	return cmd
}

// Run runs name with args inside the namespace and returns its combined output. The error
// includes the output.
func (n *NS) Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := n.Command(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = errors.Join(err, ctxErr)
		}
		return string(out), fmt.Errorf("run %s in %s: %w; output: %q", strings.Join(append([]string{name}, args...), " "), n.name, err, msg)
	}
	return string(out), nil
}
