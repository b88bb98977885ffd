//! The operator's own metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::Phase;
use crate::decide::ROLE_LABELS;
use crate::pair::Member;

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
pub struct PhaseLabels {
    pub namespace: String,
    pub pair: String,
    pub phase: String,
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
    /// 1 for each pair's current phase, 0 for the others.
    pub phases: Family<PhaseLabels, Gauge>,
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
            phases: Family::default(),
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
        r.register("pair_phase", "1 for each pair's current phase, 0 for the others.", m.phases.clone());
        r.register("leader", "1 while this replica holds the leader Lease.", m.leader.clone());
        m
    }
}

impl Metrics {
    /// Records `phase` as the pair's, and every other phase as not, so that an alert on a
    /// phase (CachePairDegraded) ends when the phase does.
    pub fn set_phase(&self, namespace: &str, pair: &str, phase: Phase) {
        for p in Phase::ALL {
            let labels = PhaseLabels { namespace: namespace.into(), pair: pair.into(), phase: format!("{p:?}") };
            self.phases.get_or_create(&labels).set(i64::from(p == phase));
        }
    }

    /// Drops a deleted pair's series.
    pub fn forget_pair(&self, namespace: &str, pair: &str) {
        for member in Member::BOTH {
            for role in ROLE_LABELS {
                self.roles.remove(&RoleLabels {
                    namespace: namespace.into(),
                    pair: pair.into(),
                    member: member.suffix().into(),
                    role: role.into(),
                });
            }
        }
        for p in Phase::ALL {
            self.phases.remove(&PhaseLabels {
                namespace: namespace.into(),
                pair: pair.into(),
                phase: format!("{p:?}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    /// The names of the series the registry exports, each family given one sample.
    fn exported() -> Vec<String> {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let pair = PairLabels { namespace: "ns".into(), pair: "p".into() };
        for family in [&m.failovers, &m.reseeds, &m.switchovers] {
            family.get_or_create(&pair).inc();
        }
        m.errors.get_or_create(&ErrorLabels { error: "kube".into() }).inc();
        m.roles
            .get_or_create(&RoleLabels {
                namespace: "ns".into(),
                pair: "p".into(),
                member: "a".into(),
                role: "master".into(),
            })
            .set(1);
        m.set_phase("ns", "p", Phase::Ready);
        let mut text = String::new();
        encode(&mut text, &registry).expect("the registry encodes");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(String::from)
            .collect()
    }

    #[test]
    fn the_chart_alerts_and_dashboard_name_only_exported_series() {
        let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/cachepair-operator");
        let exported = exported();
        let mut named = 0;
        for file in ["templates/prometheusrule.yaml", "dashboards/cachepair.json"] {
            let text = std::fs::read_to_string(chart.join(file)).expect("the chart's file");
            for (at, _) in text.match_indices("cachepair_operator_") {
                let name: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                assert!(exported.contains(&name), "{file} names {name}, which the operator does not export");
                named += 1;
            }
        }
        assert!(named >= 4, "the alerts and the dashboard use the operator's series");
        let phases = exported.iter().filter(|n| *n == "cachepair_operator_pair_phase").count();
        assert_eq!(phases, Phase::ALL.len(), "every phase has a series");
    }
}
