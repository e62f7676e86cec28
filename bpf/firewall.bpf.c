// SPDX-License-Identifier: GPL-2.0
/*
 * firewall: xdpctl's main program. Per packet:
 *
 *   parse eth + VLAN/QinQ -> IPv4 (options, fragments) | IPv6 (extension headers) -> L4
 *   allowlist -> PASS
 *   blocklist (exact-address table, then CIDR trie) -> DROP blocklist
 *   malformed (anything truncated or invalid after the fixed IP header) -> DROP malformed
 *   port rules (TCP/UDP destination port; never for non-first fragments) -> DROP port
 *   per-source token bucket -> DROP ratelimit, and auto-block with an expiry
 *   prefix limits (/8 /16 /24, /32 /48 /64) -> DROP prefix, and auto-block the prefix
 *   PASS
 *
 * A packet the block list drops by a prefix auto-block counts as DROP prefix, not blocklist.
 *
 * Address rules only need the fixed IP header (20 / 40 bytes): whatever follows it cannot get
 * a blocked source past the blocklist. Packets without a complete fixed header, and L2 frames
 * truncated or tagged deeper than FW_VLAN_MAX_DEPTH, are dropped as malformed; non-IP frames
 * pass. src/firewall/model/ is the reference model of these semantics, checked against this program
 * packet by packet.
 *
 * This file is the pipeline; each stage lives in bpf/firewall/: the parse in packet.h, the lists
 * in lists.h (exact tables in exact.h), the per-source table and rate limit in ratelimit.h, the
 * prefix limits in hhh.h, rule hit counts in hits.h, the maps in maps.h. The per-action counters
 * and history come from bpf/lib/.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xdpctl.h"
#include "lib/xdp_stats.h"
#include "firewall/maps.h"
#include "firewall/packet.h"
#include "firewall/hits.h"
#include "firewall/lists.h"
#include "firewall/ratelimit.h"
#include "firewall/hhh.h"

/* count()'s drop reason for a packet that is not dropped: no enum fw_drop_reason. */
#define FW_NOT_DROPPED (-1)

static __always_inline __u32 count(struct xdp_md *ctx, struct clock_cache *clock, int proto,
				   int syn, int drop_reason, __u64 len)
{
	__u32 zero = 0;
	struct fw_stats *stats = bpf_map_lookup_elem(&fw_stats, &zero);

	if (stats) {
		stats->proto_packets[proto & 3]++;
		if (syn)
			stats->proto_packets[FW_PROTO_SYN]++;
		/* Bytes in all and dropped are not counted again here: xdp_stats_map has them by
		 * action, and drop_bytes by reason. */
		if (drop_reason >= 0 && drop_reason < FW_DROP_MAX) {
			stats->drop_packets[drop_reason]++;
			stats->drop_bytes[drop_reason] += len;
		}
	}
	return xdp_stats_record_verdict(
	    ctx, clock, drop_reason != FW_NOT_DROPPED ? XDP_DROP : XDP_PASS, drop_reason);
}

SEC("xdp")
int firewall(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct hdr_cursor nh = {.pos = data};
	__u64 len = data_end - data;
	struct pkt p = {};
	struct clock clk = {};
	struct source_loc source;
	enum bucket_verdict bucket;
	struct hit_rule hit;
	__u32 zero = 0, slot, reason = 0;
	int eth_type, proto;

	clk.cfg = bpf_map_lookup_elem(&fw_config, &zero);
	if (!clk.cfg)
		return XDP_ABORTED;
	clk.cache = clock_now();

	eth_type = parse_ethhdr(&nh, data_end);
	if (eth_type < 0)
		return count(ctx, clk.cache, FW_PROTO_OTHER, 0, FW_DROP_MALFORMED, len);
	if (eth_type != bpf_htons(ETH_P_IP) && eth_type != bpf_htons(ETH_P_IPV6))
		return count(ctx, clk.cache, FW_PROTO_OTHER, 0, FW_NOT_DROPPED, len);
	if (parse_ip(&nh, data_end, eth_type, &p))
		return count(ctx, clk.cache, FW_PROTO_OTHER, 0, FW_DROP_MALFORMED, len);
	proto = proto_counter(&p);
	if (p.has_ports) {
		__u64 *port_count;

		slot = (p.l4proto == IPPROTO_TCP ? FW_PROTO_TCP : FW_PROTO_UDP) * 65536 + p.dport;
		port_count = bpf_map_lookup_elem(&port_packets, &slot);
		if (port_count)
			(*port_count)++;
	}

	if (match_list(FW_LIST_ALLOW, &p, &clk, &hit, &reason)) {
		count_hit(&hit);
		return count(ctx, clk.cache, proto, p.syn, FW_NOT_DROPPED, len);
	}
	if (match_list(FW_LIST_BLOCK, &p, &clk, &hit, &reason)) {
		count_hit(&hit);
		return count(ctx, clk.cache, proto, p.syn,
			     reason == FW_REASON_PREFIX ? FW_DROP_PREFIX : FW_DROP_BLOCKLIST, len);
	}
	if (p.malformed)
		return count(ctx, clk.cache, proto, p.syn, FW_DROP_MALFORMED, len);
	if (p.has_ports) {
		struct fw_port_rule *port;

		port = bpf_map_lookup_elem(&ports, &slot);
		if (port && port->enabled) {
			hit = hit_rule(FW_HIT_PORT, 0, &port->generation, slot, 0, 0, &port->hits,
				       NULL);
			count_hit(&hit);
			return count(ctx, clk.cache, proto, p.syn, FW_DROP_PORT, len);
		}
	}
	source_locate(clk.cfg, &p, &source);
	bucket = over_rate_limit(&clk, &p, &source, len);
	if (bucket == BUCKET_OVER) {
		auto_block(&clk, &p);
		return count(ctx, clk.cache, proto, p.syn, FW_DROP_RATELIMIT, len);
	}
	if (bucket == BUCKET_PASS && rate_limited(clk.cfg, &p)) {
		if (prefix_over_limit(&clk, &p))
			return count(ctx, clk.cache, proto, p.syn, FW_DROP_PREFIX, len);
	}
	return count(ctx, clk.cache, proto, p.syn, FW_NOT_DROPPED, len);
}

char LICENSE[] SEC("license") = "GPL";
