//! cache-node: a memcached-compatible cache server.
//!
//! Layers, from the wire inwards:
//! - [`server`]: listeners, connections, limits — the only place that touches sockets;
//! - [`protocol`]: parsing requests and the shapes of replies, one module per protocol;
//! - [`engine`]: applies parsed requests to the store and renders replies;
//! - [`store`]: items, memory accounting, eviction, expiry, CAS — no protocol knowledge;
//! - [`config`]: the memcached-compatible command line;
//! - [`node`]: start-up order, signals and shutdown, with [`daemon`] (root, `-u`, `-d`, `-P`)
//!   and [`logging`] (`-v`, the `verbosity` command);
//! - [`admin`]: the HTTP listener for metrics and health checks;
//! - [`replication`]: pair replication between two nodes;
//! - [`tls`]: the client port's TLS (`-Z`), with its certificates reloaded in place;
//! - [`pem`]: certificates and keys from PEM files, for the client port and the replication link;
//! - [`vrrp`]: a keepalived-compatible VRRP speaker that moves a virtual address between nodes;
//! - [`rate_limited_log`]: at most one log line per interval for a failure that repeats.

pub mod admin;
pub mod admin_client;
pub mod allocator;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod logging;
pub mod node;
pub mod number;
pub mod pem;
pub mod protocol;
pub mod rate_limited_log;
pub mod replication;
pub mod sched;
pub mod server;
pub mod store;
pub mod tls;
pub mod vrrp;
