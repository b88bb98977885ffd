//! The operational surface of the real binary: daemonizing, users, signals, listeners,
//! connection limits, logging, the UDP port, `stats conns` and the admin HTTP listener.

mod admin;
mod common;
mod lifecycle;
mod stats_conns;
mod udp;
