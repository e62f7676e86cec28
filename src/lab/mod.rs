//! The veth lab (`testenv`), the flood generator that sends into it, and the frames both the
//! flood and the tests and bench are made of (`packets`).

pub mod flood;
pub mod packets;
pub mod testenv;
