use super::*;

const MAX: usize = DEFAULT_MAX_FRAME;
static LONG_KEY: [u8; MAX_KEY_LEN] = [b'k'; MAX_KEY_LEN];

fn entry() -> Entry<'static> {
    Entry { key: b"k", value: b"vv", flags: 5, exptime: 0, cas: 9, version: 0x10, deleted: false }
}

/// Every variant, every op, every role, and the edges of each field.
fn samples() -> Vec<Message<'static>> {
    let tombstone = Entry { key: b"gone", value: b"", flags: 0, exptime: 0, cas: 3, version: u64::MAX, deleted: true };
    let big = Entry {
        key: &LONG_KEY,
        value: b"\0\r\n binary \xff",
        flags: u32::MAX,
        exptime: 1_700_000_000,
        cas: u64::MAX,
        version: 1,
        deleted: false,
    };
    vec![
        Message::Hello { nonce: [0xaa; 32] },
        Message::Hello { nonce: [0; 32] },
        Message::Auth { node_id: 7, nonce: [1; 32], mac: [2; 32] },
        Message::AuthOk { node_id: u64::MAX, mac: [3; 32] },
        Message::Sync { role: Role::Starting, term: 0, repl_id: NO_HISTORY, offset: 0 },
        Message::Sync { role: Role::Master, term: 3, repl_id: [9; 16], offset: u64::MAX },
        Message::Sync { role: Role::Slave, term: 1, repl_id: [1; 16], offset: 5 },
        Message::FullSync { repl_id: [4; 16], offset: 12 },
        Message::Resume { repl_id: [5; 16], offset: 13 },
        Message::Item(entry()),
        Message::Item(tombstone),
        Message::Item(big),
        Message::SnapshotEnd { count: 3 },
        Message::Op { offset: 7, op: Op::Set(entry()) },
        Message::Op { offset: 8, op: Op::Set(big) },
        Message::Op { offset: 9, op: Op::Set(tombstone) },
        Message::Op { offset: 1, op: Op::Delete { key: b"ab", version: 3 } },
        Message::Op { offset: 2, op: Op::Delete { key: &LONG_KEY, version: 0 } },
        Message::Op { offset: 4, op: Op::Flush { at: 0, version: 5 } },
        Message::Ack { offset: 100 },
        Message::Ping { millis: 0x1122 },
        Message::Pong { millis: 0x1122 },
        Message::StepDown { offset: 42 },
        Message::Error { message: "no" },
        Message::Error { message: "" },
        Message::Error { message: "ünïcødé" },
    ]
}

fn enc(message: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    message.encode(&mut out).unwrap();
    out
}

