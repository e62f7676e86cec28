// SPDX-License-Identifier: GPL-2.0
/*
 * trace: the kernel half of `xdpctl trace`. A BTF tracepoint program on xdp:xdp_exception
 * sends one struct trace_exception_event per exception through a ring buffer. A tp_btf
 * program attaches through a bpf_link of its own, so no global tracefs event is switched on.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "xdpctl.h"

/* Set by userspace before load: only this device (ifindex within netns_inode); 0 for all. */
const volatile __u32 filter_ifindex = 0;
const volatile __u32 filter_netns_inode = 0;

/* Exceptions that found the ring buffer full: userspace reports them as lost. */
__u64 lost_events = 0;

/* 8192 events of 32 bytes (with the ring buffer's 8-byte header). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} exception_events SEC(".maps");

/* A ring buffer carries no value type, so this pointer is what puts the event's layout into
 * BTF, where the skeleton generates the Rust type from it. */
const struct trace_exception_event *trace_exception_event_layout __attribute__((unused));

SEC("tp_btf/xdp_exception")
int BPF_PROG(trace_xdp_exception, const struct net_device *dev, const struct bpf_prog *xdp,
	     __u32 act)
{
	struct trace_exception_event *event;
	__u32 ifindex = dev->ifindex;
	__u32 netns_inode = dev->nd_net.net->ns.inum;

	if (filter_ifindex && (ifindex != filter_ifindex || netns_inode != filter_netns_inode))
		return 0;

	event = bpf_ringbuf_reserve(&exception_events, sizeof(*event), 0);
	if (!event) {
		__sync_fetch_and_add(&lost_events, 1);
		return 0;
	}
	event->timestamp_ns = bpf_ktime_get_ns();
	event->prog_id = xdp->aux->id;
	event->action = act;
	event->ifindex = ifindex;
	event->netns_inode = netns_inode;
	bpf_ringbuf_submit(event, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
