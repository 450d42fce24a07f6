// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * xlvs XDP classifier.
 *
 * Decides, for every frame that arrives on an interface, whether it belongs
 * to xlvs (redirect it to the AF_XDP socket of its receive queue) or to the
 * kernel (XDP_PASS). It never drops: anything it does not understand, and
 * anything it cannot redirect, goes to the kernel — except a matched frame
 * that finds no socket while a restart hands over (the hold map), which is
 * dropped until the successor's sockets are in, or the hold runs out.
 *
 *   services: (proto, destination address, destination port) of a virtual
 *             service  -> redirect
 *   reals:    (proto, source address, source port) of a real server whose
 *             replies come back through the director (NAT, FULLNAT) -> redirect,
 *             unless the destination is one of the director's own addresses
 *             (locals: its own connections) that is not a FULLNAT local address
 *             (laddrs: FULLNAT replies are addressed to those)
 *   ICMP / ICMPv6 errors (destination unreachable, time exceeded, packet
 *             too big) quoting a TCP/UDP/SCTP packet whose (proto, source, source
 *             port) is in services (from the client side) or whose (proto,
 *             destination, destination port) is in reals (from a NAT or
 *             FULLNAT real server's side; the locals/laddrs rule above applies
 *             to the outer destination) -> redirect
 *   later fragments (no ports): (proto, destination) of a service address or
 *             (proto, source) of a real server address in vaddrs (same
 *             locals/laddrs rule) -> redirect
 *   fastpath: (source, destination, ports, proto) of an established connection
 *             the dataplane installed, checked before everything else -> rewritten
 *             here and sent (XDP_TX on the receiving interface, else redirected
 *             through tx_ports), unless the frame is one the dataplane must see:
 *             VLAN-tagged, SYN/FIN/RST, a fragment, TTL/hop limit <= 1, longer
 *             than the entry's MTU (fast_path); TUN entries push an IPIP / ip6ip6
 *             header (fast_tun)
 *   otherwise XDP_PASS
 * All of this only for a frame addressed to one of the interface's own MACs
 * (macs, when user space filled it): anything else (flooded to this port by a
 * bridge, broadcast, multicast) is the kernel's, which drops what is not its.
 * A services or reals entry with port 0 matches every port of its address
 * (persistent port-0 services) when no entry names the port itself.
 *   fwm_addrs, fwm_ports: the firewall marks xlvs gives packets itself (XDP runs
 *             before iptables' mangle rules): a client's packet whose protocol,
 *             destination and destination port have the mark of a fwmark service
 *             -> redirect (fwmark_match)
 *
 * Every invocation increments exactly one slot of the per-CPU "stats" array;
 * the slot numbers are part of the Go API (bpf/doc.go) and never change.
 */

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual BSD/GPL";

/* Counter slots of the stats map. Append only: the numbers are ABI. */
enum stat_slot {
	STAT_PASSED = 0,          /* parsed, no service or real matched */
	STAT_REDIRECTED = 1,      /* matched and handed to the queue's socket */
	STAT_REDIRECT_FAILED = 2, /* matched, but the queue has no socket: passed */
	STAT_MALFORMED = 3,       /* truncated or invalid headers: passed */
	STAT_FRAGMENT = 4,        /* non-first IP fragment of no service address: passed */
	STAT_NON_IP = 5,          /* neither IPv4 nor IPv6 (ARP, LLDP...): passed */
	STAT_LOCAL_REPLY = 6,     /* a real server answering the director itself: passed */
	STAT_HELD = 7,            /* matched, no socket, during a restart's handoff: dropped */
	STAT_FASTPATH_TX = 8,     /* an established flow rewritten and sent here, or passed to the kernel to forward (fastpath) */
	STAT_OTHER_HOST = 9,      /* destination MAC not one of the interface's (macs): passed */
	STAT__MAX
};

/*
 * Key of the services and reals maps: 20 bytes, no implicit padding.
 * addr holds IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d); port is in network
 * byte order; pad is always zero.
 */
struct svc_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 pad;
};

/* Value of the services and reals maps. flags: reserved, written as 0. */
struct svc_val {
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct svc_key);
	__type(value, struct svc_val);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct svc_key);
	__type(value, struct svc_val);
} reals SEC(".maps");

/*
 * Key of the vaddrs map: 20 bytes, no implicit padding. The addresses of the
 * services (role ADDR_SERVICE) and of the NAT real servers (ADDR_REAL), per
 * protocol, for fragments that carry no ports. pad is always zero.
 */
struct vaddr_key {
	__u8 addr[16];
	__u8 proto;
	__u8 role;
	__u8 pad[2];
};

#define ADDR_SERVICE 1
#define ADDR_REAL 2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct vaddr_key);
	__type(value, struct svc_val);
} vaddrs SEC(".maps");

/*
 * The director's own addresses (IPv4-mapped or IPv6). A real server's packet to one of
 * them answers the director itself (a health check, an operator's curl), not a client:
 * the kernel's, not the dataplane's.
 */
struct addr_key {
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct addr_key);
	__type(value, __u32);
} locals SEC(".maps");

/*
 * FULLNAT local addresses (DPVS's laddrs). They are configured on the director's
 * interface too (so the kernel answers ARP / neighbour discovery for them), hence also
 * in locals; a real server's packet to one of them is a FULLNAT reply, not an answer to
 * the director's own traffic. Consulted before locals.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct addr_key);
	__type(value, __u32);
} laddrs SEC(".maps");

/*
 * Firewall marks (dataplane/fwmark.go compiles them). fwm_addrs holds every prefix
 * of the operator's mark rules: key (protocol, family, destination) with the prefix
 * length in bits over proto, family and addr (16 + 96 + n for an IPv4 /n, 16 + n for
 * an IPv6 /n), value the prefix itself. The longest match is the only prefix that
 * counts: user space gave it the ports of every rule whose prefix contains it.
 * fwm_ports then maps (protocol, family, prefix length, prefix, port) to the mark,
 * port ranges split into aligned blocks (prefix length 8 * 20 + the block's bits);
 * only the ports whose mark has a service are there.
 */
