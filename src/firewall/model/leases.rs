//! Leases of a source's tokens (struct fw_lease, bpf/firewall/ratelimit.h), for the one CPU the
//! model is: a grant takes up to `lease_max` tokens from the source's bucket, the source's next
//! packets pass from the lease while it lasts (FW_LEASE_NS), and what it holds goes back to the
//! slot when the source next reaches its bucket or another source takes the lease's place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Firewall, SourceState};
use crate::firewall::{SOURCE_WAYS, TOKEN};

/// FW_LEASES: leases per CPU.
pub const LEASES: usize = crate::abi::FW_LEASES as usize;
/// FW_LEASE_NS: how long a lease is good for.
pub const LEASE_NS: u64 = crate::abi::FW_LEASE_NS as u64;

/// One lease (struct fw_lease).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub addr: [u8; 16],
    pub granted_ns: u64,
    pub left: u32,
    pub packets: u32,
    pub bytes: u64,
    pub set: u32,
    pub way: u16,
    pub is_v6: bool,
}

impl Lease {
    /// The source's address (its key is IPv4-mapped for IPv4).
    fn source(&self) -> IpAddr {
        if self.is_v6 {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                self.addr[12],
                self.addr[13],
                self.addr[14],
                self.addr[15],
            ))
        }
    }
}

/// The lease of a source's place: its tag's low bits.
pub fn lease_index(tag: u16) -> usize {
    tag as usize & (LEASES - 1)
}

impl Firewall {
    /// Whether this packet of `addr` passes from its live lease (and counts there).
    pub(super) fn pass_from_lease(
        &mut self,
        at: usize,
        addr: [u8; 16],
        len: u64,
        now: u64,
    ) -> bool {
        let lease = self.leases.entry(at).or_default();
        if lease.left > 0
            && lease.addr == addr
            && now >= lease.granted_ns
            && now - lease.granted_ns < LEASE_NS
        {
            lease.left -= 1;
            lease.packets = lease.packets.wrapping_add(1);
            lease.bytes = lease.bytes.wrapping_add(len);
            self.leased_passes += 1;
            return true;
        }
        false
    }

    /// Gives what a lease holds back to its source's slot, if the slot still holds it; the
    /// packets it passed count towards the source's prefixes now, and may block one.
    pub(super) fn settle_lease(&mut self, at: usize, cap: u64, now: u64) {
        let Some(&lease) = self.leases.get(&at) else {
            return;
        };
        if lease.left == 0 && lease.packets == 0 {
            return;
        }
        if lease.packets != 0 {
            if let Some(trip) = self
                .prefix
                .count_packets(lease.source(), now, lease.packets)
            {
                self.block_prefix(trip, now);
            }
        }
        let lease = self.leases.get_mut(&at).unwrap();
        let ways = self.sources.entry(lease.set).or_default();
        let slot: &mut SourceState = &mut ways[lease.way as usize & (SOURCE_WAYS - 1)];
        if slot.packets != 0 && slot.addr == lease.addr {
            let tokens = slot
                .tokens
                .wrapping_add(u64::from(lease.left).wrapping_mul(TOKEN));
            slot.tokens = tokens.min(cap);
            slot.packets = slot.packets.wrapping_add(u64::from(lease.packets));
            slot.bytes = slot.bytes.wrapping_add(lease.bytes);
        }
        lease.left = 0;
        lease.packets = 0;
        lease.bytes = 0;
    }

    /// Grants the source a lease of up to `lease_max` of the `tokens` its bucket holds; returns
    /// the tokens granted (at least the one this packet takes).
    pub(super) fn grant_lease(
        &mut self,
        at: usize,
        slot: (u32, usize),
        source: IpAddr,
        tokens: u64,
        now: u64,
    ) -> u64 {
        let addr = super::source_key(source);
        let grant = (tokens / TOKEN).min(u64::from(self.lease_max));
        self.leases.insert(
            at,
            Lease {
                addr,
                granted_ns: now,
                left: (grant - 1) as u32,
                packets: 0,
                bytes: 0,
                set: slot.0,
                way: slot.1 as u16,
                is_v6: source.is_ipv6(),
            },
        );
        grant
    }
}
