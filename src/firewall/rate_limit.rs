//! The rate limit's settings as the Rust side holds them, and their place in struct fw_config.

use super::{Config, TOKEN};

/// What the rate limit counts (enum fw_rl_proto).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitProto {
    /// Every packet.
    #[default]
    All,
    Udp,
    Tcp,
    /// ICMP and ICMPv6.
    Icmp,
    /// TCP SYNs without ACK: SYN floods.
    Syn,
}

impl RateLimitProto {
    pub fn to_abi(self) -> u32 {
        use crate::abi::*;
        match self {
            RateLimitProto::All => FW_RL_ALL,
            RateLimitProto::Udp => FW_RL_UDP,
            RateLimitProto::Tcp => FW_RL_TCP,
            RateLimitProto::Icmp => FW_RL_ICMP,
            RateLimitProto::Syn => FW_RL_SYN,
        }
    }

    pub fn from_abi(value: u32) -> RateLimitProto {
        use crate::abi::*;
        match value {
            FW_RL_UDP => RateLimitProto::Udp,
            FW_RL_TCP => RateLimitProto::Tcp,
            FW_RL_ICMP => RateLimitProto::Icmp,
            FW_RL_SYN => RateLimitProto::Syn,
            _ => RateLimitProto::All,
        }
    }
}

/// The rate limit settings (the rl_ fields of struct fw_config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub enabled: bool,
    /// Tokens (packets) per second.
    pub pps: u64,
    /// Bucket size, in packets.
    pub burst: u64,
    /// Auto-block an over-limit source this long; 0: only drop its excess.
    pub block_for_ns: u64,
    pub proto: RateLimitProto,
}

impl RateLimit {
    /// Nanoseconds for an empty bucket to fill (burst * TOKEN / pps), as the program reads it
    /// from fw_config.rl_full_ns; computed once here so the program never divides.
    /// In u128 and saturating: burst * TOKEN overflows u64 past 18 billion packets.
    pub fn full_ns(&self) -> u64 {
        if self.pps == 0 {
            return 0;
        }
        let full = u128::from(self.burst) * u128::from(TOKEN) / u128::from(self.pps);
        u64::try_from(full).unwrap_or(u64::MAX)
    }

    /// The most tokens one CPU's lease takes from a source's bucket (fw_config.rl_lease_max):
    /// a quarter of the burst shared among the CPUs, at most 32. Leases spare the shared slot
    /// a write per packet; what they cost is a source passing up to `cpus * (lease - 1)`
    /// packets more than its bucket holds, a quarter of its burst at most, or being refused as
    /// many early for at most FW_LEASE_NS. 1: no leases (a small burst).
    pub fn lease_max(&self, cpus: u32) -> u32 {
        (self.burst / (4 * u64::from(cpus.max(1)))).clamp(1, 32) as u32
    }

    pub fn of_config(config: &Config) -> RateLimit {
        RateLimit {
            enabled: config.rl_enabled != 0,
            pps: config.rl_pps,
            burst: config.rl_burst,
            block_for_ns: config.rl_block_for_ns,
            proto: RateLimitProto::from_abi(config.rl_proto),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_fill_time_saturates_rather_than_wrapping() {
        let rl = |burst, pps| {
            RateLimit {
                burst,
                pps,
                ..RateLimit::default()
            }
            .full_ns()
        };
        assert_eq!(rl(20, 10), 2 * TOKEN);
        assert_eq!(rl(20_000_000_000, 1_000_000_000), 20 * TOKEN);
        assert_eq!(rl(u64::MAX, 1), u64::MAX);
        assert_eq!(rl(5, 0), 0);
    }

    #[test]
    fn rate_limit_proto_round_trips() {
        for proto in [
            RateLimitProto::All,
            RateLimitProto::Udp,
            RateLimitProto::Tcp,
            RateLimitProto::Icmp,
            RateLimitProto::Syn,
        ] {
            assert_eq!(RateLimitProto::from_abi(proto.to_abi()), proto);
        }
    }
}
