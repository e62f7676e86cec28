//! The range filter (FW_RANGE_WORDS in include/xdpctl.h): per list and family, a bit per value of
//! an address's first 16 bits, set where a range of the list's trie may cover it; and for IPv4 a
//! finer level, a bit per /20, read where the /16 bit is set. The program skips the trie's
//! lookup (a call into the kernel, and a walk of its nodes) where a bit is clear, which for most
//! traffic it is: even ranges spread over the whole space cover few of the /20s.
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

/// 64-bit words of the /16 level for one list and family.
pub const WORDS: usize = crate::abi::FW_RANGE_WORDS as usize;
/// 64-bit words of the IPv4 /20 level for one list.
pub const FINE_WORDS: usize = crate::abi::FW_RANGE_FINE_WORDS as usize;
/// The fine level's length.
const FINE_BITS: u8 = crate::abi::FW_RANGE_FINE_BITS as u8;
/// Where the fine level starts, and the whole array's words.
const FINE_FIRST: usize = crate::abi::FW_RANGE_FINE_FIRST as usize;
const ALL_WORDS: usize = crate::abi::FW_RANGE_ALL_WORDS as usize;

/// The values of an address's first `bits` bits a range spans: the first, and how many.
pub fn span(range: &IpNet, bits: u8) -> (usize, usize) {
    let (first, len) = match range {
        IpNet::V4(net) => (
            (u32::from(net.network()) >> (32 - bits)) as usize,
            net.prefix_len(),
        ),
        IpNet::V6(net) => (
            (u128::from(net.network()) >> (128 - bits)) as usize,
            net.prefix_len(),
        ),
    };
    (first, 1 << bits.saturating_sub(len))
}

/// A level's words (`bits` long, 16 or FINE_BITS) for one family's ranges.
pub fn words_for<'a>(ranges: impl IntoIterator<Item = &'a IpNet>, bits: u8) -> Vec<u64> {
    let mut words = vec![0u64; 1 << (bits - 6)];
    for range in ranges {
        let (first, count) = span(range, bits);
        if count >= 64 {
            words[first / 64..(first + count) / 64].fill(!0);
            continue;
        }
        for value in first..first + count {
            words[value / 64] |= 1 << (value % 64);
        }
    }
    words
}

/// The value of an address's first `bits` bits.
fn value_of(addr: IpAddr, bits: u8) -> usize {
    match addr {
        IpAddr::V4(a) => (u32::from(a) >> (32 - bits)) as usize,
        IpAddr::V6(a) => (u128::from(a) >> (128 - bits)) as usize,
    }
}

/// The filter, mapped into this process.
pub struct RangeFilter {
    words: Mapping,
}

impl RangeFilter {
    pub fn open(map: &MapHandle) -> Result<RangeFilter> {
        Ok(RangeFilter {
            words: Mapping::of(map, ALL_WORDS, 8)?,
        })
    }

    fn slice(&self, first: usize, len: usize) -> &[AtomicU64] {
        assert!((first + len) * 8 <= self.words.len);
        // SAFETY: within the mapping; u64 words of a page-aligned mapping.
        unsafe { std::slice::from_raw_parts((self.words.ptr as *const AtomicU64).add(first), len) }
    }

    /// The levels of one list and family, with their lengths: the /16 level (enum trie_index
    /// order in bpf/firewall/lists.h), then for IPv4 the /20 level.
    fn levels(&self, list: List, ipv6: bool) -> Vec<(&[AtomicU64], u8)> {
        let mut levels = vec![(
            self.slice((list as usize * 2 + ipv6 as usize) * WORDS, WORDS),
            16,
        )];
        if !ipv6 {
            levels.push((
                self.slice(FINE_FIRST + list as usize * FINE_WORDS, FINE_WORDS),
                FINE_BITS,
            ));
        }
        levels
    }

    /// Sets the bits of ranges about to be inserted.
    pub fn mark(&self, list: List, ranges: &[IpNet]) {
        for ipv6 in [false, true] {
            let family: Vec<&IpNet> = ranges
                .iter()
                .filter(|r| matches!(r, IpNet::V6(_)) == ipv6)
                .collect();
            if family.is_empty() {
                continue;
            }
            for (words, bits) in self.levels(list, ipv6) {
                for (word, new) in words.iter().zip(words_for(family.iter().copied(), bits)) {
                    if new != 0 {
                        word.fetch_or(new, Ordering::Release);
                    }
                }
            }
        }
    }

    /// Recomputes one list and family's bits from the ranges now in its trie.
    pub fn set<'a>(&self, list: List, ipv6: bool, ranges: impl IntoIterator<Item = &'a IpNet>) {
        let ranges: Vec<&IpNet> = ranges.into_iter().collect();
        for (words, bits) in self.levels(list, ipv6) {
            for (word, new) in words.iter().zip(words_for(ranges.iter().copied(), bits)) {
                word.store(new, Ordering::Release);
            }
        }
    }

    /// Whether a range of the list may cover `addr`, as the program asks.
    pub fn may_match(&self, list: List, addr: IpAddr) -> bool {
        self.levels(list, addr.is_ipv6())
            .into_iter()
            .all(|(words, bits)| {
                let value = value_of(addr, bits);
                words[value / 64].load(Ordering::Acquire) >> (value % 64) & 1 == 1
            })
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
        assert_eq!(span(&net("203.0.113.0/24"), 16), (0xcb00, 1));
        assert_eq!(span(&net("10.0.0.0/8"), 16), (0x0a00, 256));
        assert_eq!(span(&net("0.0.0.0/0"), 16), (0, 65536));
        assert_eq!(span(&net("2001:db8::/32"), 16), (0x2001, 1));
        assert_eq!(span(&net("2000::/3"), 16), (0x2000, 8192));
        assert_eq!(span(&net("203.0.113.0/24"), 20), (0xcb007, 1));
        assert_eq!(span(&net("10.0.0.0/8"), 20), (0x0a000, 4096));
        assert_eq!(span(&net("192.168.0.0/18"), 20), (0xc0a80, 4));
    }

    #[test]
    fn the_fine_level_sets_only_the_20s_a_range_may_cover() {
        let ranges = [net("10.0.0.0/8"), net("192.168.16.0/22"), net("0.0.0.0/0")];
        let words = words_for(&ranges[..2], FINE_BITS);
        let bit = |value: usize| words[value / 64] >> (value % 64) & 1 == 1;
        assert!((0x0a000..0x0b000).all(bit));
        assert!(bit(0xc0a81) && !bit(0xc0a80) && !bit(0xc0a82));
        assert_eq!(words.iter().map(|w| w.count_ones()).sum::<u32>(), 4097);
        let all = words_for(&ranges[2..], FINE_BITS);
        assert!(all.iter().all(|w| *w == !0));
    }

    #[test]
    fn words_have_the_bits_of_every_range_and_no_other() {
        let ranges = [net("10.0.0.0/8"), net("192.168.1.0/24")];
        let words = words_for(&ranges, 16);
        let bit = |value: usize| words[value / 64] >> (value % 64) & 1 == 1;
        assert!((0x0a00..0x0b00).all(bit));
        assert!(bit(0xc0a8));
        assert!(!bit(0x0b00) && !bit(0x09ff) && !bit(0xc0a9));
        assert_eq!(words.iter().map(|w| w.count_ones()).sum::<u32>(), 257);
    }
}
