//! A few memcached text-protocol calls for the tests, with timeouts: one-shot `set` and `get`
//! on a plaintext connection each, and a [`Connection`] that stays open (plaintext or TLS) for
//! what lives as long as a connection does, such as a login.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const TIMEOUT: Duration = Duration::from_secs(2);

/// The lines that end a reply to a storage command.
const STORE_END: &[&str] = &["STORED", "NOT_STORED", "ERROR", "SERVER_ERROR", "CLIENT_ERROR"];
/// The lines that end a reply to a retrieval (or to a request refused before it is served).
const GET_END: &[&str] = &["END", "ERROR", "SERVER_ERROR", "CLIENT_ERROR"];

/// `set`: true when STORED.
pub fn set(addr: &str, key: &str, value: &str) -> bool {
    Connection::plain(addr).and_then(|mut c| c.set(key, value)).is_ok_and(|r| r == "STORED")
}

/// `get`: the value, if any.
pub fn get(addr: &str, key: &str) -> Option<String> {
    Connection::plain(addr).and_then(|mut c| c.get(key)).ok().flatten()
}

/// An open connection to a memcached server, plaintext or TLS.
pub struct Connection {
    stream: BufReader<Stream>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr.parse().map_err(std::io::Error::other)?, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    Ok(s)
}

impl Connection {
    pub fn plain(addr: &str) -> std::io::Result<Self> {
        Ok(Self { stream: BufReader::new(Stream::Plain(connect(addr)?)) })
    }

    /// A TLS connection that trusts the CA certificates of `ca_pem` only and checks that the
    /// server's certificate names `server_name`; the handshake is complete when this returns.
    pub fn tls(addr: &str, ca_pem: &[u8], server_name: &str) -> std::io::Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.map_err(std::io::Error::other)?).map_err(std::io::Error::other)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_string()).map_err(std::io::Error::other)?;
        let conn = ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
        let mut tls = StreamOwned::new(conn, connect(addr)?);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(Self { stream: BufReader::new(Stream::Tls(Box::new(tls))) })
    }

    /// The certificate the server presented (DER), on a TLS connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self.stream.get_ref() {
            Stream::Tls(s) => s.conn.peer_certificates()?.first().map(|c| c.to_vec()),
            Stream::Plain(_) => None,
        }
    }

    /// Sends `request` and reads lines until one starts with one of `end`; returns them all.
    pub fn call(&mut self, request: &str, end: &[&str]) -> std::io::Result<String> {
        let s = self.stream.get_mut();
        s.write_all(request.as_bytes())?;
        s.flush()?;
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other(format!("closed after {reply:?}")));
            }
            reply.push_str(&line);
            if end.iter().any(|e| line.starts_with(e)) {
                return Ok(reply);
            }
        }
    }

    /// memcached's text-protocol login (`-Y`): the token `<user> <password>` stored under any
    /// key. Returns the reply line: `STORED` when logged in.
    pub fn login(&mut self, user: &str, password: &str) -> std::io::Result<String> {
        self.set("auth", &format!("{user} {password}"))
    }

    /// `set`: the reply line (`STORED`, `CLIENT_ERROR …`).
    pub fn set(&mut self, key: &str, value: &str) -> std::io::Result<String> {
        let reply = self.call(&format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()), STORE_END)?;
        Ok(reply.trim_end().to_string())
    }

    /// `get`: the value, if any; a reply other than a value or `END` is an error.
    pub fn get(&mut self, key: &str) -> std::io::Result<Option<String>> {
        let reply = self.call(&format!("get {key}\r\n"), GET_END)?;
        let mut lines = reply.lines();
        match lines.next() {
            Some(l) if l.starts_with("VALUE") => Ok(Some(lines.next().unwrap_or_default().to_string())),
            Some("END") => Ok(None),
            _ => Err(std::io::Error::other(reply.trim_end().to_string())),
        }
    }
}
