//! memcached's classic text protocol: turning bytes into requests. No I/O, no store.
//!
//! The rules are memcached 1.6's `proto_text.c`: a line ends at `\n` (a preceding `\r` is
//! dropped), tokens are separated by runs of spaces, at most 24 tokens are looked at, numbers
//! are parsed with the C library's leniency, and every malformed line gets the exact reply
//! memcached gives.

use super::meta::{self, Meta};
use crate::number::{parse_counter, parse_i32, parse_u32_truncating};
use crate::store::{MAX_KEY_LEN, Mode, item_too_large};

/// memcached closes a connection whose line has no end within this many bytes, unless the
/// line is a multiget.
pub const MAX_LINE: usize = 2048;
/// Multigets may be longer (memcached lets them grow without bound; we stop here).
pub const MAX_GET_LINE: usize = 256 * 1024;
/// memcached's MAX_TOKENS: the command line is split into at most this many tokens (the
/// last being the terminator).
const MAX_TOKENS: usize = 24;

/// A parsed request, borrowing from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Get {
        keys: Keys<'a>,
        cas: bool,
        touch: Option<i64>,
    },
    Store(StoreCmd<'a>),
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        key: &'a [u8],
        incr: bool,
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Version,
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Quit,
    Stats {
        args: Tokens<'a>,
    },
    /// A meta command (`mg`, `ms`, …).
    Meta(Meta<'a>),
    /// A value over `-I`, refused before it is read: memcached replies with an error and, for
    /// `set`, drops the old value so that it cannot be served stale.
    TooLarge {
        key: &'a [u8],
        mode: Mode,
        noreply: bool,
    },
    Shutdown,
    /// `refresh_certs`: reload the TLS certificate and key (memcached ignores any arguments
    /// but `noreply`, which silences only the `OK`).
    RefreshCerts {
        noreply: bool,
    },
    /// `slabs automove <0|1|2>` (also `slabs automove ratio <x>`): memcached's page mover.
    SlabsAutomove {
        noreply: bool,
    },
    /// `slabs reassign <src> <dst>`: move a slab page between classes.
    SlabsReassign {
        src: i64,
        dst: i64,
    },
    /// `stats cachedump <class> <limit>`: up to `limit` keys of one slab class (0: no limit).
    CacheDump {
        class: u32,
        limit: u32,
    },
    /// The `lru_crawler` commands.
    LruCrawler(Crawler),
    /// A reply to send as is, e.g. `ERROR`; memcached suppresses even errors for a command
    /// that ended in `noreply`.
    Error {
        reply: &'static str,
        noreply: bool,
    },
}

/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`: class numbers below it are valid (0 only for
/// `stats cachedump`), though only 1 to 39 ever hold items.
pub const MAX_CLASSES: u32 = 64;

/// `lru_crawler <subcommand>`, its arguments checked (memcached's `process_lru_crawler_command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crawler {
    /// `crawl <classes>`: reclaim the expired items of these classes.
    Crawl(Classes),
    /// `metadump <classes>`: one line per live item of these classes.
    Metadump(Classes),
    Enable,
    Disable,
    /// `sleep <µs>` or `tocrawl <n>` with a valid value: accepted.
    Tune,
}

/// The class argument of `lru_crawler crawl|metadump`: `all`, `hash` or a comma-separated list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classes {
    All,
    /// Walk the hash table rather than the LRUs (metadump only).
    Hash,
    List(ClassList),
    /// A class that is not a number from 1 to 63.
    Invalid,
    /// Nothing but commas.
    Empty,
}

/// A set of slab classes (1 to 63), one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassList(pub u64);

impl ClassList {
    pub const ALL: ClassList = ClassList(!1);

    pub fn contains(self, class: u8) -> bool {
        class < 64 && self.0 & 1 << class != 0
    }
}

/// memcached's `lru_crawler_crawl` reading its class argument: numbers as `safe_strtoul` reads
/// them, empty pieces skipped (`strtok`).
fn parse_classes(arg: &[u8]) -> Classes {
    match arg {
        b"all" => Classes::All,
        b"hash" => Classes::Hash,
        _ => {
            let mut set = 0u64;
            for piece in arg.split(|&b| b == b',').filter(|p| !p.is_empty()) {
                match parse_u32_truncating(piece) {
                    Some(class @ 1..MAX_CLASSES) => set |= 1 << class,
                    _ => return Classes::Invalid,
                }
            }
            if set == 0 { Classes::Empty } else { Classes::List(ClassList(set)) }
        }
    }
}

