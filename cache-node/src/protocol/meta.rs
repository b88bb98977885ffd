//! memcached's meta commands (`mg ms md ma mn me`): the command line, its flags and the `ms`
//! data block. No I/O, no store.
//!
//! The rules are memcached 1.6.18's: which checks run, in which order, and so which error wins
//! when several apply; which of them discard an `ms` data block and which leave it to be read
//! as the next command. Flags are single characters, some followed by a token (`T30`,
//! `Oopaque`); the engine replays them in line order to build the reply.

use super::text::{Parse, Request, Tokens, token_end};
use crate::number::{parse_counter, parse_i32, parse_u32_truncating};
use crate::store::{MAX_KEY_LEN, Mode, item_too_large};

/// memcached refuses a meta line of more tokens than this, counting its terminator token.
const MAX_TOKENS: usize = 20;
/// Longest opaque token, its `O` included.
const MAX_OPAQUE_LEN: usize = 32;

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// mg
    Get,
    /// ms, in the store mode its `M` and `C` flags select.
    Set(Mode),
    /// md
    Delete,
    /// ma
    Arith { incr: bool },
    /// mn
    Noop,
    /// me
    Debug,
}

/// A parsed meta command.
#[derive(Debug, PartialEq, Eq)]
pub struct Meta<'a> {
    pub cmd: Command,
    /// The key as sent: base64 when `flags.base64` is set (see [`Meta::key`]).
    pub key: &'a [u8],
    pub flags: Flags,
    /// The flag tokens in line order; replies echo or answer them in that order.
    pub tokens: Tokens<'a>,
    /// ms: the data block, or `None` when it exceeds `-I` and is being discarded.
    pub value: Option<&'a [u8]>,
}

impl Meta<'_> {
    /// The key to look up: decoded into `buf` when it was sent in base64.
    pub fn key<'k>(&'k self, buf: &'k mut [u8; MAX_KEY_LEN]) -> Option<&'k [u8]> {
        if !self.flags.base64 {
            return Some(self.key);
        }
        let len = decode_key(self.key, buf)?;
        Some(&buf[..len])
    }
}

/// A client exptime given by a flag (`N`, `R`, `T`), with the flag's index among the flags:
/// memcached applies these in line order, so their order shows in replies. Both are small
/// (memcached reads exptimes into 32 bits; a line has under 20 flags), which keeps requests small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exptime {
    pub value: i32,
    pub at: u8,
}

/// What the flags of a meta command ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// b: the key is base64.
    pub base64: bool,
    /// v: return the value.
    pub value: bool,
    /// q: leave out the nominal reply (EN for mg, HD for the others).
    pub quiet: bool,
    /// u: do not bump the item.
    pub no_bump: bool,
    /// h l N R T: memcached bumps the item only once the reply is written, not when it fetches
    /// it, so an mg that fails in between leaves the item unbumped only with one of these.
    pub late_bump: bool,
    /// I: invalidate (md) or store as stale (ms with an older C).
    pub invalidate: bool,
    /// F: client flags for ms.
    pub client_flags: u32,
    /// C: compare CAS.
    pub cas: Option<u64>,
    /// J: ma's initial value when N creates the item.
    pub initial: u64,
    /// D: ma's delta.
    pub delta: u64,
    /// T: new TTL.
    pub ttl: Option<Exptime>,
    /// N: create on a miss, with this TTL.
    pub vivify: Option<Exptime>,
    /// R: win the recache token when the TTL left is below this.
    pub recache: Option<Exptime>,
    /// Index of the first `O` token longer than memcached allows. mg and ma still apply the
    /// flags before it and then fail; md and ms fail before touching the store.
    pub long_opaque: Option<u8>,
    /// M: the mode character, checked per command.
    mode: Option<u8>,
}

impl Default for Flags {
    fn default() -> Self {
        Self {
            base64: false,
            value: false,
            quiet: false,
            no_bump: false,
            late_bump: false,
            invalidate: false,
            client_flags: 0,
            cas: None,
            initial: 0,
            delta: 1,
            ttl: None,
            vivify: None,
            recache: None,
            long_opaque: None,
            mode: None,
        }
    }
}

