use super::*;

const MAX: usize = 1 << 20;

/// A request frame whose lengths follow its parts.
fn frame(op: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let body_len = (extras.len() + key.len() + value.len()) as u32;
    framed(op, extras, key, value, body_len)
}

/// A request frame with a declared body length that may disagree with its parts.
fn framed(op: u8, extras: &[u8], key: &[u8], value: &[u8], body_len: u32) -> Vec<u8> {
    let header = Header {
        opcode: op,
        key_len: key.len() as u16,
        extras_len: extras.len() as u8,
        body_len,
        opaque: 0xdead_beef,
        cas: 0,
    };
    let mut out = Vec::new();
    header.encode_request(&mut out);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

fn with_cas(mut frame: Vec<u8>, cas: u64) -> Vec<u8> {
    frame[16..24].copy_from_slice(&cas.to_be_bytes());
    frame
}

fn set_extras(flags: u32, exptime: u32) -> Vec<u8> {
    [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
}

fn req(buf: &[u8]) -> Request<'_> {
    match parse(buf, MAX) {
        Parse::Request { req, len } => {
            assert_eq!(len, buf.len(), "request should span the whole input");
            req
        }
        other => panic!("expected a request, got {other:?}"),
    }
}

/// The status, consumed length, swallow and close of an error.
fn error(buf: &[u8]) -> (Status, usize, usize, bool) {
    match parse(buf, MAX) {
        Parse::Error { status, len, swallow, close, .. } => (status, len, swallow, close),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn headers_have_memcacheds_layout() {
    let bytes: [u8; HEADER_LEN] = [
        0x80, 0x01, 0x00, 0x03, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0,
        0, 0x01, 0x02,
    ];
    let h = Header::decode(&bytes).unwrap();
    assert_eq!(h, Header { opcode: 0x01, key_len: 3, extras_len: 8, body_len: 16, opaque: 0xdead_beef, cas: 0x0102 });
    let mut again = Vec::new();
    h.encode_request(&mut again);
    assert_eq!(again, bytes);

    let mut out = Vec::new();
    ResponseHeader {
        opcode: 0x0c,
        status: Status::UnknownCommand,
        opaque: 7,
        cas: 9,
        extras_len: 4,
        key_len: 2,
        body_len: 0x0102_0304,
    }
    .encode(&mut out);
    assert_eq!(
        out,
        [0x81, 0x0c, 0, 2, 4, 0, 0x00, 0x81, 1, 2, 3, 4, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9],
        "magic, opcode, key length, extras length, data type, status, body, opaque, cas"
    );
}

#[test]
fn waits_for_header_extras_and_key() {
    let get = frame(GET, b"", b"key", b"");
    for cut in [0, 1, 23, 24, get.len() - 1] {
        assert_eq!(parse(&get[..cut], MAX), Parse::Incomplete, "cut at {cut}");
    }
    let set = frame(SET, &set_extras(0, 0), b"k", b"value");
    assert_eq!(parse(&set[..set.len() - 1], MAX), Parse::Incomplete);
    assert!(matches!(parse(&set, MAX), Parse::Request { .. }));
}

#[test]
fn bad_magic_hangs_up_once_a_header_is_in() {
    let mut f = frame(NOOP, b"", b"", b"");
    f[0] = 0x81;
    assert_eq!(parse(&f[..10], MAX), Parse::Incomplete);
    assert_eq!(parse(&f, MAX), Parse::Close);
}

#[test]
fn lengths_that_cannot_add_up_close_the_connection() {
    let f = framed(GET, b"", b"abc", b"", 2);
    assert_eq!(error(&f), (Status::UnknownCommand, 27, 0, true));
    let f = framed(INCREMENT, &[0; 20], b"k", b"", 20);
    assert_eq!(error(&f), (Status::UnknownCommand, 45, 0, true));
}

#[test]
fn keys_over_250_bytes_are_refused_whatever_the_opcode() {
    let long = [b'k'; 251];
    assert_eq!(error(&frame(GET, b"", &long, b"")), (Status::InvalidArguments, 24 + 251, 0, true));
    assert_eq!(error(&frame(0x55, b"", &long, b"")).0, Status::InvalidArguments);
    let get = frame(GET, b"", &long[..250], b"");
    let Command::Get { key, .. } = req(&get).command else { panic!() };
    assert_eq!(key.len(), 250);
}

#[test]
fn lengths_an_opcode_does_not_accept_are_invalid() {
    let invalid = [
        frame(NOOP, b"", b"k", b""),
        frame(VERSION, b"", b"", b"x"),
        frame(QUIT, b"x", b"", b""),
        frame(FLUSH, b"ab", b"", b""),
        frame(FLUSH, b"", b"k", b""),
        framed(FLUSH, b"", b"", b"", 4),
        frame(SET, &[0; 4], b"k", b"v"),
        frame(SET, &set_extras(0, 0), b"", b"v"),
        frame(APPEND, &[0; 4], b"k", b"v"),
        frame(APPEND, b"", b"", b"v"),
        frame(GET, &[0; 4], b"k", b""),
        frame(GET, b"", b"", b""),
        frame(GET, b"", b"k", b"v"),
        frame(DELETE, b"", b"k", b"v"),
        frame(DELETE, &[0; 4], b"k", b""),
        frame(INCREMENT, &[0; 8], b"k", b""),
        frame(INCREMENT, &[0; 20], b"", b""),
        frame(DECREMENTQ, &[0; 20], b"k", b"v"),
        frame(STAT, &[0; 4], b"", b""),
        frame(TOUCH, b"", b"k", b""),
        frame(GAT, &[0; 4], b"", b""),
        frame(SASL_LIST_MECHS, b"", b"k", b""),
        frame(SASL_AUTH, b"", b"", b"x"),
    ];
    for f in invalid {
        let (status, len, swallow, close) = error(&f);
        assert_eq!((status, swallow, close), (Status::InvalidArguments, 0, true), "opcode {:#x}", f[1]);
        assert_eq!(len, 24 + f[4] as usize + u16::from_be_bytes([f[2], f[3]]) as usize);
    }
}

/// Whether the request is quiet, and its command, in a form that outlives the frame.
fn command(frame: &[u8]) -> (bool, String) {
    let r = req(frame);
    (r.quiet, format!("{:?}", r.command))
}

fn expect(quiet: bool, command: Command<'_>) -> (bool, String) {
    (quiet, format!("{command:?}"))
}

#[test]
fn commands_carry_their_fields() {
    assert_eq!(
        command(&frame(SETQ, &set_extras(0xabcd, 100), b"k", b"v")),
        expect(true, Command::Store { mode: Mode::Set, key: b"k", flags: 0xabcd, exptime: 100, value: b"v" })
    );
    // memcached turns set/add/replace with a CAS into a compare-and-swap.
    let add = with_cas(frame(ADD, &set_extras(0, 0), b"k", b""), 5);
    assert_eq!(req(&add).header.cas, 5);
    assert_eq!(
        command(&add),
        expect(false, Command::Store { mode: Mode::Cas, key: b"k", flags: 0, exptime: 0, value: b"" })
    );
    assert_eq!(
        command(&frame(PREPENDQ, b"", b"k", b"vv")),
        expect(true, Command::Store { mode: Mode::Prepend, key: b"k", flags: 0, exptime: 0, value: b"vv" })
    );
    assert_eq!(
        command(&frame(GETKQ, b"", b"k", b"")),
        expect(true, Command::Get { key: b"k", exptime: None, with_key: true, with_value: true })
    );
    assert_eq!(
        command(&frame(TOUCH, &7u32.to_be_bytes(), b"k", b"")),
        expect(false, Command::Get { key: b"k", exptime: Some(7), with_key: false, with_value: false })
    );
    assert_eq!(
        command(&frame(GATKQ, &7u32.to_be_bytes(), b"k", b"")),
        expect(true, Command::Get { key: b"k", exptime: Some(7), with_key: true, with_value: true })
    );
    let extras = [5u64.to_be_bytes().as_slice(), &9u64.to_be_bytes(), &NO_VIVIFY.to_be_bytes()].concat();
    assert_eq!(
        command(&frame(DECREMENTQ, &extras, b"n", b"")),
        expect(true, Command::Arith { incr: false, key: b"n", delta: 5, initial: 9, exptime: NO_VIVIFY })
    );
    assert_eq!(command(&frame(FLUSH, b"", b"", b"")), expect(false, Command::Flush { delay: 0 }));
    assert_eq!(command(&frame(FLUSHQ, &10u32.to_be_bytes(), b"", b"")), expect(true, Command::Flush { delay: 10 }));
    assert_eq!(command(&frame(DELETEQ, b"", b"k", b"")), expect(true, Command::Delete { key: b"k" }));
    assert_eq!(command(&frame(STAT, b"", b"items", b"")), expect(false, Command::Stat { group: b"items" }));
    assert_eq!(command(&frame(QUITQ, b"", b"", b"")), expect(true, Command::Quit));
    assert_eq!(command(&frame(VERSION, b"", b"", b"")), expect(false, Command::Version));
}

#[test]
fn values_over_the_item_limit_are_swallowed_not_buffered() {
    let value = vec![b'x'; MAX];
    let set = frame(SET, &set_extras(0, 0), b"k", &value);
    // Refused from the header alone: nothing of the value needs to be buffered.
    match parse(&set[..33], MAX) {
        Parse::TooLarge { key, drop_old, len, swallow, .. } => {
            assert_eq!((key, drop_old, len, swallow), (&b"k"[..], true, 33, MAX))
        }
        other => panic!("{other:?}"),
    }
    let append = frame(APPENDQ, b"", b"k", &value);
    match parse(&append, MAX) {
        Parse::TooLarge { drop_old, len, swallow, .. } => assert_eq!((drop_old, len, swallow), (false, 25, MAX)),
        other => panic!("{other:?}"),
    }
    // memcached reads lengths past i32::MAX as negative and discards nothing.
    for body_len in [0x8000_0009, u32::MAX] {
        let f = framed(SET, &set_extras(0, 0), b"k", b"", body_len);
        assert!(matches!(parse(&f, MAX), Parse::TooLarge { swallow: 0, .. }), "{body_len:#x}");
    }
    let f = framed(SET, &set_extras(0, 0), b"k", b"", 0x8000_0008);
    assert!(matches!(parse(&f, MAX), Parse::TooLarge { swallow: 0x7fff_ffff, .. }));
    // Just under the limit (memcached's item header, key, CRLF and CAS count too).
    let fits = vec![b'x'; MAX - 48 - 2 - 2 - 8];
    assert!(matches!(parse(&frame(SET, &set_extras(0, 0), b"k", &fits), MAX), Parse::Request { .. }));
    let over = vec![b'x'; fits.len() + 1];
    assert!(matches!(parse(&frame(SET, &set_extras(0, 0), b"k", &over), MAX), Parse::TooLarge { .. }));
}

#[test]
fn unknown_opcodes_discard_a_body_length_after_extras_and_key() {
    // Verbosity (0x1b) is not a binary command in memcached 1.6.
    let f = frame(0x1b, &1u32.to_be_bytes(), b"", b"");
    assert_eq!(error(&f), (Status::UnknownCommand, 28, 4, false));
    let f = frame(0x55, b"ee", b"kk", b"vv");
    assert_eq!(error(&f), (Status::UnknownCommand, 28, 6, false));
    // SASL is off: its frames are unknown, with their data discarded exactly.
    assert_eq!(error(&frame(SASL_LIST_MECHS, b"", b"", b"")), (Status::UnknownCommand, 24, 0, false));
    assert_eq!(error(&frame(SASL_AUTH, b"", b"PLAIN", b"secret")), (Status::UnknownCommand, 29, 6, false));
    // Past i32::MAX memcached discards nothing.
    assert_eq!(error(&framed(0x55, b"", b"", b"", 0x8000_0000)), (Status::UnknownCommand, 24, 0, false));
    assert_eq!(error(&framed(0x55, b"", b"", b"", 0x7fff_ffff)), (Status::UnknownCommand, 24, 0x7fff_ffff, false));
    assert_eq!(error(&framed(SASL_AUTH, b"", b"PLAIN", b"", 0x8000_0005)).2, 0);
}

#[test]
fn surplus_body_of_touch_and_stat_is_the_next_frame() {
    let next = frame(NOOP, b"", b"", b"");
    let gat = frame(GAT, &0u32.to_be_bytes(), b"k", &next);
    match parse(&gat, MAX) {
        Parse::Request { len, .. } => {
            assert_eq!(len, 29);
            assert_eq!(req(&gat[len..]).command, Command::Noop);
        }
        other => panic!("{other:?}"),
    }
    let stat = frame(STAT, b"", b"", &next);
    assert!(matches!(parse(&stat, MAX), Parse::Request { len: 24, .. }));
}

#[test]
fn arbitrary_input_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut buf = Vec::new();
    for _ in 0..20_000 {
        buf.clear();
        let len = (next() % 80) as usize;
        buf.extend((0..len).map(|_| next() as u8));
        if let Some(b) = buf.first_mut() {
            *b = REQUEST_MAGIC;
        }
        // Small lengths, so that the frames are often complete.
        if buf.len() >= HEADER_LEN {
            buf[2] = 0;
            buf[3] %= 8;
            buf[4] %= 24;
            buf[8..11].fill(0);
            buf[11] %= 48;
            buf[1] %= 0x26;
        }
        let _ = parse(&buf, 64);
    }
}
