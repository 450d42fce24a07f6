// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * xlvs real-server decapsulator.
 *
 * A TUN (-i) director sends each request to the real server inside an outer
 * header: IPv4-in-IPv4 (protocol 4) or IPv6-in-IPv6 (next header 41), or, as
 * Linux IPVS does with --tun-type gue / gre, GUE (UDP to a configured port)
 * or GRE (protocol 47). A real server whose kernel has the ipip, ip6_tunnel,
 * fou or gre modules decapsulates with a tunnel device; one without them runs
 * this program on the interface the tunnelled packets arrive on. It strips the
 * outer headers of a packet addressed to one of the addresses in the "addrs"
 * map and hands the inner packet to the kernel, which delivers it to the VIP
 * on lo as if it had arrived unencapsulated. Everything else passes untouched.
 *
 * Two entry points share the parser: decap_xdp (bpf_xdp_adjust_head) and
 * decap_tc (tc ingress, bpf_skb_adjust_room), for interfaces where XDP cannot
 * be attached.
 *
 * What is stripped: an untagged Ethernet frame carrying
 *   - IPv4 with a 20-byte header (no options, as IPVS and xlvs write it),
 *     a valid header checksum, not a fragment, total length within the frame;
 *   - or IPv6 whose next header, directly after the fixed header, is the
 *     tunnel's, payload length within the frame;
 * whose destination is in addrs, then
 *   - IPIP: protocol 4 (inner IPv4) or 41 (inner IPv6): the outer IP header;
 *   - GUE (draft-ietf-intarea-gue, as IPVS's ipvs_gue_encap writes it): UDP
 *     to a port in the "gue_ports" map whose length is the IP payload's, then
 *     a 4-byte GUE header with version 0, C 0, no extension words (hlen 0),
 *     no flags and proto_ctype 4 or 41: outer IP + 8 + 4 bytes;
 *   - GRE (RFC 2784, as gre_build_header writes it for IPVS): version 0
 *     without flags, or with only C (checksum present), protocol 0x0800 or
 *     0x86DD: outer IP + 4 (+ 4 with C) bytes;
 * and whose inner header has the version the tunnel announces and fits in
 * what the outer headers leave. The inner packet is left exactly as it came:
 * the kernel validates it, its checksums included, as usual.
 *
 * Not verified: the UDP checksum (0 unless IPVS runs with --tun-csum or
 * --tun-remcsum, over IPv6 too) and the GRE checksum. The inner packet's own
 * checksums are end to end and cover what matters to the receiver.
 *
 * Not stripped, counted as unsupported: a GUE or GRE header with anything
 * else (GUE options such as remote checksum offload, which the receiver must
 * act on; a GUE control message; a GRE key, sequence number or routing;
 * another version or payload type). A UDP packet is a tunnel packet only when
 * its destination port is in gue_ports; over IPv4 the port is read only after
 * a 20-byte header in a first fragment, where IPVS puts it, and any other UDP
 * packet passes.
 *
 * Every invocation increments exactly one slot of the per-CPU "stats" array;
 * the slot numbers are part of the Go API (bpf/decap.go) and never change.
 */

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual BSD/GPL";

/* Older uapi headers lack these (Linux 6.3). */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#endif
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV6
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

/* Counter slots of the stats map. Append only: the numbers are ABI. */
enum decap_slot {
	DSTAT_PASSED = 0,       /* not a tunnel packet (or not IP at all) */
	DSTAT_DECAPSULATED = 1, /* outer headers stripped */
	DSTAT_NOT_LOCAL = 2,    /* a tunnel packet for an address not in addrs */
	DSTAT_MALFORMED = 3,    /* a tunnel packet with a bad outer, tunnel or inner header */
	DSTAT_FRAGMENT = 4,     /* a fragmented outer IPv4 packet */
	DSTAT_ERROR = 5,        /* the helper that strips the header failed */
	DSTAT_UNSUPPORTED = 6,  /* a GUE or GRE header with options, flags or a payload not implemented */
	DSTAT__MAX
};

/* Key of the addrs map: IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d). */
struct addr_key {
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct addr_key);
	__type(value, __u32);
} addrs SEC(".maps");

