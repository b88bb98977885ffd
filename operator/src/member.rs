//! The operator's client for a member's admin listener: its role, whether its client port is
//! open, and the planned switchover.

use std::time::Duration;

use crate::observe::Role;
use crate::{Error, Result};

/// A member that does not answer this fast counts as unreachable for this round.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longer than cache-node's own hand-over timeout, so that its answer arrives.
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct MemberClient {
    http: reqwest::Client,
}

impl Default for MemberClient {
    fn default() -> Self {
        Self { http: reqwest::Client::builder().no_proxy().build().expect("an HTTP client without TLS builds") }
    }
}

fn base(ip: &str, port: u16) -> String {
    if ip.contains(':') { format!("http://[{ip}]:{port}") } else { format!("http://{ip}:{port}") }
}

impl MemberClient {
    /// `(role, synced)`: the role from `/role`, and whether `/readyz` says the client port is
    /// open (a slave's copy is complete). `None` when the member does not answer.
    pub async fn probe(&self, ip: &str, port: u16) -> Option<(Role, bool)> {
        let url = base(ip, port);
        let role = self.http.get(format!("{url}/role")).timeout(PROBE_TIMEOUT).send().await.ok()?;
        let role = Role::parse(&role.text().await.ok()?)?;
        let ready = self.http.get(format!("{url}/readyz")).timeout(PROBE_TIMEOUT).send().await.ok()?;
        Some((role, ready.status().is_success()))
    }

    /// Asks the master to hand its role to its slave; returns once the slave has taken over.
    pub async fn switchover(&self, member: &str, ip: &str, port: u16) -> Result<String> {
        let fail = |message: String| Error::Member { member: member.into(), message };
        let reply = self
            .http
            .post(format!("{}/switchover", base(ip, port)))
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
