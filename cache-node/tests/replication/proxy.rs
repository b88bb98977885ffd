//! A TCP proxy between the two nodes of a pair, to cut and heal the link without killing
//! either process. Threads copy bytes both ways; `cut` shuts every open connection down and
//! makes new ones fail until `heal`; `pause` stalls every connection, `stall_open` only those
//! open now.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An open connection's two ends, and whether it alone is stalled.
type Conn = (TcpStream, TcpStream, Arc<AtomicBool>);

pub struct Proxy {
    open: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<Conn>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on `port` (already reserved by the test) and forwards to `target`.
    pub fn start(port: u16, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let (o, c, s, p) = (open.clone(), conns.clone(), stop.clone(), paused.clone());
        std::thread::spawn(move || {
            while !s.load(SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let upstream = if o.load(SeqCst) {
                    TcpStream::connect_timeout(&target, Duration::from_secs(1)).ok()
                } else {
                    None
                };
                let Some(upstream) = upstream else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let stalled = Arc::new(AtomicBool::new(false));
                for (from, to) in [(&client, &upstream), (&upstream, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    let (p, stalled, s) = (p.clone(), stalled.clone(), s.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64 * 1024];
                        loop {
                            // A stalled network: nothing moves, nothing closes.
                            while (p.load(SeqCst) || stalled.load(SeqCst)) && !s.load(SeqCst) {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            let Ok(n) = from.read(&mut buf) else { break };
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                c.lock().unwrap().push((client, upstream, stalled));
            }
        });
        Self { open, paused, conns, stop }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, SeqCst);
        for (client, upstream, _) in self.conns.lock().unwrap().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.open.store(true, SeqCst);
    }

    /// Stops moving bytes, keeping every connection open (a stalled peer or network).
    pub fn pause(&self) {
        self.paused.store(true, SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, SeqCst);
    }

    /// Stops moving bytes on the connections open now, keeping them open, while new ones flow:
    /// a link that went silent, as both ends' later connections do not.
    pub fn stall_open(&self) {
        for (_, _, stalled) in self.conns.lock().unwrap().iter() {
            stalled.store(true, SeqCst);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        self.cut();
    }
}
