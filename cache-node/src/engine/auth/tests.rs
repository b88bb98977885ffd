//! Logins driven the way a connection drives them: the login step until it succeeds, then the
//! engine, over one buffer.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::*;
use crate::engine::{Reply, binary, stats, text};
use crate::protocol::binary::{Header, opcode};
use crate::store::{Config, Store};

fn ctx(file: &Path, sasl: bool, ascii: bool) -> Arc<Context> {
    let settings = Context::detached(Config::default()).settings.clone();
    let auth = Auth::load(file, sasl, ascii).unwrap();
    Context::new(Store::new(Config::default()), settings, 0, Some(auth), None)
}

fn users_file(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("users");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `input` through a connection's steps; returns what was written and whether the
/// connection closed.
fn run(ctx: &Context, binary: bool, input: &[u8]) -> (Vec<u8>, bool) {
    let auth = ctx.auth.as_ref().unwrap();
    let (mut authenticated, mut at, mut out) = (false, 0, Reply::default());
    loop {
        let buf = &input[at..];
        let progress = match (binary, authenticated) {
            (false, false) => text_login(ctx, auth, buf, &mut out, &mut authenticated),
            (true, false) => binary::sasl::login(ctx, auth, buf, &mut out, &mut authenticated),
            (false, true) => text::process(ctx, buf, &mut out),
            (true, true) => binary::process(ctx, buf, &mut out),
        };
        at += progress.consumed;
        if progress.close {
            return (out.to_vec(), true);
        }
        if !progress.more {
            return (out.to_vec(), false);
        }
    }
}

#[test]
fn text_commands_wait_for_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(&users_file(&dir, "alice:secret1\n"), false, true);
    let (out, closed) = run(&ctx, false, b"get k\r\nversion\r\nquit\r\nset a 0 0 11\r\nalice wrong\r\n");
    let expected = "CLIENT_ERROR unauthenticated\r\n".repeat(3) + "CLIENT_ERROR authentication failure\r\n";
    assert_eq!((String::from_utf8(out).unwrap(), closed), (expected, false));
    assert_eq!((ctx.stats.auth_cmds.load(Relaxed), ctx.stats.auth_errors.load(Relaxed)), (1, 1));

    let (out, _) = run(&ctx, false, b"set auth 0 0 13 noreply\r\nalice secret1\r\nset k 0 0 1\r\nv\r\nget k\r\n");
    assert_eq!(out, b"STORED\r\nSTORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n");
    assert_eq!((ctx.stats.auth_cmds.load(Relaxed), ctx.stats.auth_errors.load(Relaxed)), (2, 1));
    assert_eq!(ctx.store.stats().totals().cmd_set, 1, "the login is not a set");
}

#[test]
fn a_text_token_announced_too_long_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(&users_file(&dir, "alice:secret1\n"), false, true);
    let (out, closed) = run(&ctx, false, b"set a 0 0 4000000000\r\n");
    assert_eq!((out, closed), (b"CLIENT_ERROR authentication token too long\r\n".to_vec(), true));
    let (_, closed) = run(&ctx, false, &[b'x'; 3000]);
    assert!(closed, "a line without an end");
}

#[test]
fn without_y_the_text_protocol_cannot_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(&users_file(&dir, "alice:secret1\n"), true, false);
    let (out, _) = run(&ctx, false, b"set a 0 0 13\r\nalice secret1\r\nget k\r\n");
    assert_eq!(out, b"CLIENT_ERROR unauthenticated\r\n".repeat(2));
    assert_eq!(ctx.stats.auth_cmds.load(Relaxed), 0);
}

