//! memcached's binary protocol: frame headers, opcodes, statuses, and requests made from the
//! bytes at the front of a buffer. No I/O, no store.
//!
//! Framing follows memcached 1.6's `proto_bin.c`, quirks included, since clients see them:
//! - a request is dispatched as soon as its header, extras and key are in; only the commands
//!   that carry a value then read `body length - extras - key` more bytes, so surplus body
//!   bytes of get-and-touch, touch and stat are read as the next frame;
//! - lengths that cannot add up, a key over 250 bytes, or lengths an opcode does not accept
//!   get an error and the connection closes; a bad magic byte closes it without a reply;
//! - an unknown opcode is answered, then `body length` bytes *after* its extras and key are
//!   discarded.

use crate::store::{MAX_KEY_LEN, Mode, item_too_large};

pub const HEADER_LEN: usize = 24;
pub const REQUEST_MAGIC: u8 = 0x80;
pub const RESPONSE_MAGIC: u8 = 0x81;

/// Opcodes memcached 1.6 serves (its `protocol_binary_command`).
pub mod opcode {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

use opcode::*;

/// Response statuses memcached sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    KeyNotFound,
    KeyExists,
    TooLarge,
    InvalidArguments,
    NotStored,
    NonNumeric,
    /// Not logged in, or a failed login (SASL).
    AuthError,
    UnknownCommand,
    OutOfMemory,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Success => 0x00,
            Status::KeyNotFound => 0x01,
            Status::KeyExists => 0x02,
            Status::TooLarge => 0x03,
            Status::InvalidArguments => 0x04,
            Status::NotStored => 0x05,
            Status::NonNumeric => 0x06,
            Status::AuthError => 0x20,
            Status::UnknownCommand => 0x81,
            Status::OutOfMemory => 0x82,
        }
    }

    /// The body memcached sends with an error status.
    pub fn message(self) -> &'static str {
        match self {
            Status::Success => "",
            Status::KeyNotFound => "Not found",
            Status::KeyExists => "Data exists for key.",
            Status::TooLarge => "Too large.",
            Status::InvalidArguments => "Invalid arguments",
            Status::NotStored => "Not stored.",
            Status::NonNumeric => "Non-numeric server-side value for incr or decr",
            Status::AuthError => "Auth failure.",
            Status::UnknownCommand => "Unknown command",
            Status::OutOfMemory => "Out of memory",
        }
    }
}

/// A request header. Data type and vbucket are not kept: memcached ignores both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: u8,
    pub key_len: u16,
    pub extras_len: u8,
    pub body_len: u32,
    /// Echoed in every response to the request.
    pub opaque: u32,
    pub cas: u64,
}

impl Header {
    /// Decodes a request header; `None` when the magic byte is not a request's.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Option<Self> {
        if b[0] != REQUEST_MAGIC {
            return None;
        }
        Some(Self {
            opcode: b[1],
            key_len: u16::from_be_bytes([b[2], b[3]]),
            extras_len: b[4],
            body_len: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            opaque: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            cas: u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        })
    }

    /// Appends this header as a request, for tests that play the client.
    #[cfg(test)]
    pub fn encode_request(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[REQUEST_MAGIC, self.opcode]);
        out.extend_from_slice(&self.key_len.to_be_bytes());
        out.extend_from_slice(&[self.extras_len, 0, 0, 0]);
        out.extend_from_slice(&self.body_len.to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&self.cas.to_be_bytes());
    }
}

/// A response header; extras, key and value follow it in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    pub opcode: u8,
    pub status: Status,
    pub opaque: u32,
    pub cas: u64,
    pub extras_len: u8,
    pub key_len: u16,
    pub body_len: u32,
}

impl ResponseHeader {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[RESPONSE_MAGIC, self.opcode]);
        out.extend_from_slice(&self.key_len.to_be_bytes());
        // Data type: always raw bytes.
        out.extend_from_slice(&[self.extras_len, 0]);
        out.extend_from_slice(&self.status.code().to_be_bytes());
        out.extend_from_slice(&self.body_len.to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&self.cas.to_be_bytes());
    }
}

