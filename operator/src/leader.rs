//! Leader election through a Lease (`coordination.k8s.io`), so that several replicas of the
//! operator can run and only one reconciles at a time.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a lease lasts without renewal: a new leader takes over this long after the old
/// one vanished without releasing it.
const LEASE_SECONDS: u64 = 15;
const GRACE_SECONDS: u64 = 5;

/// A running election: `is_leader` turns true while this replica holds the Lease.
pub struct Election {
    pub is_leader: watch::Receiver<bool>,
    pub task: JoinHandle<Result<kube_lease_manager::LeaseManager>>,
}

pub async fn start(client: Client, namespace: &str, name: &str, identity: &str) -> Result<Election> {
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .with_field_manager("cachepair-operator")
        .build()
        .await?;
    let (is_leader, task) = manager.watch().await;
    Ok(Election { is_leader, task })
}

/// Waits until this replica leads (or the election ends).
pub async fn until_leader(rx: &mut watch::Receiver<bool>) -> bool {
    rx.wait_for(|leader| *leader).await.is_ok()
}

/// Waits until this replica no longer leads.
pub async fn until_deposed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|leader| !*leader).await;
    // A moment for the log line before the process exits.
    tokio::time::sleep(Duration::from_millis(10)).await;
}
