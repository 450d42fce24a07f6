package conntrack

import "time"

// SyncPolicy is IPVS's connection-sync tuning (the sync_* sysctls of
// net/netfilter/ipvs, ip_vs_sync_conn_needed): which packets of a connection make a sync
// master send it. Table.SetSync turns it on.
type SyncPolicy struct {
	// Threshold and Period are sync_threshold's two values (default 3 50): a connection is
	// sent when its count of incoming packets modulo Period equals Threshold. Period 0:
	// sent once, at the Threshold-th packet (or, with RefreshPeriod, by RefreshPeriod).
	Threshold, Period int
	// RefreshPeriod is sync_refresh_period (default 0: off): a connection whose state did
	// not change is sent again only once the timer it was last sent with is more than
	// min(RefreshPeriod, max(timeout/2, 10 s)) from the one it has now.
	RefreshPeriod time.Duration
	// Retries is sync_retries (0..3, default 0): with RefreshPeriod, how many times an
	// unchanged connection is sent again, RefreshPeriod/8 apart.
	Retries int
}

// DefaultSyncPolicy is the kernel's defaults: sync_threshold 3 50, sync_refresh_period 0,
// sync_retries 0.
func DefaultSyncPolicy() SyncPolicy { return SyncPolicy{Threshold: 3, Period: 50} }

// Active tells whether IPVS counts a connection in state s as active (ActiveConn: the TCP
// states of tcp_state_active_table) rather than inactive (InActConn, UDP included).
func (s State) Active() bool { return s < numStates && activeState[s] }