struct fwm_akey {
	__u32 prefixlen;
	__u8 proto;
	__u8 family;
	__u8 addr[16];
	__u8 pad[2];
};

struct fwm_aval {
	__u8 addr[16]; /* the prefix, masked */
	__u8 bits;     /* its length over the 128-bit address */
	__u8 pad[3];
};

struct fwm_pkey {
	__u32 prefixlen;
	__u8 proto;
	__u8 family;
	__u8 bits;
	__u8 pad0; /* always 0 */
	__u8 addr[16];
	__be16 port;
	__u8 pad[2];
};

#define FWM_ADDR_BITS (8 * 2 + 128)
#define FWM_PORT_BITS (8 * 20 + 16)

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fwm_akey);
	__type(value, struct fwm_aval);
} fwm_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fwm_pkey);
	__type(value, __u32);
} fwm_ports SEC(".maps");

/* rx queue index -> AF_XDP socket fd (written by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} xsks SEC(".maps");

/*
 * hold[0]: until when (bpf_ktime_get_ns, CLOCK_MONOTONIC) a frame that matched but finds
 * no socket is dropped instead of passed. A restarting xlvsd sets it before it closes
 * its sockets and its successor takes the program over: NAT connections must not reach
 * the kernel's stack, whose resets would end them. 0 (or a past time): passed, as ever,
 * so a successor that never comes leaves the kernel in charge once it runs out.
 * hold[1]: from when the sockets are no longer used (0: always used). A restarting
 * xlvsd that hands its sockets over sets it with hold[0]: the frames wait in the
 * sockets' RX rings for the successor, and if none takes over in time they go to the
 * kernel again.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} hold SEC(".maps");

/*
 * macs[0]: the destination MACs this instance takes frames for (per Port, like stats):
 * the interface's own address, those of macvlan (a VRRP virtual MAC, keepalived's
 * use_vmac) and VLAN interfaces on top of it, and its bridge's. Each entry is the 6 address bytes followed by
 * two zero bytes, compared as one __u64. n == 0 (a Port loaded but not attached, or
 * not filled yet): every destination is taken, as before the filter existed.
 *
 * Why unicast only: IPVS handles only what the kernel marks PACKET_HOST (its own
 * address as destination MAC). ip_vs_in ignores every other pkt_type ("remote client:
 * only PACKET_HOST", net/netfilter/ipvs/ip_vs_core.c), ip_forward and ip6_forward drop
 * them (so NAT replies never come as broadcast), and ip_rcv_core / ip6_rcv_core drop
 * PACKET_OTHERHOST. The same for IPv4 and IPv6. Broadcast and multicast frames, and
 * unicast frames to another host's MAC, are therefore passed.
 */
#define MAC_MAX 8

struct mac_set {
	__u32 n;
	__u32 pad;
	__u64 mac[MAC_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mac_set);
} macs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* 802.1Q tag, after the outer EtherType. */
struct vlan_tag {
	__be16 tci;
	__be16 encap_proto;
};

/* IPv6 fragment header (RFC 8200 section 4.5). */
struct ip6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | M flag */
	__be32 id;
};

#define ETH_TYPE_VLAN 0x8100
#define IP_OFFSET_MASK 0x1fff
#define IP6_OFFSET_MASK 0xfff8
#define NEXTHDR_FRAGMENT 44
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_TIME_EXCEED 3
#define ICMP_HDR_LEN 8
#define SCTP_HDR_LEN 12 /* common header: ports, verification tag, CRC32c */
#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

static __always_inline int account(__u32 slot, int action)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &slot);

	if (n)
		*n += 1;
	return action;
}

static __always_inline void set_v4(__u8 addr[16], __be32 a)
{
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &a, sizeof(a));
}

static __always_inline int redirect(struct xdp_md *ctx)
{
	/*
	 * With XDP_PASS in the flags, bpf_redirect_map returns XDP_PASS when
	 * the queue has no socket: the return value tells success from
	 * failure without a separate (and racy) lookup of xsks.
	 */
	__u32 zero = 0, one = 1;
	__u64 *until, *socks_until;

	socks_until = bpf_map_lookup_elem(&hold, &one);
	if ((!socks_until || !*socks_until || bpf_ktime_get_ns() < *socks_until) &&
	    bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS) == XDP_REDIRECT)
		return account(STAT_REDIRECTED, XDP_REDIRECT);
	until = bpf_map_lookup_elem(&hold, &zero);
	if (until && bpf_ktime_get_ns() < *until)
		return account(STAT_HELD, XDP_DROP);
	return account(STAT_REDIRECT_FAILED, XDP_PASS);
}

/*
 * A packet from a real server (reals matched) to dst: the dataplane's unless dst is
 * one of the director's own addresses that is not a FULLNAT local address.
 */
static __always_inline int real_reply(struct xdp_md *ctx, __u8 *dst)
{
	if (!bpf_map_lookup_elem(&laddrs, dst) && bpf_map_lookup_elem(&locals, dst))
		return account(STAT_LOCAL_REPLY, XDP_PASS);
	return redirect(ctx);
}

/* A later fragment: ours when its destination is a service address or its
 * source a real server's, for its protocol (then as real_reply says). */
static __always_inline int fragment(struct xdp_md *ctx, struct svc_key *src,
				    struct svc_key *dst, __u8 proto)
{
	struct vaddr_key k = {};

