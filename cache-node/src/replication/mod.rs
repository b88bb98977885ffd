//! Pair replication, repcached-style: the link between the two nodes of a pair.
//!
//! - [`auth`]: the shared-secret handshake that opens every link.
//!
//! Pure: no sockets, no store, no runtime.

pub mod auth;
