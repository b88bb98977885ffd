//! Strangers holding connections open on a port, as an attacker would: idle ones that say
//! nothing, and one that sends garbage, each reopened soon after the node closes it.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How soon a closed connection is reopened: a steady pressure, not a flood that would starve
/// the machine the tests share.
const REOPEN_AFTER: Duration = Duration::from_millis(250);

pub struct Squatters {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// One connection slot: the connection while it is open, and when it was last opened.
struct Slot {
    conn: Option<TcpStream>,
    opened: Option<Instant>,
    garbage: bool,
}

impl Squatters {
    /// Holds `idle` silent connections and one garbage-sending one to 127.0.0.1:`port`, until
    /// dropped. Returns once all are open.
    pub fn start(port: u16, idle: usize) -> Self {
        let target = SocketAddr::from(([127, 0, 0, 1], port));
        let mut slots: Vec<Slot> = (0..=idle).map(|i| Slot { conn: None, opened: None, garbage: i == idle }).collect();
        for slot in &mut slots {
            slot.refresh(target);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    for slot in &mut slots {
                        slot.refresh(target);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Self { stop, thread: Some(thread) }
    }
}

impl Slot {
    /// Reads and drops what the node sent, notices when it closed the connection, and reopens
    /// a closed one once `REOPEN_AFTER` has passed since it was opened.
    fn refresh(&mut self, target: SocketAddr) {
        if let Some(conn) = &mut self.conn {
            let mut buf = [0u8; 512];
            let closed = match conn.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            };
            let closed = closed || self.garbage && conn.write_all(b"\xff\xff\xff\xffnot a frame\r\n").is_err();
            if closed {
                self.conn = None;
            }
        }
        if self.conn.is_none() && self.opened.is_none_or(|at| at.elapsed() >= REOPEN_AFTER) {
            self.opened = Some(Instant::now());
            self.conn = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                .and_then(|c| c.set_nonblocking(true).map(|()| c))
                .ok();
        }
    }
}

impl Drop for Squatters {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