/// Parses a meta command. `t` holds the line's tokens (as many as memcached tokenizes), `line`
/// the line itself, which spans `line_len` bytes at the front of `buf` with its line ending;
/// `ms` reads its data block from what follows. `item_size_max` is `-I`.
pub fn parse<'a>(buf: &'a [u8], line: &'a [u8], t: &[&'a [u8]], line_len: usize, item_size_max: usize) -> Parse<'a> {
    let reply = |reply| Parse::Request { req: Request::Error { reply, noreply: false }, len: line_len };
    let meta = |cmd, flags, tokens| Meta { cmd, key: t.get(1).copied().unwrap_or(b""), flags, tokens, value: None };
    let request = |m| Parse::Request { req: Request::Meta(m), len: line_len };
    // memcached's `ntokens` counts a terminator token.
    let ntokens = t.len() + 1;
    let Some(&cmd) = t.first().and_then(|c| c.get(1)) else {
        return reply("ERROR");
    };
    if cmd == b'n' {
        return request(meta(Command::Noop, Flags::default(), Tokens(b"")));
    }
    if cmd == b'e' {
        if ntokens < 3 || t[1].len() > MAX_KEY_LEN {
            return reply(BAD_FORMAT);
        }
        // me looks only at its first flag, and only for a lone `b`.
        let base64 = ntokens >= 4 && t[2] == b"b";
        if base64 && decode_key(t[1], &mut [0; MAX_KEY_LEN]).is_none() {
            return reply(BAD_FORMAT);
        }
        return request(meta(Command::Debug, Flags { base64, ..Flags::default() }, Tokens(b"")));
    }
    if !matches!(cmd, b'g' | b's' | b'd' | b'a') || ntokens < 3 {
        return reply("ERROR");
    }
    let key = t[1];
    if key.len() > MAX_KEY_LEN {
        return reply(BAD_FORMAT);
    }
    if cmd == b's' {
        return parse_set(buf, line, t, line_len, item_size_max);
    }
    if ntokens > MAX_TOKENS {
        return reply(if cmd == b'g' {
            "CLIENT_ERROR options flags are too long"
        } else {
            "CLIENT_ERROR options flags too long"
        });
    }
    let flags = match preparse(key, &t[2..]) {
        Ok(flags) => flags,
        // md and ma do not pass on what went wrong.
        Err(e) => return reply(if cmd == b'g' { e } else { "CLIENT_ERROR invalid or duplicate flag" }),
    };
    let tokens = Tokens(&line[token_end(line, key)..]);
    let cmd = match cmd {
        b'g' => Command::Get,
        b'd' => {
            if flags.long_opaque.is_some() {
                return reply(OPAQUE_TOO_LONG);
            }
            Command::Delete
        }
        _ => match flags.mode {
            None | Some(b'I' | b'+') => Command::Arith { incr: true },
            Some(b'D' | b'-') => Command::Arith { incr: false },
            Some(_) => return reply("CLIENT_ERROR invalid mode for ma M token"),
        },
    };
    request(meta(cmd, flags, tokens))
}

/// `ms <key> <datalen> <flags>*` and its data block.
fn parse_set<'a>(buf: &'a [u8], line: &'a [u8], t: &[&'a [u8]], line_len: usize, item_size_max: usize) -> Parse<'a> {
    let reply = |reply| Parse::Request { req: Request::Error { reply, noreply: false }, len: line_len };
    let ntokens = t.len() + 1;
    // These refusals leave the data block to be read as commands, as memcached does.
    if ntokens == 3 {
        return reply(BAD_FORMAT);
    }
    if ntokens > MAX_TOKENS {
        return reply("CLIENT_ERROR options flags too long");
    }
    let vlen = match parse_i32(t[2]) {
        Some(v) if (0..=i64::from(i32::MAX - 2)).contains(&v) => v as usize,
        _ => return reply(BAD_FORMAT),
    };
    // From here on memcached knows the length and discards the data block of a refused set.
    let swallow = vlen + 2;
    let refuse = |reply| Parse::Swallow { req: Request::Error { reply, noreply: false }, len: line_len, swallow };
    let key = t[1];
    let flags = match preparse(key, &t[3..]) {
        Ok(flags) => flags,
        Err(e) => return refuse(e),
    };
    let mode = match flags.mode {
        None | Some(b'S') => Mode::Set,
        Some(b'E') => Mode::Add,
        Some(b'A') => Mode::Append,
        Some(b'P') => Mode::Prepend,
        Some(b'R') => Mode::Replace,
        Some(_) => return refuse("CLIENT_ERROR invalid mode for ms M token"),
    };
    if flags.long_opaque.is_some() {
        return refuse(OPAQUE_TOO_LONG);
    }
    // A compare value turns set and replace into cas; add ignores it, append and prepend check it.
    let mode = if flags.cas.is_some() && matches!(mode, Mode::Set | Mode::Replace) { Mode::Cas } else { mode };
    let tokens = Tokens(&line[token_end(line, t[2])..]);
    let mut m = Meta { cmd: Command::Set(mode), key, flags, tokens, value: None };
    let key_len = if flags.base64 { decode_key(key, &mut [0; MAX_KEY_LEN]).unwrap_or(0) } else { key.len() };
    if item_too_large(item_size_max, key_len, vlen, flags.client_flags) {
        return Parse::Swallow { req: Request::Meta(m), len: line_len, swallow };
    }
    let total = line_len + swallow;
    if buf.len() < total {
        return Parse::Incomplete;
    }
    if &buf[line_len + vlen..total] != b"\r\n" {
        return Parse::Request {
            req: Request::Error { reply: "CLIENT_ERROR bad data chunk", noreply: false },
            len: total,
        };
    }
    m.value = Some(&buf[line_len..line_len + vlen]);
    Parse::Request { req: Request::Meta(m), len: total }
}

