//! The replication link's wire format: frames, and the messages they carry. No I/O.
//!
//! A frame is a `u32` big-endian length of what follows it, a `u8` message type, then the
//! message's fields in order: integers big-endian, byte strings as a `u32` length and the
//! bytes, booleans and enums as one byte. Nothing is optional and nothing may follow the last
//! field, so a message has exactly one encoding: decoding a frame and encoding the message
//! gives back the same bytes.
//!
//! [`decode`] borrows keys and values from the caller's buffer and allocates nothing. It
//! checks a frame's length against the caller's limit as soon as the 4-byte prefix is in, so
//! garbage on the port is refused before anything is buffered for it.
//!
//! The exchange on a new link: `Hello` (accepting side), `Auth` (connecting side), `AuthOk`
//! (see [`super::auth`]), or an `Error` refusing the link; then `Sync` from the joiner, answered by `FullSync` (a snapshot of `Item`s
//! closed by `SnapshotEnd`, then `Op`s) or `Resume` (`Op`s from the backlog); `Ack`,
//! `Ping`/`Pong` and `StepDown` after that; `Error` before closing.

use super::auth::{Nonce, Proof};
use crate::store::MAX_KEY_LEN;

/// Sent first in `Hello`, so that a node can tell a peer speaking another version. Version 2:
/// `Hello` names neither the node nor its role; `AuthOk` names the node.
pub const PROTOCOL_VERSION: u16 = 2;
/// What follows the version in `Hello`, where version 1 sent the node id and role: a blank id
/// and `starting`. A version-1 node still decodes the greeting, so it reports the version
/// mismatch, and, greeted, it does not take over beside a live peer.
const HELLO_BLANK: [u8; 9] = [0, 0, 0, 0, 0, 0, 0, 0, 3];
/// The length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;
/// Longest text in an `Error`.
pub const MAX_ERROR_LEN: usize = 1024;
/// What a frame holds beyond an item's value: the type, an offset, the key and the item's
/// fixed fields (under 300 bytes), with room to spare.
pub const FRAME_ROOM: usize = 1024;
/// The frame limit for memcached's default largest item (`-I 1m`).
pub const DEFAULT_MAX_FRAME: usize = max_frame(1 << 20);
/// The `repl_id` of a node with no copy of any stream: its `Sync` asks for a full sync.
pub const NO_HISTORY: ReplId = [0; 16];

/// The `max_frame` for [`decode`] on a node whose largest item is `item_size_max` (`-I`).
pub const fn max_frame(item_size_max: usize) -> usize {
    item_size_max.saturating_add(FRAME_ROOM)
}

/// Names one history of the replication stream (Redis's replication id); offsets are
/// positions within it.
pub type ReplId = [u8; 16];

/// A node's replication role, as it announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Master,
    Slave,
    /// Not yet decided: still looking for its peer.
    Starting,
}

impl Role {
    fn code(self) -> u8 {
        match self {
            Role::Master => 1,
            Role::Slave => 2,
            Role::Starting => 3,
        }
    }

    fn from_code(code: u8) -> Option<Role> {
        [Role::Master, Role::Slave, Role::Starting].into_iter().find(|r| r.code() == code)
    }
}

/// One item as it travels: a snapshot entry, or the result of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// At most [`MAX_KEY_LEN`] bytes.
    pub key: &'a [u8],
    /// Empty for a tombstone.
    pub value: &'a [u8],
    pub flags: u32,
    /// Absolute unix seconds, 0 for never: relative times would drift with the link's delay.
    pub exptime: u64,
    /// Kept across replication so that `gets`/`cas` keep working after a failover.
    pub cas: u64,
    /// Orders writes to the key across both nodes; the newer version wins.
    pub version: u64,
    /// A tombstone: the key was deleted at `version`.
    pub deleted: bool,
}

/// A write made on one node, to be applied on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    Set(Entry<'a>),
    Delete {
        key: &'a [u8],
        version: u64,
    },
    /// `flush_all`, issued at `version`. Immediate when `at` is 0: it flushes the items older
    /// than `version`. Otherwise delayed: it flushes the items older than unix millisecond `at`
    /// (their versions), taking effect a second before that.
    Flush {
        at: u64,
        version: u64,
    },
}

