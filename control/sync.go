package control

import (
	"errors"
	"fmt"
	"net/netip"

	"xlvs/control/api"
	"xlvs/control/ipvssync"
	"xlvs/control/syncd"
	"xlvs/dataplane"
)

// The connection-sync daemon (ipvsadm --start-daemon, --stop-daemon, --list --daemon):
// control/syncd does the work; this file answers the API, keeps the daemons in the state
// file and reports their counters.

// syncConfig turns an API request into the sync daemon's configuration.
func syncConfig(sd *api.SyncDaemon) (syncd.Config, *api.Error) {
	role, err := syncd.ParseRole(sd.State)
	if err != nil {
		return syncd.Config{}, apiErr(api.ErrCodeInvalid, "%v", err)
	}
	cfg := syncd.Config{
		Role:   role,
		Sock:   ipvssync.Config{Ifname: sd.Interface, Port: int(sd.Port), TTL: int(sd.TTL)},
		SyncID: sd.SyncID,
		MaxLen: sd.MaxLen,
	}
	if sd.Group != "" {
		g, err := netip.ParseAddr(sd.Group)
		if err != nil {
			return cfg, apiErr(api.ErrCodeInvalid, "sync daemon: group %q is not an address: want an IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) multicast group", sd.Group)
		}
		cfg.Sock.Group = g.Unmap()
	}
	return cfg, nil
}

// startDaemon starts a sync role and saves it in the state file.
func (d *Daemon) startDaemon(sd *api.SyncDaemon) *api.Error {
	if sd == nil {
		return apiErr(api.ErrCodeInvalid, "start-daemon: no daemon given (--start-daemon master|backup)")
	}
	cfg, e := syncConfig(sd)
	if e != nil {
		return e
	}
	if err := d.sync.StartFor(cfg, sd.VRRPInstance); err != nil {
		if errors.Is(err, syncd.ErrRunning) {
			return apiErr(api.ErrCodeDaemonExists, "%v", err)
		}
		return apiErr(api.ErrCodeInvalid, "%v", err)
	}
	d.mu.Lock()
	req := *sd
	d.daemons[cfg.Role] = req
	d.saveLocked()
	d.mu.Unlock()
	return nil
}

// stopDaemon stops a sync role and removes it from the state file.
func (d *Daemon) stopDaemon(sd *api.SyncDaemon) *api.Error {
	if sd == nil {
		return apiErr(api.ErrCodeInvalid, "stop-daemon: no daemon given (--stop-daemon master|backup)")
	}
	role, err := syncd.ParseRole(sd.State)
	if err != nil {
		return apiErr(api.ErrCodeInvalid, "%v", err)
	}
	err = d.sync.Stop(role)
	if errors.Is(err, syncd.ErrNotRunning) {
		return apiErr(api.ErrCodeNoDaemon, "%v", err)
	}
	d.mu.Lock()
	delete(d.daemons, role)
	d.saveLocked()
	d.mu.Unlock()
	if err != nil {
		return apiErr(api.ErrCodeInternal, "%v", err)
	}
	return nil
}

// runningDaemons lists the running roles as the kernel reports them: master first, every
// default filled in.
func (d *Daemon) runningDaemons() []api.SyncDaemon {
	var out []api.SyncDaemon
	for _, r := range d.sync.Running() {
		out = append(out, api.SyncDaemon{
			State: r.Role.String(), Interface: r.Ifname, SyncID: r.SyncID, MaxLen: r.MaxLen,
			Group: r.Group.String(), Port: uint16(r.Port), TTL: uint8(r.TTL), VRRPInstance: r.VRRPInstance,
		})
	}
	return out
}

// savedDaemons are the running roles as they were asked for (a maxlen of 0 stays "from
// the MTU"), master first, for the state file. The caller holds d.mu.
func (d *Daemon) savedDaemons() []api.SyncDaemon {
	var out []api.SyncDaemon
	for _, r := range []syncd.Role{syncd.Master, syncd.Backup} {
		if sd, ok := d.daemons[r]; ok {
			out = append(out, sd)
		}
	}
	return out
}

// saveLocked writes the state file; the caller holds d.mu.
func (d *Daemon) saveLocked() {
	if d.statePath == "" {
		return
	}
	if err := saveState(d.statePath, d.r, d.savedDaemons()); err != nil {
		d.log.Error("save state: the change is in effect but will not survive a restart", "path", d.statePath, "err", err)
	}
}

// StartSyncDaemons starts the given roles (from the state file or keepalived.conf); it
// returns the errors of those that do not start, each naming its role.
func (d *Daemon) StartSyncDaemons(ds []api.SyncDaemon) error {
	var errs []error
	for i := range ds {
		if e := d.startDaemon(&ds[i]); e != nil {
			errs = append(errs, fmt.Errorf("start the %s sync daemon on %s: %s", ds[i].State, ds[i].Interface, e.Message))
		}
	}
	return errors.Join(errs...)
}

// CloseSync stops every sync role (at shutdown).
func (d *Daemon) CloseSync() error {
	return d.sync.Close()
}

// syncStats are the sync daemon's counters for --dataplane-stats, one entry per role.
func (d *Daemon) syncStats() []api.QueueStats {
	st := d.sync.Stats()
	m := map[string]uint64{
		"queued": st.Queued, "queue_full": st.QueueFull,
		"messages": st.Messages, "conns": st.Conns, "send_errors": st.SendErrors, "send_waits": st.SendWaits,
		"lag_last_us": uint64(st.LagLast.Microseconds()), "lag_max_us": uint64(st.LagMax.Microseconds()),
		"table_requests_received": st.RequestsReceived, "table_sends": st.TableSends, "table_conns": st.TableConns,
	}
	if st.LagCount > 0 {
		m["lag_mean_us"] = uint64(st.LagSum.Microseconds()) / st.LagCount
	} else {
		m["lag_mean_us"] = 0
	}
	for k, v := range st.Drops {
		m["drop_"+k] = v
	}
	b := map[string]uint64{"received": st.Received, "decoded": st.Decoded, "applied": st.Applied, "recv_errors": st.RecvErrors,
		"table_requests_sent": st.RequestsSent, "table_request_errors": st.RequestSendErrors}
	for k, v := range st.Dropped {
		b["drop_"+k] = v
	}
	for k, v := range st.ApplyErrors {
		b["apply_error_"+k] = v
	}
	for k, v := range st.Ignored {
		b["ignored_"+k] = v
	}
	return []api.QueueStats{{Interface: "master", Queue: -1, Counters: m}, {Interface: "backup", Queue: -1, Counters: b}}
}

// syncApplyReasons are the errors a backup's applies are counted under.
var syncApplyReasons = append([]syncd.ApplyReason{
	{Err: dataplane.ErrSyncNoService, Name: "no_service"},
	{Err: dataplane.ErrSyncNoDest, Name: "no_dest"},
	{Err: dataplane.ErrSyncBadState, Name: "bad_state"},
	{Err: dataplane.ErrSyncNoPersist, Name: "not_persistent"},
}, syncd.DefaultApplyReasons...)
