//! The CachePair operator: keeps a replicated pair of cache-node pods running for each
//! `CachePair` resource.
//!
//! Pure functions at the centre, I/O at the edges:
//! - [`crd`]: the resource's types, defaults and schema validation;
//! - [`observe`]: what the members are doing (pods, nodes, the role each member reports);
//! - [`decide`]: what to do about it — fence a superseded master out of the client Service,
//!   create, re-seed, switch over (on request, or off a draining node), roll — as a function of
//!   the observed state;
//! - [`render`]: the Kubernetes objects a pair owns (member pods, Services, PDB,
//!   NetworkPolicy, the VRRP sidecar's configuration);
//! - [`controller`]: the reconcile loop that reads the cluster, calls `decide` and `render`, and
//!   applies the result (server-side apply, finalizer, Events, status);
//! - [`eviction`]: the admission webhook that turns an eviction of a master into a switchover;
//! - [`member`]: the HTTP client for a member's admin listener (role, term, switchover);
//! - [`metrics`], [`leader`], [`telemetry`]: the operator's own `/metrics`, Lease, logs.

pub mod controller;
pub mod crd;
pub mod decide;
pub mod error;
pub mod eviction;
pub mod leader;
pub mod member;
pub mod metrics;
pub mod observe;
pub mod render;
pub mod telemetry;

pub use error::{Error, Result};
