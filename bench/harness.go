package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"xlvs/bench/testbed"
	"xlvs/control/api"
)

// Binaries are the paths of the built commands.
type Binaries struct {
	XLVSD   string
	XLVSADM string
}

// FindBinaries looks for xlvsd and xlvsadm in $XLVS_BIN, then next to the running
// executable, then in ./bin, then on PATH.
func FindBinaries() (Binaries, error) {
	var dirs []string
	if d := os.Getenv("XLVS_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	dirs = append(dirs, "bin")
	find := func(name string) string {
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				abs, _ := filepath.Abs(p)
				return abs
			}
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		return ""
	}
	b := Binaries{XLVSD: find("xlvsd"), XLVSADM: find("xlvsadm")}
	if b.XLVSD == "" || b.XLVSADM == "" {
		return b, fmt.Errorf("xlvsd and xlvsadm not found in $XLVS_BIN, next to this program, ./bin or PATH: run `make build` first")
	}
	return b, nil
}

// Daemon is an xlvsd process running in a namespace.
type Daemon struct {
	Socket string
	bins   Binaries
	cmd    *exec.Cmd
	dir    string
	out    *lockedBuffer
	done   chan struct{}
	err    error
	killed bool // Kill ended it
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartDaemon runs xlvsd with args inside ns, with its control socket in a fresh
// temporary directory, and waits (up to 15 s) until the socket answers. ctx bounds the
// process's whole life.
func StartDaemon(ctx context.Context, ns *testbed.NS, bins Binaries, args ...string) (*Daemon, error) {
	dir, err := os.MkdirTemp("", "xlvsd-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Socket: filepath.Join(dir, "xlvsd.sock"), bins: bins, dir: dir, out: &lockedBuffer{}, done: make(chan struct{})}
	full := append([]string{"--socket", d.Socket, "--state", filepath.Join(dir, "state.json")}, args...)
	d.cmd = ns.Command(ctx, bins.XLVSD, full...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start xlvsd: %w", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	c := api.NewClient(d.Socket)
	deadline := time.Now().Add(15 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Do(rctx, &api.Request{Op: api.OpInfo})
		cancel()
		if err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("xlvsd exited at start-up (%v):\n%s", d.err, d.out.String())
		default:
		}
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("xlvsd did not answer on %s within 15s:\n%s", d.Socket, d.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StatePath is the daemon's state file.
func (d *Daemon) StatePath() string { return filepath.Join(d.dir, "state.json") }

// Dir is the daemon's private directory (socket, state file); it is removed by Stop.
func (d *Daemon) Dir() string { return d.dir }

// Client returns an API client of the daemon.
func (d *Daemon) Client() *api.Client { return api.NewClient(d.Socket) }

// Adm runs xlvsadm with args against the daemon and returns its standard output; the
// error carries standard error and the exit status.
func (d *Daemon) Adm(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bins.XLVSADM, args...)
	cmd.Env = append(os.Environ(), api.EnvSocket+"="+d.Socket)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("xlvsadm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Pid is the xlvsd process's id (for signals such as SIGHUP).
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Log is what xlvsd printed so far.
func (d *Daemon) Log() string { return d.out.String() }

// Exited reports whether the process has ended.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Kill ends the daemon with SIGKILL, as a crash would (nothing of xlvsd's shutdown
// runs), and waits for it to be gone. Stop afterwards only removes the socket directory
// and returns nil: the kill was meant.
func (d *Daemon) Kill() {
	if d.cmd.Process == nil {
		return
	}
	d.killed = true
	_ = d.cmd.Process.Kill()
	<-d.done
}

// Stop sends SIGTERM, waits up to 10 s (then kills), removes the socket directory and
// returns the exit error (nil for a clean exit, or after Kill).
func (d *Daemon) Stop() error {
	defer os.RemoveAll(d.dir)
	if d.cmd.Process == nil {
		return errors.New("xlvsd not started")
	}
	if d.killed {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("xlvsd did not exit within 10s of SIGTERM:\n%s", d.out.String())
	}
	return d.err
}