/*
 * The UDP destination ports of GUE packets, in network byte order (the two
 * bytes of the UDP header), so that the lookup needs no swap. Empty: no GUE.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __be16);
	__type(value, __u32);
} gue_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DSTAT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

#define IPPROTO_IPIP_ 4
#define IPPROTO_UDP_ 17
#define IPPROTO_IPV6_ 41
#define IPPROTO_GRE_ 47
#define IP_MF_OFFSET 0x3fff /* MF flag and fragment offset */
#define IP_OFFSET 0x1fff    /* fragment offset */
#define OUTER4_LEN 20
#define OUTER6_LEN 40
#define UDP_LEN 8
#define GUE_LEN 4      /* GUE header without extension words */
#define GRE_LEN 4      /* GRE flags and version, protocol type */
#define GRE_CSUM_LEN 8 /* GRE_LEN, checksum and reserved1 */
#define GRE_CSUM 0x8000 /* the C bit: checksum present */
/* Ethernet, outer IPv6, UDP, GUE, inner version byte: what classify reads at most. */
#define TC_PULL_LEN (sizeof(struct ethhdr) + OUTER6_LEN + UDP_LEN + GUE_LEN + 1)

/* The 4-byte GUE header (draft-ietf-intarea-gue section 3.1). */
struct gue_hdr {
	__u8 vch;         /* version (2 bits), C (1 bit), hlen (5 bits), from the top */
	__u8 proto_ctype; /* IP protocol of the payload when C is 0 */
	__be16 flags;
};

/* The GRE header's fixed part (RFC 2784 section 2). */
struct gre_hdr {
	__be16 flags; /* C, reserved0, version */
	__be16 proto; /* EtherType of the payload */
};

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &slot);

	if (n)
		*n += 1;
}

/* A tunnel packet found by classify: strip hlen bytes after the Ethernet header. */
struct tunnel {
	__u32 hlen;        /* outer IP header and tunnel headers: see decap_xdp */
	__be16 inner;      /* EtherType of the inner packet */
	__u8 inner_is_v6;
};

