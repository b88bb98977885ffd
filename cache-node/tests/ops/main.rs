//! The operational surface of the real binary: daemonizing, users, signals, listeners,
//! connection limits, logging, the UDP port and `stats conns`.

mod common;
mod lifecycle;
mod stats_conns;
mod udp;