	__builtin_memcpy(k.addr, dst->addr, sizeof(k.addr));
	k.proto = proto;
	k.role = ADDR_SERVICE;
	if (bpf_map_lookup_elem(&vaddrs, &k))
		return redirect(ctx);
	__builtin_memcpy(k.addr, src->addr, sizeof(k.addr));
	k.role = ADDR_REAL;
	if (bpf_map_lookup_elem(&vaddrs, &k))
		return real_reply(ctx, dst->addr);
	return account(STAT_FRAGMENT, XDP_PASS);
}

/*
 * lookup_key: the entry of k in a services or reals map, else the entry of
 * the same address with port 0 (a persistent port-0 service, "every port";
 * its NAT real servers answer from any port). k is left as it was.
 */
static __always_inline void *lookup_key(void *map, struct svc_key *k)
{
	void *v = bpf_map_lookup_elem(map, k);
	__be16 port = k->port;

	if (v || !port)
		return v;
	k->port = 0;
	v = bpf_map_lookup_elem(map, k);
	k->port = port;
	return v;
}

/*
 * fwmark_match: whether the rules give a packet of k's protocol to k's address and
 * port (v6: an IPv6 packet) the mark of a fwmark service.
 */
static __always_inline int fwmark_match(struct svc_key *k, int v6)
{
	struct fwm_akey ak = {};
	struct fwm_pkey pk = {};
	struct fwm_aval *pre;
	__u32 *mark;

	ak.prefixlen = FWM_ADDR_BITS;
	ak.proto = k->proto;
	ak.family = v6 ? 6 : 4;
	__builtin_memcpy(ak.addr, k->addr, sizeof(ak.addr));
	pre = bpf_map_lookup_elem(&fwm_addrs, &ak);
	if (!pre)
		return 0;
	pk.prefixlen = FWM_PORT_BITS;
	pk.proto = k->proto;
	pk.family = ak.family;
	pk.bits = pre->bits;
	__builtin_memcpy(pk.addr, pre->addr, sizeof(pk.addr));
	pk.port = k->port;
	mark = bpf_map_lookup_elem(&fwm_ports, &pk);
	return mark && *mark;
}

/*
 * An ICMP (v4 false) or ICMPv6 message at msg, inside the packet ending at
 * pend: ours when it is an error quoting a TCP/UDP packet sent from a
 * service's VIP:port (from the client side) or to a NAT real server's
 * address:port (from the real server's side).
 */
static __always_inline int icmp_error(struct xdp_md *ctx, void *msg, void *pend,
				      void *end, int v6, struct svc_key *outer_dst)
{
	struct svc_key src = {}, dst = {};
	__u8 *m = msg, proto;
	__be16 *ports;
	void *q;

	if ((void *)(m + ICMP_HDR_LEN) > end || (void *)(m + ICMP_HDR_LEN) > pend)
		return account(STAT_MALFORMED, XDP_PASS);
	q = m + ICMP_HDR_LEN;
	if (!v6) {
		struct iphdr *ip = q;

		if (m[0] != ICMP_DEST_UNREACH && m[0] != ICMP_TIME_EXCEEDED)
			return account(STAT_PASSED, XDP_PASS);
		if ((void *)(ip + 1) > end || (void *)(ip + 1) > pend)
			return account(STAT_PASSED, XDP_PASS);
		if (ip->version != 4 || ip->ihl < 5 ||
		    (ip->frag_off & bpf_htons(IP_OFFSET_MASK)))
			return account(STAT_PASSED, XDP_PASS);
		proto = ip->protocol;
		set_v4(src.addr, ip->saddr);
		set_v4(dst.addr, ip->daddr);
		ports = q + ip->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = q;

		if (m[0] != ICMPV6_DEST_UNREACH && m[0] != ICMPV6_PKT_TOOBIG &&
		    m[0] != ICMPV6_TIME_EXCEED)
			return account(STAT_PASSED, XDP_PASS);
		if ((void *)(ip6 + 1) > end || (void *)(ip6 + 1) > pend)
			return account(STAT_PASSED, XDP_PASS);
		if (ip6->version != 6)
			return account(STAT_PASSED, XDP_PASS);
		proto = ip6->nexthdr;
		__builtin_memcpy(src.addr, &ip6->saddr, sizeof(src.addr));
		__builtin_memcpy(dst.addr, &ip6->daddr, sizeof(dst.addr));
		ports = (void *)(ip6 + 1);
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP)
		return account(STAT_PASSED, XDP_PASS);
	if ((void *)(ports + 2) > end || (void *)(ports + 2) > pend)
		return account(STAT_PASSED, XDP_PASS);
	src.port = ports[0];
	dst.port = ports[1];
	src.proto = proto;
	dst.proto = proto;
	if (lookup_key(&services, &src) || fwmark_match(&src, v6))
		return redirect(ctx);
	if (!lookup_key(&reals, &dst))
		return account(STAT_PASSED, XDP_PASS);
	/* About the director's own packet to a real server (a health check)? */
	return real_reply(ctx, outer_dst->addr);
}

/*
 * The fast path (issue 19). The dataplane installs, for each established NAT, FULLNAT,
 * DR or TUN connection, one entry per direction it forwards: the key is the packet as it
 * arrives (IPv4-mapped or IPv6 addresses, ports in network byte order), the value what the
 * dataplane would do to it. Go stays the authority: it reads the counters and last
 * seen times to refresh its connection table and statistics, and removes entries when
 * the connection leaves ESTABLISHED or goes away. 40-byte key, no implicit padding.
 */
