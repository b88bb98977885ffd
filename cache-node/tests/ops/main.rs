//! The operational surface of the real binary: daemonizing, users, signals, listeners,
//! connection limits, logging and the UDP port.

mod common;
mod lifecycle;
mod udp;
