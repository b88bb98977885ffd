//! What the speaker tells Prometheus (`cache-node vrrp --metrics-listen`): each instance's
//! state and priority, its transitions, and the adverts it sent, acted on and dropped. Served
//! with `/healthz` on a small HTTP listener of its own.

use std::sync::Arc;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::state::State;
use crate::server::http;

type Labels = Vec<(&'static str, String)>;

const STATES: [State; 4] = [State::Initialize, State::Backup, State::Master, State::Fault];

#[derive(Default)]
pub struct Metrics {
    state: Family<Labels, Gauge>,
    priority: Family<Labels, Gauge>,
    transitions: Family<Labels, Counter>,
    sent: Family<Labels, Counter>,
    received: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
}

fn instance(name: &str) -> Labels {
    vec![("instance", name.to_string())]
}

impl Metrics {
    pub fn transition(&self, name: &str, to: State) {
        for s in STATES {
            let labels = vec![("instance", name.to_string()), ("state", s.name().to_string())];
            self.state.get_or_create(&labels).set(i64::from(s == to));
        }
        self.transitions.get_or_create(&vec![("instance", name.to_string()), ("to", to.name().to_string())]).inc();
    }

    pub fn priority(&self, name: &str, priority: u8) {
        self.priority.get_or_create(&instance(name)).set(i64::from(priority));
    }

    pub fn sent(&self, name: &str) {
        self.sent.get_or_create(&instance(name)).inc();
    }

    pub fn received(&self, name: &str) {
        self.received.get_or_create(&instance(name)).inc();
    }

    pub fn dropped(&self, name: &str) {
        self.dropped.get_or_create(&instance(name)).inc();
    }

    fn registry(self: &Arc<Self>) -> Registry {
        let mut r = Registry::with_prefix("cachepair_vrrp");
        r.register("state", "1 for the instance's current state (STOP, BACKUP, MASTER, FAULT)", self.state.clone());
        r.register("priority", "The priority the instance advertises, after tracking", self.priority.clone());
        r.register("transitions", "State changes, by the state entered", self.transitions.clone());
        r.register("adverts_sent", "Advertisements sent", self.sent.clone());
        r.register("adverts_received", "Advertisements for the instance acted on", self.received.clone());
        r.register(
            "adverts_dropped",
            "Advertisements for the instance dropped as invalid (the log says why)",
            self.dropped.clone(),
        );
        r
    }
}

/// Serves `/metrics` and `/healthz` until the task is aborted, with the admin listener's
/// connection cap and timeouts.
pub async fn serve(metrics: Arc<Metrics>, listener: std::net::TcpListener) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Arc::new(metrics.registry()));
    http::serve(listener, app, "metrics").await
}

async fn scrape(Extract(registry): Extract<Arc<Registry>>) -> Response {
    let mut body = String::new();
    match prometheus_text::encode(&mut body, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_state_is_one_and_the_others_zero() {
        let m = Arc::new(Metrics::default());
        m.transition("VI_1", State::Backup);
        m.transition("VI_1", State::Master);
        m.priority("VI_1", 100);
        m.sent("VI_1");
        let mut text = String::new();
        prometheus_text::encode(&mut text, &m.registry()).unwrap();
        for line in [
            r#"cachepair_vrrp_state{instance="VI_1",state="MASTER"} 1"#,
            r#"cachepair_vrrp_state{instance="VI_1",state="BACKUP"} 0"#,
            r#"cachepair_vrrp_transitions_total{instance="VI_1",to="MASTER"} 1"#,
            r#"cachepair_vrrp_priority{instance="VI_1"} 100"#,
            r#"cachepair_vrrp_adverts_sent_total{instance="VI_1"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
