//! A shared mapping of a BPF array made `BPF_F_MMAPABLE`: the program and xdpctl then read and
//! write the same memory, xdpctl through atomics.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapHandle};

/// A shared mapping of a BPF array.
pub struct Mapping {
    pub ptr: *mut libc::c_void,
    pub len: usize,
}

// SAFETY: the memory is only touched through atomics.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the whole array, after checking its size: `entries` of `value_size` bytes.
    pub fn of(map: &MapHandle, entries: usize, value_size: usize) -> Result<Mapping> {
        let len = entries * value_size;
        if map.max_entries() as usize != entries || map.value_size() as usize != value_size {
            bail!(
                "the map {} has {} entries of {} bytes, not {entries} of {value_size}: it was \
                 made by another version of xdpctl",
                map.name().to_string_lossy(),
                map.max_entries(),
                map.value_size()
            );
        }
        // SAFETY: a shared mapping of an mmapable array map, within its size.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).with_context(|| {
                format!(
                    "mapping the map {} into memory",
                    map.name().to_string_lossy()
                )
            });
        }
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