struct fp_key {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

#define FP_DR 0      /* MACs rewritten, TTL decremented (csum_l3: its delta) */
#define FP_NAT_DST 1 /* destination address and port rewritten, TTL decremented */
#define FP_NAT_SRC 2 /* source address and port rewritten, TTL decremented */
#define FP_FULLNAT 3 /* both: source to addr:port, destination to addr2:port2, TTL decremented */
#define FP_TUN 4     /* TTL decremented (csum_l3: its delta), then IPIP / ip6ip6, GUE or GRE from addr to addr2 */

/* FP_TUN's tunnel types (fp_val.tun), without checksums (those stay with the dataplane). */
#define FP_TUN_IPIP 0 /* the outer IP header alone: protocol 4 or 41 */
#define FP_TUN_GUE 1  /* UDP from port2 to port, no checksum, then a 4-byte GUE header */
#define FP_TUN_GRE 2  /* a 4-byte GRE header: no flags, the inner EtherType */

/*
 * FP_F_REDIRECT: back out of the receiving interface through tx_ports too, not XDP_TX.
 * A veth's XDP_TX wakes its peer only when the peer has an XDP program of its own
 * (drivers/net/veth.c, veth_xdp_flush): with NAPI from GRO alone the frames wait in
 * the peer's ring for the next other packet. A redirect (ndo_xdp_xmit) flushes.
 */
#define FP_F_REDIRECT 1

/*
 * FP_F_KERNEL (FP_NAT_DST, FP_NAT_SRC and FP_FULLNAT only): rewrite the addresses, ports
 * and checksums (csum_l3 then covers the address alone), and pass the packet on
 * (XDP_PASS): the director's kernel forwards it as routed, decrementing the TTL, choosing
 * the next hop and its MAC, answering what exceeds the MTU. On a veth, GRO then merges a
 * TCP stream's frames before the forward, which a redirect of each frame does not do.
 */
#define FP_F_KERNEL 2

/*
 * FP_F_TUN_CSUM (FP_TUN with FP_TUN_GUE or FP_TUN_GRE): the tunnel carries a checksum
 * over the inner packet (--tun-csum): GUE's UDP checksum, or GRE's (an 8-byte header, C
 * set). The program sums no payload: the inner packet's sum is its IP header's words and
 * the complement of its pseudo-header's sum (inner_sum), so only TCP and UDP packets with
 * a checksum are taken (others go to the dataplane, which sums the packet).
 */
#define FP_F_TUN_CSUM 4

/*
 * The rewrite of one direction: 104 bytes, no implicit padding. FP_TUN: addr is the outer
 * header's source, addr2 its destination (the real server), of the inner packet's family;
 * tun the tunnel type (FP_TUN_*), and for GUE port the UDP destination port and port2 the
 * source port (the dataplane's, from the flow); mtu bounds the inner packet (the egress
 * MTU less the tunnel's headers). csum_l3 and csum_l4 are RFC 1624 deltas
 * (the one's complement sum of ~old + new over the changed 16-bit words, folded),
 * precomputed by the dataplane from the key and the new address and port: csum_l3
 * for the IPv4 header checksum (the address and the TTL decrement), csum_l4 for the
 * TCP/UDP checksum (the pseudo-header's address and the port). For SCTP (FP_NAT_* and
 * FP_FULLNAT) crc is the CRC32c's term of the port change (sctp_crc_change); csum_l4 is unused.
 * packets, bytes (IP lengths) and last_seen (bpf_ktime_get_ns) are written by the
 * program only.
 */
struct fp_val {
	__u8 dmac[6];
	__u8 smac[6];
	__u32 ifindex; /* egress; the receiving interface: XDP_TX */
	__u8 action;   /* FP_* */
	__u8 flags;    /* FP_F_* */
	__u16 mtu;     /* longer IP packets go to the dataplane */
	__u8 addr[16]; /* the new address (FP_NAT_*) */
	__be16 port;   /* the new port (FP_NAT_*) */
	__u16 csum_l3;
	__u16 csum_l4;
	__u16 tun;    /* FP_TUN: FP_TUN_* */
	__u32 cookie; /* the dataplane's, not read here */
	__u32 crc;    /* SCTP: the CRC32c's term of the ports' change (sctp_crc_change) */
	__u32 pad2;
	__u64 packets;
	__u64 bytes;
	__u64 last_seen;
	__u8 addr2[16]; /* FP_FULLNAT: the new destination address */
	__be16 port2;   /* FP_FULLNAT: the new destination port */
	__u16 pad3[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fp_key);
	__type(value, struct fp_val);
} fastpath SEC(".maps");

/* Egress interfaces of the fast path: ifindex -> ifindex (the managed interfaces). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} tx_ports SEC(".maps");

/*
 * fp_on[0]: non-zero once the dataplane enabled the fast path. An array lookup is
 * inlined by the verifier: the packets of a director without the fast path do not pay
 * for a hash lookup in an empty fastpath map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} fp_on SEC(".maps");

#define IP_MF 0x2000
#define IP_DF 0x4000

/* fold16 folds a 32-bit one's complement sum to 16 bits. */
static __always_inline __u32 fold16(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	return (s & 0xffff) + (s >> 16);
}

/* sum_words adds the n 16-bit words at p to s, as they lie in memory (RFC 1071: the sum
 * is byte-order independent, so a checksum stored from it is in network order). */
static __always_inline __u32 sum_words(const void *p, const int n, __u32 s)
{
	const __u16 *w = p;
	int i;

#pragma unroll
	for (i = 0; i < n; i++)
		s += w[i];
	return s;
}

/* csum_apply returns checksum c (host order) updated by delta (RFC 1624 eqn. 3). */
static __always_inline __u16 csum_apply(__u16 c, __u16 delta)
{
	return (__u16)~fold16((__u32)(__u16)~c + delta);
}

/*
 * sctp_zeros[i] = x^(8i) and sctp_zeros[256 + j] = x^(8*256*j) modulo the CRC32c
 * (Castagnoli) polynomial, bit-reflected (x^0 is bit 31): the effect of i, and of 256*j,
 * zero bytes on a CRC without its inversions. Written by the loader before the program is
 * loaded (bpf.New, from packet.CRCZeroPowers); read-only to the program.
 */
const volatile __u32 sctp_zeros[512] = {};

/* crc_mul returns a times b modulo the CRC32c polynomial, both bit-reflected. */
static __always_inline __u32 crc_mul(__u32 a, __u32 b)
{
	__u32 p = 0;
	int i;

#pragma clang loop unroll_count(8)
	for (i = 31; i >= 0; i--) {
		p ^= b & -((a >> i) & 1);
		b = (b >> 1) ^ (0x82F63B78 & -(b & 1));
	}
	return p;
}

/*
 * sctp_crc_change is what the CRC32c of an SCTP packet of n bytes (12 <= n <= 65535)
 * changes by when its ports change: a CRC without its inversions is linear, so for two
 * packets of one length crc(A) ^ crc(B) is the raw CRC of A ^ B, which here is term (the
 * raw CRC of the 4 bytes of port difference, the dataplane's) followed by n - 4 zero
 * bytes, i.e. term * x^(8(n-4)). The payload is not read, and a wrong checksum stays
 * wrong, as the dataplane's update (packet.SetSCTPPorts) keeps it. A global function:
 * the verifier checks its 64 unrolled steps once, not once for each path into the fast
 * path.
 */
__attribute__((noinline)) __u32 sctp_crc_change(__u32 n, __u32 term)
{
	__u32 z = n - 4;

	return crc_mul(crc_mul(sctp_zeros[z & 0xff], sctp_zeros[256 + ((z >> 8) & 0xff)]), term);
}

/* ip_csum returns the header checksum of the 20-byte IPv4 header ip (RFC 1071), its check
 * field 0, in memory order (sum_words). */
static __always_inline __u16 ip_csum(struct iphdr *ip)
{
	return (__u16)~fold16(sum_words(ip, sizeof(*ip) / 2, 0));
}

/*
 * inner_sum: the one's complement sum (unfolded, memory order) of the whole IP packet at
 * l3 (l3len bytes, transport header at l4, protocol proto), from its headers alone. The
 * IP header's words are summed; the transport segment's sum is the complement of its
 * pseudo-header's (addresses, protocol, length), because a segment whose checksum is
 * right sums with its pseudo-header to -0 (RFC 9293 3.1, RFC 768). A segment whose
 * checksum is wrong thus gets an outer checksum that is wrong too: the real server drops
 * it at the tunnel instead of at TCP or UDP. -1 (the packet goes to the dataplane, which
 * sums it) when there is no such checksum to rely on: SCTP (a CRC), UDP with checksum 0,
 * an IPv4 header with options (summed by the dataplane: its length is not a constant here).
 */
static __always_inline int inner_sum(void *l3, void *l4, void *end, int v6, __u32 l3len,
				     __u8 proto, __u32 *out)
{
	__u32 ps, hs;

	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > end || uh->check == 0)
			return -1;
	} else if (proto != IPPROTO_TCP) {
		return -1;
	}
	if (!v6) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end || ip->ihl != 5)
			return -1;
		hs = sum_words(ip, 10, 0);
		ps = sum_words(&ip->saddr, 4, 0) + bpf_htons(proto) + bpf_htons(l3len - sizeof(*ip));
	} else {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return -1;
		/* The hop limit (>= 2: checked) drops by one on the way: its word does. An
		 * IPv4 header needs no such care: its checksum moves with its TTL. */
		hs = sum_words(ip6, 20, 0) - bpf_htons(1);
		ps = sum_words(&ip6->saddr, 16, 0) + bpf_htons(proto) + bpf_htons(l3len - sizeof(*ip6));
	}
	*out = fold16(hs) + (~fold16(ps) & 0xffff);
	return 0;
}

