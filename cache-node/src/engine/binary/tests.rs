use super::*;
use crate::protocol::binary::{HEADER_LEN, RESPONSE_MAGIC, opcode::*};
use crate::store;

const MAX: usize = 1 << 20;

fn ctx() -> std::sync::Arc<Context> {
    Context::detached(store::Config { limit_bytes: 64 << 20, item_size_max: MAX })
}

/// A request frame; the opaque is the opcode plus 0x100, so every reply names its request.
fn frame(op: u8, extras: &[u8], key: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
    let header = Header {
        opcode: op,
        key_len: key.len() as u16,
        extras_len: extras.len() as u8,
        body_len: (extras.len() + key.len() + value.len()) as u32,
        opaque: 0x100 + u32::from(op),
        cas,
    };
    let mut out = Vec::new();
    header.encode_request(&mut out);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

fn set(op: u8, key: &[u8], value: &[u8], flags: u32, exptime: u32, cas: u64) -> Vec<u8> {
    frame(op, &[flags.to_be_bytes(), exptime.to_be_bytes()].concat(), key, value, cas)
}

fn get(op: u8, key: &[u8]) -> Vec<u8> {
    frame(op, b"", key, b"", 0)
}

fn arith(op: u8, key: &[u8], delta: u64, initial: u64, exptime: u32, cas: u64) -> Vec<u8> {
    let extras = [delta.to_be_bytes().as_slice(), &initial.to_be_bytes(), &exptime.to_be_bytes()].concat();
    frame(op, &extras, key, b"", cas)
}

fn touch(op: u8, key: &[u8], exptime: u32) -> Vec<u8> {
    frame(op, &exptime.to_be_bytes(), key, b"", 0)
}

#[derive(Debug, PartialEq, Eq)]
struct Reply {
    opcode: u8,
    status: u16,
    cas: u64,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// Reply with only opcode and status, for terse expectations.
fn r(opcode: u8, status: Status) -> (u8, u16) {
    (opcode, status.code())
}

fn decode(mut out: &[u8]) -> Vec<Reply> {
    let mut replies = Vec::new();
    while !out.is_empty() {
        assert_eq!(out[0], RESPONSE_MAGIC);
        let opcode = out[1];
        let key_len = u16::from_be_bytes([out[2], out[3]]) as usize;
        let extras_len = out[4] as usize;
        let status = u16::from_be_bytes([out[6], out[7]]);
        let body_len = u32::from_be_bytes(out[8..12].try_into().unwrap()) as usize;
        let opaque = u32::from_be_bytes(out[12..16].try_into().unwrap());
        assert_eq!(opaque, 0x100 + u32::from(opcode), "opaque echoed");
        let cas = u64::from_be_bytes(out[16..24].try_into().unwrap());
        let body = &out[HEADER_LEN..HEADER_LEN + body_len];
        replies.push(Reply {
            opcode,
            status,
            cas,
            extras: body[..extras_len].to_vec(),
            key: body[extras_len..extras_len + key_len].to_vec(),
            value: body[extras_len + key_len..].to_vec(),
        });
        out = &out[HEADER_LEN + body_len..];
    }
    replies
}

/// Runs the frames as one buffer; all of it must be consumed.
fn run(ctx: &Context, frames: &[Vec<u8>]) -> Vec<Reply> {
    let (replies, progress) = run_progress(ctx, frames);
    assert_eq!((progress.swallow, progress.close), (0, false));
    replies
}

fn run_progress(ctx: &Context, frames: &[Vec<u8>]) -> (Vec<Reply>, Progress) {
    let buf = frames.concat();
    let mut out = crate::engine::Reply::default();
    let progress = process(ctx, &buf, &mut out);
    if !progress.close {
        assert_eq!(progress.consumed, buf.len());
    }
    (decode(&out.to_vec()), progress)
}

fn statuses(replies: &[Reply]) -> Vec<(u8, u16)> {
    replies.iter().map(|r| (r.opcode, r.status)).collect()
}

#[test]
fn gets_return_flags_cas_and_optionally_the_key() {
    let c = ctx();
    let stored = run(&c, &[set(SET, b"k", b"value", 0xabcd, 0, 0)]);
    let cas = stored[0].cas;
    assert_ne!(cas, 0);
    let replies = run(&c, &[get(GET, b"k"), get(GETK, b"k"), get(GETQ, b"k"), get(GETKQ, b"k")]);
    for (reply, (op, key)) in replies.iter().zip([(GET, &b""[..]), (GETK, b"k"), (GETQ, b""), (GETKQ, b"k")]) {
        let want = Reply {
            opcode: op,
            status: 0,
            cas,
            extras: 0xabcdu32.to_be_bytes().to_vec(),
            key: key.to_vec(),
            value: b"value".to_vec(),
        };
        assert_eq!(reply, &want);
    }
}

#[test]
fn misses_are_silent_only_for_quiet_gets() {
    let c = ctx();
    let replies = run(&c, &[get(GET, b"x"), get(GETQ, b"x"), get(GETK, b"x"), get(GETKQ, b"x"), get(NOOP, b"")]);
    assert_eq!(replies.len(), 3);
    assert_eq!((replies[0].status, &replies[0].value[..]), (1, &b"Not found"[..]));
    // getk names the missing key instead of giving a message.
    assert_eq!(
        (replies[1].opcode, replies[1].status, &replies[1].key[..], replies[1].value.len()),
        (GETK, 1, &b"x"[..], 0)
    );
    assert_eq!(statuses(&replies[2..]), [r(NOOP, Status::Success)]);
}

#[test]
fn storage_statuses_match_memcached() {
    let c = ctx();
    let cas = run(&c, &[set(SET, b"k", b"1", 0, 0, 0)])[0].cas;
    let replies = run(
        &c,
        &[
            set(SET, b"k", b"2", 0, 0, cas + 1000),
            set(ADD, b"k", b"2", 0, 0, 0),
            set(REPLACE, b"nope", b"2", 0, 0, 0),
            set(ADD, b"nope", b"2", 0, 0, 5),
            frame(APPEND, b"", b"nope", b"x", 0),
            frame(PREPEND, b"", b"k", b"x", cas + 1000),
            frame(APPEND, b"", b"k", b"z", cas),
            frame(PREPEND, b"", b"k", b"a", 0),
            get(GET, b"k"),
        ],
    );
    assert_eq!(
        statuses(&replies),
        [
            r(SET, Status::KeyExists),
            r(ADD, Status::KeyExists),
            r(REPLACE, Status::KeyNotFound),
            // With a CAS, add is a compare-and-swap: a missing key is not found.
            r(ADD, Status::KeyNotFound),
            r(APPEND, Status::NotStored),
            r(PREPEND, Status::KeyExists),
            r(APPEND, Status::Success),
            r(PREPEND, Status::Success),
            r(GET, Status::Success),
        ]
    );
    assert_eq!(replies[1].value, b"Data exists for key.");
    assert_eq!(replies[8].value, b"a1z");
    assert_eq!(replies[8].cas, replies[7].cas, "responses carry the new CAS");
    assert!(replies[..6].iter().all(|r| r.cas == 0), "errors carry no CAS");
}

#[test]
fn quiet_storage_answers_only_failures() {
    let c = ctx();
    let replies = run(
        &c,
        &[
            set(SETQ, b"k", b"1", 0, 0, 0),
            set(ADDQ, b"k", b"1", 0, 0, 0),
            set(REPLACEQ, b"k", b"2", 0, 0, 0),
            frame(APPENDQ, b"", b"k", b"3", 0),
            frame(PREPENDQ, b"", b"nope", b"3", 0),
            frame(DELETEQ, b"", b"nope", b"", 0),
            arith(INCREMENTQ, b"k", 1, 0, 0, 0),
            arith(DECREMENTQ, b"nope", 1, 0, NO_VIVIFY, 0),
            frame(FLUSHQ, b"", b"", b"", 0),
            get(NOOP, b""),
        ],
    );
    assert_eq!(
        statuses(&replies),
        [
            r(ADDQ, Status::KeyExists),
            r(PREPENDQ, Status::NotStored),
            r(DELETEQ, Status::KeyNotFound),
            r(DECREMENTQ, Status::KeyNotFound),
            r(NOOP, Status::Success),
        ]
    );
    assert_eq!(run(&c, &[get(GETQ, b"k"), get(NOOP, b"")]).len(), 1, "flushq flushed");
}

#[test]
fn counters_follow_memcached() {
    let c = ctx();
    let value = |r: &Reply| u64::from_be_bytes(r.value[..].try_into().unwrap());
    let replies = run(
        &c,
        &[
            arith(INCREMENT, b"n", 1, 5, NO_VIVIFY, 0),
            arith(INCREMENT, b"n", 1, 5, 0, 0),
            arith(INCREMENT, b"n", 10, 0, 0, 0),
            arith(DECREMENT, b"n", 100, 0, 0, 0),
            arith(DECREMENT, b"n", 1, 0, 0, 1 << 62),
            set(SET, b"s", b"abc", 0, 0, 0),
            arith(INCREMENT, b"s", 1, 0, 0, 0),
            get(GET, b"n"),
        ],
    );
    assert_eq!(
        statuses(&replies),
        [
            r(INCREMENT, Status::KeyNotFound),
            r(INCREMENT, Status::Success),
            r(INCREMENT, Status::Success),
            r(DECREMENT, Status::Success),
            r(DECREMENT, Status::KeyExists),
            r(SET, Status::Success),
            r(INCREMENT, Status::NonNumeric),
            r(GET, Status::Success),
        ]
    );
    // Created with the initial value, then incremented; decr floors at zero.
    assert_eq!([value(&replies[1]), value(&replies[2]), value(&replies[3])], [5, 15, 0]);
    assert_eq!(replies[3].cas, replies[7].cas);
    // Rewritten in place, space padded, as memcached does.
    assert_eq!(replies[7].value, b"0 ");
    let wrap = run(&c, &[set(SET, b"w", b"18446744073709551615", 0, 0, 0), arith(INCREMENT, b"w", 2, 0, 0, 0)]);
    assert_eq!(value(&wrap[1]), 1);
}

#[test]
fn a_read_still_held_makes_an_increment_rebuild_the_item() {
    // As memcached 1.6.18: a get, getq, getk, gat or touch reply holds its item until sent (a
    // no-op sends the replies so far), and decr then stores the number at its exact length.
    let c = ctx();
    let stored = |c: &Context| run(c, &[get(GET, b"n")])[0].value.clone();
    let gat = frame(GAT, &0u32.to_be_bytes(), b"n", b"", 0);
    for held in [get(GET, b"n"), get(GETQ, b"n"), get(GETK, b"n"), gat, touch(TOUCH, b"n", 0)] {
        run(&c, &[set(SET, b"n", b"100", 0, 0, 0)]);
        run(&c, &[held, arith(DECREMENT, b"n", 95, 0, 0, 0)]);
        assert_eq!(stored(&c), b"5");
        run(&c, &[set(SET, b"n", b"100", 0, 0, 0)]);
        run(&c, &[get(GET, b"n"), get(NOOP, b""), arith(DECREMENT, b"n", 95, 0, 0, 0)]);
        assert_eq!(stored(&c), b"5  ");
    }
}

#[test]
fn deletes_honour_cas() {
    let c = ctx();
    let cas = run(&c, &[set(SET, b"k", b"1", 0, 0, 0)])[0].cas;
    let replies = run(
        &c,
        &[frame(DELETE, b"", b"k", b"", cas + 1), frame(DELETE, b"", b"k", b"", cas), frame(DELETE, b"", b"k", b"", 0)],
    );
    assert_eq!(
        statuses(&replies),
        [r(DELETE, Status::KeyExists), r(DELETE, Status::Success), r(DELETE, Status::KeyNotFound)]
    );
}

#[test]
fn touch_and_gat() {
    let c = ctx();
    let cas = run(&c, &[set(SET, b"k", b"v", 7, 0, 0)])[0].cas;
    let replies = run(
        &c,
        &[
            touch(TOUCH, b"k", 100),
            touch(GAT, b"k", 100),
            touch(GATK, b"k", 100),
            touch(GATQ, b"k", 100),
            touch(TOUCH, b"x", 100),
            touch(GATQ, b"x", 100),
            touch(GATKQ, b"x", 100),
            touch(GATK, b"x", 100),
        ],
    );
    let flags = 7u32.to_be_bytes().to_vec();
    // touch answers with the flags but no value.
    assert_eq!(replies[0], Reply { opcode: TOUCH, status: 0, cas, extras: flags.clone(), key: vec![], value: vec![] });
    assert_eq!(
        replies[1],
        Reply { opcode: GAT, status: 0, cas, extras: flags.clone(), key: vec![], value: b"v".to_vec() }
    );
    assert_eq!((&replies[2].key[..], &replies[2].value[..]), (&b"k"[..], &b"v"[..]));
    assert_eq!(replies[3].opcode, GATQ, "quiet hits are answered");
    assert_eq!(statuses(&replies[4..]), [r(TOUCH, Status::KeyNotFound), r(GATK, Status::KeyNotFound)]);
    // An exptime in the past (an absolute time before the process started) expires the item.
    run(&c, &[touch(TOUCH, b"k", 30 * 24 * 3600 + 1)]);
    assert_eq!(statuses(&run(&c, &[get(GET, b"k")])), [r(GET, Status::KeyNotFound)]);
}

#[test]
fn flush_now_or_later() {
    let c = ctx();
    let replies = run(
        &c,
        &[
            set(SET, b"k", b"v", 0, 0, 0),
            frame(FLUSH, &100u32.to_be_bytes(), b"", b"", 0),
            get(GET, b"k"),
            frame(FLUSH, b"", b"", b"", 0),
            get(GET, b"k"),
            set(SET, b"k", b"v", 0, 0, 0),
            get(GET, b"k"),
        ],
    );
    assert_eq!(
        statuses(&replies),
        [
            r(SET, Status::Success),
            r(FLUSH, Status::Success),
            r(GET, Status::Success),
            r(FLUSH, Status::Success),
            r(GET, Status::KeyNotFound),
            r(SET, Status::Success),
            // Written after the flush within the same second: it survives.
            r(GET, Status::Success),
        ]
    );
}

#[test]
fn oversized_values_are_refused_and_swallowed_across_reads() {
    let c = ctx();
    run(&c, &[set(SET, b"k", b"old", 0, 0, 0), set(SET, b"a", b"old", 0, 0, 0)]);
    let big = vec![b'x'; MAX];
    let frames = [set(SET, b"k", &big, 0, 0, 0), frame(APPENDQ, b"", b"a", &big, 0), get(GET, b"k"), get(GET, b"a")];
    let buf = frames.concat();
    // Arrives in two reads: the refusal is answered at once, the rest discarded as it comes.
    let mut out = crate::engine::Reply::default();
    let first = process(&c, &buf[..1000], &mut out);
    assert_eq!((first.consumed, first.swallow), (1000, 33 + MAX - 1000));
    let rest = &buf[1000 + first.swallow..];
    let second = process(&c, rest, &mut out);
    assert_eq!(second.consumed, rest.len());
    let replies = decode(&out.to_vec());
    assert_eq!(
        statuses(&replies),
        [r(SET, Status::TooLarge), r(APPENDQ, Status::TooLarge), r(GET, Status::KeyNotFound), r(GET, Status::Success)]
    );
    assert_eq!(replies[0].value, b"Too large.");
    // The failed set dropped the old value; the failed append left its item alone.
    assert_eq!(replies[3].value, b"old");
}

#[test]
fn statistics_end_with_an_empty_response() {
    let c = ctx();
    let replies = run(&c, &[get(STAT, b"")]);
    let names: Vec<&[u8]> = replies.iter().map(|r| &r.key[..]).collect();
    assert!(names.contains(&&b"pid"[..]) && names.contains(&&b"curr_items"[..]));
    assert_eq!(
        replies.last().unwrap(),
        &Reply { opcode: STAT, status: 0, cas: 0, extras: vec![], key: vec![], value: vec![] }
    );
    let version = replies.iter().find(|r| r.key == b"version").unwrap();
    assert_eq!(version.value, stats::VERSION.as_bytes());

    for group in [&b"settings"[..], b"settingsX", b"items", b"slabs"] {
        let replies = run(&c, &[get(STAT, group)]);
        assert!(replies.iter().all(|r| r.status == 0), "{group:?}");
        assert!(replies.last().unwrap().key.is_empty());
    }
    let replies = run(&c, &[get(STAT, b"detail dump")]);
    assert_eq!((&replies[0].key[..], &replies[0].value[..], replies.len()), (&b"detailed"[..], &b"END\r\n"[..], 2));
    for group in [&b"reset"[..], b"resetfoo", b"detail on", b"detail off"] {
        assert_eq!(statuses(&run(&c, &[get(STAT, group)])), [r(STAT, Status::Success)], "{group:?}");
    }
    for group in [&b"detail"[..], b"detail x", b"foo", b"itemsX", b"conns"] {
        assert_eq!(statuses(&run(&c, &[get(STAT, group)])), [r(STAT, Status::KeyNotFound)], "{group:?}");
    }
}

#[test]
fn noop_version_quit() {
    let c = ctx();
    let replies = run(&c, &[get(NOOP, b""), get(VERSION, b"")]);
    assert_eq!(replies[1].value, stats::VERSION.as_bytes());
    let (replies, progress) = run_progress(&c, &[get(QUIT, b""), get(NOOP, b"")]);
    assert_eq!((statuses(&replies), progress.close, progress.consumed), (vec![r(QUIT, Status::Success)], true, 24));
    let (replies, progress) = run_progress(&c, &[get(QUITQ, b""), get(NOOP, b"")]);
    assert!(replies.is_empty() && progress.close);
}

#[test]
fn malformed_frames_are_answered_then_the_connection_closes() {
    let c = ctx();
    let mut bad_lengths = get(GET, b"abc");
    bad_lengths[11] = 2;
    let cases: [(Vec<u8>, Status); 3] = [
        (bad_lengths, Status::UnknownCommand),
        (get(GET, &[b'k'; 251]), Status::InvalidArguments),
        (frame(INCREMENT, &[0; 8], b"k", b"", 0), Status::InvalidArguments),
    ];
    for (bad, status) in cases {
        let (replies, progress) = run_progress(&c, &[get(NOOP, b""), bad.clone(), get(NOOP, b"")]);
        assert_eq!(statuses(&replies), [r(NOOP, Status::Success), r(bad[1], status)]);
        assert_eq!(replies[1].value, status.message().as_bytes());
        assert!(progress.close);
    }
    // A bad magic byte: no answer, just the hang-up.
    let mut bad_magic = get(NOOP, b"");
    bad_magic[0] = 0x81;
    let (replies, progress) = run_progress(&c, &[get(NOOP, b""), bad_magic]);
    assert_eq!((statuses(&replies), progress.close), (vec![r(NOOP, Status::Success)], true));
}

#[test]
fn unknown_commands_discard_their_body_and_go_on() {
    let c = ctx();
    // Verbosity is unknown to memcached's binary protocol: its 4 extras are read, then
    // 4 more bytes (the body length) discarded.
    let verbosity = frame(0x1b, &1u32.to_be_bytes(), b"", b"", 0);
    let replies = run(&c, &[verbosity, b"pad!".to_vec(), get(NOOP, b"")]);
    assert_eq!(statuses(&replies), [(0x1b, 0x81), r(NOOP, Status::Success)]);
    assert_eq!(replies[0].value, b"Unknown command");
}

#[test]
fn any_split_of_a_pipeline_gives_the_same_replies() {
    let big = vec![b'y'; MAX];
    let frames = [
        set(SETQ, b"a", b"1", 0, 0, 0),
        set(SET, b"big", &big, 0, 0, 0),
        arith(INCREMENT, b"a", 2, 0, 0, 0),
        frame(APPEND, b"", b"a", b"0", 0),
        frame(0x55, b"ee", b"kk", b"vvvvvv", 0),
        b"pad!".to_vec(),
        get(GETK, b"a"),
        touch(GAT, b"a", 0),
        get(STAT, b"reset"),
        get(NOOP, b""),
    ];
    let buf = frames.concat();
    let replies_whole = {
        let mut out = crate::engine::Reply::default();
        let p = process(&ctx(), &buf, &mut out);
        assert_eq!((p.consumed, p.swallow, p.close), (buf.len(), 0, false));
        out
    };
    // Feed the bytes as a connection would, in chunks of various sizes.
    for chunk in [1, 7, 24, 25, 1000, 65536] {
        let c = ctx();
        let (mut pending, mut out, mut swallow) = (Vec::new(), crate::engine::Reply::default(), 0usize);
        for piece in buf.chunks(chunk) {
            let skip = swallow.min(piece.len());
            swallow -= skip;
            if swallow > 0 {
                continue;
            }
            pending.extend_from_slice(&piece[skip..]);
            let p = process(&c, &pending, &mut out);
            assert!(!p.close);
            pending.drain(..p.consumed);
            swallow = p.swallow;
        }
        assert!(pending.is_empty() && swallow == 0, "chunk {chunk}");
        let strip_cas =
            |out: &[u8]| decode(out).into_iter().map(|r| (r.opcode, r.status, r.key, r.value)).collect::<Vec<_>>();
        assert_eq!(strip_cas(&out.to_vec()), strip_cas(&replies_whole.to_vec()), "chunk {chunk}");
    }
}
