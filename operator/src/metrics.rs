//! The operator's own metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PairLabels {
    pub namespace: String,
    pub pair: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub namespace: String,
    pub pair: String,
    pub member: String,
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

pub struct Metrics {
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub failovers: Family<PairLabels, Counter>,
    pub reseeds: Family<PairLabels, Counter>,
    pub switchovers: Family<PairLabels, Counter>,
    /// 1 for each member's current role (`master`, `slave`, `starting`, `down`).
    pub roles: Family<RoleLabels, Gauge>,
    /// 1 while this replica holds the Lease and reconciles.
    pub leader: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Counter::default(),
            errors: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            failovers: Family::default(),
            reseeds: Family::default(),
            switchovers: Family::default(),
            roles: Family::default(),
            leader: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("cachepair_operator");
        r.register("reconciles", "Reconciliations of CachePairs.", m.reconciles.clone());
        r.register("reconcile_errors", "Reconciliations that failed, by error kind.", m.errors.clone());
        r.register("reconcile_duration_seconds", "Time one reconciliation took.", m.duration.clone());
        r.register("failovers", "Failovers observed (the master changed without a switchover).", m.failovers.clone());
        r.register("reseeds", "Members re-created as a slave of the current master.", m.reseeds.clone());
        r.register("switchovers", "Planned switchovers carried out.", m.switchovers.clone());
        r.register("member_role", "1 for each member's current role.", m.roles.clone());
        r.register("leader", "1 while this replica holds the leader Lease.", m.leader.clone());
        m
    }
}
