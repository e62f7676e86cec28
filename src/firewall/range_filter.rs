//! The range filter (FW_RANGE_WORDS in include/xdpctl.h): per list and family, a bit per value of
//! an address's first 16 bits, set where a range of the list's trie may cover it. The program
//! skips the trie's lookup (a call into the kernel) where the bit is clear, which for most
//! traffic it is: ranges cover few of the 65,536 values.
//!
//! Only xdpctl writes it, under the edit lock: bits are set before a range is inserted, and
//! recomputed from the trie after ranges are removed. Each word is stored whole, so the program
//! sees every word either before or after a recomputation, and both cover every range in the
//! trie at that moment.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use ipnet::IpNet;
use libbpf_rs::MapHandle;

use crate::firewall::List;
use crate::sys::mmap::Mapping;

/// FW_RANGE_WORDS: 64-bit words for one list and family.
pub const WORDS: usize = 65536 / 64;

/// The values of the first 16 bits a range spans: the first, and how many.
pub fn span(range: &IpNet) -> (usize, usize) {
    let (top, len) = match range {
        IpNet::V4(net) => ((u32::from(net.network()) >> 16) as usize, net.prefix_len()),
        IpNet::V6(net) => (
            (u128::from(net.network()) >> 112) as usize,
            net.prefix_len(),
        ),
    };
    (top, 1 << 16_u8.saturating_sub(len))
}

/// The filter's words for one family's ranges.
pub fn words_for<'a>(ranges: impl IntoIterator<Item = &'a IpNet>) -> Vec<u64> {
    let mut words = vec![0u64; WORDS];
    for range in ranges {
        let (first, count) = span(range);
        for value in first..first + count {
            words[value / 64] |= 1 << (value % 64);
        }
    }
    words
}

/// The filter, mapped into this process.
pub struct RangeFilter {
    words: Mapping,
}

impl RangeFilter {
    pub fn open(map: &MapHandle) -> Result<RangeFilter> {
        Ok(RangeFilter {
            words: Mapping::of(map, 4 * WORDS, 8)?,
        })
    }

    /// The words of one list and family (enum trie_index order in bpf/firewall.bpf.c).
    fn words(&self, list: List, ipv6: bool) -> &[AtomicU64] {
        let first = (list as usize * 2 + ipv6 as usize) * WORDS;
        assert!((first + WORDS) * 8 <= self.words.len);
        // SAFETY: within the mapping; u64 words of a page-aligned mapping.
        unsafe {
            std::slice::from_raw_parts((self.words.ptr as *const AtomicU64).add(first), WORDS)
        }
    }

    /// Sets the bits of ranges about to be inserted.
    pub fn mark(&self, list: List, ranges: &[IpNet]) {
        for ipv6 in [false, true] {
            let family = ranges.iter().filter(|r| matches!(r, IpNet::V6(_)) == ipv6);
            let new = words_for(family);
            for (word, bits) in self.words(list, ipv6).iter().zip(new) {
                if bits != 0 {
                    word.fetch_or(bits, Ordering::Release);
                }
            }
        }
    }

    /// Recomputes one list and family's bits from the ranges now in its trie.
    pub fn set<'a>(&self, list: List, ipv6: bool, ranges: impl IntoIterator<Item = &'a IpNet>) {
        for (word, bits) in self.words(list, ipv6).iter().zip(words_for(ranges)) {
            word.store(bits, Ordering::Release);
        }
    }

    /// Whether a range of the list may cover `addr`, as the program asks.
    pub fn may_match(&self, list: List, addr: IpAddr) -> bool {
        let (value, ipv6) = match addr {
            IpAddr::V4(a) => ((u32::from(a) >> 16) as usize, false),
            IpAddr::V6(a) => ((u128::from(a) >> 112) as usize, true),
        };
        self.words(list, ipv6)[value / 64].load(Ordering::Acquire) >> (value % 64) & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn spans_cover_what_a_range_may_match() {
        assert_eq!(span(&net("203.0.113.0/24")), (0xcb00, 1));
        assert_eq!(span(&net("10.0.0.0/8")), (0x0a00, 256));
        assert_eq!(span(&net("0.0.0.0/0")), (0, 65536));
        assert_eq!(span(&net("2001:db8::/32")), (0x2001, 1));
        assert_eq!(span(&net("2000::/3")), (0x2000, 8192));
    }

    #[test]
    fn words_have_the_bits_of_every_range_and_no_other() {
        let ranges = [net("10.0.0.0/8"), net("192.168.1.0/24")];
        let words = words_for(&ranges);
        let bit = |value: usize| words[value / 64] >> (value % 64) & 1 == 1;
        assert!((0x0a00..0x0b00).all(bit));
        assert!(bit(0xc0a8));
        assert!(!bit(0x0b00) && !bit(0x09ff) && !bit(0xc0a9));
        assert_eq!(words.iter().map(|w| w.count_ones()).sum::<u32>(), 257);
    }
}
