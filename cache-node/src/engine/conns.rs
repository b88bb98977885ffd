//! Who is connected, for `stats conns`: listeners, UDP sockets and client connections, keyed by
//! file descriptor as memcached keys them. The map is locked only on connect, on disconnect and
//! for `stats conns`; a connection reports its state and the time of its last command through
//! atomics of its own, so serving requests takes no lock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::store::RelTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// The memcached connection states this server passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Listening,
    /// Idle, waiting for the next request.
    Waiting,
    /// Part of a request has arrived; waiting for the rest.
    Read,
    ParseCmd,
    /// Discarding the rest of a refused value.
    Swallow,
    Write,
}

impl State {
    const ALL: [State; 6] = [Self::Listening, Self::Waiting, Self::Read, Self::ParseCmd, Self::Swallow, Self::Write];

    pub fn name(self) -> &'static str {
        match self {
            Self::Listening => "conn_listening",
            Self::Waiting => "conn_waiting",
            Self::Read => "conn_read",
            Self::ParseCmd => "conn_parse_cmd",
            Self::Swallow => "conn_swallow",
            Self::Write => "conn_mwrite",
        }
    }
}

/// One registered socket.
#[derive(Debug)]
pub struct Conn {
    pub transport: Transport,
    /// The peer of a client connection; the bound address of a listener or UDP socket.
    pub addr: SocketAddr,
    /// The local end of a client connection.
    pub listen_addr: Option<SocketAddr>,
    state: AtomicU8,
    last_cmd: AtomicU32,
}

impl Conn {
    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Relaxed);
    }

    pub fn state(&self) -> State {
        State::ALL[usize::from(self.state.load(Relaxed))]
    }

    /// Records that a command was handled at `now`.
    pub fn touch(&self, now: RelTime) {
        self.last_cmd.store(now, Relaxed);
    }

    pub fn last_cmd(&self) -> RelTime {
        self.last_cmd.load(Relaxed)
    }

    /// `addr` as memcached renders it: `tcp:127.0.0.1:11211`, `udp6:[::1]:11211`.
    pub fn addr_text(&self) -> String {
        self.render(self.addr)
    }

    pub fn listen_addr_text(&self) -> Option<String> {
        self.listen_addr.map(|a| self.render(a))
    }

    fn render(&self, addr: SocketAddr) -> String {
        let proto = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        match addr {
            SocketAddr::V4(a) => format!("{proto}:{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("{proto}6:[{}]:{}", a.ip(), a.port()),
        }
    }
}

type Map = BTreeMap<RawFd, Arc<Conn>>;

#[derive(Debug, Default)]
pub struct Registry(Arc<Mutex<Map>>);

impl Registry {
    pub fn register(
        &self,
        fd: RawFd,
        transport: Transport,
        addr: SocketAddr,
        listen_addr: Option<SocketAddr>,
        state: State,
        now: RelTime,
    ) -> Registered {
        let conn = Arc::new(Conn {
            transport,
            addr,
            listen_addr,
            state: AtomicU8::new(state as u8),
            last_cmd: AtomicU32::new(now),
        });
        self.0.lock().insert(fd, conn.clone());
        Registered { map: self.0.clone(), fd, conn }
    }

    /// Every registered socket, in file descriptor order.
    pub fn snapshot(&self) -> Vec<(RawFd, Arc<Conn>)> {
        self.0.lock().iter().map(|(&fd, c)| (fd, c.clone())).collect()
    }
}

/// A registration, undone on drop.
#[derive(Debug)]
pub struct Registered {
    map: Arc<Mutex<Map>>,
    fd: RawFd,
    conn: Arc<Conn>,
}

impl Deref for Registered {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        // The descriptor may already be closed and reused by a newer connection: leave that one.
        if map.get(&self.fd).is_some_and(|c| Arc::ptr_eq(c, &self.conn)) {
            map.remove(&self.fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_end_on_drop_without_removing_a_reused_descriptor() {
        let reg = Registry::default();
        let addr: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let old = reg.register(7, Transport::Tcp, addr, None, State::Waiting, 1);
        let new = reg.register(7, Transport::Tcp, addr, None, State::Read, 2);
        drop(old);
        let snap = reg.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!((snap[0].1.state(), snap[0].1.last_cmd()), (State::Read, 2));
        drop(new);
        assert!(reg.snapshot().is_empty());
    }

    #[test]
    fn addresses_render_as_memcached_does() {
        let reg = Registry::default();
        let v6: SocketAddr = "[::1]:11211".parse().unwrap();
        let c = reg.register(3, Transport::Udp, v6, None, State::Read, 0);
        assert_eq!((c.addr_text(), c.listen_addr_text()), ("udp6:[::1]:11211".into(), None));
        let v4: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let t = reg.register(4, Transport::Tcp, v4, Some(v6), State::Read, 0);
        assert_eq!((t.addr_text(), t.listen_addr_text()), ("tcp:192.0.2.1:80".into(), Some("tcp6:[::1]:11211".into())));
        for s in State::ALL {
            c.set_state(s);
            assert_eq!(c.state(), s);
        }
    }
}