/*
 * fast_tun: FP_TUN, as the dataplane's tunnel (dataplane/worker.go) and IPVS's
 * ip_vs_tunnel_xmit / ip_vs_tunnel_xmit_v6: the inner TTL (hop limit) drops by one, then an
 * outer header is pushed in front (bpf_xdp_adjust_head) — IPv4: TOS, DF and the
 * decremented TTL copied from the inner header, identification the entry's packet count,
 * header checksum; IPv6: traffic class and hop limit copied, flow label 0; the ECN field
 * copied unless it is CE, which becomes ECT(0) (RFC 3168's full-functionality option,
 * IPVS's INET_ECN_encapsulate) — from addr to addr2, then extra bytes of tunnel header
 * (a constant at each call site: 0 IPIP, protocol 4 or 41; 12 GUE, protocol UDP: UDP from
 * port2 to port, the GUE header naming the inner protocol; 4 GRE, protocol 47: no flags,
 * the inner EtherType; 8 GRE with its checksum: C set), and a new Ethernet header. With
 * csum (GUE; GRE's 8 bytes) the tunnel's checksum covers the inner packet, whose sum is
 * isum (inner_sum); otherwise GUE's UDP checksum is 0. It returns the
 * new Ethernet header, or NULL with the frame as it was (the packet then goes to the
 * dataplane). Every packet pointer the caller holds is invalid afterwards.
 */