/// `frame` with its length prefix made to match its body, whatever was done to the body.
fn refit(mut frame: Vec<u8>) -> Vec<u8> {
    let len = (frame.len() - LEN_PREFIX) as u32;
    frame[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    frame
}

/// A frame of type `code` around `payload`.
fn frame(code: u8, payload: &[u8]) -> Vec<u8> {
    refit([&[0, 0, 0, 0, code][..], payload].concat())
}

fn decode_err(buf: &[u8]) -> CodecError {
    decode(buf, MAX).expect_err("should not decode")
}

#[test]
fn golden_hello_names_nothing() {
    // Version 2, a blank node id and `starting` where version 1 had the node's, the nonce.
    let mut expected = vec![0, 0, 0, 44, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0x03];
    expected.extend([0xaa; 32]);
    assert_eq!(enc(&Message::Hello { nonce: [0xaa; 32] }), expected);
}

#[test]
fn golden_auth_ok() {
    let mut expected = vec![0, 0, 0, 41, 0x03, 1, 2, 3, 4, 5, 6, 7, 8];
    expected.extend([0xbb; 32]);
    assert_eq!(enc(&Message::AuthOk { node_id: 0x0102_0304_0506_0708, mac: [0xbb; 32] }), expected);
}

#[test]
fn a_greeting_of_another_version_is_reported_as_such() {
    // Version 1's greeting: its node id and role where version 2 has a blank.
    let mut v1 = vec![0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0x02];
    v1.extend([0xaa; 32]);
    let err = decode_err(&frame(0x01, &v1));
    assert_eq!(err, CodecError::OtherVersion { proto: 1 });
    assert_eq!(err.to_string(), "the peer speaks replication protocol 1, this node 2");
    // A later version may greet with anything after its number.
    assert_eq!(decode_err(&frame(0x01, &[0, 3])), CodecError::OtherVersion { proto: 3 });
    assert_eq!(decode_err(&frame(0x01, &[0xff, 0xff, 1, 2, 3])), CodecError::OtherVersion { proto: u16::MAX });
    // This version's greeting with something in its blank is malformed.
    let mut hello = enc(&Message::Hello { nonce: [0; 32] });
    hello[LEN_PREFIX + 1 + 2 + 3] = 9;
    assert_eq!(decode_err(&hello), CodecError::BadValue { kind: "hello", field: "blank", value: 9 });
}

#[test]
fn golden_sync_without_history() {
    let message = Message::Sync { role: Role::Starting, term: 5, repl_id: NO_HISTORY, offset: 0x0102 };
    let mut expected = vec![0, 0, 0, 34, 0x04, 0x03];
    expected.extend([0, 0, 0, 0, 0, 0, 0, 5]);
    expected.extend([0; 16]);
    expected.extend([0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(enc(&message), expected);
}

#[test]
fn golden_op_set() {
    #[rustfmt::skip]
    let expected = [
        0, 0, 0, 50,            // length
        0x09,                   // op
        0, 0, 0, 0, 0, 0, 0, 7, // offset
        0x01,                   // set
        0, 0, 0, 1, b'k',       // key
        0, 0, 0, 2, b'v', b'v', // value
        0, 0, 0, 5,             // flags
        0, 0, 0, 0, 0, 0, 0, 0, // exptime
        0, 0, 0, 0, 0, 0, 0, 9, // cas
        0, 0, 0, 0, 0, 0, 0, 0x10, // version
        0,                      // deleted
    ];
    assert_eq!(enc(&Message::Op { offset: 7, op: Op::Set(entry()) }), expected);
}

#[test]
fn golden_op_delete_and_tombstone_item() {
    #[rustfmt::skip]
    let delete = [
        0, 0, 0, 24, 0x09,
        0, 0, 0, 0, 0, 0, 0, 1,
        0x02,
        0, 0, 0, 2, b'a', b'b',
        0, 0, 0, 0, 0, 0, 0, 3,
    ];
    assert_eq!(enc(&Message::Op { offset: 1, op: Op::Delete { key: b"ab", version: 3 } }), delete);
    #[rustfmt::skip]
    let tombstone = [
        0, 0, 0, 39, 0x07,
        0, 0, 0, 1, b'x',
        0, 0, 0, 0,
        0, 0, 0, 0,
        0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00,
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 1,
        1,
    ];
    let entry = Entry { key: b"x", value: b"", flags: 0, exptime: 1_700_000_000, cas: 0, version: 1, deleted: true };
    assert_eq!(enc(&Message::Item(entry)), tombstone);
}

#[test]
fn golden_ping_and_error() {
    assert_eq!(enc(&Message::Ping { millis: 0x1122 }), [0, 0, 0, 9, 0x0b, 0, 0, 0, 0, 0, 0, 0x11, 0x22]);
    assert_eq!(enc(&Message::Error { message: "no" }), [0, 0, 0, 7, 0x0e, 0, 0, 0, 2, b'n', b'o']);
}

#[test]
fn every_variant_round_trips() {
    for message in samples() {
        let bytes = enc(&message);
        assert_eq!(decode(&bytes, MAX), Ok(Some((message, bytes.len()))), "{message:?}");
    }
}

#[test]
fn every_kind_is_sampled_and_named() {
    let mut kinds: Vec<_> = samples().iter().map(Message::kind).collect();
    kinds.dedup();
    assert_eq!(kinds.len(), Kind::ALL.len());
    assert_eq!(
        kinds,
        [
            "hello",
            "auth",
            "auth_ok",
            "sync",
            "full_sync",
            "resume",
            "item",
            "snapshot_end",
            "op",
            "ack",
            "ping",
            "pong",
            "step_down",
            "error"
        ]
    );
}

#[test]
fn encode_appends() {
    let mut out = b"before".to_vec();
    Message::Ack { offset: 1 }.encode(&mut out).unwrap();
    assert_eq!(&out[..6], b"before");
    assert_eq!(decode(&out[6..], MAX), Ok(Some((Message::Ack { offset: 1 }, 13))));
}

#[test]
fn frames_back_to_back() {
    let mut buf = Vec::new();
    for message in samples() {
        message.encode(&mut buf).unwrap();
    }
    let mut rest = &buf[..];
    for message in samples() {
        let (decoded, used) = decode(rest, MAX).unwrap().unwrap();
        assert_eq!(decoded, message);
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
}

#[test]
fn a_partial_frame_needs_more_bytes_at_every_split() {
    for message in samples() {
        let bytes = enc(&message);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], MAX), Ok(None), "{message:?} cut at {cut}");
        }
    }
}

