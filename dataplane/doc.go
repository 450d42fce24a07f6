// Package dataplane forwards the packets the XDP program redirects into AF_XDP sockets.
//
// One worker per queue index owns the AF_XDP socket of every managed interface at that
// queue (xsk.Socket is single-owner): it receives a batch from each, parses, looks the
// flow up in the shared connection table, schedules a real server on a miss, rewrites
// (NAT: destination to the real server, replies' source back to VIP:port), and queues the
// frame for transmit on the egress interface's socket — in place when the egress is the
// ingress interface, copied into the other socket's UMEM otherwise (asavie/xdp has no
// shared UMEM). Then it flushes the TX batches, reclaims completions and refills.
// Grouping an interface pair's sockets under one worker is what makes two-armed NAT
// lock-free: the egress socket at the same queue index belongs to the same goroutine.
//
// Configuration reaches workers as an immutable *Snapshot behind an atomic.Pointer, read
// once per batch. Routes and neighbours reach them the same way as an immutable *FIB that
// a netlink watcher rebuilds when the kernel's tables change; a packet whose next hop has
// no neighbour entry asks the watcher to resolve it and is dropped and counted.
//
// The per-packet path allocates nothing, takes no lock of its own (the connection table's
// shard lock is the only one) and never logs: a dropped packet increments a counter by
// reason. Counters are per worker, single writer, summed on read.
package dataplane
