//! VRRP speaker for bare-metal hostNetwork: keepalived-compatible VRRPv2/v3.

pub mod addr;
pub mod announce;
pub mod config;
pub mod packet;
pub mod socket;
