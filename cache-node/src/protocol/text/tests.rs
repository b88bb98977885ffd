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

#[test]
fn cachedump_arguments_are_checked_like_memcached() {
    assert_eq!(req(b"stats cachedump 1 0\r\n"), Request::CacheDump { class: 1, limit: 0 });
    // Truncated to 32 bits as safe_strtoul does; what follows the limit is ignored.
    assert_eq!(req(b"stats cachedump 4294967297 4294967296 noreply\r\n"), Request::CacheDump { class: 1, limit: 0 });
    assert_eq!(req(b"stats cachedump 63 5\r\n"), Request::CacheDump { class: 63, limit: 5 });
    assert_eq!(req(b"stats cachedump 0 0\r\n"), Request::CacheDump { class: 0, limit: 0 });
    assert_eq!(error(b"stats cachedump 64 0\r\n"), "CLIENT_ERROR Illegal slab id");
    assert_eq!(error(b"stats cachedump 1\r\n"), "CLIENT_ERROR bad command line");
    assert_eq!(error(b"stats cachedump\r\n"), "CLIENT_ERROR bad command line");
    for bad in [&b"stats cachedump x 1\r\n"[..], b"stats cachedump 1 -1\r\n", b"stats cachedump 1abc 0\r\n"] {
        assert_eq!(error(bad), "CLIENT_ERROR bad command line format");
    }
    assert!(matches!(req(b"stats items\r\n"), Request::Stats { .. }));
}

#[test]
fn lru_crawler_commands_parse_like_memcached() {
    fn crawler(buf: &[u8]) -> Crawler {
        match req(buf) {
            Request::LruCrawler(c) => c,
            other => panic!("expected lru_crawler, got {other:?}"),
        }
    }
    assert_eq!(crawler(b"lru_crawler metadump all\r\n"), Crawler::Metadump(Classes::All));
    assert_eq!(crawler(b"lru_crawler metadump hash\r\n"), Crawler::Metadump(Classes::Hash));
    assert_eq!(crawler(b"lru_crawler crawl 1,,3\r\n"), Crawler::Crawl(Classes::List(ClassList(0b1010))));
    assert_eq!(crawler(b"lru_crawler metadump 4294967297\r\n"), Crawler::Metadump(Classes::List(ClassList(0b10))));
    assert_eq!(crawler(b"lru_crawler metadump ,\r\n"), Crawler::Metadump(Classes::Empty));
    for bad in [&b"0"[..], b"64", b"x", b"-1", b"1,x", b"ALL"] {
        let line = [&b"lru_crawler metadump "[..], bad, b"\r\n"].concat();
        assert_eq!(crawler(&line), Crawler::Metadump(Classes::Invalid), "{bad:?}");
    }
    assert_eq!(crawler(b"lru_crawler enable\r\n"), Crawler::Enable);
    assert_eq!(crawler(b"lru_crawler disable\r\n"), Crawler::Disable);
    assert_eq!(crawler(b"lru_crawler sleep 1000000\r\n"), Crawler::Tune);
    assert_eq!(crawler(b"lru_crawler tocrawl 4294967296\r\n"), Crawler::Tune);
    assert_eq!(error(b"lru_crawler sleep 1000001\r\n"), "CLIENT_ERROR sleep must be one second or less");
    assert_eq!(error(b"lru_crawler sleep -1\r\n"), "CLIENT_ERROR bad command line format");
    assert_eq!(error(b"lru_crawler tocrawl x\r\n"), "CLIENT_ERROR bad command line format");
    for bad in [
        &b"lru_crawler\r\n"[..],
        b"lru_crawler metadump\r\n",
        b"lru_crawler metadump all noreply\r\n",
        b"lru_crawler sleep 5 noreply\r\n",
        b"lru_crawler enable x\r\n",
        b"lru_crawler mgdump all\r\n",
        b"lru_crawler foo\r\n",
    ] {
        assert_eq!(error(bad), "ERROR", "{bad:?}");
    }
    let classes = ClassList(0b1010);
    assert!(classes.contains(1) && classes.contains(3) && !classes.contains(2) && !classes.contains(64));
    assert!(ClassList::ALL.contains(63) && !ClassList::ALL.contains(0));
}
