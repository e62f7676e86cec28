/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The firewall's clock: the per-CPU coarse clock (lib/clock.h), or the fixed time tests set
 * in fw_config, and rule expiry by it.
 */
#ifndef XDPCTL_FIREWALL_CLOCK_H
#define XDPCTL_FIREWALL_CLOCK_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "xdpctl.h"
#include "lib/clock.h"

/* The clock: CLOCK_MONOTONIC_COARSE as of this jiffy, from the per-CPU cache the history is
 * keyed by (lib/clock.h). Tick resolution (1-4 ms) is plenty for expiries and token buckets, and
 * a cached read costs nothing, where bpf_ktime_get_ns costs 30 ns in a VM and even the coarse
 * helper 13 ns (measured). Tests set now_override_ns to drive it. */
struct clock {
	struct fw_config *cfg;
	struct clock_cache *cache;
};

static __always_inline __u64 now_ns(struct clock *clk)
{
	if (clk->cfg->now_override_ns)
		return clk->cfg->now_override_ns;
	return clk->cache ? clk->cache->now_ns : bpf_ktime_get_coarse_ns();
}

static __always_inline int expired(struct fw_rule *rule, struct clock *clk)
{
	return rule->expires_ns && now_ns(clk) >= rule->expires_ns;
}

#endif /* XDPCTL_FIREWALL_CLOCK_H */
