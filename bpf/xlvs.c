// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * xlvs XDP classifier.
 *
 * Decides, for every frame that arrives on an interface, whether it belongs
 * to xlvs (redirect it to the AF_XDP socket of its receive queue) or to the
 * kernel (XDP_PASS). It never drops: anything it does not understand, and
 * anything it cannot redirect, goes to the kernel.
 *
 *   services: (proto, destination address, destination port) of a virtual
 *             service  -> redirect
 *   reals:    (proto, source address, source port) of a real server whose
 *             replies come back through the director (NAT) -> redirect
 *   otherwise XDP_PASS
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
	STAT_FRAGMENT = 4,        /* non-first IP fragment, no L4 header: passed */
	STAT_NON_IP = 5,          /* neither IPv4 nor IPv6 (ARP, LLDP...): passed */
	STAT_LOCAL_REPLY = 6,     /* a real server answering the director itself: passed */
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

/* rx queue index -> AF_XDP socket fd (written by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} xsks SEC(".maps");

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

SEC("xdp")
int xlvs_classify(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct svc_key dst = {}, src = {};
	struct ethhdr *eth = data;
	__u32 l4off, l3len;
	__be16 l3proto;
	__u8 proto;
	void *l3, *l4;

	if ((void *)(eth + 1) > end)
		return account(STAT_MALFORMED, XDP_PASS);
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
		if (ip->frag_off & bpf_htons(IP_OFFSET_MASK))
			return account(STAT_FRAGMENT, XDP_PASS);
		proto = ip->protocol;
		set_v4(dst.addr, ip->daddr);
		set_v4(src.addr, ip->saddr);
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
		if (proto == NEXTHDR_FRAGMENT) {
			struct ip6_frag *fh = (void *)(ip6 + 1);

			if (l4off + sizeof(*fh) > l3len || (void *)(fh + 1) > end)
				return account(STAT_MALFORMED, XDP_PASS);
			if (fh->frag_off & bpf_htons(IP6_OFFSET_MASK))
				return account(STAT_FRAGMENT, XDP_PASS);
			/* A first fragment: extension headers are not followed. */
			return account(STAT_PASSED, XDP_PASS);
		}
		__builtin_memcpy(dst.addr, &ip6->daddr, sizeof(dst.addr));
		__builtin_memcpy(src.addr, &ip6->saddr, sizeof(src.addr));
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
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if (l4off + sizeof(*uh) > l3len || (void *)(uh + 1) > end)
			return account(STAT_MALFORMED, XDP_PASS);
		src.port = uh->source;
		dst.port = uh->dest;
	} else {
		/* ICMP, SCTP, IPv6 extension headers...: the kernel's. */
		return account(STAT_PASSED, XDP_PASS);
	}
	src.proto = proto;
	dst.proto = proto;

	if (!bpf_map_lookup_elem(&services, &dst)) {
		if (!bpf_map_lookup_elem(&reals, &src))
			return account(STAT_PASSED, XDP_PASS);
		if (bpf_map_lookup_elem(&locals, dst.addr))
			return account(STAT_LOCAL_REPLY, XDP_PASS);
	}

	/*
	 * With XDP_PASS in the flags, bpf_redirect_map returns XDP_PASS when
	 * the queue has no socket: the return value tells success from
	 * failure without a separate (and racy) lookup of xsks.
	 */
	if (bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS) == XDP_REDIRECT)
		return account(STAT_REDIRECTED, XDP_REDIRECT);
	return account(STAT_REDIRECT_FAILED, XDP_PASS);
}
