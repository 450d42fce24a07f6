// Package dataplane forwards the packets the XDP program redirects into AF_XDP sockets.
//
// One worker per queue index owns the AF_XDP socket of every managed interface at that
// queue (xsk.Socket is single-owner): it receives a batch from each, parses, looks the
// flow up in the shared connection table, schedules a real server on a miss, rewrites
// (NAT: destination to the real server, replies' source back to VIP:port, TTL decremented;
// DR: only the MACs, towards the real server; TUN: an IPIP / ip6ip6 header written into
// the frame's headroom, from the director's address on the egress route, or ICMP
// fragmentation-needed / Packet Too Big back to the client when the encapsulated packet
// would exceed the path MTU), and queues the
// frame for transmit on the egress interface's socket — in place when the egress is the
// ingress interface, copied into the other socket's UMEM otherwise (asavie/xdp has no
// shared UMEM). Then it flushes the TX batches, reclaims completions and refills.
// Grouping an interface pair's sockets under one worker is what makes two-armed NAT
// lock-free: the egress socket at the same queue index belongs to the same goroutine.
//
// Configuration reaches workers as an immutable *Snapshot behind an atomic.Pointer, read
// once per batch. Routes and neighbours reach them the same way as an immutable *FIB that
// a netlink watcher rebuilds when the kernel's tables, links or addresses change; a packet
// whose next hop has no neighbour entry asks the watcher to resolve it and is held (a
// bounded queue, as the kernel's unres_qlen) until it resolves or times out.
//
// DR and TUN connections have no reply key: their real server is found by the entry's
// destination ID in the snapshot; a destination that no longer exists means drop
// (IPVS's expire_nodest_conn=0).
//
// The per-packet path allocates nothing, takes no lock of its own (the connection table's
// shard lock is the only one) and never logs: a dropped packet increments a counter by
// reason. Counters are per worker, single writer, summed on read.
package dataplane
