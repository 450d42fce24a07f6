// Package dataplane forwards the packets the XDP program redirects into AF_XDP sockets.
//
// One worker per queue index owns the AF_XDP socket of every managed interface at that
// queue (xsk.Socket is single-owner): it receives a batch from each, parses, looks the
// flow up in the shared connection table, schedules a real server on a miss, rewrites
// (NAT: destination to the real server, replies' source back to VIP:port, TTL decremented;
// FULLNAT: source to a local address and port of the service, destination to the real
// server, replies' both ends back to VIP:port → client, TTL decremented, the client's
// address and port in the TOA option of a TCP SYN and handshake ACK (fullnat.go);
// DR: the MACs, towards the real server, and the TTL; TUN: the TTL, then an IPIP / ip6ip6
// header written into the frame's headroom, from the director's address on the egress route, or ICMP
// fragmentation-needed / Packet Too Big back to the client when the encapsulated packet
// would exceed the path MTU; every method takes one off a client packet's TTL / hop
// limit and answers TTL <= 1 with ICMP time exceeded, as IPVS's decrement_ttl), and
// queues the
// frame for transmit on the egress interface's socket — in place when the egress is the
// ingress interface, copied into the other socket's UMEM otherwise (asavie/xdp has no
// shared UMEM). Then it flushes the TX batches, reclaims completions and refills.
// Grouping an interface pair's sockets under one worker is what makes two-armed NAT
// lock-free: the egress socket at the same queue index belongs to the same goroutine.
// So every managed interface has the same number of queues (New refuses others with a
// *QueueMismatchError): a worker without a socket on the egress interface could only drop.
// A connection's request and reply may arrive on different queues, so at different
// workers: both of its keys are in the shared table (in the client's shard).
//
// Frames arrive only through the XDP program, which takes a frame only when its
// destination MAC is the interface's own, its bridge's, or that of a macvlan (a VRRP
// virtual MAC) or VLAN on top of it; macs.go gives each program that set when it
// attaches and again whenever links change (through the route watcher), so the workers
// do not check the destination MAC again.
//
// Configuration reaches workers as an immutable *Snapshot behind an atomic.Pointer, read
// once per batch. Routes and neighbours reach them the same way as an immutable *FIB that
// a netlink watcher rebuilds when the kernel's tables, links or addresses change; a packet
// whose next hop has no neighbour entry asks the watcher to resolve it and is held (a
// bounded queue, as the kernel's unres_qlen) until it resolves or times out.
//
// ICMP errors (icmp.go) about a tracked connection are forwarded to the other party: from
// the client side to the real server (NAT: outer destination and quoted source
// translated; FULLNAT: outer source and destination, the whole quote; DR: unchanged;
// TUN: encapsulated), from a NAT or FULLNAT real server's side to the client (outer
// source and quoted destination become VIP:port; FULLNAT: the outer destination and
// quoted source become the client's), checksums recomputed;
// the connection is found with conntrack.Table.Get, so an error never moves TCP state.
// A new connection for which the scheduler finds no real server is answered with ICMP
// (ICMPv6) port unreachable, as IPVS's ip_vs_leave does, and counted as no_dest. The
// ICMP errors the director writes itself (that one, and fragmentation needed before a
// tunnel) are limited per worker by a token bucket (ratelimit.go; Config.ICMPRate,
// ICMPBurst: 1000 per second in bursts of 50, as the kernel's icmp_msgs_per_sec and
// icmp_msgs_burst); the excess is not sent and is counted (icmp_ratelimited).
//
// Fragments (frag.go): a first fragment is scheduled like any packet and its decision is
// noted in the worker's bounded fragment table under (source, destination,
// identification, protocol); later fragments, which carry no ports, follow the note or
// are counted (fragment) and dropped. The table is per worker, so a datagram's fragments
// must arrive on one receive queue: true on single-queue interfaces (veth) and with RSS
// hashing on addresses only, which is what NICs do for fragments (they have no ports to
// hash) — but a NIC hashing the first fragment by ports and later ones by addresses can
// split a datagram across queues; xlvs then drops the later fragments (configure RSS on
// addresses for UDP, or run one queue). Fragments are not reassembled.
//
// DR and TUN connections have no reply key: their real server is found by the entry's
// destination ID in the snapshot; a destination that no longer exists means drop
// (IPVS's expire_nodest_conn=0).
//
// FULLNAT local ports (fullnat.go): a new connection's local endpoint (LIP, lport) must
// lie in the connection-table shard of its client endpoint, and its reply tuple must be
// unused. Publish builds, once per local address, an index of the address's ports
// 1024..65535 by shard, with a cursor per worker and shard: a worker hands out the
// client's shard's ports in turn (the least recently used first), tries random ones
// after a port in use, lets Insert refuse tuples in use (bounded tries), round robin over
// the service's local addresses, one skipped every laddrSkipEvery connections so that
// they do not stay in step with rr's real servers. A batch's new connections draw their
// first endpoint after the batch's lookup, before any insert, and prefetch their reply
// keys' homes and, for TOA, their frames' headroom (predrawFullNAT). Failures are
// counted: no_laddr (no local address), no_lport (no free port; also the local
// address's conflict counter, LaddrConflicts).
//
// A packet is a pktDesc (worker.go): the ingress port, descriptor and frame bytes, the
// parse, its connection lookup and entry, and the batch's snapshot, FIB and clock, in
// the worker's per-batch array and passed by pointer from stage to stage (katran's
// packet_description); the worker keeps no per-packet data in its own fields. A packet
// leaves by one of two exits: drop(pkt, reason), which counts the reason and releases
// the frame, or transmit, which puts the frame on the egress port's TX batch (in place
// on the ingress port, else copied into the egress socket's UMEM and released); hold
// keeps it until its next hop resolves, then one of the two. No other code frees a
// packet's frame, so the worker knows which frames it owns: a panic recovered in
// worker.loop returns them (reclaim) and counts the panic; those packets are counted by
// the panic, not by a drop reason.
//
// A receive batch is handled in two passes (worker.go, handleBatch): parse and classify
// every frame, look all their connections up with one conntrack.Table.LookupBatch (one
// shard lock per run of a shard's packets; overlapped cache misses on large tables) and
// prefetch what the new connections' inserts will touch, then forward each packet in
// order; a packet whose lookup missed is looked up again when a connection made earlier
// in the batch may be its own. Routes and neighbours are read through a per-worker
// next-hop cache (nexthop.go) tied to the FIB's generation, services and NAT real
// servers through pointer-free open-addressing tables (keytab.go), and flow counters
// are gathered per batch and added to the shared ones when it ends (stats.go). The
// packets of a connection that follow one of their own in the batch (a stream's burst)
// are forwarded as a run (flowrun.go): TTL, the flow's precomputed rewrite or tunnel
// header, counts and the first packet's next hop, nothing else per packet. Such a packet
// is also classified without Parse (packet.ParseRepeat: the headers of the packet before
// but for the IP length and the TCP flags) and looked up as a conntrack Repeat, which
// costs next to nothing when it changes nothing (Shared).
//
// The XDP fast path (fastpath.go, Config.FastPath): established NAT, FULLNAT, DR and TUN
// connections (SCTP too, through NAT and FULLNAT with the CRC32c updated for the new
// ports) are handed to the XDP program, which then forwards their packets itself;
// workers only offer them (a bounded per-worker queue, never waiting), one goroutine
// installs them and sweeps the map back into the connection table (timers) and the
// counters. Every packet that changes a connection's state still reaches a worker.
//
// The per-packet path allocates nothing, takes no lock of its own (the connection table's
// shard lock is the only one) and never logs: a dropped packet increments a counter by
// reason. Counters are per worker, single writer, summed on read.
package dataplane
