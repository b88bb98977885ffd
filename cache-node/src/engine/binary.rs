//! The binary protocol: parse each frame in the buffer, apply it, write its responses.
//!
//! Replies follow memcached 1.6's `proto_bin.c`: every response echoes the request's opcode
//! and opaque; quiet opcodes suppress success (a quiet get also its miss) but never errors.

pub mod sasl;

use std::sync::atomic::Ordering::Relaxed;

use super::stats::{self, StatList};
use super::{Context, Progress, Reply};
use crate::protocol::binary::{Command, Header, NO_VIVIFY, Parse, Request, ResponseHeader, Status, parse};
use crate::store::{
    ArithOutcome, ArithRequest, DeleteRequest, DeleteStatus, Mode, ReadOptions, RelTime, StoreRequest, StoreStatus,
};

/// Handles the complete frames at the front of `buf`, appending responses to `out`, until the
/// buffer or the batch is full.
pub fn process(ctx: &Context, buf: &[u8], out: &mut Reply) -> Progress {
    let now = ctx.clock.now();
    let mut progress = Progress::default();
    let mut requests = 0;
    loop {
        let rest = &buf[progress.consumed..];
        if rest.is_empty() || progress.full(requests, out) {
            return progress;
        }
        requests += 1;
        // Logged in already: a SASL command logs in again (or fails) without logging out.
        if let Some(auth) = &ctx.auth
            && sasl::is_sasl(rest)
        {
            match sasl::frame(ctx, auth, rest, out) {
                sasl::Frame::Incomplete => return progress,
                sasl::Frame::Done { len, .. } => progress.consumed += len,
                sasl::Frame::Close { len } => {
                    progress.consumed += len;
                    progress.close = true;
                    return progress;
                }
            }
            continue;
        }
        let (len, swallow) = match parse(rest, ctx.settings.item_size_max) {
            Parse::Incomplete => return progress,
            Parse::Close => {
                progress.close = true;
                return progress;
            }
            Parse::Request { req, len } => {
                progress.consumed += len;
                if !execute(ctx, &req, now, out) {
                    progress.close = true;
                    return progress;
                }
                continue;
            }
            Parse::Error { header, status, len, swallow, close } => {
                error(out, &header, status);
                if close {
                    progress.consumed += len;
                    progress.close = true;
                    return progress;
                }
                (len, swallow)
            }
            Parse::TooLarge { header, key, drop_old, len, swallow } => {
                ctx.stats.store_too_large.fetch_add(1, Relaxed);
                // memcached drops the old value of a set it could not store: never serve stale data.
                if drop_old {
                    ctx.store.delete(key, now, DeleteRequest::default());
                }
                error(out, &header, Status::TooLarge);
                (len, swallow)
            }
        };
        progress.consumed += len;
        let take = swallow.min(buf.len() - progress.consumed);
        progress.consumed += take;
        if take < swallow {
            progress.swallow = swallow - take;
            return progress;
        }
    }
}

/// Appends one response frame.
fn respond(out: &mut Vec<u8>, h: &Header, status: Status, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) {
    respond_head(out, h, status, cas, extras, key, value.len());
    out.extend_from_slice(value);
}

/// Appends a response frame up to its value, which is `value_len` bytes.
fn respond_head(out: &mut Vec<u8>, h: &Header, status: Status, cas: u64, extras: &[u8], key: &[u8], value_len: usize) {
    // Keys are at most 250 bytes and values at most -I (1 GiB), so the casts are exact.
    ResponseHeader {
        opcode: h.opcode,
        status,
        opaque: h.opaque,
        cas,
        extras_len: extras.len() as u8,
        key_len: key.len() as u16,
        body_len: (extras.len() + key.len() + value_len) as u32,
    }
    .encode(out);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
}

/// An error with memcached's message for it; errors are sent even for quiet opcodes.
fn error(out: &mut Vec<u8>, h: &Header, status: Status) {
    error_with(out, h, status, status.message());
}

fn error_with(out: &mut Vec<u8>, h: &Header, status: Status, message: &str) {
    respond(out, h, status, 0, &[], &[], message.as_bytes());
}

/// A success, unless the opcode is quiet.
fn done(out: &mut Vec<u8>, req: &Request<'_>, cas: u64, value: &[u8]) {
    if !req.quiet {
        respond(out, &req.header, Status::Success, cas, &[], &[], value);
    }
}

/// Binary exptimes are unsigned, so they are never "already expired" the way negative text
/// ones are; past 30 days they are unix times as usual.
fn rel_exptime(ctx: &Context, exptime: u32, now: RelTime) -> RelTime {
    ctx.clock.rel_exptime(i64::from(exptime), now)
}

