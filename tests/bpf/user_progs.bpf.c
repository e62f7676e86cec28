// SPDX-License-Identifier: GPL-2.0
/*
 * A user's own BPF object, as a kernel developer would build it outside xdpctl, for the --obj
 * tests: one program with a tutorial-layout xdp_stats_map, one with no maps, one the verifier
 * must reject, and for `xdpctl trace` one that says hello through bpf_printk and one that
 * returns a number that is no XDP action.
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

/* A name longer than the kernel keeps (15 characters): xdpctl shows it whole, from BTF. */
SEC("xdp")
int xdp_user_with_a_long_name(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_user_plain(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* bpf_printk for every packet, with a string the trace test looks for. */
SEC("xdp")
int xdp_user_printk(struct xdp_md *ctx)
{
	bpf_printk("xdpctl-trace-test: a packet of %d bytes", (int)(ctx->data_end - ctx->data));
	return XDP_PASS;
}

/* A buggy program: 7 is no XDP action, so the kernel drops the packet and raises
 * xdp:xdp_exception with action 7. */
SEC("xdp")
int xdp_bad_action(struct xdp_md *ctx)
{
	return 7;
}

/* Reads the packet without a bounds check: the verifier must refuse it. */
SEC("xdp")
int xdp_unchecked(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(long)ctx->data;

	return data[0] == 0xff ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
