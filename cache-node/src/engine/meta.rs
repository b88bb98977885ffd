//! Meta commands: applies a parsed `mg ms md ma mn me` to the store and writes memcached
//! 1.6.18's reply straight into the output buffer.
//!
//! Reply flags follow the request's flags in line order. Some request flags act where they
//! stand on the line: a `t` before `T` shows the old TTL, and `N`/`T` on an item created by the
//! request set its expiry in order, the later winning. The store applies the outcome
//! atomically; the rendering loop below replays the order.

use std::sync::atomic::Ordering::Relaxed;

use super::dump::{Times, push_item_fields};
use super::{Context, Reply, push_num};
use crate::protocol::meta::{Command, Exptime, Flags, Meta, OPAQUE_TOO_LONG, encode_key};
use crate::store::item::BINARY_KEY;
use crate::store::{
    ArithOutcome, ArithRequest, DeleteRequest, DeleteStatus, MAX_KEY_LEN, Mode, ReadOptions, RelTime, StoreRequest,
    StoreStatus,
};

const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";

/// Executes one meta command.
pub fn execute(ctx: &Context, m: &Meta<'_>, now: RelTime, out: &mut Reply) {
    let mut buf = [0; MAX_KEY_LEN];
    let Some(key) = m.key(&mut buf) else {
        // The parser has vetted base64 keys; stay total all the same.
        line(out, "CLIENT_ERROR error decoding key");
        return;
    };
    match m.cmd {
        Command::Get => get(ctx, m, key, now, out),
        Command::Set(mode) => set(ctx, m, key, mode, now, out),
        Command::Delete => delete(ctx, m, key, now, out),
        Command::Arith { incr } => arith(ctx, m, key, incr, now, out),
        Command::Debug => {
            // memcached 1.6.18 counts only `me` as cmd_meta.
            ctx.stats.cmd_meta.fetch_add(1, Relaxed);
            debug(ctx, key, now, out)
        }
        Command::Noop => {
            // memcached sends the replies so far at once.
            out.extend_from_slice(b"MN\r\n");
            out.release();
        }
    }
}

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// ` k<key>`, in base64 followed by ` b` when the key is binary.
fn push_key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        encode_key(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// Remaining TTL as memcached prints it: -1 for never, else unsigned seconds (an item set to
/// expire in the past by this very request wraps around, as in memcached).
fn push_ttl(out: &mut Vec<u8>, exptime: RelTime, now: RelTime) {
    if exptime == 0 {
        out.extend_from_slice(b"-1");
    } else {
        push_num(out, exptime.wrapping_sub(now));
    }
}

/// The reply of a command that did not find or change its item: its code, then the opaque
/// and key flags in line order.
fn status_reply(out: &mut Vec<u8>, m: &Meta<'_>, code: &str, key: &[u8]) {
    out.extend_from_slice(code.as_bytes());
    for tok in m.tokens {
        match tok {
            [b'O', ..] => {
                out.push(b' ');
                out.extend_from_slice(tok);
            }
            [b'k', ..] => push_key(out, key, m.flags.base64),
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The expiry flags that apply (those before an over-long opaque), converted to relative time:
/// T's, N's, and the expiry of an item the request creates (`N` and `T` in line order).
struct Expiry {
    touch: Option<RelTime>,
    vivify: Option<RelTime>,
    created: RelTime,
}

impl Expiry {
    fn new(ctx: &Context, f: &Flags, now: RelTime) -> Self {
        let cutoff = f.long_opaque.unwrap_or(u8::MAX);
        let applied = |e: Option<Exptime>| e.filter(|e| e.at < cutoff);
        let rel = |e: Exptime| (e.at, ctx.clock.rel_exptime(e.value.into(), now));
        let (ttl, vivify) = (applied(f.ttl).map(rel), applied(f.vivify).map(rel));
        let created = ttl.into_iter().chain(vivify).max_by_key(|&(at, _)| at).map_or(0, |(_, exptime)| exptime);
        Self { touch: ttl.map(|t| t.1), vivify: vivify.map(|n| n.1), created }
    }
}

/// mg: HD or VA with the requested flags, EN on a miss (nothing with q).
fn get(ctx: &Context, m: &Meta<'_>, key: &[u8], now: RelTime, out: &mut Reply) {
    let f = &m.flags;
    let exp = Expiry::new(ctx, f, now);
    // memcached fails an over-long opaque while writing the reply: what came before it on
    // the line has happened, the win token has not, nor a bump that waits for the reply.
    let aborted = f.long_opaque.is_some();
    let opts = ReadOptions {
        touch: exp.touch,
        vivify: f.vivify.map(|_| exp.created),
        recache_before: f.recache.map(|r| ctx.clock.rel_exptime(r.value.into(), now)),
        recache_after_touch: matches!((f.ttl, f.recache), (Some(t), Some(r)) if t.at < r.at),
        claim_win: !aborted,
        no_bump: f.no_bump || (aborted && f.late_bump),
    };
    if aborted {
        ctx.store.read(key, now, opts, |_, _| ());
        line(out, OPAQUE_TOO_LONG);
        return;
    }
    let hit = ctx.store.read(key, now, opts, |it, st| {
        let value = it.value();
        if f.value {
            out.extend_from_slice(b"VA ");
            push_num(out, value.len());
        } else {
            out.extend_from_slice(b"HD");
        }
        let mut exptime = if st.created { 0 } else { st.exptime };
        for tok in m.tokens {
            match tok {
                [b'T', ..] => exptime = exp.touch.unwrap_or(exptime),
                [b'N', ..] if st.created => exptime = exp.vivify.unwrap_or(exptime),
                [b's', ..] => {
                    out.extend_from_slice(b" s");
                    push_num(out, value.len());
                }
                [b't', ..] => {
                    out.extend_from_slice(b" t");
                    push_ttl(out, exptime, now);
                }
                [b'c', ..] => {
                    out.extend_from_slice(b" c");
                    push_num(out, it.cas);
                }
                [b'f', ..] => {
                    out.extend_from_slice(b" f");
                    push_num(out, it.flags);
                }
                [b'l', ..] => {
                    out.extend_from_slice(b" l");
                    push_num(out, st.idle);
                }
                [b'h', ..] => out.extend_from_slice(if st.fetched { b" h1" } else { b" h0" }),
                [b'O', ..] => {
                    out.push(b' ');
                    out.extend_from_slice(tok);
                }
                [b'k', ..] => push_key(out, key, st.binary_key),
                _ => {}
            }
        }
        if st.won_elsewhere {
            out.extend_from_slice(b" Z");
        }
        if st.stale {
            out.extend_from_slice(b" X");
        }
        if st.win {
            out.extend_from_slice(b" W");
        }
        out.extend_from_slice(b"\r\n");
        if f.value {
            out.push_value(it);
            out.extend_from_slice(b"\r\n");
        }
        out.hold(it);
    });
    if hit.is_none() && !f.quiet {
        status_reply(out, m, "EN", key);
    }
}

/// ms: HD (nothing with q), NS, EX or NF, with the opaque, key and CAS flags.
fn set(ctx: &Context, m: &Meta<'_>, key: &[u8], mode: Mode, now: RelTime, out: &mut Vec<u8>) {
    let f = &m.flags;
    // memcached drops the old value when it cannot store a new one, whatever the mode.
    let refuse = |out: &mut Vec<u8>, reply| {
        ctx.store.delete(key, now, DeleteRequest::default());
        line(out, reply);
    };
    let Some(value) = m.value else {
        ctx.stats.store_too_large.fetch_add(1, Relaxed);
        refuse(out, TOO_LARGE);
        return;
    };
    let req = StoreRequest {
        mode,
        key,
        value,
        flags: f.client_flags,
        exptime: f.ttl.map_or(0, |t| ctx.clock.rel_exptime(t.value.into(), now)),
        cas: f.cas.unwrap_or(0),
        invalidate: f.invalidate,
        binary_key: f.base64,
    };
    let outcome = ctx.store.store(&req, now);
    ctx.stats.store_refused(outcome.status, mode);
    let code: &[u8] = match outcome.status {
        StoreStatus::Stored if f.quiet => return,
        StoreStatus::Stored => b"HD",
        StoreStatus::NotStored => b"NS",
        StoreStatus::Exists => b"EX",
        StoreStatus::NotFound => b"NF",
        StoreStatus::NoMemory => return refuse(out, "SERVER_ERROR out of memory storing object"),
        StoreStatus::TooLarge => return refuse(out, TOO_LARGE),
    };
    out.extend_from_slice(code);
    for tok in m.tokens {
        match tok {
            [b'O', ..] => {
                out.push(b' ');
                out.extend_from_slice(tok);
            }
            [b'k', ..] => push_key(out, key, f.base64),
            // The CAS of the stored item, 0 when nothing was stored.
            [b'c', ..] => {
                out.extend_from_slice(b" c");
                push_num(out, outcome.cas);
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// md: HD (nothing with q), NF or EX.
fn delete(ctx: &Context, m: &Meta<'_>, key: &[u8], now: RelTime, out: &mut Vec<u8>) {
    let f = &m.flags;
    let status = if f.cas == Some(0) {
        // memcached compares even a zero C, which no item's CAS equals.
        match ctx.store.peek(key, now, |_| ()) {
            Some(()) => DeleteStatus::Exists,
            None => DeleteStatus::NotFound,
        }
    } else {
        let req = DeleteRequest {
            cas: f.cas.unwrap_or(0),
            invalidate: f.invalidate,
            exptime: f.ttl.filter(|_| f.invalidate).map(|t| ctx.clock.rel_exptime(t.value.into(), now)),
            clear_value: false,
        };
        ctx.store.delete(key, now, req)
    };
    let code = match status {
        DeleteStatus::Deleted if f.quiet => return,
        DeleteStatus::Deleted => "HD",
        DeleteStatus::NotFound => "NF",
        DeleteStatus::Exists => "EX",
    };
    status_reply(out, m, code, key);
}

/// ma: HD or VA with the new number (nothing with q when an existing item changed), NF or EX.
fn arith(ctx: &Context, m: &Meta<'_>, key: &[u8], incr: bool, now: RelTime, out: &mut Vec<u8>) {
    let f = &m.flags;
    let exp = Expiry::new(ctx, f, now);
    let req = ArithRequest {
        incr,
        delta: f.delta,
        cas: f.cas.unwrap_or(0),
        vivify: f.vivify.map(|_| (f.initial, exp.created)),
        touch: exp.touch,
    };
    let (value, cas, mut exptime, created) = match ctx.store.arith(key, now, req) {
        ArithOutcome::NonNumeric => {
            return line(out, "CLIENT_ERROR cannot increment or decrement non-numeric value");
        }
        ArithOutcome::NoMemory => return line(out, "SERVER_ERROR out of memory"),
        // As in mg, memcached notices the over-long opaque only once the work is done.
        _ if f.long_opaque.is_some() => return line(out, OPAQUE_TOO_LONG),
        ArithOutcome::NotFound => return status_reply(out, m, "NF", key),
        ArithOutcome::Exists => return status_reply(out, m, "EX", key),
        ArithOutcome::Done { .. } if f.quiet => return,
        ArithOutcome::Done { value, cas, prev_exptime, .. } => (value, cas, prev_exptime, false),
        ArithOutcome::Created { value, cas, .. } => (value, cas, 0, true),
    };
    let mut number = itoa::Buffer::new();
    let number = number.format(value).as_bytes();
    if f.value {
        out.extend_from_slice(b"VA ");
        push_num(out, number.len());
    } else {
        out.extend_from_slice(b"HD");
    }
    for tok in m.tokens {
        match tok {
            [b'T', ..] => exptime = exp.touch.unwrap_or(exptime),
            [b'N', ..] if created => exptime = exp.vivify.unwrap_or(exptime),
            [b'c', ..] => {
                out.extend_from_slice(b" c");
                push_num(out, cas);
            }
            [b't', ..] => {
                out.extend_from_slice(b" t");
                push_ttl(out, exptime, now);
            }
            [b'O', ..] => {
                out.push(b' ');
                out.extend_from_slice(tok);
            }
            [b'k', ..] => push_key(out, key, f.base64),
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
    if f.value {
        out.extend_from_slice(number);
        out.extend_from_slice(b"\r\n");
    }
}

/// me: memcached's debug line for an item, EN on a miss.
fn debug(ctx: &Context, key: &[u8], now: RelTime, out: &mut Vec<u8>) {
    let found = ctx.store.peek(key, now, |it| {
        out.extend_from_slice(b"ME ");
        if it.has(BINARY_KEY) {
            encode_key(key, out);
        } else {
            out.extend_from_slice(key);
        }
        push_item_fields(out, it, Times::Relative(now));
        out.extend_from_slice(b"\r\n");
    });
    if found.is_none() {
        out.extend_from_slice(b"EN\r\n");
    }
}

#[cfg(test)]
mod tests;
