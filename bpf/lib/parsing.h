/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Packet parsing in the style of the xdp-tutorial's parsing_helpers.h: a header cursor and one
 * small always-inline parser per header, each checking bounds as `ptr + 1 > data_end` before
 * it reads. A parser returns the next protocol, or -1 when the packet is truncated or too deep.
 */
#ifndef XDPCTL_PARSING_H
#define XDPCTL_PARSING_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include "xdpctl.h"

#define ETH_P_IP     0x0800
#define ETH_P_IPV6   0x86DD
#define ETH_P_8021Q  0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_QINQ1  0x9100

#define IPPROTO_HOPOPTS	 0
#define IPPROTO_ICMP	 1
#define IPPROTO_TCP	 6
#define IPPROTO_UDP	 17
#define IPPROTO_ROUTING	 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH	 51
#define IPPROTO_ICMPV6	 58
#define IPPROTO_DSTOPTS	 60

#define IP_MF	  0x2000
#define IP_OFFSET 0x1FFF

struct hdr_cursor {
	void *pos;
};

static __always_inline int proto_is_vlan(__u16 h_proto)
{
	return h_proto == bpf_htons(ETH_P_8021Q) || h_proto == bpf_htons(ETH_P_8021AD) ||
	       h_proto == bpf_htons(ETH_P_QINQ1);
}

/* Ethernet plus up to FW_VLAN_MAX_DEPTH VLAN tags (802.1Q, 802.1ad/QinQ). Returns the inner
 * EtherType in network byte order, or -1 if truncated or tagged deeper than that. */
static __always_inline int parse_ethhdr(struct hdr_cursor *nh, void *data_end)
{
	struct ethhdr *eth = nh->pos;
	struct vlan_hdr *vlh;
	__u16 h_proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return -1;
	nh->pos = eth + 1;
	h_proto = eth->h_proto;

#pragma unroll
	for (i = 0; i < FW_VLAN_MAX_DEPTH; i++) {
		if (!proto_is_vlan(h_proto))
			break;
		vlh = nh->pos;
		if ((void *)(vlh + 1) > data_end)
			return -1;
		h_proto = vlh->h_vlan_encapsulated_proto;
		nh->pos = vlh + 1;
	}
	if (proto_is_vlan(h_proto))
		return -1;
	return h_proto;
}

/* The fixed IPv4 header. Returns 0, or -1 if its 20 bytes are not all there. The caller checks
 * IHL and the options separately: the source address is usable before they are. */
static __always_inline int parse_iphdr_fixed(struct hdr_cursor *nh, void *data_end,
					     struct iphdr **iphdr)
{
	struct iphdr *iph = nh->pos;

	if ((void *)(iph + 1) > data_end)
		return -1;
	*iphdr = iph;
	return 0;
}

/* Skips the IPv4 options. Returns the L4 protocol, or -1 if IHL < 5, the version is not 4 or
 * the options are truncated. */
static __always_inline int parse_iphdr_options(struct hdr_cursor *nh, void *data_end,
					       struct iphdr *iph)
{
	int hdrsize = iph->ihl * 4;

	if (iph->version != 4 || hdrsize < (int)sizeof(*iph))
		return -1;
	if (nh->pos + hdrsize > data_end)
		return -1;
	nh->pos += hdrsize;
	return iph->protocol;
}

/* The fixed IPv6 header: 0, or -1 if its 40 bytes are not all there. */
static __always_inline int parse_ip6hdr_fixed(struct hdr_cursor *nh, void *data_end,
					      struct ipv6hdr **ip6hdr)
{
	struct ipv6hdr *ip6h = nh->pos;

	if ((void *)(ip6h + 1) > data_end)
		return -1;
	*ip6hdr = ip6h;
	return 0;
}

/* Walks up to FW_IPV6_EXT_MAX extension headers (hop-by-hop, routing, destination options,
 * fragment, AH). Returns the upper-layer protocol, or -1 if truncated, too deep, or the version
 * is not 6. Sets *nonfirst_frag when a fragment header has a non-zero offset: such a packet
 * carries no L4 header, and the walk stops there. */
static __always_inline int parse_ip6_ext(struct hdr_cursor *nh, void *data_end,
					 struct ipv6hdr *ip6h, int *nonfirst_frag)
{
	struct ipv6_opt_hdr *opt;
	struct frag_hdr *frag;
	__u8 nexthdr = ip6h->nexthdr;
	int i;

	if (ip6h->version != 6)
		return -1;
	nh->pos = ip6h + 1;

#pragma unroll
	for (i = 0; i < FW_IPV6_EXT_MAX; i++) {
		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			opt = nh->pos;
			if ((void *)(opt + 1) > data_end)
				return -1;
			if (nh->pos + (opt->hdrlen + 1) * 8 > data_end)
				return -1;
			nexthdr = opt->nexthdr;
			nh->pos += (opt->hdrlen + 1) * 8;
			break;
		case IPPROTO_AH:
			opt = nh->pos;
			if ((void *)(opt + 1) > data_end)
				return -1;
			if (nh->pos + (opt->hdrlen + 2) * 4 > data_end)
				return -1;
			nexthdr = opt->nexthdr;
			nh->pos += (opt->hdrlen + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			frag = nh->pos;
			if ((void *)(frag + 1) > data_end)
				return -1;
			nexthdr = frag->nexthdr;
			nh->pos = frag + 1;
			if (bpf_ntohs(frag->frag_off) & 0xFFF8) {
				*nonfirst_frag = 1;
				return nexthdr;
			}
			break;
		default:
			return nexthdr;
		}
	}
	/* Still inside the extension chain after FW_IPV6_EXT_MAX headers: too deep. */
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return -1;
	}
	return nexthdr;
}

static __always_inline int parse_udphdr(struct hdr_cursor *nh, void *data_end,
					struct udphdr **udphdr)
{
	struct udphdr *h = nh->pos;

	if ((void *)(h + 1) > data_end)
		return -1;
	nh->pos = h + 1;
	*udphdr = h;
	return 0;
}

/* The TCP header, options included: -1 if truncated or doff < 5. */
static __always_inline int parse_tcphdr(struct hdr_cursor *nh, void *data_end,
					struct tcphdr **tcphdr)
{
	struct tcphdr *h = nh->pos;
	int len;

	if ((void *)(h + 1) > data_end)
		return -1;
	len = h->doff * 4;
	if (len < (int)sizeof(*h))
		return -1;
	if (nh->pos + len > data_end)
		return -1;
	nh->pos += len;
	*tcphdr = h;
	return 0;
}

/* ICMP and ICMPv6 headers are both 8 bytes. */
static __always_inline int parse_icmphdr(struct hdr_cursor *nh, void *data_end)
{
	struct icmphdr *h = nh->pos;

	if ((void *)(h + 1) > data_end)
		return -1;
	nh->pos = h + 1;
	return 0;
}

#endif /* XDPCTL_PARSING_H */
