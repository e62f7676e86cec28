/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The per-CPU clock: CLOCK_MONOTONIC_COARSE as of the current jiffy (struct clock_cache in
 * xdpctl.h), so a packet reads the time for the price of a load. The history (history.h) is
 * keyed by its second, and the firewall reads its expiries and token buckets from it.
 */
#ifndef XDPCTL_CLOCK_H
#define XDPCTL_CLOCK_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "xdpctl.h"

#define NSEC_PER_SEC 1000000000ULL

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct clock_cache);
	__uint(max_entries, 1);
} clock_cache SEC(".maps");

/* This CPU's clock as it was last refreshed: clock_now() refreshes it first; a function whose
 * caller called clock_now() reads it as it is. */
static __always_inline struct clock_cache *clock_cached(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&clock_cache, &zero);
}

/* This CPU's clock, refreshed once per jiffy: the coarse clock only moves on a tick anyway. The
 * division into seconds happens once per second. */
static __always_inline struct clock_cache *clock_now(void)
{
	__u64 jiffies = bpf_jiffies64();
	struct clock_cache *clock = clock_cached();

	if (!clock)
		return NULL;
	if (clock->jiffies != jiffies) {
		clock->jiffies = jiffies;
		clock->now_ns = bpf_ktime_get_coarse_ns();
		if (clock->now_ns >= clock->second_end_ns) {
			clock->second = clock->now_ns / NSEC_PER_SEC;
			clock->second_end_ns = (clock->second + 1) * NSEC_PER_SEC;
		}
	}
	return clock;
}

#endif /* XDPCTL_CLOCK_H */