/// `lru_crawler …`; `nt` counts the terminator, as memcached's `ntokens` does. memcached looks
/// for no `noreply` here: a trailing one is just a token too many.
fn parse_lru_crawler<'a>(t: &[&'a [u8]], nt: usize) -> Request<'a> {
    let fail = |reply| Request::Error { reply, noreply: false };
    match (nt, t.get(1).copied().unwrap_or_default()) {
        (4, b"crawl") => Request::LruCrawler(Crawler::Crawl(parse_classes(t[2]))),
        (4, b"metadump") => Request::LruCrawler(Crawler::Metadump(parse_classes(t[2]))),
        (4, b"tocrawl") => match parse_u32_truncating(t[2]) {
            Some(_) => Request::LruCrawler(Crawler::Tune),
            None => fail("CLIENT_ERROR bad command line format"),
        },
        (4, b"sleep") => match parse_u32_truncating(t[2]) {
            Some(0..=1_000_000) => Request::LruCrawler(Crawler::Tune),
            Some(_) => fail("CLIENT_ERROR sleep must be one second or less"),
            None => fail("CLIENT_ERROR bad command line format"),
        },
        (3, b"enable") => Request::LruCrawler(Crawler::Enable),
        (3, b"disable") => Request::LruCrawler(Crawler::Disable),
        _ => fail("ERROR"),
    }
}

/// `stats cachedump <class> <limit>`, checked as memcached's `process_stat` does; tokens after
/// the limit (`noreply` too) are ignored.
fn parse_cachedump<'a>(t: &[&'a [u8]], nt: usize) -> Request<'a> {
    let fail = |reply| Request::Error { reply, noreply: false };
    if nt < 5 {
        return fail("CLIENT_ERROR bad command line");
    }
    match (parse_u32_truncating(t[2]), parse_u32_truncating(t[3])) {
        (Some(class), Some(_)) if class >= MAX_CLASSES => fail("CLIENT_ERROR Illegal slab id"),
        (Some(class), Some(limit)) => Request::CacheDump { class, limit },
        _ => fail("CLIENT_ERROR bad command line format"),
    }
}

/// set / add / replace / append / prepend / cas with its data block.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreCmd<'a> {
    pub mode: Mode,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: i64,
    pub cas: u64,
    pub value: &'a [u8],
    pub noreply: bool,
}

/// What the connection should do with the bytes at the front of its buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// Not a whole request yet; read more.
    Incomplete,
    /// A request spanning `len` bytes.
    Request { req: Request<'a>, len: usize },
    /// Run `req` (a refusal), drop `len` bytes (the line), then discard the next `swallow`
    /// bytes as they arrive: memcached's answer to a value it will not store.
    Swallow { req: Request<'a>, len: usize, swallow: usize },
    /// The line can never be valid (too long): close the connection.
    Close,
}

/// Space-separated tokens of a line (runs of spaces collapse, as in memcached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens<'a>(pub &'a [u8]);

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.0.iter().position(|&b| b != b' ')?;
        let rest = &self.0[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.0 = &rest[end..];
        Some(&rest[..end])
    }
}

/// The keys of a multiget.
pub type Keys<'a> = Tokens<'a>;

