//! The veth lab (`testenv`) and the flood generator that sends into it.

pub mod flood;
pub mod testenv;
