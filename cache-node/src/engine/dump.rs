//! `lru_crawler metadump` and `stats cachedump`: every live item, or a class's keys, in
//! memcached 1.6.18's formats, and the item fields that `me` prints too.
//!
//! A dump can be far larger than any reply: it is a cursor ([`Dump`]) over the store's walk
//! that the connection drains a chunk at a time, writing each before it makes the next (as
//! memcached's crawler writes to the socket while it walks). No shard lock is held for more than
//! one step of [`WALK_SLOTS`] slots, and no chunk grows much past [`CHUNK`].

use super::{Context, push_num};
use crate::protocol::text::ClassList;
use crate::store::item::{BINARY_KEY, FETCHED, Item};
use crate::store::{Clock, RelTime, WalkPos, classes, memcached_item_size};

/// A chunk of a dump stops growing at this many bytes; the connection writes it, then asks for
/// the next.
pub const CHUNK: usize = 64 * 1024;
/// Slots looked at under one shard lock.
const WALK_SLOTS: usize = 4096;
/// Walk steps per chunk: a dump that finds little to show (a cachedump of a rare class) still
/// hands the connection back after this many.
const STEPS_PER_CHUNK: usize = 64;
/// memcached's cap on a cachedump reply, its `END` included (`item_cachedump`'s `memlimit`).
pub const CACHEDUMP_MAX: usize = 2 * 1024 * 1024;

/// A dump in progress.
#[derive(Debug, PartialEq, Eq)]
pub struct Dump {
    kind: Kind,
    pos: WalkPos,
    done: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Meta { classes: ClassList },
    Cache { class: u32, limit: u32, shown: u32, bytes: usize },
}

impl Dump {
    /// `lru_crawler metadump`: a line for each live item in `classes`.
    pub fn metadump(classes: ClassList) -> Self {
        Self { kind: Kind::Meta { classes }, pos: WalkPos::default(), done: false }
    }

    /// `stats cachedump <class> <limit>`: the keys of one class, `limit` of them (0: all) and no
    /// more than [`CACHEDUMP_MAX`] bytes of reply.
    pub fn cachedump(class: u32, limit: u32) -> Self {
        Self { kind: Kind::Cache { class, limit, shown: 0, bytes: 0 }, pos: WalkPos::default(), done: false }
    }

    /// Whether the whole dump is small enough to send as one reply (a cachedump is: 2 MB).
    pub fn is_bounded(&self) -> bool {
        matches!(self.kind, Kind::Cache { .. })
    }

    /// Appends the dump's next chunk to `out`; returns true once the dump, its `END` included,
    /// is complete. A chunk may be empty when the items walked were not to be shown.
    pub fn fill(&mut self, ctx: &Context, out: &mut Vec<u8>) -> bool {
        if self.done {
            return true;
        }
        let now = ctx.clock.now();
        let start = out.len();
        let mut more = true;
        for _ in 0..STEPS_PER_CHUNK {
            let full = |out: &Vec<u8>| out.len() - start >= CHUNK;
            more = match &mut self.kind {
                Kind::Meta { classes } => ctx.store.walk(&mut self.pos, now, WALK_SLOTS, |it| {
                    if classes.contains(class_of(it)) {
                        push_metadump_line(out, it, &ctx.clock);
                    }
                    !full(out)
                }),
                Kind::Cache { class, limit, shown, bytes } => {
                    // Class 0 and those past the last hold nothing.
                    if !(1..=classes::COUNT as u32).contains(class) {
                        false
                    } else {
                        let mut capped = false;
                        let more = ctx.store.walk(&mut self.pos, now, WALK_SLOTS, |it| {
                            // memcached leaves out binary keys, which its line could not show.
                            if u32::from(class_of(it)) != *class || it.has(BINARY_KEY) {
                                return !full(out);
                            }
                            let len = push_cachedump_line(out, it, &ctx.clock);
                            if *bytes + len + b"END\r\n\0".len() > CACHEDUMP_MAX {
                                out.truncate(out.len() - len);
                                capped = true;
                                return false;
                            }
                            *bytes += len;
                            *shown += 1;
                            capped = *shown == *limit;
                            !capped && !full(out)
                        });
                        more && !capped
                    }
                }
            };
            if !more || full(out) {
                break;
            }
        }
        if !more {
            out.extend_from_slice(b"END\r\n");
            self.done = true;
        }
        self.done
    }
}

fn class_of(it: &Item) -> u8 {
    classes::class_of(item_size(it))
}

/// The item's size as memcached counts it (`ITEM_ntotal`).
fn item_size(it: &Item) -> usize {
    memcached_item_size(it.key().len(), it.value().len(), it.flags)
}

/// How [`push_item_fields`] shows times.
#[derive(Clone, Copy)]
pub enum Times<'a> {
    /// Seconds relative to `now`, as `me` prints them.
    Relative(RelTime),
    /// Unix times, as `lru_crawler metadump` prints them.
    Unix(&'a Clock),
}

/// ` exp=… la=… cas=… fetch=… cls=… size=…`: an item's fields as memcached's `me` and
/// `lru_crawler metadump` print them. `exp` is -1 for an item that never expires.
pub fn push_item_fields(out: &mut Vec<u8>, it: &Item, times: Times<'_>) {
    out.extend_from_slice(b" exp=");
    match times {
        _ if it.exptime == 0 => out.extend_from_slice(b"-1"),
        // How long ago the item expired: negative while it lives.
        Times::Relative(now) => push_num(out, now.wrapping_sub(it.exptime) as i32),
        Times::Unix(clock) => push_num(out, clock.to_unix(it.exptime)),
    }
    out.extend_from_slice(b" la=");
    match times {
        Times::Relative(now) => push_num(out, now.wrapping_sub(it.time)),
        Times::Unix(clock) => push_num(out, clock.to_unix(it.time)),
    }
    out.extend_from_slice(b" cas=");
    push_num(out, it.cas);
    out.extend_from_slice(if it.has(FETCHED) { b" fetch=yes" } else { b" fetch=no" });
    let size = item_size(it);
    out.extend_from_slice(b" cls=");
    push_num(out, classes::class_of(size));
    out.extend_from_slice(b" size=");
    push_num(out, size);
}

/// `key=<uri-encoded key> exp=… size=…\n`: memcached ends these lines with a bare LF. A key
/// set in base64 (meta `b`) shows its raw bytes encoded, as in memcached.
fn push_metadump_line(out: &mut Vec<u8>, it: &Item, clock: &Clock) {
    out.extend_from_slice(b"key=");
    uri_encode(it.key(), out);
    push_item_fields(out, it, Times::Unix(clock));
    out.push(b'\n');
}

/// `ITEM <key> [<value bytes> b; <unix expiry, 0 for never> s]\r\n`; returns its length.
fn push_cachedump_line(out: &mut Vec<u8>, it: &Item, clock: &Clock) -> usize {
    let start = out.len();
    out.extend_from_slice(b"ITEM ");
    out.extend_from_slice(it.key());
    out.extend_from_slice(b" [");
    push_num(out, it.value().len());
    out.extend_from_slice(b" b; ");
    push_num(out, if it.exptime == 0 { 0 } else { clock.to_unix(it.exptime) });
    out.extend_from_slice(b" s]\r\n");
    out.len() - start
}

/// memcached's `uriencode`: every byte but `A-Z a-z 0-9 - . _ ~` as `%XX` (upper-case hex).
pub fn uri_encode(key: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests;
