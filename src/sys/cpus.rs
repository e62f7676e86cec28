//! The CPUs the kernel runs on now (/sys/devices/system/cpu/online): per-CPU limits divide a
//! host-wide rate among them.

use anyhow::{bail, Context, Result};

/// How many CPUs are online.
pub fn online() -> Result<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .context("reading /sys/devices/system/cpu/online")?;
    count_in_list(&text)
}

/// The number of CPUs in a kernel CPU list ("0-3,8,10-11").
pub fn count_in_list(list: &str) -> Result<u32> {
    let mut count = 0u32;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>(), b.parse::<u32>()),
            None => (part.parse::<u32>(), part.parse::<u32>()),
        };
        match (first, last) {
            (Ok(a), Ok(b)) if a <= b => count += b - a + 1,
            _ => bail!("{part:?} is not a CPU or a CPU range"),
        }
    }
    if count == 0 {
        bail!("no CPU is online");
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_every_cpu_once() {
        assert_eq!(count_in_list("0-1\n").unwrap(), 2);
        assert_eq!(count_in_list("0").unwrap(), 1);
        assert_eq!(count_in_list("0-3,8,10-11").unwrap(), 7);
        assert!(count_in_list("").is_err());
        assert!(count_in_list("3-1").is_err());
        assert!(online().unwrap() >= 1);
    }
}
