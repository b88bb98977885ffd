//! Pair replication, repcached-style: the link between the two nodes of a pair.
//!
//! - [`codec`]: frames and messages on the replication port;
//! - [`auth`]: the shared-secret handshake that opens every link.
//!
//! Both are pure: no sockets, no store, no runtime.

pub mod auth;
pub mod codec;
