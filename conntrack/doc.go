// Package conntrack is xlvs's connection table: IPVS-grade connection
// tracking that the AF_XDP workers consult for every packet.
//
// # Semantics (IPVS's, from net/netfilter/ipvs)
//
// A connection is created by Insert after the caller scheduled its first
// packet. TCP connections may only be created by a SYN without RST (any
// packet without RST with Config.SloppyTCP); MayCreate tells. The first
// packet is applied to state NONE, so a SYN gives SYN_RECV.
//
// Lookup applies each packet's TCP flags to IPVS's state tables: INPUT and
// OUTPUT for NAT and FULLNAT (whose replies pass the director), INPUT-ONLY
// for DR and TUN (IP_VS_CONN_F_NOOUTPUT); Config.SecureTCP selects the
// secure_tcp tables. The event is RST, else SYN, else FIN, else ACK; a packet
// with none of these moves the connection to CLOSE. Every packet restarts the
// timer with the new state's timeout (DefaultTimeouts has IPVS's; UDP has
// one state, shown as "UDP"). A SYN from the client that hits a connection
// in TIME_WAIT or CLOSE (or, with conn_reuse_mode bit 2, a DR/TUN connection
// in FIN_WAIT) removes it and reports Reused, so the caller schedules anew.
// Get reads an entry without treating the read as a packet (for ICMP errors
// about a connection).
//
// SCTP (sctp.go has the kernel source read): the caller passes the packet's
// event chunk type where TCP passes flags; only an INIT creates a connection;
// IPVS's three SCTP tables move its state (INIT1 ... CLOSED, named as ipvsadm
// -L -c prints them), ActiveConn counts it in ESTABLISHED only, its timeouts
// are the kernel's sctp_timeouts (Timeouts.SCTP), and an INIT that finds it
// CLOSED replaces it (Reused).
//
// Per destination the table keeps what IPVS keeps in struct ip_vs_dest,
// read from the torvalds/linux mainline source as of 2025 (ip_vs_conn.c of
// 6.16+, ip_vs_proto_tcp.c, ip_vs_ctl.c; dest.go has the details):
// ActiveConn counts TCP connections in SYN_SENT, SYN_RECV, SYNACK and
// ESTABLISHED (tcp_state_active_table), so a half-open connection is
// active, and InActConn every other one, UDP included; Conns reads both
// without locks. The counts change on insert, state change, expiry,
// eviction and removal, always together with the table, so they are exact.
// The overload flag (IP_VS_DEST_F_OVERLOAD) is set by an insert that brings a
// destination's total to its -x and cleared by a removal that takes it below
// -y (3/4 of -x without -y), against the thresholds SetThresholds gives;
// SetThresholds clears it as an edit of the real server would. The
// schedulers read it with Overloaded. The eviction list is a separate
// matter: it holds the entries not in ESTABLISHED, active or not.
//
// Connection sync (sync.go has the kernel source read and the details): a
// sync master's decision and a backup's apply are here; the protocol, the
// daemon and persistence templates are the dataplane's. SetSync(policy) makes
// the table a master's: each client packet that Lookup or LookupBatch finds
// (DirOrig) and each Insert counts in the connection's in_pkts and is asked
// ip_vs_sync_conn_needed after its state transition; Entry.Sync carries the
// answer (TCP only in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT and TIME_WAIT,
// at once on a change into one of them but ESTABLISHED, else by
// sync_threshold/period and sync_refresh_period/retries). Replies neither
// count nor sync. Apply is ip_vs_proc_conn for a connection: it creates or
// updates the entry of e.Orig with the state and timeout a master sent, with
// no opener check and no state transition, its count set to the threshold so
// that a takeover continues the master's sequence. Deviations: packets are
// counted only while sync is on; the sync clock ticks every 8 ms (HZ=125
// jiffies); an applied update moves both per-dest counts (the kernel moves
// only ActiveConn there).
//
// Not here (the caller's or later work): rescheduling when a destination's
// weight is 0 (expire_nodest_conn; use RemoveDest when one is deleted),
// persistence templates (and so sync_persist_mode), one-packet scheduling.
//
// # Layout and invariants
//
// The table is split into Config.Shards shards, each with its own lock, its
// own fixed run of 4 KiB pages, which hold its index and its 64-byte records (one
// cache line each), its own list of non-ESTABLISHED entries in the order they entered
// that phase (eviction order), and its own open-addressing index of 32-bit slots
// holding BOTH keys of every entry. Slots carry a ref to the record and direction, the
// key's distance from its home slot and a hash tag. Probing is linear with
// Robin Hood placement: along a run of filled slots the keys' homes never
// decrease, so distances stay short (at full load 99 % of keys lie within
// 11 slots of home) and a search for an absent key stops at the first key
// nearer its home than the probe. Deletion is by backward shift; there are
// no tombstones. A key's tag comes from the hash of the whole key, its home from its
// client-side endpoint alone: an original key's source (origHash), a reply key's
// destination (replyHash), which for NAT is the same client endpoint. A NAT
// connection's two keys so share a home slot, which is known before scheduling has
// chosen the real server, and keys sharing an endpoint share a home (FULLNAT's reply
// keys, when a local endpoint serves several real servers), as IPVS's own table
// buckets a connection by its client endpoint alone. So that one client endpoint
// with connections to many services (or ports of a port-0 or fwmark service) cannot
// make one long run that every insert and lookup near its home walks, Insert refuses
// an original key whose home already holds maxSameHome (256) keys (ErrCrowded): 128
// NAT or 256 DR/TUN connections of one endpoint at once. Keys of other homes do not
// count, however far a run pushes them. An insert walks its home's run once
// (homeScan): whether either key of the connection is held, how many keys the home
// has, and where its run ends, which is where the original key goes, NAT's reply key
// in the slot after it.
//
// Pages. Each page of a shard holds 8 lines of index (128 slots) and then 56
// records; record refs count the lines of the shard's pages (a page's first 8 refs
// are its index lines and never records), and index slot i is in page i/128. An
// insert takes its record from the page of its original key's home slot when that
// page has a free one (a free-bit word per page, and a summary bit per page to find
// another page when it has none). On this project's VM a random access costs its 4
// KiB page, not its line (BENCHMARKS.md, "A random access costs its 4 KiB page"): a
// lookup of either direction of an IPv4 NAT connection reads its index window and
// its record within one page.
//
// A record holds all a lookup reads or writes for an IPv4 connection: its
// four addresses as 4-byte IPv4 addresses (when all of them are
// IPv4-mapped: "v4 form"), the four ports, expiry, state, protocol, method
// and the caller's flags in one word, destination, service and the
// eviction-list links; a lookup of either direction, its state change and
// its copy-out touch that one line. An entry with any IPv6 address ("v6
// form") keeps its original addresses in the record and its reply
// addresses in an array of 32-byte cold parts, one per record (dense), which
// only v6-form NAT and FULLNAT entries read (so their lookups touch two
// pages). Beside the pages, each shard has an array of 8-byte sync slots, one
// per record (a connection's in_pkts, old_state and sync_endtime): only a sync
// master's lookups and inserts, Apply, and an Insert into a shard whose
// slots were once used touch it, so a director that is neither master nor
// backup never does. Nothing in the table holds a pointer, so the garbage
// collector never scans it, and New allocates everything: Lookup,
// LookupBatch, Insert, Apply, Reap, RemoveDest, Walk, Stats and SetTimeouts
// allocate nothing.
//
// The pages of all shards (from a 4 KiB boundary), and their cold arrays, sync
// arrays and free words (64-byte aligned), are carved from one arena. An arena of 2 MiB or more (tables above about 19 000 entries) is an
// anonymous mapping outside the Go heap, aligned to 2 MiB and advised
// MADV_HUGEPAGE, so that random accesses to a large table do not also miss
// the TLB each time; smaller arenas, and any the kernel refuses to map, come
// from the Go heap. Pages are faulted in on first use, as heap pages are,
// unless Config.Prefault makes them all resident in New (xlvsd does: a table
// faulted in by its first connections costs a starting director its first
// second of traffic).
// Close unmaps the arena; a table dropped without Close is unmapped once
// the garbage collector finds it unreachable.
//
// Both keys of a connection live in the same shard, so one lock covers both
// directions. The shard is chosen from the client endpoint:
// ShardOf(Orig.Src, Orig.SrcPort) for the original key and
// ShardOf(Reply.Dst, Reply.DstPort) for the reply key; Insert refuses a
// connection whose two endpoints fall in different shards. For NAT both are
// the client. FULLNAT must choose its local port lport so that
// ShardOf(localAddr, lport) == ShardOf(client, cport): about one port in
// Shards qualifies.
//
// Capacity is split evenly over the shards, so MaxEntries is a hard cap but a
// shard can fill a little before the whole table does (with 64 shards of a
// 1M table, the first shard fills at about 98 % of MaxEntries). A full shard
// makes room by removing its oldest non-ESTABLISHED entry (counted as
// expired if its timer already ran out, else as evicted); if every entry is
// ESTABLISHED, Insert returns ErrFull.
//
// Hashes (shard choice, index home and tag) are keyed with random words
// drawn in New, so senders cannot aim at one shard or one index cluster; a
// nonlinear finalizer keeps sequential ports of one client spread evenly.
//
// Time is the caller's monotonic clock in nanoseconds (workers read it once
// per batch). The table keeps expiry in a wrapping millisecond clock: timers
// have 1 ms resolution, and an entry must be looked up, refreshed or reaped
// within 24 days of its expiry (any regular Reap guarantees it). Lookup and
// Insert treat an expired entry as absent and remove it on the spot; Reap
// removes the rest incrementally.
//
// # Batches and prefetching
//
// LookupBatch first hashes every key of a batch and notes where its probe
// starts: its home slot, the first of a window of 16 slots (two index lines,
// or one when the home starts a line; cut at the end of its page's index) that
// holds nearly every key.
// A query with the key and direction of the one before it (a flow's burst)
// takes that one's hash and, when that one was found, its record and entry:
// it neither searches the index nor copies the record out, since under one
// hold of the shard's lock nothing of a record changes but its state and
// timer. Then, in stages, it prefetches every query's index window; reads
// each window, without any lock, to find the slot most likely to be its
// key's and prefetches that record (and its cold part for an IPv6 key, its
// sync slot on a sync master); for the few keys whose window ended inside
// their run (past their page's index end, or 16 slots or more from home), it
// prefetches and reads the window after it; and only then does the lookups in the
// batch's order, exactly as Lookup does them, holding a shard's lock once for
// each run of consecutive queries of that shard. Under the lock the
// prefetched record is compared with the key before the index is probed.
// The first two stages are short loops of independent accesses, whose misses
// overlap one another; software-pipelining them between the lookups (as
// before 2026-12-07) hid far less on this project's VM once a table outgrew
// the TLB's reach (batch.go, lookupStaged). The
// lock-free reads are in assembly (amd64; elsewhere there is no
// prefetching): they are outside Go's memory model and what the race
// detector sees, aligned 32-bit loads are atomic on x86, and their values
// only choose which lines to prefetch and which record to compare first
// under the lock (a record in use that holds the key is its entry; any other
// falls back to the probe), so a stale value costs a cache miss and a
// compare, never a wrong result. Tables under 8 MiB stay in the CPU caches and skip
// all prefetching. Lookup prefetches its home slot before it locks; Insert
// prefetches its keys' home slots, the record it will most likely take (the first
// free one of the home slot's page), that record's cold part when the entry will have
// one (NAT and FULLNAT in v6 form: the cold parts lie outside the page, another page
// walk and line), and the list tail it will link to (reading the page's free word and
// the shard's tail the same lock-free way). PrefetchInsert and PrefetchEntry let a caller
// start those misses for a whole batch of new connections before it
// inserts any; PrefetchEntry, given the scheduled entry, also covers the
// reply key's slot, which is known only after scheduling; PrefetchReplyHome covers a
// FULLNAT reply key's slot as soon as its local endpoint is drawn, before scheduling
// (the slot depends on that endpoint alone), and Scratch.Made tells whether a batch
// found any connection to insert. LookupBatch does
// PrefetchInsert's work itself for each query it finds missing (a new
// connection; a NAT reply key's slot is in the line of its home, which the lookup
// read; an IPv6 key's cold part is prefetched whatever the method, which the table
// does not know yet), and keeps each query's key hash and shard in the Query:
// InsertQuery is Insert for a looked-up query's connection that reuses them
// (its outcome is Insert's; insertquery_test.go checks it). LookupBatch's working
// memory (the hashes, shards, home slots and guesses of up to 64 keys, about 2 KiB)
// is a Scratch: LookupBatch zeroes one on its stack per call, LookupBatchIn takes the
// caller's, left in any state (a worker keeps one from batch to batch); every field is
// written before it is read, which TestLookupBatchMatchesLookup checks with a Scratch
// of random bytes.
//
// # Concurrency
//
// All methods but Close are safe for concurrent use. Lookup and Insert lock
// the one shard of the packet's client endpoint, so a NAT reply may be
// handled on another worker than its request. A shard's lock (lock.go) is
// taken with a compare-and-swap and, on amd64, released with a plain store
// (x86 orders it after the holder's loads and stores), not with sync.Mutex's
// locked add, which waits for the insert's stores into lines still on their
// way from memory; a waiter polls and yields, never parks. The shard's entry
// count is written the same way under the lock and read with atomic loads. Len and Conns are lock-free
// atomic reads. Reap, RemoveDest, Walk and Stats lock one shard at a time,
// for a bounded chunk of slots (Walk copies a whole shard under one hold so
// each shard is seen at one instant, then calls its callback with no lock
// held; the callback may use the table but not call Walk). SetTimeouts
// stores each state's value atomically; entries use a new value from their
// next packet. SetSync stores the policy atomically and lookups read it
// without locks; Apply locks the connection's shard as Insert does. Close
// must not run concurrently with any other method (stop the workers
// first); afterwards the table is empty and Insert returns ErrClosed.
//
// # Memory and speed
//
// Memory per entry of capacity, all reserved by New: 76.8 of pages (a
// record and 9.6 of index at load 5/6 when full, and the records a page has
// beyond that), 33.6 cold parts and 8.4 sync slots (one of each per record of
// the pages; dense maps a record to its place), 0.15 free words, 1.5 Walk
// buffer (one shard of 64), plus the per-dest counts: 120.88 bytes, bounded by
// EntryBytes. The cold parts are touched only by v6-form NAT and FULLNAT
// entries and the sync array only when used (or by Config.Prefault), so
// their pages are faulted in only then.
//
// The benchmarks (bench_test.go; BenchmarkLookupLatency, BenchmarkInsertBatch,
// BenchmarkMemoryLatency with -conntrack.10m for the 10M-entry table and the
// memory floor) and their results are in the repository's BENCHMARKS.md
// ("Connection table"). A large table's lookups are bound by the page they
// read (its translation), which LookupBatch overlaps. Steering packets
// to workers by shard (ShardOf of the client endpoint, which is also a
// reply's destination) would keep shard locks and records in one core's
// cache (BenchmarkLookupParallelOwnShards).
package conntrack