/// What a request asks for, borrowing from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// get, getk, gat, gatk, touch (and the quiet forms): `exptime` touches the item,
    /// `with_key` echoes the key, `with_value` is false only for touch.
    Get {
        key: &'a [u8],
        exptime: Option<u32>,
        with_key: bool,
        with_value: bool,
    },
    /// set, add, replace (as [`Mode::Cas`] when the header carries a CAS), append, prepend;
    /// append and prepend carry no flags or exptime.
    Store {
        mode: Mode,
        key: &'a [u8],
        flags: u32,
        exptime: u32,
        value: &'a [u8],
    },
    Delete {
        key: &'a [u8],
    },
    /// incr/decr; an `exptime` of [`NO_VIVIFY`] means a miss does not create the item.
    Arith {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        initial: u64,
        exptime: u32,
    },
    Flush {
        delay: u32,
    },
    Noop,
    Version,
    Quit,
    /// `group` is the key: empty for the general statistics.
    Stat {
        group: &'a [u8],
    },
}

/// incr/decr expiration meaning "fail on a miss" instead of creating the counter.
pub const NO_VIVIFY: u32 = 0xffff_ffff;

#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub header: Header,
    /// A quiet opcode: success goes unanswered (and so does a get's miss); errors do not.
    pub quiet: bool,
    pub command: Command<'a>,
}

