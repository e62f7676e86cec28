//! Kernel plumbing that knows no feature: loading programs, attaching them, xdpctl's pins in
//! bpffs, map I/O, locks, privileges and libbpf's log. Nothing here names a firewall type.

pub mod attach;
pub mod clock;
pub mod cpus;
pub mod ifname;
pub mod libbpf_log;
pub mod locks;
pub mod map_io;
pub mod map_users;
pub mod mmap;
pub mod pins;
pub mod privileges;
pub mod programs;
