//! Minimal memcached text-protocol client pieces: request encoding (gets as `get`, or as the
//! meta `mg`), an incremental reply parser and a receive buffer.
//!
//! Everything here works on caller-owned buffers so that the hot path of a
//! connection does not allocate per request.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest reply line we accept before declaring the stream broken.
pub const MAX_LINE: usize = 4096;
/// Largest data block we accept in a `VALUE` reply.
pub const MAX_VALUE: usize = 64 << 20;

/// One parsed reply. Slices borrow from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    /// `END` alone: a get miss.
    End,
    /// Exactly one `VALUE` block followed by `END`.
    Value {
        key: &'a [u8],
        flags: u32,
        data: &'a [u8],
    },
    Error,
    ClientError(&'a [u8]),
    ServerError(&'a [u8]),
    /// Any other well-framed single line.
    Other(&'a [u8]),
}

/// The reply stream cannot be framed any more; the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    LineTooLong,
    BadValueHeader(String),
    BadValueTrailer,
    ValueTooLarge(usize),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::LineTooLong => write!(f, "reply line longer than {MAX_LINE} bytes"),
            ProtoError::BadValueHeader(l) => write!(f, "malformed VALUE line: {l:?}"),
            ProtoError::BadValueTrailer => write!(f, "VALUE block not followed by \\r\\nEND\\r\\n"),
            ProtoError::ValueTooLarge(n) => write!(f, "VALUE of {n} bytes is too large"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Returns the first line (without `\r\n`) and the bytes consumed including it.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtoError> {
    match memchr::memchr(b'\n', buf) {
        Some(i) => {
            let end = if i > 0 && buf[i - 1] == b'\r' { i - 1 } else { i };
            Ok(Some((&buf[..end], i + 1)))
        }
        None if buf.len() > MAX_LINE => Err(ProtoError::LineTooLong),
        None => Ok(None),
    }
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Parses one complete reply from the start of `buf`.
///
/// Returns `Ok(None)` if more bytes are needed, `Ok(Some((reply, consumed)))`
/// otherwise. A reply to a single-key `get`/`gets` is a `VALUE` block plus
/// `END`, or `END` alone; other commands answer with one line.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtoError> {
    let Some((l, used)) = line(buf)? else {
        return Ok(None);
    };
    let reply = match l {
        b"STORED" => Reply::Stored,
        b"NOT_STORED" => Reply::NotStored,
        b"EXISTS" => Reply::Exists,
        b"NOT_FOUND" => Reply::NotFound,
        b"DELETED" => Reply::Deleted,
        b"TOUCHED" => Reply::Touched,
        // A meta miss (`EN`) reads as a get's.
        b"END" | b"EN" => Reply::End,
        b"ERROR" => Reply::Error,
        _ if l.starts_with(b"VALUE ") => return parse_value(buf, l, used),
        _ if l.starts_with(b"VA ") => return parse_meta_value(buf, l, used),
        _ if l.starts_with(b"CLIENT_ERROR") => Reply::ClientError(trim_prefix(l, 12)),
        _ if l.starts_with(b"SERVER_ERROR") => Reply::ServerError(trim_prefix(l, 12)),
        _ => Reply::Other(l),
    };
    Ok(Some((reply, used)))
}

fn trim_prefix(l: &[u8], n: usize) -> &[u8] {
    let rest = &l[n..];
    rest.strip_prefix(b" ").unwrap_or(rest)
}

fn parse_value<'a>(buf: &'a [u8], l: &'a [u8], used: usize) -> Result<Option<(Reply<'a>, usize)>, ProtoError> {
    let bad = || ProtoError::BadValueHeader(String::from_utf8_lossy(l).into_owned());
    // VALUE <key> <flags> <bytes> [<cas>]
    let mut it = l[6..].split(|&c| c == b' ');
    let key = it.next().filter(|k| !k.is_empty()).ok_or_else(bad)?;
    let flags = it.next().and_then(parse_u64).and_then(|f| u32::try_from(f).ok()).ok_or_else(bad)?;
    let len = it.next().and_then(parse_u64).ok_or_else(bad)?;
    if let Some(cas) = it.next() {
        parse_u64(cas).ok_or_else(bad)?;
    }
    if it.next().is_some() {
        return Err(bad());
    }
    let len = usize::try_from(len).map_err(|_| bad())?;
    if len > MAX_VALUE {
        return Err(ProtoError::ValueTooLarge(len));
    }
    let data_end = used + len;
    let total = data_end + 2 + 5; // "\r\n" + "END\r\n"
    if buf.len() < total {
        return Ok(None);
    }
    if &buf[data_end..total] != b"\r\nEND\r\n" {
        return Err(ProtoError::BadValueTrailer);
    }
    Ok(Some((Reply::Value { key, flags, data: &buf[used..data_end] }, total)))
}

/// A meta hit: `VA <bytes> k<key> …`, the data, `\r\n`; the key is the `k` flag's.
fn parse_meta_value<'a>(buf: &'a [u8], l: &'a [u8], used: usize) -> Result<Option<(Reply<'a>, usize)>, ProtoError> {
    let bad = || ProtoError::BadValueHeader(String::from_utf8_lossy(l).into_owned());
    let mut it = l[3..].split(|&c| c == b' ');
    let len = it.next().and_then(parse_u64).and_then(|n| usize::try_from(n).ok()).ok_or_else(bad)?;
    let key = it.find_map(|flag| flag.strip_prefix(b"k")).unwrap_or_default();
    if len > MAX_VALUE {
        return Err(ProtoError::ValueTooLarge(len));
    }
    let data_end = used + len;
    if buf.len() < data_end + 2 {
        return Ok(None);
    }
    if &buf[data_end..data_end + 2] != b"\r\n" {
        return Err(ProtoError::BadValueTrailer);
    }
    Ok(Some((Reply::Value { key, flags: 0, data: &buf[used..data_end] }, data_end + 2)))
}

/// Growable receive buffer with a read cursor.
pub struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuf {
    pub fn with_capacity(cap: usize) -> Self {
        RecvBuf { buf: vec![0; cap.max(1024)], start: 0, end: 0 }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes from `r`. EOF is an error: we only read when a reply is due.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
        let n = r.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        self.end += n;
        Ok(n)
    }
}

/// Encodes keys and values of the benchmark's key space.
///
/// Keys are `key:` followed by the zero-padded id (at least 8 digits, e.g.
/// `key:00000042`). A value of key `id` is the key's digits followed by a
/// fixed filler pattern, so that a reply can be checked against the key it
/// was requested for without any allocation.
pub struct Codec {
    width: usize,
    value_size: usize,
    filler: Vec<u8>,
    /// " 0 0 <value_size>\r\n"
    set_suffix: Vec<u8>,
    /// Gets as `mg <key> k v` instead of `get <key>`.
    meta_gets: bool,
}

/// Zero-padded decimal digits of a key id.
pub struct Digits {
    buf: [u8; 24],
    len: usize,
}

impl Digits {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Codec {
    /// `key_space` is the number of distinct ids that will be used (ids are `0..key_space`).
    pub fn new(key_space: u64, value_size: usize) -> Self {
        let digits = key_space.saturating_sub(1).max(1).ilog10() as usize + 1;
        let width = digits.max(8);
        let filler = (0..value_size).map(|i| b'a' + (i % 26) as u8).collect();
        Codec { width, value_size, filler, set_suffix: format!(" 0 0 {value_size}\r\n").into_bytes(), meta_gets: false }
    }

    /// Gets as the meta command `mg <key> k v`, the read path of meta and binary clients.
    pub fn with_meta_gets(mut self, meta: bool) -> Self {
        self.meta_gets = meta;
        self
    }

    pub fn value_size(&self) -> usize {
        self.value_size
    }

    pub fn digits(&self, id: u64) -> Digits {
        let mut buf = [b'0'; 24];
        let mut n = id;
        let mut i = 24;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let len = (24 - i).max(self.width);
        let start = 24 - len;
        let mut out = [0u8; 24];
        out[..len].copy_from_slice(&buf[start..]);
        Digits { buf: out, len }
    }

    fn push_key(&self, out: &mut Vec<u8>, d: &Digits) {
        out.extend_from_slice(b"key:");
        out.extend_from_slice(d.as_bytes());
    }

    /// Appends `get <key>\r\n`, or `mg <key> k v\r\n`.
    pub fn push_get(&self, out: &mut Vec<u8>, id: u64) {
        let d = self.digits(id);
        out.extend_from_slice(if self.meta_gets { b"mg " } else { b"get " });
        self.push_key(out, &d);
        out.extend_from_slice(if self.meta_gets { b" k v\r\n" } else { b"\r\n" });
    }

    /// Appends `set <key> 0 0 <n>\r\n<value>\r\n`.
    pub fn push_set(&self, out: &mut Vec<u8>, id: u64) {
        let d = self.digits(id);
        out.extend_from_slice(b"set ");
        self.push_key(out, &d);
        out.extend_from_slice(&self.set_suffix);
        let k = d.len.min(self.value_size);
        out.extend_from_slice(&d.as_bytes()[..k]);
        out.extend_from_slice(&self.filler[k..]);
        out.extend_from_slice(b"\r\n");
    }

    /// True if `key` is the encoded key of `id`.
    pub fn key_matches(&self, key: &[u8], id: u64) -> bool {
        let d = self.digits(id);
        key.len() == 4 + d.len && key.starts_with(b"key:") && &key[4..] == d.as_bytes()
    }

    /// True if `data` is the value this codec stores under `id`.
    pub fn value_matches(&self, data: &[u8], id: u64) -> bool {
        if data.len() != self.value_size {
            return false;
        }
        let d = self.digits(id);
        let k = d.len.min(self.value_size);
        data[..k] == d.as_bytes()[..k] && data[k..] == self.filler[k..]
    }
}

/// What a connection expects as the answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get(u64),
    Set(u64),
}

/// Outcome of checking one reply against its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    Stored,
    /// Well framed but not the expected answer.
    Unexpected,
}