static __always_inline struct ethhdr *fast_tun(struct xdp_md *ctx, struct fp_val *v, int v6,
					       __u32 l3len, const int extra, int csum, __u32 isum)
{
	int hl = (v6 ? (int)sizeof(struct ipv6hdr) : (int)sizeof(struct iphdr)) + extra;
	__u8 inner_proto = v6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
	__u8 proto = extra == 12 ? IPPROTO_UDP : extra == 4 || extra == 8 ? IPPROTO_GRE : inner_proto;
	struct ethhdr *eth;
	void *data, *end, *x;

	if (bpf_xdp_adjust_head(ctx, -hl))
		return NULL;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if (!v6) {
		struct iphdr *o = (void *)(eth + 1), *in = (void *)((__u8 *)(o + 1) + extra);

		if ((void *)(in + 1) > end)
			goto undo;
		x = o + 1;
		in->ttl--;
		in->check = bpf_htons(csum_apply(bpf_ntohs(in->check), v->csum_l3));
		((__u8 *)o)[0] = 0x45; /* version 4, 20 bytes */
		o->tos = in->tos;
		if ((o->tos & 0x3) == 0x3)
			o->tos ^= 0x1; /* CE → ECT(0) */
		o->tot_len = bpf_htons(l3len + sizeof(*o) + extra);
		o->id = bpf_htons((__u16)v->packets);
		o->frag_off = in->frag_off & bpf_htons(IP_DF);
		o->ttl = in->ttl;
		o->protocol = proto;
		o->check = 0;
		__builtin_memcpy(&o->saddr, &v->addr[12], 4);
		__builtin_memcpy(&o->daddr, &v->addr2[12], 4);
		o->check = ip_csum(o);
		eth->h_proto = bpf_htons(ETH_P_IP);
	} else {
		struct ipv6hdr *o = (void *)(eth + 1), *in = (void *)((__u8 *)(o + 1) + extra);
		__u8 *ob = (__u8 *)o, *ib = (__u8 *)in;

		if ((void *)(in + 1) > end)
			goto undo;
		x = o + 1;
		in->hop_limit--;
		ob[0] = 0x60 | (ib[0] & 0x0f); /* version 6, the traffic class's high half */
		ob[1] = ib[1] & 0xf0;          /* its low half, flow label 0 */
		if ((ob[1] & 0x30) == 0x30)
			ob[1] ^= 0x10; /* ECN CE → ECT(0) */
		ob[2] = 0;
		ob[3] = 0;
		o->payload_len = bpf_htons(l3len + extra);
		o->nexthdr = proto;
		o->hop_limit = in->hop_limit;
		__builtin_memcpy(&o->saddr, v->addr, 16);
		__builtin_memcpy(&o->daddr, v->addr2, 16);
		eth->h_proto = bpf_htons(ETH_P_IPV6);
	}
	if (extra == 12) {
		/* Within the frame: the inner header after it was checked. */
		struct udphdr *u = x;
		__u8 *g = (__u8 *)(u + 1);

		u->source = v->port2;
		u->dest = v->port;
		u->len = bpf_htons(l3len + extra);
		u->check = 0;
		g[0] = 0; /* version 0, C 0, no options */
		g[1] = inner_proto;
		g[2] = 0;
		g[3] = 0;
		if (csum) {
			/* The pseudo-header (outer addresses, UDP, its length), the UDP and GUE
			 * headers (check 0), the inner packet. */
			__u32 s = isum + sum_words(u, 6, 0) + bpf_htons(IPPROTO_UDP) + u->len;
			__u16 c;

			if (!v6)
				s = sum_words(&((struct iphdr *)(eth + 1))->saddr, 4, s);
			else
				s = sum_words(&((struct ipv6hdr *)(eth + 1))->saddr, 16, s);
			c = ~fold16(s);
			u->check = c ? c : 0xffff; /* RFC 768: a computed 0 is sent as all ones */
		}
	} else if (extra == 4 || extra == 8) {
		__be16 *g = x;

		g[0] = extra == 8 ? bpf_htons(0x8000) : 0; /* C: checksum present; version 0 */
		g[1] = v6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
		if (extra == 8) {
			g[2] = 0;
			g[3] = 0;
			/* The GRE header (checksum 0) and the inner packet: no pseudo-header. */
			g[2] = ~fold16(isum + sum_words(g, 4, 0));
		}
	}
	return eth;
undo:
	bpf_xdp_adjust_head(ctx, hl);
	return NULL;
}

/*
 * fast_path: the verdict for an untagged TCP, UDP or SCTP (DATA, SACK, HEARTBEAT or
 * HEARTBEAT ACK first) packet k describes (l3 at data+14, l4 its transport header, l3len
 * its IP length) when the fastpath map has its flow, else -1 (the packet is classified
 * as ever). tcp_flags holds the TCP header's flags byte (0 for UDP and SCTP).
 */
static __always_inline int fast_path(struct xdp_md *ctx, struct ethhdr *eth, void *l3,
				     void *l4, void *end, int v6, struct svc_key *src,
				     struct svc_key *dst, __u32 l3len, __u8 tcp_flags)
{
	struct fp_key k = {};
	struct fp_val *v;
	__be16 *port, *csum;
	__u32 zero = 0, *on;
	int act, kern;

	on = bpf_map_lookup_elem(&fp_on, &zero);
	if (!on || !*on)
		return -1;