/// Finds the end of the first line: (line without CR/LF, bytes including the LF).
pub fn split_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let nl = memchr(b'\n', buf)?;
    let mut line = &buf[..nl];
    if line.len() > 1 && line[line.len() - 1] == b'\r' {
        line = &line[..line.len() - 1];
    }
    Some((line, nl + 1))
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Parses one request from the front of `buf`. `item_size_max` is `-I`, needed to refuse
/// oversized values before reading them.
pub fn parse(buf: &[u8], item_size_max: usize) -> Parse<'_> {
    let Some((line, line_len)) = split_line(buf) else {
        return if buf.len() > MAX_LINE && !is_multiget(buf) || buf.len() > MAX_GET_LINE {
            Parse::Close
        } else {
            Parse::Incomplete
        };
    };
    if line_len > MAX_GET_LINE {
        return Parse::Close;
    }
    let mut tokens = [&b""[..]; MAX_TOKENS];
    let n = tokenize(line, &mut tokens);
    let t = &tokens[..n];
    // memcached counts the terminator as a token; `nt` mirrors its `ntokens`.
    let nt = n + 1;
    let request = |req| Parse::Request { req, len: line_len };
    let error = || request(Request::Error { reply: "ERROR", noreply: false });
    // memcached's `set_noreply_maybe`, which most commands call before anything can fail.
    let noreply = n > 0 && t[n - 1] == b"noreply";
    let fail = |reply| request(Request::Error { reply, noreply });
    if n == 0 || t[0].len() < 2 {
        return error();
    }
    let cmd = t[0];
    if cmd.len() == 2 && cmd[0] == b'm' {
        return meta::parse(buf, line, t, line_len, item_size_max);
    }
    match cmd {
        b"get" | b"gets" | b"gat" | b"gats" => {
            if nt < 3 {
                return error();
            }
            let cas = cmd.ends_with(b"s");
            let rest = Tokens(&line[token_end(line, t[0])..]);
            if cmd.starts_with(b"gat") {
                let Some(exptime) = parse_i32(t[1]) else {
                    return request(Request::Error { reply: "CLIENT_ERROR invalid exptime argument", noreply: false });
                };
                let mut keys = rest;
                keys.next();
                if keys.clone().next().is_none() {
                    return error();
                }
                return request(Request::Get { keys, cas, touch: Some(exptime) });
            }
            request(Request::Get { keys: rest, cas, touch: None })
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            let is_cas = cmd == b"cas";
            let want = if is_cas { 7 } else { 6 };
            if nt != want && nt != want + 1 {
                return error();
            }
            let mode = match cmd {
                b"set" => Mode::Set,
                b"add" => Mode::Add,
                b"replace" => Mode::Replace,
                b"append" => Mode::Append,
                b"prepend" => Mode::Prepend,
                _ => Mode::Cas,
            };
            parse_store(buf, t, line_len, mode, item_size_max, noreply)
        }
        b"delete" => {
            if !(3..=5).contains(&nt) {
                return error();
            }
            // Only here does memcached's delete look for noreply.
            let noreply = nt > 3 && noreply;
            if nt > 3 {
                let hold_is_zero = t[2] == b"0";
                let valid = (nt == 4 && (hold_is_zero || noreply)) || (nt == 5 && hold_is_zero && noreply);
                if !valid {
                    return request(Request::Error {
                        reply: "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
                        noreply,
                    });
                }
            }
            if t[1].len() > MAX_KEY_LEN {
                return request(Request::Error { reply: "CLIENT_ERROR bad command line format", noreply });
            }
            request(Request::Delete { key: t[1], noreply })
        }
        b"incr" | b"decr" => {
            if nt != 4 && nt != 5 {
                return error();
            }
            if t[1].len() > MAX_KEY_LEN {
                return fail("CLIENT_ERROR bad command line format");
            }
            let Some(delta) = parse_counter(t[2]) else {
                return fail("CLIENT_ERROR invalid numeric delta argument");
            };
            request(Request::Arith { key: t[1], incr: cmd == b"incr", delta, noreply })
        }
        b"touch" => {
            if nt != 4 && nt != 5 {
                return error();
            }
            if t[1].len() > MAX_KEY_LEN {
                return fail("CLIENT_ERROR bad command line format");
            }
            let Some(exptime) = parse_i32(t[2]) else {
                return fail("CLIENT_ERROR invalid exptime argument");
            };
            request(Request::Touch { key: t[1], exptime, noreply })
        }
        b"flush_all" => {
            if !(2..=4).contains(&nt) {
                return error();
            }
            let delay = if nt == (if noreply { 3 } else { 2 }) {
                0
            } else {
                match parse_i32(t[1]) {
                    Some(d) => d,
                    None => return fail("CLIENT_ERROR invalid exptime argument"),
                }
            };
            request(Request::FlushAll { delay, noreply })
        }
        b"version" => request(Request::Version),
        b"quit" => request(Request::Quit),
        b"verbosity" => {
            if nt != 3 && nt != 4 {
                return error();
            }
            let Some(level) = parse_u32_truncating(t[1]) else {
                return fail("CLIENT_ERROR bad command line format");
            };
            request(Request::Verbosity { level, noreply })
        }
        b"stats" if n > 1 && t[1] == b"cachedump" => request(parse_cachedump(t, nt)),
        b"lru_crawler" => request(parse_lru_crawler(t, nt)),
        b"stats" => request(Request::Stats { args: Tokens(&line[token_end(line, t[0])..]) }),
        b"shutdown" => request(Request::Shutdown),
        b"refresh_certs" => request(Request::RefreshCerts { noreply }),
        // memcached's checks and replies, in its order (proto_text.c, process_slabs_*).
        b"slabs" if nt == 5 && t[1] == b"reassign" => match (parse_i32(t[2]), parse_i32(t[3])) {
            (Some(src), Some(dst)) => request(Request::SlabsReassign { src, dst }),
            _ => request(Request::Error { reply: "CLIENT_ERROR bad command line format", noreply: false }),
        },
        b"slabs" if nt >= 4 && t[1] == b"automove" => {
            if t[2] == b"ratio" {
                let ratio =
                    std::str::from_utf8(t.get(3).copied().unwrap_or_default()).ok().and_then(|r| r.parse::<f64>().ok());
                return if nt >= 5 && ratio.is_some() { request(Request::SlabsAutomove { noreply }) } else { error() };
            }
            match parse_u32_truncating(t[2]) {
                Some(0..=2) => request(Request::SlabsAutomove { noreply }),
                Some(_) => fail("ERROR"),
                None => fail("CLIENT_ERROR bad command line format"),
            }
        }
        _ => {
            // memcached drops connections that speak HTTP to it.
            if t[n - 1].starts_with(b"HTTP/") {
                return Parse::Close;
            }
            error()
        }
    }
}

