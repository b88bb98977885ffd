//! The operational surface of the real binary: daemonizing, users, signals, listeners,
//! connection limits and logging.

mod common;
mod lifecycle;
