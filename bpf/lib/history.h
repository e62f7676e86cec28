/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The per-second history ring, keyed by the per-CPU clock (clock.h).
 *
 * Each CPU counts into the slot of the current second (per-CPU, so no atomics), and resets a
 * slot the first time it enters a new second. Userspace sums the CPUs' slots whose `second`
 * matches, for seconds that have ended: the counts are exact however late it reads, as long as
 * it reads within XDPCTL_HISTORY_SLOTS - 2 seconds (src/counters/history.rs says why not all of
 * them).
 */
#ifndef XDPCTL_HISTORY_H
#define XDPCTL_HISTORY_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "xdpctl.h"
#include "lib/clock.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct history_second);
	__uint(max_entries, XDPCTL_HISTORY_SLOTS);
} xdp_history SEC(".maps");

/* Counts a packet of `len` bytes with its verdict into the current second. `drop` is an enum
 * fw_drop_reason / history_drop for dropped packets, ignored otherwise. */
static __always_inline void history_record(struct clock_cache *clock, __u32 action, int drop,
					   __u64 len)
{
	struct history_second *slot;
	__u32 index, reason;

	if (!clock)
		return;
	index = clock->second & (XDPCTL_HISTORY_SLOTS - 1);
	slot = bpf_map_lookup_elem(&xdp_history, &index);
	if (!slot)
		return;
	if (slot->second != clock->second) {
		__builtin_memset(slot, 0, sizeof(*slot));
		slot->second = clock->second;
	}
	slot->bytes += len;
	if (action == XDP_PASS) {
		slot->passed++;
	} else if (action == XDP_DROP || action == XDP_ABORTED) {
		slot->dropped++;
		reason = drop;
		if (reason >= HISTORY_DROP_MAX)
			reason = HISTORY_DROP_PROGRAM;
		slot->drops[reason]++;
	} else {
		slot->other++;
	}
}

#endif /* XDPCTL_HISTORY_H */
