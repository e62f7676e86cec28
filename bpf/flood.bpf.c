// SPDX-License-Identifier: GPL-2.0
/*
 * flood: the traffic generator behind `xdpctl flood`. Userspace runs it with BPF_PROG_RUN in
 * live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) on a template frame; XDP_TX then transmits each
 * run's frame out of the chosen veth. With a source CIDR, every frame gets a random source in
 * it; the IPv4 header checksum and the L4 checksum (whose pseudo-header covers the source) are
 * updated incrementally, so frames stay valid for the kernel stack.
 *
 * In live-frames mode a recycled page keeps what the previous run wrote, so the rewrite is
 * relative to the frame's current contents, never to the template.
 *
 * spray: the same rewrite, then a tail call into `target`: the benchmarks use it to run a
 * program under test on per-packet random sources inside one BPF_PROG_RUN.
 *
 * count_transmits: counts what the veth took of the flood's frames, and what it refused.
 *
 * bare_drop: XDP_DROP and nothing else, the benchmarks' floor (the built-in xdp_drop also keeps
 * its counters and the per-second history).
 *
 * one_read: reads the word of floor_words its IPv4 source hashes to, then drops: the least a
 * lookup in a table far larger than the cache can cost (one miss), for the benchmarks.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "lib/parsing.h"

/* Set by userspace before load (the template's layout). */
const volatile __u32 rand_mask4 = 0; /* IPv4 source bits to randomize (network order) */
const volatile __u64 rand_mask6 = 0; /* bits of the IPv6 source's last 8 bytes to randomize */
const volatile __u8 is_v6 = 0;
const volatile __u16 l4_check_off = 0; /* the L4 checksum covering the source; 0: none */
const volatile __u8 l4_is_udp = 0;     /* UDP writes a zero checksum as 0xffff */

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

/* One's-complement sum of 16-bit words, folded to 16 bits. */
static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* RFC 1624 incremental update of a checksum for `n` 16-bit words changing from old to new.
 * Words are used as stored (network order), which one's-complement arithmetic allows. */
static __always_inline __u16 csum_replace(__u16 check, __u16 *old, __u16 *new, int n)
{
	__u64 sum = (__u16)~check;
	int i;

#pragma unroll
	for (i = 0; i < 8; i++) {
		if (i >= n)
			break;
		sum += (__u16)~old[i];
		sum += new[i];
	}
	return ~csum_fold(sum);
}

/* Updates the L4 checksum whose pseudo-header covers the source, if there is one. */
static __always_inline int update_l4_check(void *data, void *data_end, __u16 *old, __u16 *new,
					   int words)
{
	__u16 *l4_check;

	if (!l4_check_off)
		return 0;
	l4_check = data + l4_check_off;
	if ((void *)(l4_check + 1) > data_end)
		return -1;
	*l4_check = csum_replace(*l4_check, old, new, words);
	if (l4_is_udp && *l4_check == 0)
		*l4_check = 0xffff;
	return 0;
}

static __always_inline int rewrite_v4(void *data, void *data_end)
{
	struct iphdr *iph = data + sizeof(struct ethhdr);
	__u32 old, new;

	if ((void *)(iph + 1) > data_end)
		return -1;
	old = iph->saddr;
	new = (old & ~rand_mask4) | (bpf_get_prandom_u32() & rand_mask4);
	iph->saddr = new;
	iph->check = csum_replace(iph->check, (__u16 *)&old, (__u16 *)&new, 2);
	return update_l4_check(data, data_end, (__u16 *)&old, (__u16 *)&new, 2);
}

static __always_inline int rewrite_v6(void *data, void *data_end)
{
	struct ipv6hdr *ip6h = data + sizeof(struct ethhdr);
	__u64 old, new, rnd;
	void *low;

	if ((void *)(ip6h + 1) > data_end)
		return -1;
	low = (void *)&ip6h->saddr + 8;
	__builtin_memcpy(&old, low, 8);
	rnd = ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
	new = (old & ~rand_mask6) | (rnd & rand_mask6);
	__builtin_memcpy(low, &new, 8);
	return update_l4_check(data, data_end, (__u16 *)&old, (__u16 *)&new, 4);
}

static __always_inline int randomize_source(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;

	if (is_v6)
		return rand_mask6 ? rewrite_v6(data, data_end) : 0;
	return rand_mask4 ? rewrite_v4(data, data_end) : 0;
}

SEC("xdp")
int flood(struct xdp_md *ctx)
{
	if (randomize_source(ctx))
		return XDP_ABORTED;
	return XDP_TX;
}

SEC("xdp")
int spray(struct xdp_md *ctx)
{
	if (randomize_source(ctx))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &target, 0);
	return XDP_ABORTED;
}

/* Set by userspace before it sends: the thread whose transmits count_transmits counts. */
__u32 sender_tid = 0;

/* What the driver did with the sender's frames. */
__u64 frames_taken = 0;
__u64 frames_refused = 0;

/*
 * In live-frames mode XDP_TX becomes a redirect back to the device, and each bulk flush to
 * its ndo_xdp_xmit fires xdp:xdp_devmap_xmit with the frames the driver took and dropped. veth
 * drops frames when its peer's XDP ring (256 frames) is full, and all of them when the peer has
 * neither an XDP program nor GRO. The flush runs in the sending syscall, so the thread id tells
 * this flood's frames from those of any other sender.
 */
SEC("tp_btf/xdp_devmap_xmit")
int BPF_PROG(count_transmits, const struct net_device *from_dev, const struct net_device *to_dev,
	     int sent, int drops, int err)
{
	if ((__u32)bpf_get_current_pid_tgid() != sender_tid)
		return 0;
	__sync_fetch_and_add(&frames_taken, sent);
	__sync_fetch_and_add(&frames_refused, drops);
	return 0;
}

SEC("xdp")
int bare_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

/* Sized by the benchmarks before load (64 MB); one word otherwise, so `xdpctl flood` holds
 * nothing. floor_mask is its entries minus one (a power of two). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} floor_words SEC(".maps");
const volatile __u32 floor_mask = 0;

/* The word one_read_chained read last. */
__u64 chained_word = 0;

/* One random read of floor_words, at the packet's source hashed (Fibonacci hashing:
 * neighbouring sources land far apart) and mixed with `chain`. The words are zero: the read
 * decides the verdict, so it cannot be left out. */
static __always_inline int read_one(struct xdp_md *ctx, __u64 chain, __u64 *read)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	__u64 *word;
	__u32 key;

	if ((void *)(iph + 1) > data_end)
		return XDP_ABORTED;
	key = ((((__u64)iph->saddr * 0x9E3779B97F4A7C15ULL) >> 32) ^ chain) & floor_mask;
	word = bpf_map_lookup_elem(&floor_words, &key);
	*read = word ? *word : 1;
	return *read ? XDP_PASS : XDP_DROP;
}

/* Reads that overlap: nothing waits for a packet's read but its verdict, so a CPU runs on
 * into the next packets while it is out. The one-miss floor. */
SEC("xdp")
int one_read(struct xdp_md *ctx)
{
	__u64 read = 0;

	return read_one(ctx, 0, &read);
}

/* Reads that do not: each read's place depends on the word the last one read, so it cannot
 * start before that one has ended. What a read costs a program long enough that the CPU
 * cannot reach the next packet while the read is out. */
SEC("xdp")
int one_read_chained(struct xdp_md *ctx)
{
	__u64 read = 0;
	int verdict = read_one(ctx, chained_word, &read);

	chained_word = read;
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