	if ((void *)eth + sizeof(*eth) != l3)
		return -1; /* VLAN-tagged */
	if (tcp_flags & 0x07)
		return -1; /* FIN, SYN, RST: state changes are the dataplane's */
	__builtin_memcpy(k.src, src->addr, sizeof(k.src));
	__builtin_memcpy(k.dst, dst->addr, sizeof(k.dst));
	k.sport = src->port;
	k.dport = dst->port;
	k.proto = src->proto;
	v = bpf_map_lookup_elem(&fastpath, &k);
	if (!v)
		return -1;
	if (l3len > v->mtu)
		return -1;
	if (!v6) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end)
			return -1;
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET_MASK))
			return -1;
		if (ip->ttl <= 1)
			return -1;
	} else {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return -1;
		if (ip6->hop_limit <= 1)
			return -1;
	}
	kern = (v->flags & FP_F_KERNEL) && v->action != FP_DR && v->action != FP_TUN;
	/* The egress first: a missing device leaves the packet untouched for the slow path. */
	if (kern) {
		act = XDP_PASS;
	} else if (v->ifindex == ctx->ingress_ifindex && !(v->flags & FP_F_REDIRECT)) {
		act = XDP_TX;
	} else {
		act = bpf_redirect_map(&tx_ports, v->ifindex, XDP_PASS);
		if (act != XDP_REDIRECT)
			return -1;
	}
	if (v->action == FP_TUN) {
		int csum = (v->flags & FP_F_TUN_CSUM) && v->tun != FP_TUN_IPIP;
		__u32 isum = 0;

		/* Before the headers move: l3 and l4 are invalid afterwards. */
		if (csum && inner_sum(l3, l4, end, v6, l3len, src->proto, &isum))
			return -1;
		if (v->tun == FP_TUN_GUE)
			eth = fast_tun(ctx, v, v6, l3len, 12, csum, isum);
		else if (v->tun == FP_TUN_GRE && csum)
			eth = fast_tun(ctx, v, v6, l3len, 8, 1, isum);
		else if (v->tun == FP_TUN_GRE)
			eth = fast_tun(ctx, v, v6, l3len, 4, 0, 0);
		else
			eth = fast_tun(ctx, v, v6, l3len, 0, 0, 0);
		if (!eth)
			return -1;
	} else if (v->action != FP_DR) {
		int is_dst = v->action == FP_NAT_DST, full = v->action == FP_FULLNAT;
		__be16 *port2;
		__u32 *ck = 0;

		if (src->proto == IPPROTO_SCTP) {
			__be16 *sp = l4;

			if ((void *)((__u8 *)l4 + SCTP_HDR_LEN) > end)
				return -1;
			port = is_dst ? &sp[1] : &sp[0];
			port2 = &sp[1];
			ck = (__u32 *)((__u8 *)l4 + 8);
			/* Not used for SCTP, but a packet pointer: the verifier also walks the
			 * path on which ck (a packet pointer) would be NULL. */
			csum = (__be16 *)ck;
		} else if (src->proto == IPPROTO_TCP) {
			struct tcphdr *th = l4;

			if ((void *)(th + 1) > end)
				return -1;
			port = is_dst ? &th->dest : &th->source;
			port2 = &th->dest;
			csum = &th->check;
		} else {
			struct udphdr *uh = l4;

			if ((void *)(uh + 1) > end)
				return -1;
			port = is_dst ? &uh->dest : &uh->source;
			port2 = &uh->dest;
			csum = &uh->check;
		}
		if (!v6) {
			struct iphdr *ip = l3;

			if ((void *)(ip + 1) > end)
				return -1;
			if (is_dst)
				__builtin_memcpy(&ip->daddr, &v->addr[12], 4);
			else
				__builtin_memcpy(&ip->saddr, &v->addr[12], 4);
			if (full)
				__builtin_memcpy(&ip->daddr, &v->addr2[12], 4);
			if (!kern)
				ip->ttl--;
			ip->check = bpf_htons(csum_apply(bpf_ntohs(ip->check), v->csum_l3));
		} else {
			struct ipv6hdr *ip6 = l3;

			if ((void *)(ip6 + 1) > end)
				return -1;
			if (is_dst)
				__builtin_memcpy(&ip6->daddr, v->addr, 16);
			else
				__builtin_memcpy(&ip6->saddr, v->addr, 16);
			if (full)
				__builtin_memcpy(&ip6->daddr, v->addr2, 16);
			if (!kern)
				ip6->hop_limit--;
		}
		*port = v->port;
		if (full)
			*port2 = v->port2;
		if (ck) {
			/* The caller checked l4off + SCTP_HDR_LEN <= l3len. The field holds the
			 * CRC little-endian (RFC 9260 appendix A, as Linux writes it), as this
			 * bpfel program reads it. */
			*ck ^= sctp_crc_change(l3len - (__u32)((__u8 *)l4 - (__u8 *)l3), v->crc);
		} else if (src->proto == IPPROTO_UDP && !v6 && *csum == 0) {
			/* no checksum: keep none */
		} else {
			__u16 c = csum_apply(bpf_ntohs(*csum), v->csum_l4);

			if (c == 0 && src->proto == IPPROTO_UDP)
				c = 0xffff;
			*csum = bpf_htons(c);
		}
	} else if (!v6) {
		/* DR: only the TTL (csum_l3 is its delta) and the MACs change, as the workers do. */
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end)
			return -1;
		ip->ttl--;
		ip->check = bpf_htons(csum_apply(bpf_ntohs(ip->check), v->csum_l3));
	} else {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return -1;
		ip6->hop_limit--;
	}
	if (!kern) {
		__builtin_memcpy(eth->h_dest, v->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, v->smac, ETH_ALEN);
	}
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, l3len);
	v->last_seen = bpf_ktime_get_ns();
	return account(STAT_FASTPATH_TX, act);
}

/* mac_ok: whether the frame's destination MAC is one this instance takes (macs). */
static __always_inline int mac_ok(struct ethhdr *eth)
{
	struct mac_set *s;
	__u32 zero = 0, i;
	__u64 d = 0;

	s = bpf_map_lookup_elem(&macs, &zero);
	if (!s || !s->n)
		return 1;
	__builtin_memcpy(&d, eth->h_dest, ETH_ALEN);
#pragma unroll
	for (i = 0; i < MAC_MAX; i++) {
		if (i >= s->n)
			break;
		if (s->mac[i] == d)
			return 1;
	}
	return 0;
}

