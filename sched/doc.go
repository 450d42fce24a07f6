// Package sched holds the IPVS schedulers: given a service's destinations in the kernel's
// list order and their connection counts, pick the real server for a new connection.
//
// All fourteen of ipvsadm's schedulers are here, one file each, reproducing the decisions
// of the kernel's net/netfilter/ipvs/ip_vs_<name>.c: rr, wrr, lc, wlc (the default),
// lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf, twos. Integer arithmetic as the kernel's
// (cross-multiplied comparisons such as loh*dw > doh*lw, done in 64 bits), ties to the
// first destination in list order, and the list order is the kernel's: the newest
// destination first (ip_vs_ctl.c adds with list_add_rcu). sh, dh and mh use the kernel's
// hash functions and table fills (hash.go documents the hashes), so a kernel director
// and an xlvs director given the same list choose the same server for the same client.
//
// # Kernel source
//
// The hashing (hash.go) and the reference models of the tests (ref_test.go's refHash32,
// shKey, dhKey, refHsiphash) were written from mainline as carried by
// github.com/intel-lab-lkp/linux, a 2026 tree: net/netfilter/ipvs/ip_vs_sh.c and ip_vs_dh.c
// at commit 80aeb2c77a6c62fa942d8fb1514d54094bfdde15, ip_vs_mh.c at
// 140665014849e6757b5e4c6bcb8c52c58b08eb02, ip_vs_lblcr.c at
// 3338ca7a61d01261a9845328b7c30831da0b4c9d and include/linux/hash.h at
// ab26e4a46c43f9f318d24c5c4d602588ab2f2b2c.
//
// # Availability
//
// A destination takes new connections when its weight is above zero (weight 0 quiesces
// it: existing connections go on, which is the caller's business) and it is not
// overloaded: the kernel's IP_VS_DEST_F_OVERLOAD, set when binding a connection brings
// its ActiveConn+InActConn to the -x upper threshold and cleared when an unbind takes the
// total below the -y lower threshold, or below 3/4 of the upper one when there is no
// lower. The kernel keeps the flag where connections bind and unbind, persistence
// templates' connections included, so the schedulers do not: the Counts implementation
// (conntrack.Table) keeps it and the counts, and the schedulers read both lock-free. A
// destination without -x is never overloaded, and its flag is not read. Each scheduler
// looks at the flag where its kernel counterpart does (lblc's and lblcr's remembered
// servers, for one, are not checked against it).
//
// ActiveConn and InActConn are the kernel's: a TCP connection in SYN_SENT, SYN_RECV,
// SYNACK or ESTABLISHED is active (tcp_state_active_table), any other one inactive, so
// lc, wlc, sed, nq, ovf, twos and the lblc/lblcr busy test see half-open connections as
// active ones. Read from the torvalds/linux mainline source as of 2025 (ip_vs_conn.c of
// 6.16+, ip_vs_proto_tcp.c, ip_vs_ctl.c and the schedulers' files).
//
// When no destination is available Schedule returns -1; the caller drops the packet and
// counts it (the kernel's ip_vs_leave answers with ICMP port unreachable then, not a TCP
// reset — the caller's choice to make).
//
// # Invariants
//
// A Scheduler is built for one immutable list of destinations: the slice passed to New or
// Rebuild must not change afterwards. When the list, a weight, a threshold, the scheduler
// or its flags change, build a new one with Rebuild(previous, ...), which carries over
// what the kernel keeps across an edit (last non-zero weights, the rr and wrr positions,
// the lblc/lblcr tables); New starts from nothing. Schedulers hold no
// pointers per destination: tables are indices and integers.
//
// # Concurrency
//
// A Scheduler is shared by every worker: Schedule is safe for concurrent use, never
// allocates and never takes a lock, so one worker's new connection never waits for
// another's. Shared positions (rr, wrr) advance by atomic add or compare-and-swap; the
// lblc/lblcr tables are lock-free (locality.go): a writer that would have to wait skips
// its update instead. Counts are read through the Counts interface, lock-free.
//
// # Cost of a decision
//
// O(1): rr, wrr, sh, dh, mh, fo (when no destination is overloaded), twos without
// thresholds (a guide table and a short binary search), lblc with a valid entry.
// O(destinations): lc, wlc, sed, nq, ovf, twos with thresholds, lblc/lblcr on a miss.
package sched
