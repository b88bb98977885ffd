//! The end-to-end test environment: a real control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler built from the Go module proxy, see
//! `tests/controlplane`), a test-only process kubelet that runs pods as local processes, the
//! operator as a process, and small memcached clients (one that follows a Service's endpoints
//! and measures what an application sees during a failover); all inside a network namespace of
//! the run's own.

pub mod client;
pub mod cluster;
pub mod kubelet;
pub mod memcache;
pub mod netns;
pub mod operator_process;
