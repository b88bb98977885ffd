//! The CachePair operator: keeps a replicated pair of cache-node pods running for each
//! `CachePair` resource.
//!
//! Pure functions at the centre, I/O at the edges:
//! - [`crd`]: the resource's types, defaults and schema validation;
//! - [`pair`]: a pair's two members, their names, and the labels on what it owns;
//! - [`validate`]: what the schema cannot check (the Secrets and nodes the spec names);
//! - [`observe`]: what the members are doing (pods, nodes, the role each member reports);
//! - [`decide`]: what to do about it — fence a superseded master out of the client Service,
//!   create, re-seed, switch over (on request, or off a draining node), roll, label roles — as
//!   a function of the observed state;
//! - [`status`]: the status a round leaves behind;
//! - [`render`]: the Kubernetes objects a pair owns (member pods, Services, PDB,
//!   NetworkPolicy, ServiceMonitor, the VRRP sidecar's configuration);
//! - [`controller`]: the reconcile loop, a thin executor that reads the cluster, calls the
//!   above, and applies the result (server-side apply, finalizer, Events);
//! - [`admin`]: the HTTP client for a member's admin listener (role, term, switchover);
//! - [`eviction`]: the admission webhook that turns an eviction of a master into a switchover;
//! - [`metrics`], [`leader`], [`telemetry`]: the operator's own `/metrics`, Lease, logs.

pub mod admin;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod error;
pub mod eviction;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod pair;
pub mod render;
pub mod status;
pub mod telemetry;
pub mod validate;

pub use error::{Error, Result};
