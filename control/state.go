package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"xlvs/control/api"
	"xlvs/control/ipvsadm"
)

// DefaultStatePath is where xlvsd keeps its rule set unless told otherwise.
const DefaultStatePath = "/var/lib/xlvs/state.json"

// stateVersion is the state file's format version.
const stateVersion = 1

// stateFile is the saved rule set: every service and destination with its settings
// (destinations in the kernel's list order, newest first), the FULLNAT local addresses
// (each naming its service, in the order added), the timeouts and the running sync
// daemons as they were started (master first), and the firewall-mark rules in list
// order. LocalAddrs, Daemons and Marks were added within version 1: older files have
// none.
type stateFile struct {
	Version    int              `json:"version"`
	Saved      time.Time        `json:"saved"`
	Services   []api.Service    `json:"services"`
	LocalAddrs []api.LocalAddr  `json:"laddrs,omitempty"`
	Marks      []api.MarkRule   `json:"marks,omitempty"`
	Timeouts   api.Timeouts     `json:"timeouts"`
	Daemons    []api.SyncDaemon `json:"daemons,omitempty"`
}

func (r *rules) toState(daemons []api.SyncDaemon) *stateFile {
	st := &stateFile{Version: stateVersion, Saved: time.Now().UTC(), Timeouts: r.timeouts, Services: []api.Service{}, Daemons: daemons, Marks: cloneMarks(r.marks)}
	for _, s := range r.services {
		svc := s.cfg
		svc.Dests = nil
		for _, d := range s.dests {
			svc.Dests = append(svc.Dests, d.cfg)
		}
		st.Services = append(st.Services, svc)
		for _, l := range s.laddrs {
			st.LocalAddrs = append(st.LocalAddrs, api.LocalAddr{Service: s.cfg.ServiceKey, Addr: l.cfg.Addr, Ifname: l.cfg.Ifname})
		}
	}
	return st
}

// saveState writes the rules to path atomically: a temporary file in the same directory,
// fsync, rename over path, fsync of the directory. A crash leaves the old or the new file.
func saveState(path string, r *rules, daemons []api.SyncDaemon) error {
	b, err := json.MarshalIndent(r.toState(daemons), "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".state-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// stateBatch turns a saved rule set into one restore request: services, then their
// destinations oldest first (each add goes to the head of the list, so the saved order
// comes back), then the local addresses in their order, then the timeouts.
func stateBatch(st *stateFile) *api.Request {
	req := &api.Request{Op: api.OpRestore}
	line := 0
	add := func(r api.Request) {
		line++
		r.Line = line
		req.Batch = append(req.Batch, r)
	}
	for i := range st.Services {
		svc := st.Services[i]
		dests := svc.Dests
		svc.Dests, svc.Stats = nil, api.Stats{}
		s := svc
		add(api.Request{Op: api.OpAddService, Service: &s})
		for j := len(dests) - 1; j >= 0; j-- {
			d := dests[j]
			d.ActiveConns, d.InactConns, d.PersistConns, d.Stats = 0, 0, 0, api.Stats{}
			key := api.Service{ServiceKey: svc.ServiceKey}
			add(api.Request{Op: api.OpAddDest, Service: &key, Dest: &d})
		}
	}
	for i := range st.LocalAddrs {
		la := st.LocalAddrs[i]
		la.Conns, la.PortConflicts = 0, 0
		key := api.Service{ServiceKey: la.Service}
		add(api.Request{Op: api.OpAddLocalAddr, Service: &key, LocalAddr: &la})
	}
	for i := range st.Marks {
		m := st.Marks[i]
		add(api.Request{Op: api.OpAddMark, Mark: &m})
	}
	t := st.Timeouts
	add(api.Request{Op: api.OpSetTimeouts, Timeouts: &t})
	return req
}

// RestoreState loads the rule set saved at path, replacing the current rules atomically.
// A missing file is not an error (first start): it reports false.
func (d *Daemon) RestoreState(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read state %s: %w", path, err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return false, fmt.Errorf("read state %s: %w (fix or remove the file; xlvsd rewrites it on the next change)", path, err)
	}
	if st.Version != stateVersion {
		return false, fmt.Errorf("read state %s: format version %d, this xlvsd reads version %d", path, st.Version, stateVersion)
	}
	batch := stateBatch(&st)
	batch.Batch = append([]api.Request{{Op: api.OpClear}}, batch.Batch...)
	if e := d.change(batch); e != nil {
		return false, fmt.Errorf("restore state %s: %s", path, e.Message)
	}
	// The sync daemons come back too. One that cannot start (its interface gone, say)
	// does not keep the rules from serving: it is logged, and left out of the state file
	// from the next change on.
	if len(st.Daemons) > 0 {
		if err := d.StartSyncDaemons(st.Daemons); err != nil {
			d.log.Error("restore state: sync daemon not restored", "path", path, "err", err)
		}
	}
	return true, nil
}

// LoadConfig applies a rules file in ipvsadm's -S format (what `xlvsadm -S` prints),
// replacing the current rules atomically; a bad line changes nothing and is named.
func (d *Daemon) LoadConfig(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	req, err := ipvsadm.ParseRules(f)
	if err != nil {
		return fmt.Errorf("load config %s: %w", path, err)
	}
	req.Batch = append([]api.Request{{Op: api.OpClear}}, req.Batch...)
	if resp := d.Handle(context.Background(), req); resp.Error != nil {
		return fmt.Errorf("load config %s: %s", path, resp.Error.Message)
	}
	return nil
}
