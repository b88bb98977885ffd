use super::*;

const MAX: usize = 1 << 20;

fn req(buf: &[u8]) -> Request<'_> {
    match parse(buf, MAX) {
        Parse::Request { req, len } => {
            assert_eq!(len, buf.len(), "request should span the whole input");
            req
        }
        other => panic!("expected a request, got {other:?}"),
    }
}

fn error(buf: &[u8]) -> &'static str {
    match req(buf) {
        Request::Error { reply, .. } => reply,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn storage_commands_carry_their_data() {
    let Request::Store(cmd) = req(b"set k 5 10 3 noreply\r\nabc\r\n") else { panic!() };
    assert_eq!((cmd.key, cmd.flags, cmd.exptime, cmd.value, cmd.noreply), (&b"k"[..], 5, 10, &b"abc"[..], true));
    let Request::Store(cmd) = req(b"cas k 0 0 1 77\r\nz\r\n") else { panic!() };
    assert_eq!((cmd.mode, cmd.cas), (Mode::Cas, 77));
    // Binary-safe: CRLF inside the value is data.
    let Request::Store(cmd) = req(b"set k 0 0 4\r\n\r\n\r\n\r\n") else { panic!() };
    assert_eq!(cmd.value, b"\r\n\r\n");
}

#[test]
fn partial_input_waits() {
    assert_eq!(parse(b"get k", MAX), Parse::Incomplete);
    assert_eq!(parse(b"set k 0 0 5\r\nab", MAX), Parse::Incomplete);
    assert_eq!(parse(b"set k 0 0 5\r\nabcde\r", MAX), Parse::Incomplete);
}

#[test]
fn malformed_lines_get_memcacheds_replies() {
    assert_eq!(error(b"\r\n"), "ERROR");
    assert_eq!(error(b"g\r\n"), "ERROR");
    assert_eq!(error(b"get\r\n"), "ERROR");
    assert_eq!(error(b"GET k\r\n"), "ERROR");
    assert_eq!(error(b"set k 0 0\r\n"), "ERROR");
    assert_eq!(error(b"set k 0 0 1 noreply x\r\n"), "ERROR");
    assert_eq!(error(b"set k -1 0 1\r\n"), "CLIENT_ERROR bad command line format");
    assert_eq!(error(b"set k 0 0 -1\r\n"), "CLIENT_ERROR bad command line format");
    assert_eq!(error(b"set k 0x1 0 1\r\n"), "CLIENT_ERROR bad command line format");
    // The data block is exactly <bytes>+2 long; what follows it is the next command.
    assert_eq!(
        parse(b"set k 0 0 1\r\nab\r\n", MAX),
        Parse::Request { req: Request::Error { reply: "CLIENT_ERROR bad data chunk", noreply: false }, len: 16 }
    );
    assert_eq!(error(b"incr k abc\r\n"), "CLIENT_ERROR invalid numeric delta argument");
    assert_eq!(error(b"touch k x\r\n"), "CLIENT_ERROR invalid exptime argument");
    assert_eq!(error(b"delete k 1\r\n"), "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]");
    assert_eq!(error(b"verbosity\r\n"), "ERROR");
    let long_key = [b"set ".as_slice(), &[b'k'; 251], b" 0 0 1\r\n"].concat();
    assert_eq!(error(&long_key), "CLIENT_ERROR bad command line format");
}

#[test]
fn noreply_silences_errors_too() {
    assert_eq!(
        req(b"incr k abc noreply\r\n"),
        Request::Error { reply: "CLIENT_ERROR invalid numeric delta argument", noreply: true }
    );
}

#[test]
fn numbers_follow_c_leniency() {
    // memcached truncates a 64-bit length to 32 bits: 2^32 + 1 reads as 1.
    let Request::Store(cmd) = req(b"set k 4294967296 0 4294967297\r\na\r\n") else { panic!() };
    assert_eq!((cmd.flags, cmd.value), (0, &b"a"[..]));
}

#[test]
fn oversized_values_are_swallowed_not_buffered() {
    match parse(b"set k 0 0 2000000\r\n", MAX) {
        Parse::Swallow { req, swallow, .. } => {
            assert_eq!(req, Request::TooLarge { key: b"k", mode: Mode::Set, noreply: false });
            assert_eq!(swallow, 2_000_002);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn endless_lines_close_except_multigets() {
    assert_eq!(parse(&[b'x'; MAX_LINE + 1], MAX), Parse::Close);
    let mut get = b"get ".to_vec();
    get.extend(std::iter::repeat_n(b"key ", 1000).flatten());
    assert_eq!(parse(&get, MAX), Parse::Incomplete);
    get.extend(std::iter::repeat_n(b'k', MAX_GET_LINE));
    assert_eq!(parse(&get, MAX), Parse::Close);
}

#[test]
fn multiget_keys_and_gat() {
    let Request::Get { keys, cas, touch } = req(b"gats 10  a b  c\r\n") else { panic!() };
    assert!(cas);
    assert_eq!(touch, Some(10));
    assert_eq!(keys.collect::<Vec<_>>(), [&b"a"[..], b"b", b"c"]);
    let Request::Get { keys, .. } = req(b"get k\n") else { panic!() };
    assert_eq!(keys.collect::<Vec<_>>(), [&b"k"[..]]);
}