fn is_multiget(buf: &[u8]) -> bool {
    let start = buf.iter().take(101).position(|&b| b != b' ');
    start.is_some_and(|s| buf[s..].starts_with(b"get ") || buf[s..].starts_with(b"gets "))
}

/// Offset just past `token` within `line` (`token` is a subslice of `line`).
pub(super) fn token_end(line: &[u8], token: &[u8]) -> usize {
    token.as_ptr() as usize - line.as_ptr() as usize + token.len()
}

/// Splits like memcached's `tokenize_command`; returns how many tokens were stored.
fn tokenize<'a>(line: &'a [u8], out: &mut [&'a [u8]; MAX_TOKENS]) -> usize {
    let mut n = 0;
    for tok in Tokens(line) {
        if n == MAX_TOKENS - 1 {
            // memcached stops here and leaves the remainder unparsed, which makes the
            // command line too long for every fixed-arity command.
            break;
        }
        out[n] = tok;
        n += 1;
    }
    n
}

fn parse_store<'a>(
    buf: &'a [u8],
    t: &[&'a [u8]],
    line_len: usize,
    mode: Mode,
    item_size_max: usize,
    noreply: bool,
) -> Parse<'a> {
    let bad = || Parse::Request {
        req: Request::Error { reply: "CLIENT_ERROR bad command line format", noreply },
        len: line_len,
    };
    let key = t[1];
    if key.len() > MAX_KEY_LEN {
        return bad();
    }
    let (Some(flags), Some(exptime), Some(vlen)) = (parse_u32_truncating(t[2]), parse_i32(t[3]), parse_i32(t[4]))
    else {
        return bad();
    };
    let cas = if mode == Mode::Cas {
        match parse_counter(t[5]) {
            Some(cas) => cas,
            None => return bad(),
        }
    } else {
        0
    };
    if vlen < 0 || vlen > i64::from(i32::MAX - 2) {
        return bad();
    }
    let vlen = vlen as usize;
    if item_too_large(item_size_max, key.len(), vlen, flags) {
        return Parse::Swallow { req: Request::TooLarge { key, mode, noreply }, len: line_len, swallow: vlen + 2 };
    }
    let total = line_len + vlen + 2;
    if buf.len() < total {
        return Parse::Incomplete;
    }
    if &buf[line_len + vlen..total] != b"\r\n" {
        return Parse::Request { req: Request::Error { reply: "CLIENT_ERROR bad data chunk", noreply }, len: total };
    }
    let value = &buf[line_len..line_len + vlen];
    Parse::Request { req: Request::Store(StoreCmd { mode, key, flags, exptime, cas, value, noreply }), len: total }
}

#[cfg(test)]
mod tests;
