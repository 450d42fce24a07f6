package syncd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"xlvs/conntrack"
	"xlvs/control/ipvssync"
	"xlvs/dataplane"
)

// Dataplane is what the daemon needs of the dataplane (*dataplane.Dataplane has it).
type Dataplane interface {
	// SetSyncMaster makes the workers queue connections for a master (nil: stop).
	SetSyncMaster(p *conntrack.SyncPolicy, persistMode bool)
	// DrainSync moves up to len(out) queued entries into out; one consumer at a time.
	DrainSync(out []dataplane.SyncConn) int
	// ApplySync creates or updates a connection (or template) a backup received.
	ApplySync(c *dataplane.SyncConn) error
	// SyncStats are the workers' counters of entries queued (and lost to a full queue).
	SyncStats() dataplane.SyncStats
	// Now is the dataplane's monotonic clock in ns, the clock of SyncConn.Queued.
	Now() int64
	// WalkSync hands over every connection and template, for a whole-table send.
	WalkSync(f func(c *dataplane.SyncConn) bool)
}

var _ Dataplane = (*dataplane.Dataplane)(nil)

// Role is a sync daemon's role.
type Role int

// Roles, numbered as the kernel's IP_VS_STATE_MASTER and IP_VS_STATE_BACKUP.
const (
	Master Role = 1
	Backup Role = 2
)