/* ipv4_csum_ok reports whether a 20-byte IPv4 header's checksum verifies. */
static __always_inline int ipv4_csum_ok(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < OUTER4_LEN / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/*
 * inner_ok checks that the inner header has the version proto (4 or 41)
 * announces and fits in len bytes (and in the frame).
 */
static __always_inline int inner_ok(void *inner, void *end, __u8 proto, __u32 len)
{
	__u8 *v = inner;

	if ((void *)(v + 1) > end)
		return 0;
	if (proto == IPPROTO_IPIP_)
		return len >= sizeof(struct iphdr) && (*v >> 4) == 4;
	return len >= sizeof(struct ipv6hdr) && (*v >> 4) == 6;
}

/*
 * gue_port reports whether udp, a UDP header if it is in the frame, goes to
 * one of the gue_ports: only that makes a UDP packet a tunnel packet.
 */
static __always_inline int gue_port(struct udphdr *udp, void *end)
{
	__be16 port;

	if ((void *)(udp + 1) > end)
		return 0;
	port = udp->dest;
	return bpf_map_lookup_elem(&gue_ports, &port) != NULL;
}

/*
 * The parsers of what follows the outer IP header: p is its first byte, len
 * the outer payload length (within the frame: the caller checked), outer the
 * outer IP header length. On DSTAT_DECAPSULATED they have set t->hlen and
 * t->inner_is_v6. Each passes inner_ok a constant offset from p.
 */

static __always_inline __u32 ipip(void *p, void *end, __u8 proto, __u32 len, __u32 outer, struct tunnel *t)
{
	if (!inner_ok(p, end, proto, len))
		return DSTAT_MALFORMED;
	t->hlen = outer;
	t->inner_is_v6 = proto == IPPROTO_IPV6_;
	return DSTAT_DECAPSULATED;
}

/* gue's UDP header is in the frame (gue_port read it). */
static __always_inline __u32 gue(struct udphdr *udp, void *end, __u32 len, __u32 outer, struct tunnel *t)
{
	struct gue_hdr *g = (void *)(udp + 1);
	__u8 proto;

	if (bpf_ntohs(udp->len) != len || len < UDP_LEN + GUE_LEN || (void *)(g + 1) > end)
		return DSTAT_MALFORMED;
	/*
	 * Version 0 and C 0 is a data message; hlen and flags announce options.
	 * IPVS's only one is remote checksum offload (--tun-remcsum), where the
	 * sender leaves the inner checksum for the receiver to finish: stripped
	 * without that, the inner packet would fail the kernel's checks.
	 */
	if (g->vch != 0 || g->flags != 0)
		return DSTAT_UNSUPPORTED;
	proto = g->proto_ctype;
	if (proto != IPPROTO_IPIP_ && proto != IPPROTO_IPV6_)
		return DSTAT_UNSUPPORTED;
	if (!inner_ok(g + 1, end, proto, len - UDP_LEN - GUE_LEN))
		return DSTAT_MALFORMED;
	t->hlen = outer + UDP_LEN + GUE_LEN;
	t->inner_is_v6 = proto == IPPROTO_IPV6_;
	return DSTAT_DECAPSULATED;
}

static __always_inline __u32 gre(struct gre_hdr *g, void *end, __u32 len, __u32 outer, struct tunnel *t)
{
	__u8 proto;

	if (len < GRE_LEN || (void *)(g + 1) > end)
		return DSTAT_MALFORMED;
	if (g->proto == bpf_htons(ETH_P_IP))
		proto = IPPROTO_IPIP_;
	else if (g->proto == bpf_htons(ETH_P_IPV6))
		proto = IPPROTO_IPV6_;
	else
		return DSTAT_UNSUPPORTED;
	/* What gre_build_header writes for IPVS: no flags, or only C. */
	if (g->flags == 0) {
		if (!inner_ok(g + 1, end, proto, len - GRE_LEN))
			return DSTAT_MALFORMED;
		t->hlen = outer + GRE_LEN;
	} else if (g->flags == bpf_htons(GRE_CSUM)) {
		if (len < GRE_CSUM_LEN || !inner_ok((void *)g + GRE_CSUM_LEN, end, proto, len - GRE_CSUM_LEN))
			return DSTAT_MALFORMED;
		t->hlen = outer + GRE_CSUM_LEN;
	} else {
		return DSTAT_UNSUPPORTED;
	}
	t->inner_is_v6 = proto == IPPROTO_IPV6_;
	return DSTAT_DECAPSULATED;
}

static __always_inline __u32 tunnel_payload(void *p, void *end, __u8 proto, __u32 len, __u32 outer, struct tunnel *t)
{
	if (proto == IPPROTO_UDP_)
		return gue(p, end, len, outer, t);
	if (proto == IPPROTO_GRE_)
		return gre(p, end, len, outer, t);
	return ipip(p, end, proto, len, outer, t);
}

static __always_inline int tunnel_proto(__u8 proto)
{
	return proto == IPPROTO_IPIP_ || proto == IPPROTO_IPV6_ || proto == IPPROTO_GRE_;
}

static __always_inline __u32 classify4(struct iphdr *ip, void *end, __u32 frame_len, struct addr_key *key, struct tunnel *t)
{
	__u8 proto;
	__u32 len;

	if ((void *)(ip + 1) > end)
		return DSTAT_PASSED;
	proto = ip->protocol;
	if (proto == IPPROTO_UDP_) {
		/*
		 * The port is read only where IPVS puts the UDP header: after
		 * a 20-byte header, in a first fragment (a later one has none).
		 */
		if (ip->version != 4 || ip->ihl != 5 || (ip->frag_off & bpf_htons(IP_OFFSET)) ||
		    !gue_port((void *)(ip + 1), end))
			return DSTAT_PASSED;
	} else if (!tunnel_proto(proto)) {
		return DSTAT_PASSED;
	}
	if (ip->version != 4 || ip->ihl != 5 || !ipv4_csum_ok(ip))
		return DSTAT_MALFORMED;
	len = bpf_ntohs(ip->tot_len);
	if (len < OUTER4_LEN || sizeof(struct ethhdr) + len > frame_len)
		return DSTAT_MALFORMED;
	if (ip->frag_off & bpf_htons(IP_MF_OFFSET))
		return DSTAT_FRAGMENT;
	key->addr[10] = 0xff;
	key->addr[11] = 0xff;
	__builtin_memcpy(&key->addr[12], &ip->daddr, 4);
	return tunnel_payload(ip + 1, end, proto, len - OUTER4_LEN, OUTER4_LEN, t);
}

static __always_inline __u32 classify6(struct ipv6hdr *ip6, void *end, __u32 frame_len, struct addr_key *key, struct tunnel *t)
{
	__u8 proto;
	__u32 len;

	if ((void *)(ip6 + 1) > end)
		return DSTAT_PASSED;
	proto = ip6->nexthdr;
	if (proto == IPPROTO_UDP_) {
		if (!gue_port((void *)(ip6 + 1), end))
			return DSTAT_PASSED;
	} else if (!tunnel_proto(proto)) {
		return DSTAT_PASSED;
	}
	if (ip6->version != 6)
		return DSTAT_MALFORMED;
	len = bpf_ntohs(ip6->payload_len);
	if (sizeof(struct ethhdr) + OUTER6_LEN + len > frame_len)
		return DSTAT_MALFORMED;
	__builtin_memcpy(key->addr, &ip6->daddr, sizeof(key->addr));
	return tunnel_payload(ip6 + 1, end, proto, len, OUTER6_LEN, t);
}

/*
 * classify decides what to do with the frame in [data, end): it returns the
 * stats slot; DSTAT_DECAPSULATED means "strip t->hlen bytes", with t filled.
 * The destination is looked up last: a bad tunnel packet is malformed (or
 * unsupported) whoever it is for. frame_len is the whole frame's length, which
 * the IP length must fit: at tc a packet that GRO merged on its way in (a
 * stream's tunnel packets, up to 64 KiB) has only its headers in [data, end).
 */
static __always_inline __u32 classify(void *data, void *end, __u32 frame_len, struct tunnel *t)
{
	struct ethhdr *eth = data;
	struct addr_key key = {};
	__u32 slot;

	if ((void *)(eth + 1) > end)
		return DSTAT_PASSED;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		slot = classify4((void *)(eth + 1), end, frame_len, &key, t);
	else if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		slot = classify6((void *)(eth + 1), end, frame_len, &key, t);
	else
		return DSTAT_PASSED;
	if (slot != DSTAT_DECAPSULATED)
		return slot;
	if (!bpf_map_lookup_elem(&addrs, &key))
		return DSTAT_NOT_LOCAL;
	t->inner = t->inner_is_v6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
	return DSTAT_DECAPSULATED;
}

/*
 * xdp_strip moves the Ethernet header hlen bytes forward (over the end of the
 * outer headers) with the inner EtherType, then drops the bytes before it.
 * hlen is a constant at every call site, which keeps the verifier's bounds
 * simple.
 */
static __always_inline int xdp_strip(struct xdp_md *ctx, __u32 hlen, __be16 inner)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr saved, *eth = data, *moved = data + hlen;

	if ((void *)(moved + 1) > end)
		return -1;
	__builtin_memcpy(&saved, eth, sizeof(saved));
	saved.h_proto = inner;
	__builtin_memcpy(moved, &saved, sizeof(saved));
	return bpf_xdp_adjust_head(ctx, (int)hlen);
}

