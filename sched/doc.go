// Package sched holds the IPVS schedulers: given a service's destinations in the kernel's
// list order and their connection counts, pick the real server for a new connection.
//
// Each algorithm lives in its own file and reproduces the decisions of the kernel's
// net/netfilter/ipvs/ip_vs_<name>.c: integer arithmetic, ties to the first destination
// in list order, weight 0 meaning "quiesced" (no new connections).
//
// A Scheduler is built for one immutable list of destinations (New is called again
// whenever the list or a weight changes, as the kernel calls update_service) and is then
// shared by every worker: Schedule is safe for concurrent use, never allocates and never
// takes a lock, so one worker's new connection never waits for another's packet.
// Connection counts come from the caller (conntrack) through Counts.
package sched
