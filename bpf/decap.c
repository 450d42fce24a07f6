// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * xlvs real-server decapsulator.
 *
 * A TUN (-i) director sends each request to the real server inside an outer
 * IP header: IPv4-in-IPv4 (protocol 4) or IPv6-in-IPv6 (next header 41).
 * A real server whose kernel has the ipip / ip6_tunnel modules decapsulates
 * with a tunnel device; one without them runs this program on the interface
 * the tunnelled packets arrive on. It strips the outer header of a packet
 * addressed to one of the addresses in the "addrs" map and hands the inner
 * packet to the kernel, which delivers it to the VIP on lo as if it had
 * arrived unencapsulated. Everything else passes untouched.
 *
 * Two entry points share the parser: decap_xdp (bpf_xdp_adjust_head) and
 * decap_tc (tc ingress, bpf_skb_adjust_room), for interfaces where XDP cannot
 * be attached.
 *
 * What is stripped: an untagged Ethernet frame carrying
 *   - IPv4 with a 20-byte header (no options, as IPVS and xlvs write it),
 *     a valid header checksum, not a fragment, protocol 4 (IPv4) or
 *     41 (IPv6), total length covering at least the inner minimal header;
 *   - IPv6 whose next header is 41 (IPv6) or 4 (IPv4) directly after the
 *     fixed header, payload length covering the inner minimal header;
 * whose destination is in addrs and whose inner header has the version the
 * protocol announces. The inner packet is left exactly as it came: the
 * kernel validates it as usual.
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
	DSTAT_DECAPSULATED = 1, /* outer header stripped */
	DSTAT_NOT_LOCAL = 2,    /* a tunnel packet for an address not in addrs */
	DSTAT_MALFORMED = 3,    /* a tunnel packet with a bad outer or inner header */
	DSTAT_FRAGMENT = 4,     /* a fragmented outer IPv4 packet */
	DSTAT_ERROR = 5,        /* the helper that strips the header failed */
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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DSTAT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_ 41
#define IP_MF_OFFSET 0x3fff /* MF flag and fragment offset */
#define OUTER4_LEN 20
#define OUTER6_LEN 40
/* Ethernet, outer IPv6, inner version byte: what classify reads at most. */
#define TC_PULL_LEN (sizeof(struct ethhdr) + OUTER6_LEN + 1)

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &slot);

	if (n)
		*n += 1;
}

/* A tunnel packet found by classify: strip hlen bytes after the Ethernet header. */
struct tunnel {
	__u32 hlen;        /* OUTER4_LEN or OUTER6_LEN */
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
 * inner_ok checks that the inner header after the outer one has the version
 * proto announces and fits in len bytes (and in the frame).
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
 * classify decides what to do with the frame in [data, end): it returns the
 * stats slot; DSTAT_DECAPSULATED means "strip t->hlen bytes", with t filled.
 */
static __always_inline __u32 classify(void *data, void *end, struct tunnel *t)
{
	struct ethhdr *eth = data;
	struct addr_key key = {};
	__u8 proto;

	if ((void *)(eth + 1) > end)
		return DSTAT_PASSED;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u32 len;

		if ((void *)(ip + 1) > end)
			return DSTAT_PASSED;
		proto = ip->protocol;
		if (proto != IPPROTO_IPIP_ && proto != IPPROTO_IPV6_)
			return DSTAT_PASSED;
		if (ip->version != 4 || ip->ihl != 5 || !ipv4_csum_ok(ip))
			return DSTAT_MALFORMED;
		len = bpf_ntohs(ip->tot_len);
		if (len < OUTER4_LEN || (void *)ip + len > end)
			return DSTAT_MALFORMED;
		if (ip->frag_off & bpf_htons(IP_MF_OFFSET))
			return DSTAT_FRAGMENT;
		if (!inner_ok(ip + 1, end, proto, len - OUTER4_LEN))
			return DSTAT_MALFORMED;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip->daddr, 4);
		t->hlen = OUTER4_LEN;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u32 len;

		if ((void *)(ip6 + 1) > end)
			return DSTAT_PASSED;
		proto = ip6->nexthdr;
		if (proto != IPPROTO_IPIP_ && proto != IPPROTO_IPV6_)
			return DSTAT_PASSED;
		if (ip6->version != 6)
			return DSTAT_MALFORMED;
		len = bpf_ntohs(ip6->payload_len);
		if ((void *)(ip6 + 1) + len > end)
			return DSTAT_MALFORMED;
		if (!inner_ok(ip6 + 1, end, proto, len))
			return DSTAT_MALFORMED;
		__builtin_memcpy(key.addr, &ip6->daddr, sizeof(key.addr));
		t->hlen = OUTER6_LEN;
	} else {
		return DSTAT_PASSED;
	}

	if (!bpf_map_lookup_elem(&addrs, &key))
		return DSTAT_NOT_LOCAL;
	t->inner_is_v6 = proto == IPPROTO_IPV6_;
	t->inner = t->inner_is_v6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
	return DSTAT_DECAPSULATED;
}

/*
 * xdp_strip moves the Ethernet header hlen bytes forward (over the end of the
 * outer IP header) with the inner EtherType, then drops the bytes before it.
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

SEC("xdp")
int decap_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct tunnel t = {};
	__u32 slot = classify(data, end, &t);
	int err;

	if (slot != DSTAT_DECAPSULATED) {
		count(slot);
		return XDP_PASS;
	}
	if (t.hlen == OUTER4_LEN)
		err = xdp_strip(ctx, OUTER4_LEN, t.inner);
	else
		err = xdp_strip(ctx, OUTER6_LEN, t.inner);
	count(err ? DSTAT_ERROR : DSTAT_DECAPSULATED);
	return XDP_PASS;
}

SEC("tc")
int decap_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tunnel t = {};
	__u32 slot;
	__u64 flags;

	/*
	 * The headers classify reads may sit outside the linear part. A frame
	 * shorter than that cannot be pulled (the helper fails, harmlessly) and
	 * is classified on what it has.
	 */
	if (data + TC_PULL_LEN > end) {
		bpf_skb_pull_data(skb, TC_PULL_LEN);
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	slot = classify(data, end, &t);
	if (slot != DSTAT_DECAPSULATED) {
		count(slot);
		return TC_ACT_OK;
	}
	/*
	 * The DECAP_L3 flag names the inner family: the kernel then sets
	 * skb->protocol to it. The EtherType in the frame is rewritten too, for
	 * whatever reads it later (packet sockets, a later hook).
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
