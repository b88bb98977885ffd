//! Lines as memcached 1.6.18 prints them (captured from it), and the chunking.

use std::sync::Arc;

use super::*;
use crate::engine::{Context, Reply, text};
use crate::store::Config;

fn ctx() -> Arc<Context> {
    Context::detached(Config::default())
}

/// Runs `input`; a dump it starts is drained chunk by chunk, as the connection does.
fn run(ctx: &Context, input: &[u8]) -> Vec<u8> {
    let mut out = Reply::default();
    let mut at = 0;
    while at < input.len() {
        let progress = text::process(ctx, &input[at..], &mut out);
        assert!(progress.consumed > 0, "incomplete input");
        at += progress.consumed;
        if let Some(mut dump) = progress.dump {
            while !dump.fill(ctx, &mut out) {}
        }
    }
    out.to_vec()
}

fn lines(reply: &[u8], end: &[u8]) -> Vec<String> {
    let body = reply.strip_suffix(b"END\r\n").expect("ends with END");
    let mut lines: Vec<String> =
        body.split_inclusive(|&b| b == b'\n').map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    assert!(lines.iter().all(|l| l.ends_with(std::str::from_utf8(end).unwrap())), "{lines:?}");
    lines.sort();
    lines
}

#[test]
fn metadump_prints_memcacheds_line_for_every_live_item() {
    let ctx = ctx();
    let unix = |rel: RelTime| ctx.clock.to_unix(rel);
    let now = ctx.clock.now();
    run(&ctx, b"set a 0 0 1\r\nx\r\nset f 7 100 5\r\nhello\r\nget a\r\nset gone 0 -1 1\r\nx\r\n");
    // A key with every printable byte but the unreserved ones, and one sent in base64.
    run(&ctx, b"set %:/x 0 0 1\r\nx\r\nms AAEgYmlu/yBrZXk= 1 b\r\ny\r\n");
    let big = vec![b'v'; 600_000];
    run(&ctx, &[&b"set big 3 0 600000\r\n"[..], &big, b"\r\n"].concat());
    let reply = run(&ctx, b"lru_crawler metadump all\r\n");
    let la = unix(now);
    let expected = [
        format!("key=%00%01%20bin%FF%20key exp=-1 la={la} cas=5 fetch=no cls=1 size=71\n"),
        format!("key=%25%3A%2Fx exp=-1 la={la} cas=4 fetch=no cls=1 size=64\n"),
        format!("key=a exp=-1 la={la} cas=1 fetch=yes cls=1 size=61\n"),
        format!("key=big exp=-1 la={la} cas=6 fetch=no cls=39 size=600066\n"),
        format!("key=f exp={} la={la} cas=2 fetch=no cls=1 size=69\n", unix(now + 100)),
    ];
    assert_eq!(lines(&reply, b"\n"), expected);
    assert_eq!(run(&ctx, b"lru_crawler metadump hash\r\n"), reply);
    let class39 = run(&ctx, b"lru_crawler metadump 39,2\r\n");
    assert_eq!(lines(&class39, b"\n"), expected[3..4]);
    assert_eq!(run(&ctx, b"lru_crawler metadump 2\r\n"), b"END\r\n");
    // me prints the same fields, its times relative to now.
    let me = run(&ctx, b"me f\r\n");
    assert_eq!(String::from_utf8(me).unwrap(), "ME f exp=-100 la=0 cas=2 fetch=no cls=1 size=69\r\n");
}

#[test]
fn cachedump_lists_a_class_without_binary_keys_within_its_limit() {
    let ctx = ctx();
    let now = ctx.clock.now();
    run(&ctx, b"set a 0 0 1\r\nx\r\nset f 7 100 5\r\nhello\r\nms cGxhaW4= 1 b\r\ny\r\n");
    run(&ctx, &[&b"set b 0 0 200\r\n"[..], &[b'v'; 200], b"\r\n"].concat());
    let reply = run(&ctx, b"stats cachedump 1 0\r\n");
    let exp = ctx.clock.to_unix(now + 100);
    assert_eq!(lines(&reply, b"\r\n"), ["ITEM a [1 b; 0 s]\r\n".to_string(), format!("ITEM f [5 b; {exp} s]\r\n")]);
    assert_eq!(lines(&run(&ctx, b"stats cachedump 6 0\r\n"), b"\r\n"), ["ITEM b [200 b; 0 s]\r\n"]);
    assert_eq!(lines(&run(&ctx, b"stats cachedump 1 1\r\n"), b"\r\n").len(), 1);
    for empty in [&b"stats cachedump 0 0\r\n"[..], b"stats cachedump 2 0\r\n", b"stats cachedump 63 0\r\n"] {
        assert_eq!(run(&ctx, empty), b"END\r\n");
    }
}

