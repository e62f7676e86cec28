/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The structs shared by the BPF programs and the Rust side. Every layout here
 * is part of xdpctl's ABI: the Rust side reads these bytes out of maps, so a
 * change must be made on both sides (src/stats.rs mirrors it and its unit
 * tests check the sizes against the skeleton's generated types).
 */
#ifndef XDPCTL_H
#define XDPCTL_H

/* One slot per XDP action: XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT. */
#define XDP_ACTION_MAX 5

/* The value of xdp_stats_map: the xdp-tutorial's layout, so its tools and ours agree. */
struct datarec {
	__u64 rx_packets;
	__u64 rx_bytes;
};

#endif /* XDPCTL_H */
