package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// miscKillDelay is how long a timed-out script has between SIGTERM and SIGKILL
// (keepalived waits 2 s).
const miscKillDelay = 2 * time.Second

// maxStderr bounds the script output kept for the failure message.
const maxStderr = 512

// Misc is keepalived's MISC_CHECK: a program run without a shell, whose exit status says
// whether the server is up:
//
//	0            up (with misc_dynamic: and back to its configured weight)
//	1            down
//	2 to 255     with misc_dynamic: up, with weight status-2; without: down
//	killed, or not done within Timeout: down (SIGTERM, then SIGKILL 2 s later, to the
//	script's whole process group)
//
// The first line of its standard error, if any, ends the failure message.
type Misc struct {
	Args    []string // program and arguments
	Timeout time.Duration
	Dynamic bool
	// User and Group run the script as another user (the daemon must be root); empty
	// runs it as the daemon.
	User, Group string

	cred *syscall.Credential
}

// NewMisc checks the command and resolves User and Group.
func NewMisc(c Misc) (*Misc, error) {
	if len(c.Args) == 0 || c.Args[0] == "" {
		return nil, fmt.Errorf("%w: MISC_CHECK needs a program (misc_path)", ErrSpec)
	}
	if c.Timeout <= 0 {
		return nil, fmt.Errorf("%w: MISC_CHECK %s: timeout %v must be positive", ErrSpec, c.Args[0], c.Timeout)
	}
	if c.User != "" {
		u, err := user.Lookup(c.User)
		if err != nil {
			return nil, fmt.Errorf("%w: MISC_CHECK %s: user %q: %v", ErrSpec, c.Args[0], c.User, err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		if c.Group != "" {
			g, err := user.LookupGroup(c.Group)
			if err != nil {
				return nil, fmt.Errorf("%w: MISC_CHECK %s: group %q: %v", ErrSpec, c.Args[0], c.Group, err)
			}
			gid, _ = strconv.ParseUint(g.Gid, 10, 32)
		}
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return &c, nil
}

// Check implements Checker.
func (c *Misc) Check(ctx context.Context) Result {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = miscKillDelay
	stderr := &limitedBuffer{max: maxStderr}
	cmd.Stderr = stderr
	err := cmd.Run()
	timedOut := ctx.Err() == context.DeadlineExceeded
	if timedOut && cmd.Process != nil {
		// Whatever the script started goes too.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err == nil {
		if c.Dynamic {
			return Result{Dynamic: true, Weight: ConfiguredWeight}
		}
		return Result{}
	}
	name := c.Args[0]
	var ee *exec.ExitError
	switch {
	case timedOut:
		return Result{Err: fmt.Errorf("%s: %w after %v%s", name, ErrTimeout, c.Timeout, stderr.suffix())}
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return Result{Err: fmt.Errorf("%s: %w: killed by signal %v%s", name, ErrExit, ws.Signal(), stderr.suffix())}
		}
		code := ee.ExitCode()
		if c.Dynamic && code >= 2 && code <= 255 {
			return Result{Dynamic: true, Weight: int32(code - 2)}
		}
		return Result{Err: fmt.Errorf("%s: %w: exit status %d%s", name, ErrExit, code, stderr.suffix())}
	default:
		return Result{Err: fmt.Errorf("%s: %w: %v", name, ErrExit, err)}
	}
}

func (c *Misc) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "MISC_CHECK %q timeout %v", c.Args, c.Timeout)
	if c.Dynamic {
		b.WriteString(" dynamic")
	}
	if c.User != "" {
		fmt.Fprintf(&b, " user %s", c.User)
		if c.Group != "" {
			b.WriteString(":" + c.Group)
		}
	}
	return b.String()
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// suffix is ": <first line of stderr>", or "".
func (l *limitedBuffer) suffix() string {
	line, _, _ := strings.Cut(strings.TrimSpace(l.buf.String()), "\n")
	if line == "" {
		return ""
	}
	return ": " + strings.TrimSpace(line)
}