impl Op<'_> {
    fn code(&self) -> u8 {
        match self {
            Op::Set(_) => 1,
            Op::Delete { .. } => 2,
            // 3 was a touch op: touches travel as the item's new state (`Set`).
            Op::Flush { .. } => 4,
        }
    }
}

/// Everything that travels on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// The accepting side's greeting, with its challenge: sent to anyone who connects, so it
    /// says nothing about the node. Its frame carries [`PROTOCOL_VERSION`].
    Hello {
        nonce: Nonce,
    },
    /// The connecting side's answer to `Hello`, with its own challenge.
    Auth {
        node_id: u64,
        nonce: Nonce,
        mac: Proof,
    },
    /// The accepting side's id and proof, sent only to a peer that proved it holds the secret:
    /// the link is open.
    AuthOk {
        node_id: u64,
        mac: Proof,
    },
    /// Sent by both sides once authenticated: the sender's role and term (how many times the
    /// pair failed over, as far as it knows: the higher term keeps the master role when both
    /// are masters), and how far it has the other side's stream `repl_id` ([`NO_HISTORY`]:
    /// not at all).
    Sync {
        role: Role,
        term: u64,
        repl_id: ReplId,
        offset: u64,
    },
    /// A snapshot follows; the stream after it starts at `offset` of `repl_id`.
    FullSync {
        repl_id: ReplId,
        offset: u64,
    },
    /// The stream goes on from the joiner's `offset` of `repl_id`.
    Resume {
        repl_id: ReplId,
        offset: u64,
    },
    /// One snapshot entry.
    Item(Entry<'a>),
    /// The snapshot is complete: `count` items were sent.
    SnapshotEnd {
        count: u64,
    },
    /// A write; `offset` is its position in the stream.
    Op {
        offset: u64,
        op: Op<'a>,
    },
    /// Everything up to `offset` is applied.
    Ack {
        offset: u64,
    },
    /// Heartbeat, answered by a `Pong` with the same `millis`.
    Ping {
        millis: u64,
    },
    Pong {
        millis: u64,
    },
    /// Switchover: the master hands its role over once the slave has acked `offset`.
    StepDown {
        offset: u64,
    },
    /// Why the sender is closing the link; at most [`MAX_ERROR_LEN`] bytes.
    Error {
        message: &'a str,
    },
}

/// Message types on the wire, one per [`Message`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hello = 1,
    Auth,
    AuthOk,
    Sync,
    FullSync,
    Resume,
    Item,
    SnapshotEnd,
    Op,
    Ack,
    Ping,
    Pong,
    StepDown,
    Error,
}

impl Kind {
    const ALL: [Kind; 14] = [
        Kind::Hello,
        Kind::Auth,
        Kind::AuthOk,
        Kind::Sync,
        Kind::FullSync,
        Kind::Resume,
        Kind::Item,
        Kind::SnapshotEnd,
        Kind::Op,
        Kind::Ack,
        Kind::Ping,
        Kind::Pong,
        Kind::StepDown,
        Kind::Error,
    ];

    fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|&k| k as u8 == code)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Auth => "auth",
            Kind::AuthOk => "auth_ok",
            Kind::Sync => "sync",
            Kind::FullSync => "full_sync",
            Kind::Resume => "resume",
            Kind::Item => "item",
            Kind::SnapshotEnd => "snapshot_end",
            Kind::Op => "op",
            Kind::Ack => "ack",
            Kind::Ping => "ping",
            Kind::Pong => "pong",
            Kind::StepDown => "step_down",
            Kind::Error => "error",
        }
    }
}

