/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-action packet and byte counters in the xdp-tutorial's xdp_stats_map
 * layout, and the per-second history (lib/history.h). Per-CPU, so the hot path
 * needs no atomics; userspace sums the CPUs.
 */
#ifndef XDPCTL_XDP_STATS_H
#define XDPCTL_XDP_STATS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "xdpctl.h"
#include "lib/history.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct datarec);
	__uint(max_entries, XDP_ACTION_MAX);
} xdp_stats_map SEC(".maps");

/* Counts the packet under its verdict, in the totals and in the current second, and returns
 * the verdict. `drop` is why a dropped packet was dropped (enum fw_drop_reason / history_drop).
 * An out-of-range action is a bug: abort. */
static __always_inline __u32 xdp_stats_record_verdict(struct xdp_md *ctx, struct clock_cache *clock,
						      __u32 action, int drop)
{
	__u64 len = ctx->data_end - ctx->data;
	struct datarec *rec;

	if (action >= XDP_ACTION_MAX)
		return XDP_ABORTED;

	rec = bpf_map_lookup_elem(&xdp_stats_map, &action);
	if (!rec)
		return XDP_ABORTED;

	rec->rx_packets++;
	rec->rx_bytes += len;
	history_record(clock, action, drop, len);
	return action;
}

/* Counts the packet under its verdict and returns the verdict, so a program can end in
 * `return xdp_stats_record_action(ctx, XDP_PASS);`. */
static __always_inline __u32 xdp_stats_record_action(struct xdp_md *ctx, __u32 action)
{
	return xdp_stats_record_verdict(ctx, clock_now(), action,
					action == XDP_ABORTED ? HISTORY_DROP_ABORTED
							      : HISTORY_DROP_PROGRAM);
}

#endif /* XDPCTL_XDP_STATS_H */
