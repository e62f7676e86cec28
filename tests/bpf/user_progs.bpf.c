// SPDX-License-Identifier: GPL-2.0
/*
 * A user's own BPF object, as a kernel developer would build it outside xdpctl, for the --obj
 * tests: one program with a tutorial-layout xdp_stats_map, one with no maps, and one the
 * verifier must reject.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct user_datarec {
	__u64 rx_packets;
	__u64 rx_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct user_datarec);
	__uint(max_entries, 5);
} xdp_stats_map SEC(".maps");

SEC("xdp")
int xdp_user_count(struct xdp_md *ctx)
{
	__u32 action = XDP_PASS;
	struct user_datarec *rec = bpf_map_lookup_elem(&xdp_stats_map, &action);

	if (rec) {
		rec->rx_packets++;
		rec->rx_bytes += ctx->data_end - ctx->data;
	}
	return action;
}

SEC("xdp")
int xdp_user_plain(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Reads the packet without a bounds check: the verifier must refuse it. */
SEC("xdp")
int xdp_unchecked(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(long)ctx->data;

	return data[0] == 0xff ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