/// Classifies `reply` as the answer to `op`.
pub fn check(codec: &Codec, op: Op, reply: &Reply<'_>) -> Outcome {
    match (op, reply) {
        (Op::Get(id), Reply::Value { key, flags, data }) => {
            if *flags == 0 && codec.key_matches(key, id) && codec.value_matches(data, id) {
                Outcome::Hit
            } else {
                Outcome::Unexpected
            }
        }
        (Op::Get(_), Reply::End) => Outcome::Miss,
        (Op::Set(_), Reply::Stored) => Outcome::Stored,
        _ => Outcome::Unexpected,
    }
}

/// Short printable description of a reply, for error reports.
pub fn describe(reply: &Reply<'_>) -> String {
    match reply {
        Reply::Value { key, flags, data } => format!(
            "VALUE {} {} {} (data {:?})",
            String::from_utf8_lossy(key),
            flags,
            data.len(),
            String::from_utf8_lossy(&data[..data.len().min(32)])
        ),
        Reply::ClientError(m) => format!("CLIENT_ERROR {}", String::from_utf8_lossy(m)),
        Reply::ServerError(m) => format!("SERVER_ERROR {}", String::from_utf8_lossy(m)),
        Reply::Other(l) => format!("{:?}", String::from_utf8_lossy(l)),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(buf: &[u8]) -> (Reply<'_>, usize) {
        parse_reply(buf).unwrap().unwrap()
    }

    #[test]
    fn simple_lines() {
        assert_eq!(one(b"STORED\r\n"), (Reply::Stored, 8));
        assert_eq!(one(b"NOT_STORED\r\n"), (Reply::NotStored, 12));
        assert_eq!(one(b"EXISTS\r\n").0, Reply::Exists);
        assert_eq!(one(b"NOT_FOUND\r\n").0, Reply::NotFound);
        assert_eq!(one(b"DELETED\r\n").0, Reply::Deleted);
        assert_eq!(one(b"TOUCHED\r\n").0, Reply::Touched);
        assert_eq!(one(b"END\r\n"), (Reply::End, 5));
        assert_eq!(one(b"ERROR\r\n").0, Reply::Error);
        assert_eq!(one(b"CLIENT_ERROR bad data chunk\r\n").0, Reply::ClientError(b"bad data chunk"));
        assert_eq!(
            one(b"SERVER_ERROR out of memory storing object\r\n").0,
            Reply::ServerError(b"out of memory storing object")
        );
        assert_eq!(one(b"VERSION 1.6.18\r\n").0, Reply::Other(b"VERSION 1.6.18"));
        // a bare \n is tolerated as a line end
        assert_eq!(one(b"STORED\n"), (Reply::Stored, 7));
    }

    #[test]
    fn consumes_only_first_reply() {
        let buf = b"STORED\r\nEND\r\nVALUE";
        let (r, n) = one(buf);
        assert_eq!(r, Reply::Stored);
        let (r2, n2) = one(&buf[n..]);
        assert_eq!(r2, Reply::End);
        assert_eq!(parse_reply(&buf[n + n2..]).unwrap(), None);
    }

    #[test]
    fn meta_replies() {
        let (r, n) = one(b"VA 3 kkey:1\r\nabc\r\nEN\r\n");
        assert_eq!((r, n), (Reply::Value { key: b"key:1", flags: 0, data: b"abc" }, 18));
        assert_eq!(one(b"EN\r\n"), (Reply::End, 4));
        assert_eq!(parse_reply(b"VA 3 kkey:1\r\nab"), Ok(None));
        assert_eq!(parse_reply(b"VA 3 kk\r\nabcXY"), Err(ProtoError::BadValueTrailer));
        let c = Codec::new(100_000, 20).with_meta_gets(true);
        let mut out = Vec::new();
        c.push_get(&mut out, 42);
        assert_eq!(out, b"mg key:00000042 k v\r\n");
    }

    #[test]
    fn value_block() {
        let buf = b"VALUE key:00000042 5 3\r\nabc\r\nEND\r\nSTORED\r\n";
        let (r, n) = one(buf);
        assert_eq!(r, Reply::Value { key: b"key:00000042", flags: 5, data: b"abc" });
        assert_eq!(&buf[n..], b"STORED\r\n");
        // gets form with a cas unique
        let (r, _) = one(b"VALUE k 0 2 12345\r\n\r\n\r\nEND\r\n");
        assert_eq!(r, Reply::Value { key: b"k", flags: 0, data: b"\r\n" });
        // empty value
        let (r, n) = one(b"VALUE k 0 0\r\n\r\nEND\r\n");
        assert_eq!((r, n), (Reply::Value { key: b"k", flags: 0, data: b"" }, 20));
    }

    #[test]
    fn incomplete_at_every_split() {
        let full = b"VALUE key:1 0 10\r\n0123456789\r\nEND\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse_reply(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(one(full).1, full.len());
        for cut in 0..8 {
            assert_eq!(parse_reply(&b"STORED\r\n"[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn malformed() {
        assert!(matches!(parse_reply(b"VALUE k x 3\r\nabc\r\nEND\r\n"), Err(ProtoError::BadValueHeader(_))));
        assert!(matches!(parse_reply(b"VALUE k 0\r\n"), Err(ProtoError::BadValueHeader(_))));
        assert!(matches!(parse_reply(b"VALUE k 0 3 1 extra\r\n"), Err(ProtoError::BadValueHeader(_))));
        assert!(matches!(parse_reply(b"VALUE k 99999999999 3\r\n"), Err(ProtoError::BadValueHeader(_))));
        assert_eq!(parse_reply(b"VALUE k 0 3\r\nabcd\r\nEND\r\n"), Err(ProtoError::BadValueTrailer));
        // two VALUE blocks to a single-key get is a framing error for us
        assert_eq!(parse_reply(b"VALUE k 0 1\r\na\r\nVALUE j 0 1\r\nb\r\nEND\r\n"), Err(ProtoError::BadValueTrailer));
        assert_eq!(
            parse_reply(format!("VALUE k 0 {}\r\n", MAX_VALUE + 1).as_bytes()),
            Err(ProtoError::ValueTooLarge(MAX_VALUE + 1))
        );
        let long = vec![b'x'; MAX_LINE + 1];
        assert_eq!(parse_reply(&long), Err(ProtoError::LineTooLong));
    }

    #[test]
    fn codec_roundtrip() {
        let c = Codec::new(100_000, 20);
        let mut out = Vec::new();
        c.push_get(&mut out, 42);
        assert_eq!(out, b"get key:00000042\r\n");
        out.clear();
        c.push_set(&mut out, 42);
        assert_eq!(out, b"set key:00000042 0 0 20\r\n00000042ijklmnopqrst\r\n");
        assert!(c.key_matches(b"key:00000042", 42));
        assert!(!c.key_matches(b"key:00000043", 42));
        assert!(!c.key_matches(b"key:000000042", 42));
        assert!(c.value_matches(b"00000042ijklmnopqrst", 42));
        assert!(!c.value_matches(b"00000043ijklmnopqrst", 42));
        assert!(!c.value_matches(b"00000042ijklmnopqrs", 42));

        // tiny values hold a prefix of the digits
        let c = Codec::new(10, 3);
        out.clear();
        c.push_set(&mut out, 7);
        assert_eq!(out, b"set key:00000007 0 0 3\r\n000\r\n");
        // key width grows past 8 digits for big key spaces
        let c = Codec::new(1_000_000_000, 4);
        assert_eq!(c.digits(5).as_bytes(), b"000000005");
        assert_eq!(c.digits(999_999_999).as_bytes(), b"999999999");
        let c = Codec::new(100_000_000, 4);
        assert_eq!(c.digits(99_999_999).as_bytes(), b"99999999");
    }

    #[test]
    fn check_outcomes() {
        let c = Codec::new(1000, 10);
        let hit = Reply::Value { key: b"key:00000007", flags: 0, data: b"00000007ij" };
        assert_eq!(check(&c, Op::Get(7), &hit), Outcome::Hit);
        assert_eq!(check(&c, Op::Get(8), &hit), Outcome::Unexpected);
        let flagged = Reply::Value { key: b"key:00000007", flags: 1, data: b"00000007ij" };
        assert_eq!(check(&c, Op::Get(7), &flagged), Outcome::Unexpected);
        assert_eq!(check(&c, Op::Get(7), &Reply::End), Outcome::Miss);
        assert_eq!(check(&c, Op::Set(7), &Reply::Stored), Outcome::Stored);
        assert_eq!(check(&c, Op::Set(7), &Reply::End), Outcome::Unexpected);
        assert_eq!(check(&c, Op::Get(7), &Reply::Stored), Outcome::Unexpected);
        assert_eq!(check(&c, Op::Set(7), &Reply::ServerError(b"out of memory")), Outcome::Unexpected);
        assert_eq!(check(&c, Op::Get(7), &Reply::Error), Outcome::Unexpected);
    }

    #[tokio::test]
    async fn recvbuf_reads_across_chunks() {
        let data: &[u8] = b"STORED\r\nVALUE key:00000001 0 4\r\n0000\r\nEND\r\nEND\r\n";
        let mut src = tokio_test_reader(data, 3);
        let mut rb = RecvBuf::with_capacity(8);
        let mut got = Vec::new();
        while got.len() < 3 {
            match parse_reply(rb.data()).unwrap() {
                Some((r, n)) => {
                    got.push(describe(&r));
                    rb.consume(n);
                }
                None => {
                    rb.fill(&mut src).await.unwrap();
                }
            }
        }
        assert_eq!(got[0], "Stored");
        assert!(got[1].starts_with("VALUE key:00000001 0 4"));
        assert_eq!(got[2], "End");
        assert!(rb.fill(&mut src).await.is_err()); // EOF
    }

    /// A reader yielding `data` in chunks of at most `chunk` bytes.
    fn tokio_test_reader(data: &'static [u8], chunk: usize) -> impl AsyncRead + Unpin {
        struct Chunked(&'static [u8], usize);
        impl AsyncRead for Chunked {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                let n = self.1.min(self.0.len()).min(buf.remaining());
                buf.put_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                std::task::Poll::Ready(Ok(()))
            }
        }
        Chunked(data, chunk)
    }
}
