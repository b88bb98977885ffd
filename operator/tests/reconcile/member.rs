//! Members' admin listeners, as the operator probes them: each on its own loopback address,
//! all on one port (the pair's `adminPort`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use tokio::net::TcpListener;

/// What a member answers.
#[derive(Clone, Copy)]
pub struct Answers {
    pub role: &'static str,
    pub term: u64,
    /// `/readyz`: its client port is open.
    pub synced: bool,
}

/// The token the members take on /switchover, as the pair's admin Secret holds it.
pub const ADMIN_TOKEN: &str = "0123abcd";

/// A running admin listener; counts the switchovers asked of it with the token.
pub struct Listener {
    pub switchovers: Arc<AtomicU32>,
}

impl Listener {
    pub fn switchovers(&self) -> u32 {
        self.switchovers.load(Ordering::SeqCst)
    }
}

/// Starts a listener for each `(ip, answers)`, all on one free port; returns the port.
pub async fn start(members: &[(&str, Answers)]) -> (u16, Vec<Listener>) {
    'port: for _ in 0..10 {
        let first = TcpListener::bind((members[0].0, 0)).await.expect("a free loopback port");
        let port = first.local_addr().expect("a bound address").port();
        let mut listeners = vec![first];
        for (ip, _) in &members[1..] {
            let ip: IpAddr = ip.parse().expect("an IP address");
            match TcpListener::bind(SocketAddr::new(ip, port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'port,
            }
        }
        let started = listeners.into_iter().zip(members).map(|(l, (_, answers))| serve(l, *answers)).collect();
        return (port, started);
    }
    panic!("no port free on every member's address");
}

fn serve(listener: TcpListener, a: Answers) -> Listener {
    let switchovers = Arc::new(AtomicU32::new(0));
    let counted = switchovers.clone();
    let app = Router::new()
        .route("/role", get(move || async move { format!("{}\n", a.role) }))
        .route(
            "/readyz",
            get(move || async move { if a.synced { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE } }),
        )
        .route("/metrics", get(move || async move { format!("cachepair_replication_term {}\n", a.term) }))
        .route(
            "/switchover",
            post(move |headers: HeaderMap| async move {
                let bearer = format!("Bearer {ADMIN_TOKEN}");
                if headers.get(AUTHORIZATION).is_none_or(|v| v.as_bytes() != bearer.as_bytes()) {
                    return (StatusCode::FORBIDDEN, "wrong token\n");
                }
                counted.fetch_add(1, Ordering::SeqCst);
                (StatusCode::OK, "handed over\n")
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the admin listener serves") });
    Listener { switchovers }
}
