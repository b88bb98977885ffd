//! The classic text protocol: parse each request in the buffer, apply it, write its reply.

use std::sync::atomic::Ordering::Relaxed;

use super::dump::Dump;
use super::{Context, Progress, Reply, meta, push_num, stats};
use crate::protocol::text::{ClassList, Classes, Crawler, Parse, Request, StoreCmd, parse};
use crate::store::{
    ArithOutcome, DeleteRequest, DeleteStatus, MAX_KEY_LEN, Mode, ReadOptions, RelTime, StoreRequest, StoreStatus,
};

/// Handles the complete requests at the front of `buf`, appending replies to `out`, until the
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
        match parse(rest, ctx.settings.item_size_max) {
            Parse::Incomplete => return progress,
            Parse::Close => {
                progress.close = true;
                return progress;
            }
            Parse::Request { req, len } => {
                // The arguments are evaluated only when debug is on: nothing is formatted otherwise.
                tracing::debug!("command: {}", command_line(rest));
                progress.consumed += len;
                match execute(ctx, req, now, out) {
                    Next::Request => {}
                    Next::Close => {
                        progress.close = true;
                        return progress;
                    }
                    Next::Dump(dump) => {
                        progress.dump = Some(dump);
                        return progress;
                    }
                }
            }
            Parse::Swallow { req, len, swallow } => {
                tracing::debug!("command: {}", command_line(rest));
                progress.consumed += len;
                execute(ctx, req, now, out);
                let available = buf.len() - progress.consumed;
                let take = swallow.min(available);
                progress.consumed += take;
                if take < swallow {
                    progress.swallow = swallow - take;
                    return progress;
                }
            }
        }
    }
}

/// The first line of a request, for the log.
fn command_line(buf: &[u8]) -> std::borrow::Cow<'_, str> {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line))
}

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// What follows a request.
enum Next {
    Request,
    /// `quit`.
    Close,
    /// The request's reply is a dump, to write before anything else.
    Dump(Dump),
}

