//! The operator's client for a member's admin listener: its role and term, whether its client
//! port is open, and the planned switchover.

use std::time::Duration;

use crate::observe::{Report, Role};
use crate::{Error, Result};

/// A member that does not answer this fast counts as unreachable for this round: short, since
/// a dead master's probe delays fencing it (a live member answers in milliseconds).
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Longer than cache-node's own hand-over timeout, so that its answer arrives.
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
}

impl Default for AdminClient {
    fn default() -> Self {
        Self { http: reqwest::Client::builder().no_proxy().build().expect("an HTTP client without TLS builds") }
    }
}

fn base(ip: &str, port: u16) -> String {
    if ip.contains(':') { format!("http://[{ip}]:{port}") } else { format!("http://{ip}:{port}") }
}

impl AdminClient {
    /// The member's report, its three questions asked at once; `None` when it does not answer.
    pub async fn probe(&self, ip: &str, port: u16) -> Option<Report> {
        let url = base(ip, port);
        let get = |path: &str| self.http.get(format!("{url}{path}")).timeout(PROBE_TIMEOUT).send();
        let (role, ready, metrics) = tokio::join!(get("/role"), get("/readyz"), get("/metrics"));
        let role = Role::parse(&role.ok()?.text().await.ok()?)?;
        let metrics = metrics.ok()?.text().await.ok()?;
        Some(Report {
            role,
            term: gauge(&metrics, "cachepair_replication_term")?,
            synced: ready.ok()?.status().is_success(),
            offset: gauge(&metrics, "cachepair_replication_offset_bytes"),
            lag_bytes: gauge(&metrics, "cachepair_replication_lag_bytes"),
            promotions: gauge(&metrics, "cachepair_replication_failovers_total"),
        })
    }

    /// Asks the master to hand its role to its slave, with the pair's admin token; returns
    /// once the slave has taken over.
    pub async fn switchover(&self, member: &str, ip: &str, port: u16, token: &str) -> Result<String> {
        let fail = |message: String| Error::Member { member: member.into(), message };
        let reply = self
            .http
            .post(format!("{}/switchover", base(ip, port)))
            .bearer_auth(token)
            .timeout(SWITCHOVER_TIMEOUT)
            .send()
            .await
            .map_err(|e| fail(format!("switchover request failed: {e}")))?;
        let status = reply.status();
        let body = reply.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(body.trim().to_string())
        } else {
            Err(fail(format!("switchover refused ({status}): {}", body.trim())))
        }
    }
}

/// A label-less gauge from the member's Prometheus metrics.
fn gauge(metrics: &str, name: &str) -> Option<u64> {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_read_from_the_metrics() {
        let metrics = "# HELP cachepair_replication_term Failovers.\n# TYPE cachepair_replication_term gauge\n\
                       cachepair_replication_terms_x 9\ncachepair_replication_term 3\n\
                       cachepair_replication_offset_bytes 1048576\n";
        assert_eq!(gauge(metrics, "cachepair_replication_term"), Some(3));
        assert_eq!(gauge(metrics, "cachepair_replication_offset_bytes"), Some(1 << 20));
        assert_eq!(gauge("memcached_up 1\n", "cachepair_replication_term"), None);
    }
}