/// Why bytes could not be decoded, or a message encoded. From [`decode`], the peer is broken
/// or is no peer: close the link. From [`Message::encode`], the message was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: u64, max: u64 },
    #[error("empty frame: no message type")]
    EmptyFrame,
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    #[error("{kind}: {field} needs {needed} bytes, {left} left in the frame")]
    Truncated { kind: &'static str, field: &'static str, needed: usize, left: usize },
    #[error("{kind}: {extra} bytes after the last field")]
    TrailingBytes { kind: &'static str, extra: usize },
    #[error("{kind}: invalid {field} {value}")]
    BadValue { kind: &'static str, field: &'static str, value: u8 },
    #[error("{kind}: {field} of {len} bytes exceeds the limit of {max}")]
    TooLong { kind: &'static str, field: &'static str, len: u64, max: u64 },
    #[error("{kind}: {field} is not UTF-8")]
    NotUtf8 { kind: &'static str, field: &'static str },
    #[error("{kind}: a tombstone with a {len}-byte value")]
    TombstoneWithValue { kind: &'static str, len: usize },
    #[error("the peer speaks replication protocol {proto}, this node {PROTOCOL_VERSION}")]
    OtherVersion { proto: u16 },
}

/// The frame at the front of `buf`, and how many bytes it took; `None` until all of it is
/// there. A frame whose length is over `max_frame` (type and payload, not counting the
/// prefix) is an error as soon as its prefix is in.
pub fn decode(buf: &[u8], max_frame: usize) -> Result<Option<(Message<'_>, usize)>, CodecError> {
    let Some((prefix, rest)) = buf.split_first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix);
    let body_len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= max_frame)
        .ok_or(CodecError::FrameTooLarge { len: len.into(), max: max_frame as u64 })?;
    let Some(body) = rest.get(..body_len) else {
        return Ok(None);
    };
    let message = decode_body(body)?;
    Ok(Some((message, LEN_PREFIX + body_len)))
}

fn decode_body(body: &[u8]) -> Result<Message<'_>, CodecError> {
    let Some((&code, payload)) = body.split_first() else {
        return Err(CodecError::EmptyFrame);
    };
    let kind = Kind::from_code(code).ok_or(CodecError::UnknownType(code))?;
    let mut r = Reader { buf: payload, kind: kind.name() };
    // Struct fields are evaluated in the order written: the wire order.
    let message = match kind {
        Kind::Hello => {
            // The version comes first in every version's greeting; what follows is that
            // version's.
            let proto = r.u16("proto")?;
            if proto != PROTOCOL_VERSION {
                return Err(CodecError::OtherVersion { proto });
            }
            let blank: [u8; 9] = r.array("blank")?;
            if let Some((&value, _)) = blank.iter().zip(&HELLO_BLANK).find(|(got, want)| got != want) {
                return Err(CodecError::BadValue { kind: r.kind, field: "blank", value });
            }
            Message::Hello { nonce: r.array("nonce")? }
        }
        Kind::Auth => Message::Auth { node_id: r.u64("node id")?, nonce: r.array("nonce")?, mac: r.array("mac")? },
        Kind::AuthOk => Message::AuthOk { node_id: r.u64("node id")?, mac: r.array("mac")? },
        Kind::Sync => Message::Sync {
            role: r.role()?,
            term: r.u64("term")?,
            repl_id: r.array("repl id")?,
            offset: r.u64("offset")?,
        },
        Kind::FullSync => Message::FullSync { repl_id: r.array("repl id")?, offset: r.u64("offset")? },
        Kind::Resume => Message::Resume { repl_id: r.array("repl id")?, offset: r.u64("offset")? },
        Kind::Item => Message::Item(r.entry()?),
        Kind::SnapshotEnd => Message::SnapshotEnd { count: r.u64("count")? },
        Kind::Op => Message::Op { offset: r.u64("offset")?, op: r.op()? },
        Kind::Ack => Message::Ack { offset: r.u64("offset")? },
        Kind::Ping => Message::Ping { millis: r.u64("millis")? },
        Kind::Pong => Message::Pong { millis: r.u64("millis")? },
        Kind::StepDown => Message::StepDown { offset: r.u64("offset")? },
        Kind::Error => {
            let message = r.bytes("message", MAX_ERROR_LEN)?;
            let message =
                std::str::from_utf8(message).map_err(|_| CodecError::NotUtf8 { kind: r.kind, field: "message" })?;
            Message::Error { message }
        }
    };
    r.finish()?;
    Ok(message)
}