/// Applies one request.
fn execute(ctx: &Context, req: Request<'_>, now: RelTime, out: &mut Reply) -> Next {
    match req {
        Request::Get { keys, cas, touch } => get(ctx, keys, cas, touch, now, out),
        Request::Store(cmd) => store(ctx, &cmd, now, out),
        Request::Delete { key, noreply } => {
            let reply = match ctx.store.delete(key, now, DeleteRequest::default()) {
                DeleteStatus::Deleted => "DELETED",
                DeleteStatus::NotFound | DeleteStatus::Exists => "NOT_FOUND",
            };
            reply_unless(out, noreply, reply);
        }
        Request::Arith { key, incr, delta, noreply } => {
            let req = crate::store::ArithRequest { incr, delta, cas: 0, vivify: None, touch: None };
            match ctx.store.arith(key, now, req) {
                ArithOutcome::Done { value, .. } | ArithOutcome::Created { value, .. } => {
                    if !noreply {
                        push_num(out, value);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                ArithOutcome::NotFound | ArithOutcome::Exists => reply_unless(out, noreply, "NOT_FOUND"),
                ArithOutcome::NonNumeric => {
                    reply_unless(out, noreply, "CLIENT_ERROR cannot increment or decrement non-numeric value")
                }
                ArithOutcome::NoMemory => reply_unless(out, noreply, "SERVER_ERROR out of memory"),
            }
        }
        Request::Touch { key, exptime, noreply } => {
            let exptime = ctx.clock.rel_exptime(exptime, now);
            let reply = if ctx.store.touch(key, now, exptime) { "TOUCHED" } else { "NOT_FOUND" };
            reply_unless(out, noreply, reply);
        }
        Request::FlushAll { delay, noreply } => {
            ctx.stats.cmd_flush.fetch_add(1, Relaxed);
            let when = if delay > 0 { ctx.clock.rel_exptime(delay, now) } else { now };
            ctx.store.flush_all(&ctx.clock, now, when);
            reply_unless(out, noreply, "OK");
        }
        Request::Version => {
            out.extend_from_slice(b"VERSION ");
            line(out, stats::VERSION);
        }
        Request::Verbosity { level, noreply } => {
            ctx.set_verbosity(level);
            reply_unless(out, noreply, "OK");
        }
        Request::Quit => return Next::Close,
        Request::Stats { args } => stats_command(ctx, args, out),
        Request::Meta(m) => meta::execute(ctx, &m, now, out),
        Request::TooLarge { key, mode, noreply } => {
            ctx.stats.store_too_large.fetch_add(1, Relaxed);
            // memcached drops the old value of a set it could not store: never serve stale data.
            if mode == Mode::Set {
                ctx.store.delete(key, now, DeleteRequest::default());
            }
            reply_unless(out, noreply, "SERVER_ERROR object too large for cache");
        }
        Request::Shutdown => line(out, "ERROR: shutdown not enabled"),
        Request::RefreshCerts { noreply } => refresh_certs(ctx, noreply, out),
        // There are no slab pages to move: automove is accepted (there is nothing for it to do),
        // and a reassign gets memcached's answer for classes that have no spare page.
        Request::SlabsAutomove { noreply } => reply_unless(out, noreply, "OK"),
        Request::SlabsReassign { src, dst } => line(out, slabs_reassign(src, dst)),
        Request::CacheDump { class, limit } => return Next::Dump(Dump::cachedump(class, limit)),
        Request::LruCrawler(crawler) => return lru_crawler(ctx, crawler, out),
        Request::Error { reply, noreply } => reply_unless(out, noreply, reply),
    }
    Next::Request
}

/// memcached's replies to `refresh_certs`: `OK`, or its error line (sent even with `noreply`).
fn refresh_certs(ctx: &Context, noreply: bool, out: &mut Vec<u8>) {
    match ctx.tls.as_ref().map(|tls| tls.refresh()) {
        Some(Ok(())) => reply_unless(out, noreply, "OK"),
        Some(Err(e)) => line(out, &e.to_string()),
        None => line(out, "Error TLS not enabled"),
    }
}

/// memcached's replies to `lru_crawler`. The store's background sweep already reclaims expired
/// items, so a `crawl` has nothing to start; it is answered as memcached answers one it starts.
fn lru_crawler(ctx: &Context, crawler: Crawler, out: &mut Vec<u8>) -> Next {
    let classes = match crawler {
        Crawler::Enable => {
            let was = ctx.lru_crawler.swap(true, Relaxed);
            line(out, if was { "ERROR failed to start lru crawler thread" } else { "OK" });
            return Next::Request;
        }
        Crawler::Disable => {
            ctx.lru_crawler.store(false, Relaxed);
            line(out, "OK");
            return Next::Request;
        }
        Crawler::Tune => {
            line(out, "OK");
            return Next::Request;
        }
        Crawler::Crawl(classes) | Crawler::Metadump(classes) => classes,
    };
    let metadump = matches!(crawler, Crawler::Metadump(_));
    let reply = match classes {
        _ if !ctx.lru_crawler.load(Relaxed) => "CLIENT_ERROR lru crawler disabled",
        Classes::Invalid => "BADCLASS invalid class id",
        Classes::Empty => "NOTSTARTED no items to crawl",
        // memcached walks the hash table only to dump it.
        Classes::Hash if !metadump => "ERROR an unknown error happened",
        Classes::All | Classes::Hash if metadump => return Next::Dump(Dump::metadump(ClassList::ALL)),
        Classes::List(list) if metadump => return Next::Dump(Dump::metadump(list)),
        _ => "OK",
    };
    line(out, reply);
    Next::Request
}

/// memcached's last slab class with its default growth factor, minimum and `-I` (1.25, 48, 1m).
const MEMCACHED_LARGEST_CLASS: i64 = 39;

/// memcached's `slabs_reassign` answer when no class has a page to spare.
fn slabs_reassign(src: i64, dst: i64) -> &'static str {
    let class = 0..=MEMCACHED_LARGEST_CLASS;
    if src == dst {
        "SAME src and dst class are identical"
    } else if !class.contains(&src) || !class.contains(&dst) {
        // Also src -1 ("any class"): none has a spare page to pick.
        "BADCLASS invalid src or dst class id"
    } else {
        "NOSPARE source class has no spare pages"
    }
}

fn reply_unless(out: &mut Vec<u8>, noreply: bool, reply: &str) {
    if !noreply {
        line(out, reply);
    }
}

fn get(
    ctx: &Context,
    keys: crate::protocol::text::Keys<'_>,
    with_cas: bool,
    touch: Option<i64>,
    now: RelTime,
    out: &mut Reply,
) {
    let start = out.len();
    let opts = ReadOptions { touch: touch.map(|t| ctx.clock.rel_exptime(t, now)), ..ReadOptions::default() };
    for key in keys {
        if key.len() > MAX_KEY_LEN {
            // memcached discards the values it already wrote for this command.
            out.truncate(start);
            line(out, "CLIENT_ERROR bad command line format");
            return;
        }
        ctx.store.read(key, now, opts, |it, _| {
            out.extend_from_slice(b"VALUE ");
            out.extend_from_slice(key);
            out.push(b' ');
            push_num(out, it.flags);
            out.push(b' ');
            push_num(out, it.value().len());
            if with_cas {
                out.push(b' ');
                push_num(out, it.cas);
            }
            out.extend_from_slice(b"\r\n");
            out.push_value(it);
            out.extend_from_slice(b"\r\n");
        });
    }
    out.extend_from_slice(b"END\r\n");
    // memcached sends a text get's reply, and every one before it, at once.
    out.release();
}

fn store(ctx: &Context, cmd: &StoreCmd<'_>, now: RelTime, out: &mut Vec<u8>) {
    let req = StoreRequest {
        mode: cmd.mode,
        key: cmd.key,
        value: cmd.value,
        flags: cmd.flags,
        exptime: ctx.clock.rel_exptime(cmd.exptime, now),
        cas: cmd.cas,
        invalidate: false,
        binary_key: false,
    };
    let status = ctx.store.store(&req, now).status;
    ctx.stats.store_refused(status, req.mode);
    let reply = match status {
        StoreStatus::Stored => "STORED",
        StoreStatus::NotStored => "NOT_STORED",
        StoreStatus::Exists => "EXISTS",
        StoreStatus::NotFound => "NOT_FOUND",
        StoreStatus::NoMemory => "SERVER_ERROR out of memory storing object",
        StoreStatus::TooLarge => "SERVER_ERROR object too large for cache",
    };
    reply_unless(out, cmd.noreply, reply);
}

fn stats_command(ctx: &Context, mut args: crate::protocol::text::Tokens<'_>, out: &mut Vec<u8>) {
    match (args.next(), args.next()) {
        (None, _) => stats::general(ctx).render_text(out),
        (Some(b"settings"), None) => stats::settings(ctx).render_text(out),
        (Some(b"items"), None) => stats::items(ctx).render_text(out),
        (Some(b"slabs"), None) => stats::slabs(ctx).render_text(out),
        (Some(b"conns"), None) => stats::conns(ctx).render_text(out),
        (Some(b"reset"), None) => {
            ctx.reset_stats();
            line(out, "RESET");
        }
        (Some(b"replication"), None) => {
            let pairs = ctx.replication.get().map(|r| r.stats()).unwrap_or_else(|| vec![("role".into(), "off".into())]);
            stats::StatList(pairs).render_text(out);
        }
        (Some(b"detail"), Some(b"on" | b"off")) => line(out, "OK"),
        (Some(b"detail"), Some(b"dump")) => line(out, "END"),
        (Some(b"detail"), _) => line(out, "CLIENT_ERROR usage: stats detail on|off|dump"),
        // Item size histograms are off, as in memcached by default.
        (Some(b"sizes"), _) => stats::sizes().render_text(out),
        _ => line(out, "ERROR"),
    }
}