fn frame(op: u8, key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let header = Header {
        opcode: op,
        key_len: key.len() as u16,
        extras_len: 0,
        body_len: (key.len() + value.len()) as u32,
        opaque,
        cas: 0,
    };
    let mut out = Vec::new();
    header.encode_request(&mut out);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// (opcode, status, opaque, body) of each response.
fn responses(mut out: &[u8]) -> Vec<(u8, u16, u32, Vec<u8>)> {
    let mut all = Vec::new();
    while out.len() >= 24 {
        let body = u32::from_be_bytes(out[8..12].try_into().unwrap()) as usize;
        let status = u16::from_be_bytes([out[6], out[7]]);
        let opaque = u32::from_be_bytes(out[12..16].try_into().unwrap());
        all.push((out[1], status, opaque, out[24..24 + body].to_vec()));
        out = &out[24 + body..];
    }
    all
}

#[test]
fn binary_commands_wait_for_a_sasl_login() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(&users_file(&dir, "alice:secret1\n"), true, true);
    let input = [
        frame(opcode::SASL_LIST_MECHS, b"", b"", 1),
        frame(opcode::VERSION, b"", b"", 2),
        frame(opcode::SASL_AUTH, b"PLAIN", b"\0alice\0wrong", 3),
        frame(opcode::SASL_AUTH, b"CRAM-MD5", b"x", 4),
        frame(opcode::SASL_STEP, b"PLAIN", b"\0alice\0secret1", 5),
        frame(opcode::SASL_AUTH, b"PLAIN", b"bob\0alice\0secret1", 6),
        frame(opcode::GET, b"k", b"", 7),
        frame(opcode::NOOP, b"", b"", 8),
    ]
    .concat();
    let (out, closed) = run(&ctx, true, &input);
    let auth_error = (0x20, b"Auth failure.".to_vec());
    let got: Vec<_> =
        responses(&out).into_iter().map(|(op, status, opaque, body)| (op, opaque, (status, body))).collect();
    assert_eq!(
        got,
        [
            (opcode::SASL_LIST_MECHS, 1, (0, b"PLAIN".to_vec())),
            (opcode::VERSION, 2, (0, stats::VERSION.as_bytes().to_vec())),
            (opcode::SASL_AUTH, 3, auth_error.clone()),
            (opcode::SASL_AUTH, 4, auth_error.clone()),
            (opcode::SASL_STEP, 5, auth_error.clone()),
            (opcode::SASL_AUTH, 6, auth_error.clone()),
            (opcode::GET, 7, auth_error),
        ]
    );
    assert!(closed, "a command before login closes the connection, as in memcached");
    assert_eq!((ctx.stats.auth_cmds.load(Relaxed), ctx.stats.auth_errors.load(Relaxed)), (4, 4));

    let input = [
        frame(opcode::SASL_AUTH, b"PLAIN", b"alice\0alice\0secret1", 1),
        frame(opcode::GET, b"k", b"", 2),
        frame(opcode::SASL_AUTH, b"PLAIN", b"\0alice\0wrong", 3),
        frame(opcode::NOOP, b"", b"", 4),
    ]
    .concat();
    let (out, closed) = run(&ctx, true, &input);
    let got: Vec<_> = responses(&out).into_iter().map(|(_, status, opaque, _)| (opaque, status)).collect();
    // A failed login after a good one answers an auth error and logs nobody out.
    assert_eq!((got, closed), (vec![(1, 0), (2, 1), (3, 0x20), (4, 0)], false));
}

#[test]
fn a_sasl_message_too_long_is_refused_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(&users_file(&dir, "alice:secret1\n"), true, false);
    let (out, closed) = run(&ctx, true, &frame(opcode::SASL_AUTH, b"PLAIN", &[b'x'; 2000], 9));
    let got: Vec<_> = responses(&out).into_iter().map(|(op, status, opaque, _)| (op, status, opaque)).collect();
    assert_eq!((got, closed), (vec![(opcode::SASL_AUTH, 0x04, 9)], true));
}

#[test]
fn without_s_the_binary_protocol_cannot_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(&users_file(&dir, "alice:secret1\n"), false, true);
    let (out, closed) = run(&ctx, true, &frame(opcode::SASL_AUTH, b"PLAIN", b"\0alice\0secret1", 1));
    assert_eq!((responses(&out)[0].1, closed), (0x20, true));
}

#[test]
fn a_changed_file_changes_the_users_and_a_bad_one_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = users_file(&dir, "alice:one\n");
    let auth = Auth::load(&file, true, true).unwrap();
    let stats = ServerStats::default();
    assert!(!auth.reload().unwrap(), "unchanged");
    std::fs::write(&file, "alice:two\n").unwrap();
    assert!(auth.reload().unwrap());
    assert!(auth.check(&stats, b"alice", b"two") && !auth.check(&stats, b"alice", b"one"));
    std::fs::write(&file, "garbage\n").unwrap();
    let err = auth.reload().unwrap_err().to_string();
    assert!(err.ends_with("users: line 1: expected user:password"), "{err}");
    assert!(auth.check(&stats, b"alice", b"two"), "the users loaded before stay");
    std::fs::remove_file(&file).unwrap();
    assert!(auth.reload().is_err());
    assert!(auth.check(&stats, b"alice", b"two"));
}