/// A cursor over one frame's payload; its errors name the message and the field.
struct Reader<'a> {
    buf: &'a [u8],
    kind: &'static str,
}

impl<'a> Reader<'a> {
    fn truncated(&self, field: &'static str, needed: usize) -> CodecError {
        CodecError::Truncated { kind: self.kind, field, needed, left: self.buf.len() }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CodecError> {
        let (head, rest) = self.buf.split_first_chunk::<N>().ok_or_else(|| self.truncated(field, N))?;
        self.buf = rest;
        Ok(*head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        self.array::<1>(field).map(|[b]| b)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, CodecError> {
        self.array(field).map(u16::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        self.array(field).map(u32::from_be_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, CodecError> {
        self.array(field).map(u64::from_be_bytes)
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, CodecError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(CodecError::BadValue { kind: self.kind, field, value }),
        }
    }

    fn role(&mut self) -> Result<Role, CodecError> {
        let value = self.u8("role")?;
        Role::from_code(value).ok_or(CodecError::BadValue { kind: self.kind, field: "role", value })
    }

    /// A length-prefixed byte string of at most `max` bytes. The limit is checked before
    /// the bytes, so a huge length is reported as such rather than as missing bytes.
    fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], CodecError> {
        let len = self.u32(field)?;
        let Some(len) = usize::try_from(len).ok().filter(|&l| l <= max) else {
            return Err(CodecError::TooLong { kind: self.kind, field, len: len.into(), max: max as u64 });
        };
        if len > self.buf.len() {
            return Err(self.truncated(field, len));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    fn key(&mut self) -> Result<&'a [u8], CodecError> {
        self.bytes("key", MAX_KEY_LEN)
    }

    fn entry(&mut self) -> Result<Entry<'a>, CodecError> {
        let entry = Entry {
            key: self.key()?,
            value: self.bytes("value", usize::MAX)?,
            flags: self.u32("flags")?,
            exptime: self.u64("exptime")?,
            cas: self.u64("cas")?,
            version: self.u64("version")?,
            deleted: self.bool("deleted")?,
        };
        check_tombstone(self.kind, &entry)?;
        Ok(entry)
    }

    fn op(&mut self) -> Result<Op<'a>, CodecError> {
        Ok(match self.u8("op type")? {
            1 => Op::Set(self.entry()?),
            2 => Op::Delete { key: self.key()?, version: self.u64("version")? },
            4 => Op::Flush { at: self.u64("at")?, version: self.u64("version")? },
            value => return Err(CodecError::BadValue { kind: self.kind, field: "op type", value }),
        })
    }

    fn finish(self) -> Result<(), CodecError> {
        match self.buf.len() {
            0 => Ok(()),
            extra => Err(CodecError::TrailingBytes { kind: self.kind, extra }),
        }
    }
}

fn check_tombstone(kind: &'static str, entry: &Entry<'_>) -> Result<(), CodecError> {
    if entry.deleted && !entry.value.is_empty() {
        return Err(CodecError::TombstoneWithValue { kind, len: entry.value.len() });
    }
    Ok(())
}

impl<'a> Message<'a> {
    /// An `Error` with `text` cut to [`MAX_ERROR_LEN`] bytes (at a character boundary), so
    /// that reporting a failure cannot fail.
    pub fn error(text: &'a str) -> Self {
        Message::Error { message: &text[..text.floor_char_boundary(MAX_ERROR_LEN)] }
    }

    /// The message's name, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        self.wire_kind().name()
    }

    fn wire_kind(&self) -> Kind {
        match self {
            Message::Hello { .. } => Kind::Hello,
            Message::Auth { .. } => Kind::Auth,
            Message::AuthOk { .. } => Kind::AuthOk,
            Message::Sync { .. } => Kind::Sync,
            Message::FullSync { .. } => Kind::FullSync,
            Message::Resume { .. } => Kind::Resume,
            Message::Item(_) => Kind::Item,
            Message::SnapshotEnd { .. } => Kind::SnapshotEnd,
            Message::Op { .. } => Kind::Op,
            Message::Ack { .. } => Kind::Ack,
            Message::Ping { .. } => Kind::Ping,
            Message::Pong { .. } => Kind::Pong,
            Message::StepDown { .. } => Kind::StepDown,
            Message::Error { .. } => Kind::Error,
        }
    }

    /// Appends the message's frame to `out`. A message that its peer would refuse (a key
    /// over [`MAX_KEY_LEN`], an error text over [`MAX_ERROR_LEN`], a tombstone with a value,
    /// a frame over 4 GiB) is an error instead, and `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        let result = self.encode_frame(out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_frame(&self, out: &mut Vec<u8>, start: usize) -> Result<(), CodecError> {
        out.extend_from_slice(&[0; LEN_PREFIX]);
        let kind = self.wire_kind();
        out.push(kind as u8);
        let mut w = Writer { out: &mut *out, kind: kind.name() };
        match *self {
            Message::Hello { nonce } => {
                w.put(&PROTOCOL_VERSION.to_be_bytes());
                w.put(&HELLO_BLANK);
                w.put(&nonce);
            }
            Message::Auth { node_id, nonce, mac } => {
                w.put(&node_id.to_be_bytes());
                w.put(&nonce);
                w.put(&mac);
            }
            Message::AuthOk { node_id, mac } => {
                w.put(&node_id.to_be_bytes());
                w.put(&mac);
            }
            Message::Sync { role, term, repl_id, offset } => {
                w.put(&[role.code()]);
                w.put(&term.to_be_bytes());
                w.put(&repl_id);
                w.put(&offset.to_be_bytes());
            }
            Message::FullSync { repl_id, offset } | Message::Resume { repl_id, offset } => {
                w.put(&repl_id);
                w.put(&offset.to_be_bytes());
            }
            Message::Item(ref entry) => w.entry(entry)?,
            Message::Op { offset, ref op } => {
                w.put(&offset.to_be_bytes());
                w.put(&[op.code()]);
                match *op {
                    Op::Set(ref entry) => w.entry(entry)?,
                    Op::Delete { key, version } => {
                        w.bytes("key", key, MAX_KEY_LEN)?;
                        w.put(&version.to_be_bytes());
                    }
                    Op::Flush { at, version } => {
                        w.put(&at.to_be_bytes());
                        w.put(&version.to_be_bytes());
                    }
                }
            }
            Message::SnapshotEnd { count: n }
            | Message::Ack { offset: n }
            | Message::Ping { millis: n }
            | Message::Pong { millis: n }
            | Message::StepDown { offset: n } => w.put(&n.to_be_bytes()),
            Message::Error { message } => w.bytes("message", message.as_bytes(), MAX_ERROR_LEN)?,
        }
        let len = out.len() - start - LEN_PREFIX;
        let len =
            u32::try_from(len).map_err(|_| CodecError::FrameTooLarge { len: len as u64, max: u32::MAX.into() })?;
        out[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

/// Appends fields to a frame; its errors name the message and the field, as [`Reader`]'s do.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
    kind: &'static str,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn bytes(&mut self, field: &'static str, bytes: &[u8], max: usize) -> Result<(), CodecError> {
        // A length must also fit its u32 prefix.
        let max = max.min(u32::MAX as usize);
        match u32::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= max => {
                self.put(&len.to_be_bytes());
                self.put(bytes);
                Ok(())
            }
            _ => Err(CodecError::TooLong { kind: self.kind, field, len: bytes.len() as u64, max: max as u64 }),
        }
    }

    fn entry(&mut self, entry: &Entry<'_>) -> Result<(), CodecError> {
        check_tombstone(self.kind, entry)?;
        self.bytes("key", entry.key, MAX_KEY_LEN)?;
        self.bytes("value", entry.value, usize::MAX)?;
        self.put(&entry.flags.to_be_bytes());
        self.put(&entry.exptime.to_be_bytes());
        self.put(&entry.cas.to_be_bytes());
        self.put(&entry.version.to_be_bytes());
        self.put(&[u8::from(entry.deleted)]);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
