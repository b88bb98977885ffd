//! VRRP speaker for bare-metal hostNetwork: keepalived-compatible VRRPv2/v3.

pub mod packet;