/// Applies one request. Returns false when the connection must close (quit).
fn execute(ctx: &Context, req: &Request<'_>, now: RelTime, out: &mut Reply) -> bool {
    let h = &req.header;
    match req.command {
        Command::Get { key, exptime, with_key, with_value } => {
            let opts = ReadOptions { touch: exptime.map(|e| rel_exptime(ctx, e, now)), ..ReadOptions::default() };
            let echoed: &[u8] = if with_key { key } else { &[] };
            let hit = ctx.store.read(key, now, opts, |it, _| {
                let flags = it.flags.to_be_bytes();
                if with_value {
                    respond_head(out, h, Status::Success, it.cas, &flags, echoed, it.value().len());
                    out.push_value(it);
                } else {
                    respond(out, h, Status::Success, it.cas, &flags, echoed, &[]);
                }
                out.hold(it);
            });
            if hit.is_none() && !req.quiet {
                // getk and gatk name the missing key instead of giving a message.
                if with_key {
                    respond(out, h, Status::KeyNotFound, 0, &[], key, &[]);
                } else {
                    error(out, h, Status::KeyNotFound);
                }
            }
        }
        Command::Store { mode, key, flags, exptime, value } => {
            let store_req = StoreRequest {
                mode,
                key,
                value,
                flags,
                exptime: rel_exptime(ctx, exptime, now),
                cas: h.cas,
                invalidate: false,
                binary_key: false,
            };
            let outcome = ctx.store.store(&store_req, now);
            ctx.stats.store_refused(outcome.status, mode);
            // memcached words a refused add or replace as the collision or the miss it was.
            let refused = match mode {
                Mode::Add => Status::KeyExists,
                Mode::Replace => Status::KeyNotFound,
                _ => Status::NotStored,
            };
            match outcome.status {
                StoreStatus::Stored => done(out, req, outcome.cas, &[]),
                StoreStatus::Exists => error(out, h, Status::KeyExists),
                StoreStatus::NotFound => error(out, h, Status::KeyNotFound),
                StoreStatus::NotStored | StoreStatus::TooLarge => error(out, h, refused),
                // An append that finds no room fails like one that would grow too large.
                StoreStatus::NoMemory if matches!(mode, Mode::Append | Mode::Prepend) => error(out, h, refused),
                StoreStatus::NoMemory => error_with(out, h, Status::OutOfMemory, "Out of memory allocating item"),
            }
        }
        Command::Delete { key } => match ctx.store.delete(key, now, DeleteRequest { cas: h.cas, ..Default::default() })
        {
            DeleteStatus::Deleted => done(out, req, 0, &[]),
            DeleteStatus::NotFound => error(out, h, Status::KeyNotFound),
            DeleteStatus::Exists => error(out, h, Status::KeyExists),
        },
        Command::Arith { incr, key, delta, initial, exptime } => {
            let vivify = (exptime != NO_VIVIFY).then(|| (initial, rel_exptime(ctx, exptime, now)));
            match ctx.store.arith(key, now, ArithRequest { incr, delta, cas: h.cas, vivify, touch: None }) {
                ArithOutcome::Done { value, cas, .. } | ArithOutcome::Created { value, cas, .. } => {
                    done(out, req, cas, &value.to_be_bytes());
                }
                ArithOutcome::NotFound => error(out, h, Status::KeyNotFound),
                ArithOutcome::NonNumeric => error(out, h, Status::NonNumeric),
                ArithOutcome::Exists => error(out, h, Status::KeyExists),
                ArithOutcome::NoMemory => error_with(out, h, Status::OutOfMemory, "Out of memory incrementing value"),
            }
        }
        Command::Flush { delay } => {
            ctx.stats.cmd_flush.fetch_add(1, Relaxed);
            let when = if delay > 0 { rel_exptime(ctx, delay, now) } else { now };
            ctx.store.flush_all(&ctx.clock, now, when);
            done(out, req, 0, &[]);
        }
        Command::Noop => {
            // memcached sends the replies so far at once.
            respond(out, h, Status::Success, 0, &[], &[], &[]);
            out.release();
        }
        Command::Version => respond(out, h, Status::Success, 0, &[], &[], stats::VERSION.as_bytes()),
        Command::Quit => {
            done(out, req, 0, &[]);
            return false;
        }
        Command::Stat { group } => stat(ctx, h, group, out),
    }
    true
}

/// One response per statistic (the name as key, the value as value), then an empty one.
fn stat(ctx: &Context, h: &Header, group: &[u8], out: &mut Vec<u8>) {
    // memcached matches reset, settings and detail by prefix, the other groups exactly.
    let list = if group.is_empty() {
        stats::general(ctx)
    } else if group.starts_with(b"reset") {
        ctx.reset_stats();
        StatList::default()
    } else if group.starts_with(b"settings") {
        stats::settings(ctx)
    } else if let Some(sub) = group.strip_prefix(b"detail") {
        if sub.starts_with(b" dump") {
            // No prefix statistics are kept: the dump is empty, as the text protocol's is.
            StatList(vec![("detailed".into(), "END\r\n".into())])
        } else if sub.starts_with(b" on") || sub.starts_with(b" off") {
            StatList::default()
        } else {
            return error(out, h, Status::KeyNotFound);
        }
    } else if group == b"items" {
        stats::items(ctx)
    } else if group == b"slabs" {
        stats::slabs(ctx)
    } else if group == b"sizes" {
        stats::sizes()
    } else {
        return error(out, h, Status::KeyNotFound);
    };
    for (name, value) in &list.0 {
        respond(out, h, Status::Success, 0, &[], name.as_bytes(), value.as_bytes());
    }
    respond(out, h, Status::Success, 0, &[], &[], &[]);
}

#[cfg(test)]
mod tests;
