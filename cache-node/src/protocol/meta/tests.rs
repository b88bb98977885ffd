use super::*;
use crate::protocol::text::parse as parse_text;

const MAX: usize = 1 << 20;

fn meta(buf: &[u8]) -> Meta<'_> {
    match parse_text(buf, MAX) {
        Parse::Request { req: Request::Meta(m), len } => {
            assert_eq!(len, buf.len(), "request should span the whole input");
            m
        }
        other => panic!("expected a meta request, got {other:?}"),
    }
}

fn error(buf: &[u8]) -> &'static str {
    match parse_text(buf, MAX) {
        Parse::Request { req: Request::Error { reply, noreply: false }, .. } => reply,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// An ms refused after its length was read: the reply and how much data is discarded.
fn refused(buf: &[u8]) -> (&'static str, usize) {
    match parse_text(buf, MAX) {
        Parse::Swallow { req: Request::Error { reply, noreply: false }, swallow, .. } => (reply, swallow),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn flags(buf: &[u8]) -> Flags {
    meta(buf).flags
}

#[test]
fn commands_are_two_letters_after_m() {
    assert_eq!(meta(b"mn\r\n").cmd, Command::Noop);
    assert_eq!(meta(b"mn anything at all\r\n").cmd, Command::Noop);
    assert_eq!(meta(b"mg k\r\n").cmd, Command::Get);
    assert_eq!(meta(b"md k\r\n").cmd, Command::Delete);
    assert_eq!(meta(b"ma k\r\n").cmd, Command::Arith { incr: true });
    assert_eq!(meta(b"me k\r\n").cmd, Command::Debug);
    assert_eq!(meta(b"ms k 0\r\n\r\n").cmd, Command::Set(Mode::Set));
    for line in [&b"mz k\r\n"[..], b"mg\r\n", b"ms\r\n", b"md\r\n", b"ma\r\n", b"mgx k\r\n", b"MG k\r\n"] {
        assert_eq!(error(line), "ERROR", "{line:?}");
    }
    assert_eq!(error(b"me\r\n"), BAD_FORMAT);
}

#[test]
fn flags_keep_their_values_and_positions() {
    let m = meta(b"mg key s v t T30 N-1 R10 Oabc q u k\r\n");
    assert_eq!(m.key, b"key");
    assert_eq!(
        m.tokens.collect::<Vec<_>>(),
        [&b"s"[..], b"v", b"t", b"T30", b"N-1", b"R10", b"Oabc", b"q", b"u", b"k"]
    );
    let f = m.flags;
    assert!(f.value && f.quiet && f.no_bump && f.late_bump && !f.base64);
    assert_eq!(f.ttl, Some(Exptime { value: 30, at: 3 }));
    assert_eq!(f.vivify, Some(Exptime { value: -1, at: 4 }));
    assert_eq!(f.recache, Some(Exptime { value: 10, at: 5 }));
    assert_eq!(f.long_opaque, None);
    // The b flag takes no token: anything after the letter is ignored, as in memcached.
    assert!(flags(b"mg a2V5 b0\r\n").base64);
    assert!(!flags(b"mg key s v c f k O1 q u\r\n").late_bump);
}

#[test]
fn unknown_and_repeated_flags_fail_at_once() {
    assert_eq!(error(b"mg k x\r\n"), "CLIENT_ERROR invalid flag");
    assert_eq!(error(b"mg k E5\r\n"), "CLIENT_ERROR invalid flag");
    assert_eq!(error(b"mg k v v\r\n"), "CLIENT_ERROR duplicate flag");
    assert_eq!(error(b"mg k O1 O2\r\n"), "CLIENT_ERROR duplicate flag");
    assert_eq!(error(b"mg k \x80\r\n"), "CLIENT_ERROR duplicate flag");
    // A bad token is reported only if nothing later stops the scan.
    assert_eq!(error(b"mg k Tx zz\r\n"), "CLIENT_ERROR invalid flag");
    assert_eq!(error(b"mg k zz Tx\r\n"), "CLIENT_ERROR invalid flag");
}

#[test]
fn bad_tokens_fail_with_the_last_reason() {
    assert_eq!(error(b"mg k T\r\n"), BAD_TOKEN);
    assert_eq!(error(b"mg k Nabc\r\n"), BAD_TOKEN);
    assert_eq!(error(b"mg k Cx\r\n"), BAD_TOKEN);
    assert_eq!(error(b"mg k M\r\n"), "CLIENT_ERROR incorrect length for M token");
    assert_eq!(error(b"mg k MSS\r\n"), "CLIENT_ERROR incorrect length for M token");
    assert_eq!(error(b"mg k Jx\r\n"), "CLIENT_ERROR invalid numeric initial value");
    assert_eq!(error(b"mg k D-1\r\n"), "CLIENT_ERROR invalid numeric delta value");
    assert_eq!(error(b"mg k Tx M\r\n"), "CLIENT_ERROR incorrect length for M token");
    assert_eq!(error(b"mg k M Tx\r\n"), BAD_TOKEN);
    // F names no reason of its own.
    assert_eq!(error(b"mg k Fx\r\n"), BAD_FORMAT);
    assert_eq!(error(b"mg k Tx Fx\r\n"), BAD_TOKEN);
    assert_eq!(error(b"mg Zm9vYg b\r\n"), "CLIENT_ERROR error decoding key");
    // md and ma hide the reason.
    assert_eq!(error(b"md k Tx\r\n"), "CLIENT_ERROR invalid or duplicate flag");
    assert_eq!(error(b"ma k zz\r\n"), "CLIENT_ERROR invalid or duplicate flag");
}

#[test]
fn numbers_follow_memcached() {
    let f = flags(b"ma k C18446744073709551615 J7 D0 MD\r\n");
    assert_eq!((f.cas, f.initial, f.delta), (Some(u64::MAX), 7, 0));
    assert_eq!(flags(b"ma k\r\n").delta, 1);
    assert_eq!(meta(b"ma k M-\r\n").cmd, Command::Arith { incr: false });
    assert_eq!(meta(b"ma k M+\r\n").cmd, Command::Arith { incr: true });
    assert_eq!(error(b"ma k Mi\r\n"), "CLIENT_ERROR invalid mode for ma M token");
    // Flags keep the low 32 bits, as memcached's strtoul into a 32-bit field does.
    assert_eq!(flags(b"mg k F4294967297\r\n").client_flags, 1);
    assert_eq!(flags(b"mg k T4294967297\r\n").ttl.map(|t| t.value), Some(1));
}

#[test]
fn line_length_limits() {
    let key = [b'k'; 251];
    assert_eq!(error(&[b"mg ", &key[..], b" v\r\n"].concat()), BAD_FORMAT);
    assert_eq!(meta(&[b"mg ", &key[..250], b" v\r\n"].concat()).key.len(), 250);
    let seventeen = (0..17).map(|i| format!(" P{i}")).collect::<String>();
    let eighteen = format!("{seventeen} P17");
    assert_eq!(error(format!("mg k{seventeen}\r\n").as_bytes()), "CLIENT_ERROR duplicate flag");
    assert_eq!(error(format!("mg k{eighteen}\r\n").as_bytes()), "CLIENT_ERROR options flags are too long");
    assert_eq!(error(format!("md k{eighteen}\r\n").as_bytes()), "CLIENT_ERROR options flags too long");
}

#[test]
fn long_opaques_are_found_where_they_stand() {
    let long = [b"O".as_slice(), &[b'o'; 32]].concat();
    let line = [b"mg k T10 ", &long[..], b" t\r\n"].concat();
    assert_eq!(flags(&line).long_opaque, Some(1));
    assert_eq!(flags(&[b"mg k O", &[b'o'; 31][..], b"\r\n"].concat()).long_opaque, None);
    // md fails before doing anything; mg and ma leave that to the engine.
    assert_eq!(error(&[b"md k ", &long[..], b"\r\n"].concat()), OPAQUE_TOO_LONG);
    assert_eq!(meta(&[b"ma k ", &long[..], b"\r\n"].concat()).flags.long_opaque, Some(0));
}

#[test]
fn me_reads_only_a_lone_b() {
    assert!(meta(b"me Zm9v b\r\n").flags.base64);
    assert!(meta(b"me Zm9v b anything\r\n").flags.base64);
    assert!(!meta(b"me foo bx\r\n").flags.base64);
    assert!(!meta(b"me foo x b\r\n").flags.base64);
    assert_eq!(error(b"me Zm9vYg b\r\n"), BAD_FORMAT);
    assert_eq!(error(&[b"me ", &[b'k'; 251][..], b"\r\n"].concat()), BAD_FORMAT);
}

#[test]
fn ms_reads_its_data_block() {
    let m = meta(b"ms k 5 T10 F3 c\r\nab\r\nc\r\n");
    assert_eq!(m.value, Some(&b"ab\r\nc"[..]));
    assert_eq!((m.flags.client_flags, m.flags.ttl.map(|t| t.value)), (3, Some(10)));
    assert_eq!(m.tokens.collect::<Vec<_>>(), [&b"T10"[..], b"F3", b"c"]);
    assert_eq!(parse_text(b"ms k 5\r\nab", MAX), Parse::Incomplete);
    assert_eq!(parse_text(b"ms k 5\r\nabcde\r", MAX), Parse::Incomplete);
    // The block is exactly <datalen>+2 bytes; what follows is the next command.
    assert_eq!(
        parse_text(b"ms k 1\r\nab\r\n", MAX),
        Parse::Request { req: Request::Error { reply: "CLIENT_ERROR bad data chunk", noreply: false }, len: 11 }
    );
    // memcached reads the length as a C long truncated to 32 bits.
    assert_eq!(meta(b"ms k 4294967298\r\nhi\r\n").value, Some(&b"hi"[..]));
}

#[test]
fn ms_modes() {
    let mode = |line: &[u8]| match meta(line).cmd {
        Command::Set(mode) => mode,
        other => panic!("{other:?}"),
    };
    assert_eq!(mode(b"ms k 0 MS\r\n\r\n"), Mode::Set);
    assert_eq!(mode(b"ms k 0 ME\r\n\r\n"), Mode::Add);
    assert_eq!(mode(b"ms k 0 MA\r\n\r\n"), Mode::Append);
    assert_eq!(mode(b"ms k 0 MP\r\n\r\n"), Mode::Prepend);
    assert_eq!(mode(b"ms k 0 MR\r\n\r\n"), Mode::Replace);
    // C turns set and replace into cas; add ignores it and append/prepend check it themselves.
    assert_eq!(mode(b"ms k 0 C5\r\n\r\n"), Mode::Cas);
    assert_eq!(mode(b"ms k 0 MR C5\r\n\r\n"), Mode::Cas);
    assert_eq!(mode(b"ms k 0 ME C5\r\n\r\n"), Mode::Add);
    assert_eq!(mode(b"ms k 0 MA C5\r\n\r\n"), Mode::Append);
}

#[test]
fn ms_refusals_discard_the_block_once_its_length_is_known() {
    let long = [b"O".as_slice(), &[b'o'; 32]].concat();
    assert_eq!(refused(b"ms k 2 zz\r\n"), ("CLIENT_ERROR invalid flag", 4));
    assert_eq!(refused(b"ms k 2 MX\r\n"), ("CLIENT_ERROR invalid mode for ms M token", 4));
    assert_eq!(refused(b"ms k 2 Fx\r\n"), (BAD_FORMAT, 4));
    assert_eq!(refused(b"ms k 2 b\r\n"), ("CLIENT_ERROR error decoding key", 4));
    assert_eq!(refused(&[b"ms k 10 ", &long[..], b"\r\n"].concat()), (OPAQUE_TOO_LONG, 12));
    // An invalid mode outranks an over-long opaque, an invalid flag outranks both.
    assert_eq!(refused(&[b"ms k 2 ", &long[..], b" MX\r\n"].concat()).0, "CLIENT_ERROR invalid mode for ms M token");
    assert_eq!(refused(&[b"ms k 2 MX ", &long[..], b" zz\r\n"].concat()).0, "CLIENT_ERROR invalid flag");
    // Before the length is read, the block is left to be parsed as commands.
    assert_eq!(error(b"ms k\r\n"), BAD_FORMAT);
    assert_eq!(error(b"ms k abc\r\n"), BAD_FORMAT);
    assert_eq!(error(b"ms k -1\r\n"), BAD_FORMAT);
    assert_eq!(error(b"ms k 2147483646\r\n"), BAD_FORMAT);
    assert_eq!(error(&[b"ms ", &[b'k'; 251][..], b" 2\r\n"].concat()), BAD_FORMAT);
    let eighteen = (0..17).map(|i| format!(" P{i}")).collect::<String>();
    assert_eq!(error(format!("ms k 2{eighteen}\r\n").as_bytes()), "CLIENT_ERROR options flags too long");
}

#[test]
fn ms_too_large_is_discarded_unread() {
    let too_large = |line: &[u8]| match parse_text(line, MAX) {
        Parse::Swallow { req: Request::Meta(m), swallow, .. } => {
            assert_eq!(m.value, None);
            swallow
        }
        other => panic!("expected a too-large refusal, got {other:?}"),
    };
    // 48 + key 1 + 1 + value + 2 + cas 8 must fit in 1 MiB; non-zero flags take 4 more.
    let fits = MAX - 60;
    assert!(matches!(parse_text(format!("ms k {fits}\r\n").as_bytes(), MAX), Parse::Incomplete));
    assert_eq!(too_large(format!("ms k {fits} F1\r\n").as_bytes()), fits + 2);
    assert_eq!(too_large(format!("ms k {}\r\n", fits + 1).as_bytes()), fits + 3);
    // The size counts the decoded key.
    assert!(matches!(parse_text(format!("ms azE= {}\r\n", fits - 1).as_bytes(), MAX), Parse::Swallow { .. }));
    assert!(matches!(parse_text(format!("ms azE= {} b\r\n", fits - 1).as_bytes(), MAX), Parse::Incomplete));
}

#[test]
fn base64_keys_decode_like_memcached() {
    let decode = |s: &[u8]| {
        let mut out = [0; MAX_KEY_LEN];
        decode_key(s, &mut out).map(|n| out[..n].to_vec())
    };
    assert_eq!(decode(b"Zm9v").as_deref(), Some(&b"foo"[..]));
    assert_eq!(decode(b"Zm9vYg==").as_deref(), Some(&b"foob"[..]));
    assert_eq!(decode(b"Zm9vYmE=").as_deref(), Some(&b"fooba"[..]));
    // Characters outside the alphabet are skipped.
    assert_eq!(decode(b"Zm!9v").as_deref(), Some(&b"foo"[..]));
    assert_eq!(decode(b"YWJj_-ZGVm").as_deref(), Some(&b"abcdef"[..]));
    // The first padded group ends the key, wherever the padding is.
    assert_eq!(decode(b"Zm==9vYg").as_deref(), Some(&b"f"[..]));
    assert_eq!(decode(b"Zg==Zg==").as_deref(), Some(&b"f"[..]));
    assert_eq!(decode(b"Zm=v").as_deref(), Some(&b"f`"[..]));
    for bad in [&b"Zm9vYg"[..], b"Zm9vYg=", b"Zm9v==", b"====", b"Zg===", b"!!!!", b"Y", b"", b"YWFhYQ====="] {
        assert_eq!(decode(bad), None, "{bad:?}");
    }
    let longest = b"QUFB".repeat(62);
    assert_eq!(decode(&longest).map(|k| k.len()), Some(186));
}

#[test]
fn base64_keys_encode_with_padding() {
    let encode = |key: &[u8]| {
        let mut out = b"x".to_vec();
        encode_key(key, &mut out);
        out
    };
    assert_eq!(encode(b"foo"), b"xZm9v");
    assert_eq!(encode(b"f"), b"xZg==");
    assert_eq!(encode(b"f`"), b"xZmA=");
    assert_eq!(encode(b"\x00\x01\xfe"), b"xAAH+");
}

#[test]
fn meta_key_decodes_only_with_b() {
    let mut buf = [0; MAX_KEY_LEN];
    assert_eq!(meta(b"mg Zm9v b\r\n").key(&mut buf), Some(&b"foo"[..]));
    assert_eq!(meta(b"mg Zm9v\r\n").key(&mut buf), Some(&b"Zm9v"[..]));
}
