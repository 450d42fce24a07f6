// Package syncd is xlvs's connection sync daemon: IPVS's master and backup sync threads
// (ipvsadm --start-daemon master|backup), wire-compatible with the kernel's, so an xlvs
// director can hand its connections to another xlvs director or to a kernel IPVS one, and
// take theirs.
//
// # Roles
//
// A Daemon runs a master, a backup, or both at once (one of each at most, as the kernel):
//
//   - Master: the dataplane's workers queue the connections (and persistence templates)
//     IPVS's sync rules pick (conntrack.SyncPolicy); one goroutine drains that queue every
//     PollInterval, turns each entry into a version 1 sync entry and adds it to the message
//     of one of Ports sending sockets (socket i sends to the group on Port+i), chosen by a
//     hash of the client address and port so that the updates of one connection stay in
//     order. A message is sent when the next entry does not fit, and a partial one once
//     its oldest entry is FlushTime old (the kernel's IPVS_SYNC_FLUSH_TIME, 2 s).
//   - Backup: one receiving socket per port, one goroutine each; every datagram is checked
//     and decoded all or nothing (ipvssync.Decode), filtered by sync ID as the kernel's
//     backup does (a backup whose sync ID is not 0 drops the messages of another), and
//     each entry is applied to the dataplane without scheduling (Dataplane.ApplySync).
//
// Every message, entry and drop is counted (Stats), with the reason of each drop.
//
// # Whole-table exchange (xlvs only)
//
// A kernel master sends a connection only when its packets make it, so a director that
// (re)joins never learns the idle ones. xlvs adds a table request (ipvssync.TableRequest:
// a version 1 message with no entry and an xlvs trailer, which kernel backups ignore):
//
//   - a backup that starts sends one, with its sync ID; RequestTable sends another (xlvsd
//     does when its VRRP instance enters BACKUP);
//   - a master listens for them on its own socket on the group's first port (a backup role
//     on the same director gets its own copy of every datagram) and answers one for its
//     sync ID, or for any (0), by walking its dataplane's tables (Dataplane.WalkSync) into
//     the usual messages, paced to Options.TableRate messages a second and draining the
//     workers' queues as it goes; SendTable starts the same send unasked (xlvsd does when
//     its VRRP instance leaves MASTER). Requests pending when a send starts are answered
//     by it; one heard during a send makes one more follow (its asker may have missed
//     the entries already sent).
//
// Entries carry no version: a table sent later than an update of the same connection
// (from the other director) restores the older state, until the connection's next update.
//
// # Reference
//
// Behaviour follows net/netfilter/ipvs/ip_vs_sync.c of codesnas/linux-6.18.y at commit
// 33ef1e6ac01f0ac6e67e0ed1324ee25def174c4e (start_sync_thread, stop_sync_thread,
// ip_vs_process_message, ip_vs_proc_sync_conn, sync_thread_master, next_sync_buff) and
// the sync sysctls' handlers of net/netfilter/ipvs/ip_vs_ctl.c of intel-lab-lkp/linux at
// commit 08edf79843c2f642c0ee77bbaecc8bfa9b7037df; facts were carried over, not code:
//
//   - starting a role already running is EEXIST, stopping one not running ESRCH;
//     libipvs (ipvsadm 1.31, libipvs/libipvs.c) prints them "Daemon has already run" and
//     "No daemon is running";
//   - the number of sync threads (sync_ports, a power of two) is clamped to 1..64
//     (IPVS_SYNC_PORTS_MAX) when the first role starts; the second role uses the same;
//   - a master computes its message size from 1500 whatever its interface's MTU, a backup
//     from its interface's MTU (ipvssync.MaxLen);
//   - a backup drops a message shorter than its header, or whose size field differs from
//     the datagram's length, then one of another sync ID (when its own is not 0), then
//     decodes; an entry of an unknown protocol, or in a state at or past the protocol's
//     last (a template: at or past IP_VS_CTPL_S_LAST, 2), is skipped alone;
//   - the connection flags a kernel master sends: the destination's forwarding method,
//     IP_VS_CONN_F_NOOUTPUT for every method but masquerading, IP_VS_CONN_F_INACTIVE
//     while the connection is not in an active state (templates always), and
//     IP_VS_CONN_F_TEMPLATE for templates.
//
// # Invariants
//
// Nothing waits on the dataplane's behalf: the workers' queues are bounded and a full one
// drops (counted), and a master's send waits at most SendTries × SendWait. A datagram is
// applied all or nothing. Errors name no command-line option (xlvsadm adds those).
//
// # Differences from the kernel
//
// The kernel's master waits for room in a full socket buffer as long as it takes; xlvs
// waits at most SendTries × SendWait and then drops the message, counted. The kernel
// discards the messages still queued when a master stops; xlvs sends them once (without
// waiting). A backup applies nothing of a datagram that does not decode as a whole (the
// kernel applies the entries before a malformed one). Sequence-number options and
// persistence-engine data are accepted and ignored (xlvs has no application helpers and
// no sip engine): such entries are applied without them and counted. Entries of a
// forwarding method xlvs does not have (local node, bypass) are skipped and counted.
//
// # Concurrency
//
// Start, Stop, Running and Stats may be called from any goroutine. The master goroutine is
// the dataplane's only DrainSync consumer.
package syncd
