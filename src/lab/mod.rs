//! The veth lab (`testenv`) and the flood generator that sends into it; the frames it sends
//! are built by `crate::packets`.

pub mod flood;
pub mod testenv;
