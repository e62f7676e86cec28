// SPDX-License-Identifier: GPL-2.0
/* xdp_drop: returns XDP_DROP for every packet and counts it in xdp_stats_map. */
#include "lib/xdp_stats.h"

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return xdp_stats_record_action(ctx, XDP_DROP);
}

char LICENSE[] SEC("license") = "GPL";