func (r Role) String() string {
	switch r {
	case Master:
		return "master"
	case Backup:
		return "backup"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole reads "master" or "backup".
func ParseRole(s string) (Role, error) {
	switch s {
	case "master":
		return Master, nil
	case "backup":
		return Backup, nil
	}
	return 0, fmt.Errorf("sync daemon: unknown state %q: want master or backup", s)
}

// Limits.
const (
	MaxPorts    = 64 // IPVS_SYNC_PORTS_MAX
	MaxSyncLen  = 65535 - 20 - 8
	DefaultPoll = 5 * time.Millisecond
	// DefaultFlushTime is IPVS_SYNC_FLUSH_TIME: a partial message waits at most this long.
	DefaultFlushTime = 2 * time.Second
	// DefaultSendTries and DefaultSendWait bound the wait for room in a full socket buffer.
	DefaultSendTries = 20
	DefaultSendWait  = 10 * time.Millisecond
	// DefaultTableRate paces a whole-table send: messages a second (about 40 IPv4
	// connections each at the default size, so some 400 000 connections a second).
	DefaultTableRate = 10000
	drainBatch       = 256
)

// Config is one role's configuration, as ipvsadm --start-daemon gives it.
type Config struct {
	Role   Role
	Sock   ipvssync.Config // interface, group, port (thread i uses Port+i), TTL
	SyncID uint8
	// MaxLen is --sync-maxlen; 0 computes it from the MTU (ipvssync.MaxLen).
	MaxLen int
	// FlushTime is how long a partial message may wait (master); 0 = DefaultFlushTime.
	FlushTime time.Duration
	// PollInterval is how often the master drains the dataplane; 0 = DefaultPoll.
	PollInterval time.Duration
}

// Running describes a running role with every default filled in, as the kernel reports
// it to ipvsadm --list --daemon.
type Running struct {
	Role   Role
	Ifname string
	SyncID uint8
	MaxLen int
	Group  netip.Addr
	Port   int
	TTL    int
	// VRRPInstance is informative: the keepalived VRRP instance that started the role.
	VRRPInstance string
}

// ApplyReason names an error ApplySync may return (matched with errors.Is), for counting
// a backup's failures by reason.
type ApplyReason struct {
	Err  error
	Name string
}

// Options configure a Daemon.
type Options struct {
	// Ports is the number of sync threads, the kernel's sync_ports (1..MaxPorts, a power
	// of two); 0 = 1.
	Ports int
	// Policy and PersistMode are handed to SetSyncMaster when a master starts (the
	// kernel's sync_threshold, sync_refresh_period, sync_retries, sync_persist_mode).
	// A nil Policy is conntrack.DefaultSyncPolicy.
	Policy      *conntrack.SyncPolicy
	PersistMode bool
	// ApplyReasons are the ApplySync errors counted each under its name; others are
	// counted as "other". Default: DefaultApplyReasons.
	ApplyReasons []ApplyReason
	// SendTries and SendWait bound the wait for room in a full socket buffer before a
	// message is dropped; 0 = DefaultSendTries, DefaultSendWait.
	SendTries int
	SendWait  time.Duration
	// TableRate paces whole-table sends, in messages a second; 0 = DefaultTableRate.
	TableRate int
	Log       *slog.Logger
}

// DefaultApplyReasons are the connection table's errors an apply can meet.
var DefaultApplyReasons = []ApplyReason{
	{conntrack.ErrFull, "table_full"},
	{conntrack.ErrExists, "exists"},
	// A FULLNAT connection from a master whose table has another shard key
	// (xlvsd --shard-key-file).
	{conntrack.ErrShardMismatch, "shard_mismatch"},
}

// Errors of Start and Stop (the kernel's EEXIST and ESRCH); returned wrapped in a
// sentence naming the role.
var (
	ErrRunning    = errors.New("already running")
	ErrNotRunning = errors.New("not running")
)

// Daemon runs the sync roles over one dataplane.
type Daemon struct {
	dp   Dataplane
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	master *master
	backup *backup
	mcfg   Running
	bcfg   Running

	st stats
}

// New returns a Daemon with no role running. Options are checked by Start.
func New(dp Dataplane, o Options) *Daemon {
	if o.Ports == 0 {
		o.Ports = 1
	}
	if o.ApplyReasons == nil {
		o.ApplyReasons = DefaultApplyReasons
	}
	if o.SendTries == 0 {
		o.SendTries = DefaultSendTries
	}
	if o.SendWait == 0 {
		o.SendWait = DefaultSendWait
	}
	if o.TableRate <= 0 {
		o.TableRate = DefaultTableRate
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Daemon{dp: dp, opts: o, log: o.Log.With("component", "syncd")}
	d.st.applyNames = make([]string, len(o.ApplyReasons)+1)
	for i, r := range o.ApplyReasons {
		d.st.applyNames[i] = r.Name
	}
	d.st.applyNames[len(o.ApplyReasons)] = "other"
	d.st.apply = make([]counter, len(d.st.applyNames))
	return d
}

// CheckPorts validates a sync_ports value as the kernel's proc_do_sync_ports does, with
// start_sync_thread's upper bound.
func CheckPorts(n int) error {
	if n < 1 || n > MaxPorts || n&(n-1) != 0 {
		return fmt.Errorf("sync ports %d: want a power of two from 1 to %d (the kernel's sync_ports, clamped to IPVS_SYNC_PORTS_MAX)", n, MaxPorts)
	}
	return nil
}

// resolve checks cfg and fills in its defaults; it looks up the interface's MTU.
func (d *Daemon) resolve(cfg *Config) (Running, error) {
	r := Running{Role: cfg.Role, Ifname: cfg.Sock.Ifname, SyncID: cfg.SyncID}
	if cfg.Role != Master && cfg.Role != Backup {
		return r, fmt.Errorf("sync daemon: unknown state %d: want master or backup", int(cfg.Role))
	}
	if err := CheckPorts(d.opts.Ports); err != nil {
		return r, err
	}
	if err := cfg.Sock.Check(); err != nil {
		return r, err
	}
	if cfg.MaxLen < 0 || cfg.MaxLen > MaxSyncLen {
		return r, fmt.Errorf("sync daemon: sync-maxlen %d out of range: want 1 to %d bytes, or 0 for the interface's MTU", cfg.MaxLen, MaxSyncLen)
	}
	if cfg.FlushTime < 0 || cfg.PollInterval < 0 {
		return r, errors.New("sync daemon: negative flush time or poll interval")
	}
	_, mtu, err := cfg.Sock.Interface()
	if err != nil {
		return r, err
	}
	r.Group, r.Port, r.TTL = cfg.Sock.Group, cfg.Sock.Port, cfg.Sock.TTL
	if !r.Group.IsValid() {
		r.Group = netip.AddrFrom4(ipvssync.DefaultGroup4)
	}
	if r.Port == 0 {
		r.Port = ipvssync.DefaultPort
	}
	if r.TTL == 0 {
		r.TTL = ipvssync.DefaultTTL
	}
	if r.Port+d.opts.Ports-1 > 65535 {
		return r, fmt.Errorf("sync daemon: port %d with %d sync ports would use ports up to %d: want at most 65535", r.Port, d.opts.Ports, r.Port+d.opts.Ports-1)
	}
	r.MaxLen = ipvssync.MaxLen(mtu, r.Group.Is6(), cfg.Role == Backup, cfg.MaxLen)
	return r, nil
}

func sockConfig(r Running) ipvssync.Config {
	return ipvssync.Config{Ifname: r.Ifname, Group: r.Group, Port: r.Port, TTL: r.TTL}
}

// Start starts a role. Starting a role that runs is an error wrapping ErrRunning; a bad
// configuration or a socket that cannot be opened is an error saying what was wrong, and
// nothing runs then. A master also turns the dataplane's sync queue on.
func (d *Daemon) Start(cfg Config) error {
	return d.start(cfg, "")
}

// StartFor is Start recording the keepalived VRRP instance the role belongs to.
func (d *Daemon) StartFor(cfg Config, vrrpInstance string) error {
	return d.start(cfg, vrrpInstance)
}

func (d *Daemon) start(cfg Config, vrrp string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if (cfg.Role == Master && d.master != nil) || (cfg.Role == Backup && d.backup != nil) {
		return fmt.Errorf("sync daemon: the %s sync daemon is %w", cfg.Role, ErrRunning)
	}
	r, err := d.resolve(&cfg)
	if err != nil {
		return err
	}
	r.VRRPInstance = vrrp
	if cfg.FlushTime == 0 {
		cfg.FlushTime = DefaultFlushTime
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPoll
	}
	switch cfg.Role {
	case Master:
		m, err := d.newMaster(r, cfg)
		if err != nil {
			return err
		}
		d.master, d.mcfg = m, r
		go m.run()
		p := d.opts.Policy
		if p == nil {
			dp := conntrack.DefaultSyncPolicy()
			p = &dp
		}
		d.dp.SetSyncMaster(p, d.opts.PersistMode)
	case Backup:
		b, err := d.newBackup(r)
		if err != nil {
			return err
		}
		d.backup, d.bcfg = b, r
		b.start()
		// A backup that starts has missed what happened before: ask for the whole table.
		if err := d.requestLocked(); err != nil {
			d.log.Warn("sync daemon: could not ask the masters for their table", "err", err)
		}
	}
	d.log.Info("sync daemon started", "state", cfg.Role.String(), "mcast_ifn", r.Ifname, "syncid", r.SyncID,
		"maxlen", r.MaxLen, "group", r.Group, "port", r.Port, "ttl", r.TTL, "ports", d.opts.Ports)
	return nil
}

// stopWait bounds how long Stop waits for a role's goroutines.
const stopWait = 5 * time.Second

// Stop stops a role: a master turns the dataplane's queue off, sends what it has and
// closes its sockets; a backup closes its sockets. Stopping a role that does not run is
// an error wrapping ErrNotRunning.
func (d *Daemon) Stop(role Role) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch role {
	case Master:
		if d.master == nil {
			return fmt.Errorf("sync daemon: the master sync daemon is %w", ErrNotRunning)
		}
		d.dp.SetSyncMaster(nil, false)
		err := d.master.stop(stopWait)
		d.master = nil
		d.log.Info("sync daemon stopped", "state", role.String())
		return err
	case Backup:
		if d.backup == nil {
			return fmt.Errorf("sync daemon: the backup sync daemon is %w", ErrNotRunning)
		}
		err := d.backup.stop(stopWait)
		d.backup = nil
		d.log.Info("sync daemon stopped", "state", role.String())
		return err
	}
	return fmt.Errorf("sync daemon: unknown state %d: want master or backup", int(role))
}

// Close stops every running role.
func (d *Daemon) Close() error {
	var errs []error
	for _, r := range []Role{Master, Backup} {
		if err := d.Stop(r); err != nil && !errors.Is(err, ErrNotRunning) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Running lists the running roles, master first.
func (d *Daemon) Running() []Running {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Running
	if d.master != nil {
		out = append(out, d.mcfg)
	}
	if d.backup != nil {
		out = append(out, d.bcfg)
	}
	return out
}

// RequestTable asks the sync masters of the segment for their whole table (xlvs's table
// request, ipvssync.TableRequest; kernel masters ignore it): an xlvs master whose sync ID
// the request matches sends every connection and template it has. It is sent from the
// backup role's interface and group with the backup's sync ID, or the master's when only
// the master runs. A backup asks by itself when it starts; call this when a director
// needs the table again, e.g. when its VRRP instance enters BACKUP. Without a running
// role it is an error wrapping ErrNotRunning.
func (d *Daemon) RequestTable() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.requestLocked()
}

func (d *Daemon) requestLocked() error {
	var tx *ipvssync.Sender
	var r Running
	switch {
	case d.backup != nil:
		tx, r = d.backup.req, d.bcfg
	case d.master != nil:
		tx, r = d.master.senders[0].tx, d.mcfg // safe beside the master's goroutine: one send, one datagram
	default:
		return fmt.Errorf("sync daemon: no role is %w: start one to ask for the table", ErrNotRunning)
	}
	if err := tx.Send(ipvssync.TableRequest(r.SyncID)); err != nil {
		d.st.reqSendErrs.Add(1)
		return fmt.Errorf("sync daemon: send a table request on %s: %w", r.Ifname, err)
	}
	d.st.reqSent.Add(1)
	d.log.Info("sync daemon asked for the whole table", "mcast_ifn", r.Ifname, "syncid", r.SyncID)
	return nil
}

// SendTable makes the master send its whole table once more, as it does when it hears a
// table request (paced by Options.TableRate; one send at a time, a call during a send
// makes one more follow it, since the peer may have missed what went before); call it when a peer is known to need it, e.g. when this director's VRRP
// instance leaves MASTER. It does not wait. Without a master it is an error wrapping
// ErrNotRunning.
func (d *Daemon) SendTable() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.master == nil {
		return fmt.Errorf("sync daemon: the master sync daemon is %w: no table to send", ErrNotRunning)
	}
	d.master.requestWalk()
	return nil
}

// Ports is the number of sync threads per role.
func (d *Daemon) Ports() int { return d.opts.Ports }