/// memcached's `_meta_flag_preparse`: reads every flag. A flag with a bad token marks the
/// command failed and the scan goes on (the last such error is reported); an unknown or
/// repeated flag fails it at once.
fn preparse(key: &[u8], tokens: &[&[u8]]) -> Result<Flags, &'static str> {
    let mut f = Flags::default();
    let mut seen = 0u128;
    let mut error = None;
    // A bad F token fails the command without naming a reason of its own.
    let mut reason = BAD_FORMAT;
    for (i, tok) in (0u8..).zip(tokens) {
        let Some((&flag, arg)) = tok.split_first() else {
            continue;
        };
        if flag >= 127 || seen & (1 << flag) != 0 {
            return Err("CLIENT_ERROR duplicate flag");
        }
        seen |= 1 << flag;
        let mut fail = |why| {
            reason = why;
            error = Some(());
        };
        let exptime = |value| Exptime { value, at: i };
        f.late_bump |= matches!(flag, b'h' | b'l' | b'N' | b'R' | b'T');
        match flag {
            b'b' => {
                f.base64 = true;
                if decode_key(key, &mut [0; MAX_KEY_LEN]).is_none() {
                    fail("CLIENT_ERROR error decoding key");
                }
            }
            b'N' => match exptime_token(arg) {
                Some(v) => f.vivify = Some(exptime(v)),
                None => fail(BAD_TOKEN),
            },
            b'T' => match exptime_token(arg) {
                Some(v) => f.ttl = Some(exptime(v)),
                None => fail(BAD_TOKEN),
            },
            b'R' => match exptime_token(arg) {
                Some(v) => f.recache = Some(exptime(v)),
                None => fail(BAD_TOKEN),
            },
            b'O' => {
                if tok.len() > MAX_OPAQUE_LEN && f.long_opaque.is_none() {
                    f.long_opaque = Some(i);
                }
            }
            // Return flags, and P and L which are hints for proxies.
            b'k' | b's' | b't' | b'c' | b'f' | b'l' | b'h' | b'P' | b'L' => {}
            b'v' => f.value = true,
            b'u' => f.no_bump = true,
            b'q' => f.quiet = true,
            b'I' => f.invalidate = true,
            b'F' => match parse_u32_truncating(arg) {
                Some(v) => f.client_flags = v,
                None => error = Some(()),
            },
            b'C' => match parse_counter(arg) {
                Some(v) => f.cas = Some(v),
                None => fail(BAD_TOKEN),
            },
            b'M' => match arg {
                &[mode] => f.mode = Some(mode),
                _ => fail("CLIENT_ERROR incorrect length for M token"),
            },
            b'J' => match parse_counter(arg) {
                Some(v) => f.initial = v,
                None => fail("CLIENT_ERROR invalid numeric initial value"),
            },
            b'D' => match parse_counter(arg) {
                Some(v) => f.delta = v,
                None => fail("CLIENT_ERROR invalid numeric delta value"),
            },
            _ => return Err("CLIENT_ERROR invalid flag"),
        }
    }
    match error {
        Some(()) => Err(reason),
        None => Ok(f),
    }
}

/// An exptime token: memcached's `safe_strtol` into an `int32_t`.
fn exptime_token(arg: &[u8]) -> Option<i32> {
    parse_i32(arg).and_then(|v| i32::try_from(v).ok())
}

/// memcached's base64 decoder, quirks included: characters outside the alphabet are skipped,
/// the rest must come in groups of four, and the first group with padding ends the key (even
/// padding in mid-group, which drops bytes). Returns the decoded length, never 0.
pub fn decode_key(src: &[u8], out: &mut [u8; MAX_KEY_LEN]) -> Option<usize> {
    fn sextet(b: u8) -> Option<u8> {
        match b {
            b'A'..=b'Z' => Some(b - b'A'),
            b'a'..=b'z' => Some(b - b'a' + 26),
            b'0'..=b'9' => Some(b - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            b'=' => Some(0),
            _ => None,
        }
    }
    let count = src.iter().filter(|&&b| sextet(b).is_some()).count();
    if count == 0 || count % 4 != 0 || count / 4 * 3 > out.len() {
        return None;
    }
    let (mut len, mut block, mut filled, mut pad) = (0, [0u8; 4], 0, 0);
    for &b in src {
        let Some(v) = sextet(b) else {
            continue;
        };
        pad += usize::from(b == b'=');
        block[filled] = v;
        filled += 1;
        if filled < 4 {
            continue;
        }
        out[len] = block[0] << 2 | block[1] >> 4;
        out[len + 1] = block[1] << 4 | block[2] >> 2;
        out[len + 2] = block[2] << 6 | block[3];
        len += 3;
        filled = 0;
        if pad > 0 {
            if pad > 2 {
                return None;
            }
            len -= pad;
            break;
        }
    }
    Some(len)
}

/// Appends `key` in standard, padded base64, as memcached shows binary keys.
pub fn encode_key(key: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let start = out.len();
    out.resize(start + key.len().div_ceil(3) * 4, 0);
    let written = base64::engine::general_purpose::STANDARD.encode_slice(key, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

#[cfg(test)]
mod tests;
