//! SASL on the binary protocol, as memcached 1.6 with `-S`: the PLAIN mechanism against the
//! auth file's users. Before a connection has logged in, only the SASL commands and VERSION
//! are served; anything else is refused with an auth error and the connection closed.

use super::{Header, Status, error, respond};
use crate::engine::auth::Auth;
use crate::engine::{Context, Progress, Reply, stats};
use crate::protocol::auth::parse_plain;
use crate::protocol::binary::opcode::{SASL_AUTH, SASL_LIST_MECHS, SASL_STEP, VERSION};
use crate::protocol::binary::{HEADER_LEN, REQUEST_MAGIC};

/// The one mechanism offered.
const MECHANISMS: &[u8] = b"PLAIN";
/// memcached's MAX_SASL_MECH_LEN.
const MAX_MECHANISM: usize = 32;
/// The largest SASL message taken: a PLAIN message holds a user name and a password.
const MAX_MESSAGE: usize = 1024;

/// Whether the frame at the front of `buf` is a SASL command.
pub fn is_sasl(buf: &[u8]) -> bool {
    matches!(buf, [REQUEST_MAGIC, SASL_LIST_MECHS | SASL_AUTH | SASL_STEP, ..])
}

/// What a SASL frame came to.
pub enum Frame {
    Incomplete,
    /// Answered; `authenticated` after a successful login.
    Done {
        len: usize,
        authenticated: bool,
    },
    /// Malformed: answered, then the connection closes.
    Close {
        len: usize,
    },
}

/// Answers the SASL frame at the front of `buf`, which [`is_sasl`] picked.
pub fn frame(ctx: &Context, auth: &Auth, buf: &[u8], out: &mut Reply) -> Frame {
    let Some(h) = buf.first_chunk::<HEADER_LEN>().and_then(Header::decode) else {
        return Frame::Incomplete;
    };
    let (elen, klen, body) = (usize::from(h.extras_len), usize::from(h.key_len), h.body_len as usize);
    if elen != 0 || klen > MAX_MECHANISM || klen > body || body - klen > MAX_MESSAGE {
        error(out, &h, Status::InvalidArguments);
        return Frame::Close { len: HEADER_LEN };
    }
    let len = HEADER_LEN + body;
    let Some(frame) = buf.get(HEADER_LEN..len) else {
        return Frame::Incomplete;
    };
    let (mechanism, message) = frame.split_at(klen);
    if h.opcode == SASL_LIST_MECHS {
        respond(out, &h, Status::Success, 0, &[], &[], MECHANISMS);
        return Frame::Done { len, authenticated: false };
    }
    let plain = (h.opcode == SASL_AUTH && mechanism == MECHANISMS).then(|| parse_plain(message)).flatten();
    // PLAIN logs in in one step: SASL_STEP, another mechanism or a malformed message fail.
    // An authorization identity other than the user itself is not offered.
    let authenticated = match plain {
        Some(p) if p.authzid.is_empty() || p.authzid == p.user => auth.check(&ctx.stats, p.user, p.password),
        _ => {
            ctx.stats.auth_cmds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            auth.failed(&ctx.stats, plain.map_or(&[][..], |p| p.user));
            false
        }
    };
    if authenticated {
        respond(out, &h, Status::Success, 0, &[], &[], b"Authenticated");
    } else {
        error(out, &h, Status::AuthError);
    }
    Frame::Done { len, authenticated }
}

/// The binary protocol before login. Stops after a successful login with the rest of the
/// buffer left for the commands.
pub fn login(ctx: &Context, auth: &Auth, buf: &[u8], out: &mut Reply, authenticated: &mut bool) -> Progress {
    let mut progress = Progress::default();
    let mut requests = 0;
    while !*authenticated {
        let rest = &buf[progress.consumed..];
        if rest.is_empty() || progress.full(requests, out) {
            return progress;
        }
        requests += 1;
        let Some(head) = rest.first_chunk::<HEADER_LEN>() else {
            return progress;
        };
        let Some(h) = Header::decode(head) else {
            // Not a request: hang up without a reply, as for any bad magic byte.
            progress.close = true;
            return progress;
        };
        let bare = h.extras_len == 0 && h.key_len == 0 && h.body_len == 0;
        if auth.sasl && is_sasl(rest) {
            match frame(ctx, auth, rest, out) {
                Frame::Incomplete => return progress,
                Frame::Done { len, authenticated: ok } => {
                    progress.consumed += len;
                    *authenticated = ok;
                }
                Frame::Close { len } => {
                    progress.consumed += len;
                    progress.close = true;
                    return progress;
                }
            }
        } else if h.opcode == VERSION && bare {
            respond(out, &h, Status::Success, 0, &[], &[], stats::VERSION.as_bytes());
            progress.consumed += HEADER_LEN;
        } else {
            // memcached refuses before it looks at the rest of the frame, and hangs up.
            error(out, &h, Status::AuthError);
            progress.close = true;
            return progress;
        }
    }
    // Logged in: the requests after the login are the engine's.
    progress.more = progress.consumed < buf.len();
    progress
}