/* Every header length classify can set, each a case of its own. */
#define STRIP(n)                               \
	case n:                                \
		err = xdp_strip(ctx, n, t.inner); \
		break

SEC("xdp")
int decap_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct tunnel t = {};
	__u32 slot = classify(data, end, (__u32)(end - data), &t);
	int err;

	if (slot != DSTAT_DECAPSULATED) {
		count(slot);
		return XDP_PASS;
	}
	switch (t.hlen) {
	STRIP(OUTER4_LEN);
	STRIP(OUTER6_LEN);
	STRIP(OUTER4_LEN + UDP_LEN + GUE_LEN);
	STRIP(OUTER6_LEN + UDP_LEN + GUE_LEN);
	STRIP(OUTER4_LEN + GRE_LEN);
	STRIP(OUTER6_LEN + GRE_LEN);
	STRIP(OUTER4_LEN + GRE_CSUM_LEN);
	STRIP(OUTER6_LEN + GRE_CSUM_LEN);
	default:
		err = -1; /* classify sets no other length */
	}
	count(err ? DSTAT_ERROR : DSTAT_DECAPSULATED);
	return XDP_PASS;
}

SEC("tc")
int decap_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tunnel t = {};
	__u32 slot, pull;
	__u64 flags;

	/*
	 * The headers classify reads may sit outside the linear part. A frame
	 * shorter than TC_PULL_LEN is pulled whole: asking for more than it has
	 * would fail and leave part of it out of reach.
	 */
	if (data + TC_PULL_LEN > end) {
		pull = skb->len < TC_PULL_LEN ? skb->len : TC_PULL_LEN;
		bpf_skb_pull_data(skb, pull);
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	slot = classify(data, end, skb->len, &t);
	if (slot != DSTAT_DECAPSULATED) {
		count(slot);
		return TC_ACT_OK;
	}
	/*
	 * The DECAP_L3 flag names the inner family: the kernel then sets
	 * skb->protocol to it. The EtherType in the frame is rewritten too, for
	 * whatever reads it later (packet sockets, a later hook). Without
	 * BPF_F_ADJ_ROOM_NO_CSUM_RESET the helper also drops a NIC's
	 * CHECKSUM_UNNECESSARY, which may vouch for the outer UDP checksum only.
	 */
	flags = t.inner_is_v6 ? BPF_F_ADJ_ROOM_DECAP_L3_IPV6 : BPF_F_ADJ_ROOM_DECAP_L3_IPV4;
	if (bpf_skb_adjust_room(skb, -(__s32)t.hlen, BPF_ADJ_ROOM_MAC, flags) ||
	    bpf_skb_store_bytes(skb, __builtin_offsetof(struct ethhdr, h_proto), &t.inner, sizeof(t.inner), 0)) {
		count(DSTAT_ERROR);
		return TC_ACT_OK;
	}
	count(DSTAT_DECAPSULATED);
	return TC_ACT_OK;
}
