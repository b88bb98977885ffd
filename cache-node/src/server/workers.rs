//! memcached's threading model: each worker thread runs its own single-threaded runtime and
//! owns the connections dealt to it; the accept loop deals them out round-robin. A connection
//! that stays on one thread costs no cross-thread wake-ups or work stealing per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::warn;

/// What to run for a connection, once it is registered with its worker's runtime.
pub type Handler = Box<dyn FnOnce(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

struct Job {
    stream: std::net::TcpStream,
    handler: Handler,
}

pub struct Workers {
    queues: Vec<mpsc::UnboundedSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    next: AtomicUsize,
}

impl Workers {
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for i in 0..count.max(1) {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let thread = std::thread::Builder::new().name(format!("worker-{i}")).spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        match TcpStream::from_std(job.stream) {
                            Ok(stream) => {
                                tokio::spawn((job.handler)(stream));
                            }
                            Err(e) => warn!(error = %e, "cannot hand a connection to a worker"),
                        }
                    }
                });
                // Dropping the runtime here ends the connections it still holds.
            })?;
            queues.push(tx);
            threads.push(thread);
        }
        Ok(Self { queues, threads, next: AtomicUsize::new(0) })
    }

    /// Hands a connection to the next worker.
    pub fn dispatch(&self, stream: TcpStream, handler: Handler) -> std::io::Result<()> {
        let stream = stream.into_std()?;
        let i = self.next.fetch_add(1, Relaxed) % self.queues.len();
        // A closed queue means the worker is gone (shutting down): the connection just closes.
        let _ = self.queues[i].send(Job { stream, handler });
        Ok(())
    }

    /// Stops every worker, closing the connections they hold, and waits for them.
    pub fn stop(self) {
        drop(self.queues);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