/// What the connection should do with the bytes at the front of its buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// Not a whole request yet; read more.
    Incomplete,
    /// Not a request at all (bad magic): memcached hangs up without a reply.
    Close,
    /// A request spanning `len` bytes.
    Request { req: Request<'a>, len: usize },
    /// Answer `status` with its message, drop `len` bytes, discard the next `swallow` bytes as
    /// they arrive, and hang up after the reply when `close`.
    Error { header: Header, status: Status, len: usize, swallow: usize, close: bool },
    /// A value over `-I`: answer too-large, drop `len` bytes and discard the next `swallow` as
    /// they arrive. A set also drops the key's old value, as memcached does.
    TooLarge { header: Header, key: &'a [u8], drop_old: bool, len: usize, swallow: usize },
}

/// memcached passes the byte count to discard as a C int: past i32::MAX it reads negative and
/// nothing is discarded (the bytes are then parsed as frames).
fn swallow(len: usize) -> usize {
    if len > i32::MAX as usize { 0 } else { len }
}

fn be_u32(b: &[u8]) -> u32 {
    b.iter().take(4).fold(0, |n, &x| n << 8 | u32::from(x))
}

fn be_u64(b: &[u8]) -> u64 {
    b.iter().take(8).fold(0, |n, &x| n << 8 | u64::from(x))
}

/// Parses one request from the front of `buf`. `item_size_max` is `-I`: larger values are
/// refused before they are read, so a connection never buffers more than that plus a header.
pub fn parse(buf: &[u8], item_size_max: usize) -> Parse<'_> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Parse::Incomplete;
    };
    let Some(h) = Header::decode(head) else {
        return Parse::Close;
    };
    let (elen, klen, body) = (usize::from(h.extras_len), usize::from(h.key_len), h.body_len as usize);
    let fixed = HEADER_LEN + elen + klen;
    let Some(frame) = buf.get(..fixed) else {
        return Parse::Incomplete;
    };
    let extras = &frame[HEADER_LEN..HEADER_LEN + elen];
    let key = &frame[HEADER_LEN + elen..];
    let error =
        |status, discard, close| Parse::Error { header: h, status, len: fixed, swallow: swallow(discard), close };
    if klen + elen > body {
        return error(Status::UnknownCommand, 0, true);
    }
    if klen > MAX_KEY_LEN {
        return error(Status::InvalidArguments, 0, true);
    }
    let invalid = || error(Status::InvalidArguments, 0, true);
    let quiet = matches!(
        h.opcode,
        GETQ | GETKQ
            | GATQ
            | GATKQ
            | SETQ
            | ADDQ
            | REPLACEQ
            | APPENDQ
            | PREPENDQ
            | DELETEQ
            | INCREMENTQ
            | DECREMENTQ
            | FLUSHQ
            | QUITQ
    );
    let request = |command, len| Parse::Request { req: Request { header: h, quiet, command }, len };
    let bare = elen == 0 && klen == 0 && body == 0;
    // Storage commands: the value follows the key. The sanity check above keeps the
    // subtraction from underflowing.
    let store = |mode, flags, exptime| {
        let vlen = body - klen - elen;
        // The first test keeps the size arithmetic from overflowing on any length.
        if vlen >= item_size_max || item_too_large(item_size_max, klen, vlen, flags) {
            let drop_old = matches!(h.opcode, SET | SETQ);
            return Parse::TooLarge { header: h, key, drop_old, len: fixed, swallow: swallow(vlen) };
        }
        match buf.get(fixed..fixed + vlen) {
            Some(value) => request(Command::Store { mode, key, flags, exptime, value }, fixed + vlen),
            None => Parse::Incomplete,
        }
    };
    match h.opcode {
        NOOP | VERSION | QUIT | QUITQ if bare => {
            let command = match h.opcode {
                NOOP => Command::Noop,
                VERSION => Command::Version,
                _ => Command::Quit,
            };
            request(command, fixed)
        }
        FLUSH | FLUSHQ if klen == 0 && body == elen && (elen == 0 || elen == 4) => {
            request(Command::Flush { delay: be_u32(extras) }, fixed)
        }
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ if elen == 8 && klen > 0 => {
            let mode = match h.opcode {
                _ if h.cas != 0 => Mode::Cas,
                SET | SETQ => Mode::Set,
                ADD | ADDQ => Mode::Add,
                _ => Mode::Replace,
            };
            store(mode, be_u32(extras), be_u32(&extras[4..]))
        }
        APPEND | APPENDQ | PREPEND | PREPENDQ if elen == 0 && klen > 0 => {
            store(if matches!(h.opcode, APPEND | APPENDQ) { Mode::Append } else { Mode::Prepend }, 0, 0)
        }
        GET | GETQ | GETK | GETKQ if elen == 0 && klen > 0 && body == klen => {
            let with_key = matches!(h.opcode, GETK | GETKQ);
            request(Command::Get { key, exptime: None, with_key, with_value: true }, fixed)
        }
        TOUCH | GAT | GATQ | GATK | GATKQ if elen == 4 && klen > 0 => {
            let with_key = matches!(h.opcode, GATK | GATKQ);
            let with_value = h.opcode != TOUCH;
            request(Command::Get { key, exptime: Some(be_u32(extras)), with_key, with_value }, fixed)
        }
        DELETE | DELETEQ if elen == 0 && klen > 0 && body == klen => request(Command::Delete { key }, fixed),
        INCREMENT | INCREMENTQ | DECREMENT | DECREMENTQ if elen == 20 && klen > 0 && body == klen + elen => {
            let command = Command::Arith {
                incr: matches!(h.opcode, INCREMENT | INCREMENTQ),
                key,
                delta: be_u64(extras),
                initial: be_u64(&extras[8..]),
                exptime: be_u32(&extras[16..]),
            };
            request(command, fixed)
        }
        STAT if elen == 0 => request(Command::Stat { group: key }, fixed),
        // SASL is not enabled: memcached refuses well-formed SASL frames as unknown commands
        // and discards their data.
        SASL_LIST_MECHS if bare => error(Status::UnknownCommand, 0, false),
        SASL_AUTH | SASL_STEP if elen == 0 && klen > 0 => error(Status::UnknownCommand, body - klen, false),
        NOOP | VERSION | QUIT | QUITQ | FLUSH | FLUSHQ | SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ | APPEND
        | APPENDQ | PREPEND | PREPENDQ | GET | GETQ | GETK | GETKQ | TOUCH | GAT | GATQ | GATK | GATKQ | DELETE
        | DELETEQ | INCREMENT | INCREMENTQ | DECREMENT | DECREMENTQ | STAT | SASL_LIST_MECHS | SASL_AUTH
        | SASL_STEP => invalid(),
        // memcached discards `body length` bytes counted from after the extras and key.
        _ => error(Status::UnknownCommand, body, false),
    }
}

#[cfg(test)]
mod tests;
