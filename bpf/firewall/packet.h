/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The firewall's parse of a packet (struct pkt) on top of lib/parsing.h, and its protocol
 * counter. src/firewall/model/ mirrors exactly this: what counts as malformed, which packets have
 * ports.
 */
#ifndef XDPCTL_FIREWALL_PACKET_H
#define XDPCTL_FIREWALL_PACKET_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include "xdpctl.h"
#include "lib/parsing.h"

/* struct pkt's l4proto until the IP header (options, extension chain) parsed; the parsers of
 * lib/parsing.h fail with this same value, so a failed parse leaves it unknown. */
#define PKT_L4_UNKNOWN (-1)

/* What parsing found out about a packet. */
struct pkt {
	int is_v6;
	__u32 saddr4;
	struct fw_v6_addr saddr6; /* IPv6 only */
	int l4proto;		  /* an IPPROTO_*, or PKT_L4_UNKNOWN */
	int malformed;		  /* something after the fixed IP header is truncated or invalid */
	int has_ports;		  /* TCP/UDP header parsed: dport is valid */
	__u16 dport;
	int syn; /* TCP SYN without ACK */
};

static __always_inline void parse_l4(struct hdr_cursor *nh, void *data_end, struct pkt *p,
				     int nonfirst_frag)
{
	struct tcphdr *tcph;
	struct udphdr *udph;
	int icmp = p->is_v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;

	if (nonfirst_frag)
		return;
	if (p->l4proto == IPPROTO_TCP) {
		if (parse_tcphdr(nh, data_end, &tcph)) {
			p->malformed = 1;
			return;
		}
		p->has_ports = 1;
		p->dport = bpf_ntohs(tcph->dest);
		p->syn = tcph->syn && !tcph->ack;
	} else if (p->l4proto == IPPROTO_UDP) {
		if (parse_udphdr(nh, data_end, &udph)) {
			p->malformed = 1;
			return;
		}
		p->has_ports = 1;
		p->dport = bpf_ntohs(udph->dest);
	} else if (p->l4proto == icmp) {
		if (parse_icmphdr(nh, data_end))
			p->malformed = 1;
	}
}

/* Parses everything after Ethernet. Returns -1 when the fixed IP header is incomplete. */
static __always_inline int parse_ip(struct hdr_cursor *nh, void *data_end, int eth_type,
				    struct pkt *p)
{
	struct ipv6hdr *ip6h;
	struct iphdr *iph;
	int nonfirst_frag = 0;

	p->l4proto = PKT_L4_UNKNOWN;
	if (eth_type == bpf_htons(ETH_P_IP)) {
		if (parse_iphdr_fixed(nh, data_end, &iph))
			return -1;
		p->saddr4 = iph->saddr;
		p->l4proto = parse_iphdr_options(nh, data_end, iph);
		if (p->l4proto < 0) {
			p->malformed = 1;
			return 0;
		}
		nonfirst_frag = (bpf_ntohs(iph->frag_off) & IP_OFFSET) != 0;
	} else {
		if (parse_ip6hdr_fixed(nh, data_end, &ip6h))
			return -1;
		p->is_v6 = 1;
		__builtin_memcpy(p->saddr6.addr, &ip6h->saddr, 16);
		p->l4proto = parse_ip6_ext(nh, data_end, ip6h, &nonfirst_frag);
		if (p->l4proto < 0) {
			p->malformed = 1;
			return 0;
		}
	}
	parse_l4(nh, data_end, p, nonfirst_frag);
	return 0;
}

static __always_inline int proto_counter(struct pkt *p)
{
	if (p->l4proto == IPPROTO_TCP)
		return FW_PROTO_TCP;
	if (p->l4proto == IPPROTO_UDP)
		return FW_PROTO_UDP;
	if (p->l4proto == (p->is_v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP))
		return FW_PROTO_ICMP;
	return FW_PROTO_OTHER;
}

#endif /* XDPCTL_FIREWALL_PACKET_H */