#[test]
fn a_short_body_is_truncated_for_every_field() {
    for message in samples() {
        let bytes = enc(&message);
        // Keep at least the type byte; shorter bodies end inside some field.
        for len in LEN_PREFIX + 1..bytes.len() {
            let short = refit(bytes[..len].to_vec());
            let err = decode_err(&short);
            assert!(matches!(err, CodecError::Truncated { .. }), "{message:?} at {len}: {err}");
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    for message in samples() {
        let mut bytes = enc(&message);
        bytes.push(0);
        let err = decode_err(&refit(bytes));
        assert_eq!(err, CodecError::TrailingBytes { kind: message.kind(), extra: 1 });
    }
    assert_eq!(decode_err(&frame(0x0a, &[0; 10])).to_string(), "ack: 2 bytes after the last field");
}

#[test]
fn an_oversized_frame_is_refused_from_its_prefix_alone() {
    let max = 100;
    let err = decode(&101u32.to_be_bytes(), max).unwrap_err();
    assert_eq!(err, CodecError::FrameTooLarge { len: 101, max: 100 });
    assert_eq!(err.to_string(), "frame of 101 bytes exceeds the limit of 100");
    assert!(decode(&u32::MAX.to_be_bytes(), MAX).is_err());
    // At the limit, the frame is awaited, then decoded.
    assert_eq!(decode(&100u32.to_be_bytes(), max), Ok(None));
    let error = "e".repeat(100 - 5);
    let bytes = enc(&Message::Error { message: &error });
    assert_eq!(bytes.len(), LEN_PREFIX + max);
    assert_eq!(decode(&bytes, max), Ok(Some((Message::Error { message: &error }, bytes.len()))));
    assert!(decode(&bytes, max - 1).is_err());
}

#[test]
fn the_default_limit_fits_the_largest_item() {
    assert_eq!(max_frame(1 << 20), DEFAULT_MAX_FRAME);
    let value = vec![0; 1 << 20];
    let entry = Entry { key: &LONG_KEY, value: &value, flags: 0, exptime: 0, cas: 0, version: 0, deleted: false };
    for message in [Message::Op { offset: 0, op: Op::Set(entry) }, Message::Item(entry)] {
        let bytes = enc(&message);
        assert!(decode(&bytes, DEFAULT_MAX_FRAME).unwrap().is_some());
    }
    assert_eq!(max_frame(usize::MAX), usize::MAX);
}

#[test]
fn an_empty_frame_is_refused() {
    assert_eq!(decode_err(&[0, 0, 0, 0]), CodecError::EmptyFrame);
    assert_eq!(decode_err(&[0, 0, 0, 0, 1, 2]), CodecError::EmptyFrame);
}

#[test]
fn unknown_types_are_refused() {
    for code in [0x00, 0x0f, 0x80, 0xff] {
        assert_eq!(decode_err(&frame(code, &[])), CodecError::UnknownType(code));
    }
    assert_eq!(CodecError::UnknownType(0x0f).to_string(), "unknown message type 0x0f");
}

#[test]
fn bad_enum_values_are_refused() {
    let mut sync = enc(&Message::Sync { role: Role::Slave, term: 0, repl_id: [0; 16], offset: 0 });
    sync[LEN_PREFIX + 1] = 0;
    assert_eq!(decode_err(&sync).to_string(), "sync: invalid role 0");

    let mut op = enc(&Message::Op { offset: 1, op: Op::Flush { at: 0, version: 0 } });
    op[LEN_PREFIX + 1 + 8] = 5;
    assert_eq!(decode_err(&op), CodecError::BadValue { kind: "op", field: "op type", value: 5 });

    let mut item = enc(&Message::Item(entry()));
    *item.last_mut().unwrap() = 2;
    assert_eq!(decode_err(&item), CodecError::BadValue { kind: "item", field: "deleted", value: 2 });
}

#[test]
fn a_long_key_is_refused() {
    let key = [b'k'; MAX_KEY_LEN + 1];
    // op: offset, delete, key, version.
    let payload = [&[0; 8][..], &[0x02], &((MAX_KEY_LEN + 1) as u32).to_be_bytes(), &key, &[0; 8]].concat();
    let err = decode_err(&frame(0x09, &payload));
    assert_eq!(err, CodecError::TooLong { kind: "op", field: "key", len: 251, max: 250 });
    assert_eq!(err.to_string(), "op: key of 251 bytes exceeds the limit of 250");

    // A huge key length is reported as such, not as missing bytes.
    let err = decode_err(&frame(0x07, &[0xff, 0xff, 0xff, 0xff, b'k']));
    assert_eq!(err, CodecError::TooLong { kind: "item", field: "key", len: u32::MAX.into(), max: 250 });

    let mut out = vec![1, 2, 3];
    let op = Message::Op { offset: 0, op: Op::Delete { key: &key, version: 0 } };
    assert_eq!(op.encode(&mut out), Err(CodecError::TooLong { kind: "op", field: "key", len: 251, max: 250 }));
    assert_eq!(out, [1, 2, 3], "a failed encode leaves the buffer as it was");
    let item = Message::Item(Entry { key: &key, ..entry() });
    assert!(item.encode(&mut out).is_err());
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn a_value_longer_than_its_frame_is_truncated_without_allocating() {
    let payload = [&[0, 0, 0, 1, b'k'][..], &[0xff, 0xff, 0xff, 0xf0], b"abc"].concat();
    let err = decode_err(&frame(0x07, &payload));
    assert_eq!(err, CodecError::Truncated { kind: "item", field: "value", needed: 0xffff_fff0, left: 3 });
    assert_eq!(err.to_string(), "item: value needs 4294967280 bytes, 3 left in the frame");
}

#[test]
fn a_tombstone_carries_no_value() {
    let mut bytes = enc(&Message::Item(entry()));
    *bytes.last_mut().unwrap() = 1;
    assert_eq!(decode_err(&bytes), CodecError::TombstoneWithValue { kind: "item", len: 2 });

    let mut out = Vec::new();
    let op = Message::Op { offset: 0, op: Op::Set(Entry { deleted: true, ..entry() }) };
    assert_eq!(op.encode(&mut out), Err(CodecError::TombstoneWithValue { kind: "op", len: 2 }));
    assert!(out.is_empty());
}

#[test]
fn error_text_is_checked() {
    let err = decode_err(&frame(0x0e, &[0, 0, 0, 2, 0xc3, 0x28]));
    assert_eq!(err, CodecError::NotUtf8 { kind: "error", field: "message" });
    assert_eq!(err.to_string(), "error: message is not UTF-8");

    let long = "x".repeat(MAX_ERROR_LEN + 1);
    let payload = [&((MAX_ERROR_LEN + 1) as u32).to_be_bytes()[..], long.as_bytes()].concat();
    assert!(matches!(decode_err(&frame(0x0e, &payload)), CodecError::TooLong { field: "message", .. }));
    assert!(Message::Error { message: &long }.encode(&mut Vec::new()).is_err());
    let exact = &long[..MAX_ERROR_LEN];
    assert_eq!(
        decode(&enc(&Message::Error { message: exact }), MAX).unwrap().unwrap().0,
        Message::Error { message: exact }
    );
}

#[test]
fn message_error_cuts_long_text_at_a_character_boundary() {
    assert_eq!(Message::error("short"), Message::Error { message: "short" });
    // 1023 ASCII bytes, then a two-byte character that would end past the limit.
    let text = format!("{}é and more", "x".repeat(MAX_ERROR_LEN - 1));
    let Message::Error { message } = Message::error(&text) else { unreachable!() };
    assert_eq!(message.len(), MAX_ERROR_LEN - 1);
    enc(&Message::error(&text));
    let text = "y".repeat(5000);
    let Message::Error { message } = Message::error(&text) else { unreachable!() };
    assert_eq!(message.len(), MAX_ERROR_LEN);
}

/// A small seeded generator: reproducible failures without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Decodes every frame of `buf`: no panic, an honest `None`, and whatever decodes encodes
/// back to exactly its bytes. Returns how many frames decoded.
fn check(buf: &[u8], max_frame: usize) -> usize {
    let mut rest = buf;
    let mut frames = 0;
    loop {
        match decode(rest, max_frame) {
            Ok(Some((message, used))) => {
                assert!(used > LEN_PREFIX && used <= rest.len());
                assert_eq!(enc(&message), rest[..used], "{message:?}");
                rest = &rest[used..];
                frames += 1;
            }
            Ok(None) => {
                let announced = rest.get(..LEN_PREFIX).map(|p| u32::from_be_bytes(p.try_into().unwrap()));
                assert!(announced.is_none_or(|len| rest.len() < LEN_PREFIX + len as usize));
                return frames;
            }
            Err(err) => {
                assert!(!err.to_string().is_empty());
                return frames;
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = SplitMix64(0x5eed);
    let valid: Vec<Vec<u8>> = samples().iter().map(enc).collect();
    let mut decoded = 0;
    for round in 0..30_000 {
        let buf = match round % 3 {
            // Pure noise.
            0 => {
                let len = rng.below(64);
                rng.bytes(len)
            }
            // Noise behind an honest prefix and a real type, to get past the frame checks.
            1 => {
                let len = rng.below(80);
                let mut body = rng.bytes(len);
                body.insert(0, 1 + rng.below(14) as u8);
                refit([&[0; LEN_PREFIX][..], &body].concat())
            }
            // A valid frame with a few bytes changed, cut, or added; the prefix usually refitted.
            _ => {
                let mut buf = valid[rng.below(valid.len())].clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(buf.len());
                    match rng.below(3) {
                        0 => buf[at] = rng.next() as u8,
                        1 => buf.truncate(at.max(LEN_PREFIX)),
                        _ => buf.insert(at.max(LEN_PREFIX), rng.next() as u8),
                    }
                }
                if rng.below(4) != 0 { refit(buf) } else { buf }
            }
        };
        let max = if rng.below(2) == 0 { MAX } else { rng.below(300) };
        decoded += check(&buf, max);
    }
    // The generator reaches the decoders, not just the frame checks.
    assert!(decoded > 1000, "only {decoded} frames decoded");
}
