/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-action packet and byte counters in the xdp-tutorial's xdp_stats_map
 * layout. Per-CPU, so the hot path needs no atomics; userspace sums the CPUs.
 */
#ifndef XDPCTL_XDP_STATS_H
#define XDPCTL_XDP_STATS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "xdpctl.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct datarec);
	__uint(max_entries, XDP_ACTION_MAX);
} xdp_stats_map SEC(".maps");

/* Counts the packet under its verdict and returns the verdict, so a program can end in
 * `return xdp_stats_record_action(ctx, XDP_PASS);`. An out-of-range action is a bug: abort. */
static __always_inline __u32 xdp_stats_record_action(struct xdp_md *ctx, __u32 action)
{
	struct datarec *rec;

	if (action >= XDP_ACTION_MAX)
		return XDP_ABORTED;

	rec = bpf_map_lookup_elem(&xdp_stats_map, &action);
	if (!rec)
		return XDP_ABORTED;

	rec->rx_packets++;
	rec->rx_bytes += ctx->data_end - ctx->data;
	return action;
}

#endif /* XDPCTL_XDP_STATS_H */