#[test]
fn cachedump_stops_short_of_two_megabytes_as_memcached_does() {
    let ctx = ctx();
    let mut input = Vec::new();
    for i in 0..60_000 {
        input.extend_from_slice(format!("set key{i:026} 0 0 1 noreply\r\nx\r\n").as_bytes());
    }
    run(&ctx, &input);
    // memcached 1.6.18 answers 44620 of these 47-byte lines: 2097145 bytes with END.
    let reply = run(&ctx, b"stats cachedump 1 0\r\n");
    assert_eq!((reply.len(), lines(&reply, b"\r\n").len()), (2_097_145, 44_620));
    assert_eq!(run(&ctx, b"stats cachedump 1 70000\r\n").len(), 2_097_145);
    assert_eq!(lines(&run(&ctx, b"stats cachedump 1 100\r\n"), b"\r\n").len(), 100);
}

#[test]
fn a_dump_comes_in_bounded_chunks_and_the_requests_after_it_wait() {
    let ctx = ctx();
    let mut input = Vec::new();
    for i in 0..20_000 {
        input.extend_from_slice(format!("set key{i} 0 0 1 noreply\r\nx\r\n").as_bytes());
    }
    run(&ctx, &input);
    let mut out = Reply::default();
    let request = b"lru_crawler metadump all\r\nmn\r\n";
    let progress = text::process(&ctx, request, &mut out);
    assert_eq!(progress.consumed, 26, "the batch ends with the dump");
    assert!(out.is_empty());
    let mut dump = progress.dump.expect("a dump");
    let (mut chunks, mut all) = (0, Vec::new());
    loop {
        let mut chunk = Vec::new();
        let done = dump.fill(&ctx, &mut chunk);
        assert!(chunk.len() < CHUNK + 1024, "chunk of {}", chunk.len());
        all.extend_from_slice(&chunk);
        chunks += 1;
        if done {
            break;
        }
    }
    assert!(chunks > 10, "{chunks} chunks");
    assert_eq!(lines(&all, b"\n").len(), 20_000);
    assert!(dump.fill(&ctx, &mut Vec::new()), "a finished dump stays finished");
}

#[test]
fn lru_crawler_replies_follow_memcached() {
    let ctx = ctx();
    let reply = |input: &[u8]| String::from_utf8(run(&ctx, input)).unwrap();
    assert_eq!(reply(b"lru_crawler crawl all\r\nlru_crawler crawl 1,2\r\n"), "OK\r\nOK\r\n");
    assert_eq!(reply(b"lru_crawler crawl hash\r\n"), "ERROR an unknown error happened\r\n");
    assert_eq!(reply(b"lru_crawler crawl 64\r\nlru_crawler metadump 0\r\n"), "BADCLASS invalid class id\r\n".repeat(2));
    assert_eq!(reply(b"lru_crawler crawl ,\r\n"), "NOTSTARTED no items to crawl\r\n");
    assert_eq!(reply(b"lru_crawler enable\r\n"), "ERROR failed to start lru crawler thread\r\n");
    assert_eq!(reply(b"lru_crawler disable\r\nlru_crawler disable\r\n"), "OK\r\nOK\r\n");
    assert_eq!(
        reply(b"lru_crawler crawl all\r\nlru_crawler metadump 64\r\nlru_crawler sleep 5\r\n"),
        "CLIENT_ERROR lru crawler disabled\r\nCLIENT_ERROR lru crawler disabled\r\nOK\r\n"
    );
    assert_eq!(reply(b"lru_crawler enable\r\nlru_crawler metadump all\r\n"), "OK\r\nEND\r\n");
}

#[test]
fn uri_encoding_keeps_only_unreserved_bytes() {
    let mut out = Vec::new();
    uri_encode(b"aZ09-._~ %\xff", &mut out);
    assert_eq!(out, b"aZ09-._~%20%25%FF");
}