SEC("xdp")
int xlvs_classify(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct svc_key dst = {}, src = {};
	struct ethhdr *eth = data;
	__u32 l4off, l3len;
	__be16 l3proto;
	__u8 proto, tcp_flags = 0;
	int v6 = 0, fp_ok = 0, sctp_fast = 0;
	void *l3, *l4;

	if ((void *)(eth + 1) > end)
		return account(STAT_MALFORMED, XDP_PASS);
	if (!mac_ok(eth))
		return account(STAT_OTHER_HOST, XDP_PASS);
	l3proto = eth->h_proto;
	l3 = eth + 1;

	if (l3proto == bpf_htons(ETH_TYPE_VLAN)) {
		struct vlan_tag *tag = l3;

		if ((void *)(tag + 1) > end)
			return account(STAT_MALFORMED, XDP_PASS);
		l3proto = tag->encap_proto;
		l3 = tag + 1;
	}

	if (l3proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end)
			return account(STAT_MALFORMED, XDP_PASS);
		if (ip->version != 4 || ip->ihl < 5)
			return account(STAT_MALFORMED, XDP_PASS);
		l4off = ip->ihl * 4;
		l3len = bpf_ntohs(ip->tot_len);
		if (l3len < l4off || l3 + l3len > end)
			return account(STAT_MALFORMED, XDP_PASS);
		proto = ip->protocol;
		set_v4(dst.addr, ip->daddr);
		set_v4(src.addr, ip->saddr);
		if (ip->frag_off & bpf_htons(IP_OFFSET_MASK))
			return fragment(ctx, &src, &dst, proto);
		fp_ok = 1;
	} else if (l3proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return account(STAT_MALFORMED, XDP_PASS);
		if (ip6->version != 6)
			return account(STAT_MALFORMED, XDP_PASS);
		l4off = sizeof(*ip6);
		l3len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		if (l3 + l3len > end)
			return account(STAT_MALFORMED, XDP_PASS);
		proto = ip6->nexthdr;
		v6 = 1;
		fp_ok = 1;
		__builtin_memcpy(dst.addr, &ip6->daddr, sizeof(dst.addr));
		__builtin_memcpy(src.addr, &ip6->saddr, sizeof(src.addr));
		if (proto == NEXTHDR_FRAGMENT) {
			struct ip6_frag *fh = (void *)(ip6 + 1);

			if (l4off + sizeof(*fh) > l3len || (void *)(fh + 1) > end)
				return account(STAT_MALFORMED, XDP_PASS);
			proto = fh->nexthdr;
			if (fh->frag_off & bpf_htons(IP6_OFFSET_MASK))
				return fragment(ctx, &src, &dst, proto);
			/* A first fragment: the transport header follows. */
			l4off += sizeof(*fh);
			fp_ok = 0;
		}
	} else {
		return account(STAT_NON_IP, XDP_PASS);
	}

	l4 = l3 + l4off;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if (l4off + sizeof(*th) > l3len || (void *)(th + 1) > end)
			return account(STAT_MALFORMED, XDP_PASS);
		if (th->doff < 5 || l4off + th->doff * 4 > l3len)
			return account(STAT_MALFORMED, XDP_PASS);
		src.port = th->source;
		dst.port = th->dest;
		tcp_flags = ((__u8 *)th)[13];
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if (l4off + sizeof(*uh) > l3len || (void *)(uh + 1) > end)
			return account(STAT_MALFORMED, XDP_PASS);
		src.port = uh->source;
		dst.port = uh->dest;
	} else if (proto == IPPROTO_SCTP) {
		/* SCTP: the ports lead the common header, as TCP's and UDP's do; the
		 * dataplane checks the chunks. */
		__be16 *sp = l4;
		__u8 *chunk = l4 + SCTP_HDR_LEN;

		if (l4off + SCTP_HDR_LEN > l3len || l4 + SCTP_HDR_LEN > end)
			return account(STAT_MALFORMED, XDP_PASS);
		src.port = sp[0];
		dst.port = sp[1];
		/* The fast path takes a packet whose first chunk is DATA, SACK, HEARTBEAT or
		 * HEARTBEAT ACK: the chunks that leave an established association as it is
		 * (IPVS's sctp_states; the dataplane's state machine decides by the first
		 * chunk). Any other goes to the dataplane. */
		if (l4off + SCTP_HDR_LEN + 4 <= l3len && (void *)(chunk + 4) <= end)
			sctp_fast = chunk[0] == 0 || chunk[0] == 3 || chunk[0] == 4 || chunk[0] == 5;
	} else if (proto == IPPROTO_ICMP && l3proto == bpf_htons(ETH_P_IP)) {
		return icmp_error(ctx, l4, l3 + l3len, end, 0, &dst);
	} else if (proto == IPPROTO_ICMPV6 && l3proto == bpf_htons(ETH_P_IPV6)) {
		return icmp_error(ctx, l4, l3 + l3len, end, 1, &dst);
	} else {
		/* IPv6 extension headers, other ICMP...: the kernel's. */
		return account(STAT_PASSED, XDP_PASS);
	}
	src.proto = proto;
	dst.proto = proto;

	if (fp_ok && (proto == IPPROTO_TCP || proto == IPPROTO_UDP || sctp_fast)) {
		int act = fast_path(ctx, eth, l3, l4, end, v6, &src, &dst, l3len, tcp_flags);

		if (act >= 0)
			return act;
	}
	if (lookup_key(&services, &dst) ||
	    fwmark_match(&dst, l3proto == bpf_htons(ETH_P_IPV6)))
		return redirect(ctx);
	if (!lookup_key(&reals, &src))
		return account(STAT_PASSED, XDP_PASS);
	return real_reply(ctx, dst.addr);
}
