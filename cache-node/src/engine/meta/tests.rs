//! Each transcript was captured from memcached 1.6.18 on a fresh server (CAS values renumbered
//! from 1, as a fresh store counts them). A transcript runs in one `process` call, so every
//! command sees the same clock reading and TTLs come out exact.

use std::sync::Arc;

use crate::engine::{Context, Reply, text};
use crate::store::Config;

fn ctx() -> Arc<Context> {
    Context::detached(Config::default())
}

fn run(ctx: &Context, input: &[u8]) -> String {
    let mut out = Reply::default();
    let progress = text::process(ctx, input, &mut out);
    assert_eq!((progress.consumed, progress.swallow, progress.close), (input.len(), 0, false));
    String::from_utf8(out.to_vec()).expect("replies are text here")
}

fn transcript(input: &str, replies: &str) {
    assert_eq!(run(&ctx(), input.as_bytes()), replies, "for {input:?}");
}

/// As [`transcript`], for batches separated by `|`: each batch is handled and its replies sent
/// before the next, as a client that waits for the replies.
fn transcript_stepwise(batches: &str, replies: &str) {
    let ctx = ctx();
    let got: String = batches.split('|').map(|batch| run(&ctx, batch.as_bytes())).collect();
    assert_eq!(got, replies, "for {batches:?}");
}

fn long_opaque() -> String {
    format!("O{}", "o".repeat(32))
}

#[test]
fn mg_answers_flags_in_request_order() {
    transcript(
        "ms foo 2 T100 F5\r\nhi\r\nmg foo s v t c f h l k O99 q\r\nmg foo h\r\nmg foo u h\r\nmg foo\r\n\
         mg missing k Oop\r\nmg missing q k\r\nmg foo MS C12 F3 J1 D1 I P Lx\r\nmn\r\n",
        "HD\r\nVA 2 s2 t100 c1 f5 h0 l0 kfoo O99\r\nhi\r\nHD h1\r\nHD h1\r\nHD\r\nEN kmissing Oop\r\nHD\r\nMN\r\n",
    );
}

#[test]
fn ttl_flags_apply_in_line_order() {
    transcript(
        "ms foo 2 T100\r\nhi\r\nmg foo t T50\r\nmg foo T70 t\r\nmg foo t\r\nmg foo T0 t\r\n",
        "HD\r\nHD t100\r\nHD t70\r\nHD t70\r\nHD t-1\r\n",
    );
}

#[test]
fn vivify_and_recache_hand_out_one_win() {
    transcript(
        "mg vv t N30\r\nmg vv t\r\nmg vv s v c\r\nmg v2 N30 T60 t\r\nmg v3 T60 N30 t\r\nmg v4 t T60 N30\r\nmg v4 t\r\n\
         ms foo 2 T100\r\nhi\r\nmg foo R30 t\r\nmg foo R500 t\r\nmg foo R500 t\r\nmg foo\r\n\
         ms bar 2 T100\r\nhi\r\nmg bar R30 T10 t\r\nms bar 2 T100\r\nhi\r\nmg bar T10 R30 t\r\n\
         ms baz 2\r\nhi\r\nmg baz R999999 t\r\nmg viv1 N30\r\nmg viv1 h\r\nmg viv2 N30 u\r\nmg viv2 h\r\n",
        "HD t-1 W\r\nHD t30 Z\r\nVA 0 s0 c1 Z\r\n\r\nHD t60 W\r\nHD t30 W\r\nHD t-1 W\r\nHD t30 Z\r\n\
         HD\r\nHD t100\r\nHD t100 W\r\nHD t100 Z\r\nHD Z\r\n\
         HD\r\nHD t10\r\nHD\r\nHD t10 W\r\n\
         HD\r\nHD t-1\r\nHD W\r\nHD h1 Z\r\nHD W\r\nHD h0 Z\r\n",
    );
}

#[test]
fn invalidation_marks_stale_and_hands_out_a_win() {
    transcript(
        "ms s1 2 T100\r\nhi\r\nmd s1 I T30 k O7 q\r\nget s1\r\nmg s1 t c v\r\nmg s1 t c v\r\n\
         ms s1 2 C1 I T500 c\r\nho\r\nmg s1 c t v\r\nms s1 2 C0 I c\r\nhx\r\nms s1 2 c MA\r\nyy\r\nmg s1 c v\r\n",
        "HD\r\nVALUE s1 0 2\r\nhi\r\nEND\r\nVA 2 t30 c2 X W\r\nhi\r\nVA 2 t30 c2 Z X\r\nhi\r\n\
         HD c3\r\nVA 2 c3 t30 Z X\r\nho\r\nEX c0\r\nHD c4\r\nVA 4 c4\r\nhoyy\r\n",
    );
}

#[test]
fn quiet_mode_hides_only_nominal_replies() {
    transcript(
        "mg q1 q v\r\nms q1 2 q\r\nhi\r\nms q1 2 q ME\r\nhi\r\nmd q2 q\r\nmd q1 q C99\r\nma q1 q\r\n\
         ms q3 1 q\r\n1\r\nma q3 q v\r\nma q4 q N0 v\r\nma q5 q\r\nmd q1 q\r\nmg q1 q Tx\r\nmn\r\n",
        "NS\r\nNF\r\nEX\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n\
         VA 1\r\n0\r\nNF\r\nCLIENT_ERROR bad token in command line format\r\nMN\r\n",
    );
}

#[test]
fn ms_modes_and_cas() {
    transcript(
        "ms a1 2 c\r\nhi\r\nms a1 2 c C9\r\nhx\r\nms a1 2 c C1 k O5\r\nho\r\nms a1 2 c MA C0\r\nyy\r\n\
         ms a1 2 c MP C1\r\nzz\r\nms a1 2 c ME C3\r\nzz\r\nms a1 2 c C0\r\nzz\r\nms nokey 2 c MR\r\nhi\r\n\
         ms nokey 2 c C1\r\nhi\r\nms nokey 2 c MA\r\nhi\r\nmg a1 v f\r\nms a1 2 F4294967296 T-1\r\nhi\r\nmg a1\r\n",
        "HD c1\r\nEX c0\r\nHD c2 ka1 O5\r\nHD c3\r\nEX c0\r\nNS c0\r\nEX c0\r\nNS c0\r\nNF c0\r\nNS c0\r\n\
         VA 4 f0\r\nhoyy\r\nHD\r\nEN\r\n",
    );
}

#[test]
fn ms_refusals() {
    let long = long_opaque();
    transcript(
        &format!(
            "ms foo 2 zz\r\nhi\r\nms foo 2 {long}\r\nhi\r\nms foo\r\nhi\r\nms foo 2\r\nhiX\r\nms foo 2 q\r\nhi\r\nmg foo v\r\n"
        ),
        "CLIENT_ERROR invalid flag\r\nCLIENT_ERROR opaque token too long\r\nCLIENT_ERROR bad command line format\r\n\
         ERROR\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nVA 2\r\nhi\r\n",
    );
}

#[test]
fn ms_too_large_is_swallowed_and_drops_the_old_value() {
    let ctx = ctx();
    assert_eq!(run(&ctx, b"ms tl 2\r\nhi\r\n"), "HD\r\n");
    let mut out = Reply::default();
    let input = b"ms dGw= 1048577 b MA q\r\nxxxx";
    let progress = text::process(&ctx, input, &mut out);
    assert_eq!((progress.consumed, progress.swallow), (input.len(), 1_048_579 - 4));
    assert_eq!(out.to_vec(), b"SERVER_ERROR object too large for cache\r\n");
    assert_eq!(run(&ctx, b"mg tl v\r\n"), "EN\r\n");
}

#[test]
fn md_compares_even_a_zero_cas() {
    transcript(
        "ms k 2\r\nhi\r\nmd k C0\r\nmd nope C0\r\nmd k C1 q\r\nmg k\r\nmd k k O1 T30\r\nmd czE= k O1 b\r\n",
        "HD\r\nEX\r\nNF\r\nEN\r\nNF kk O1\r\nNF kczE= b O1\r\n",
    );
}

#[test]
fn ma_counts_like_memcached() {
    transcript(
        "ma n1\r\nma n1 N0 J5 v c t\r\nma n1 v\r\nma n1 MD D100 v\r\nma n1 M+ D18446744073709551615 v\r\n\
         ma n1 MI D3 v k O1\r\nma n1 C1 v\r\nms nn 3\r\nabc\r\nma nn v\r\nma nn C99\r\nms ne 0\r\n\r\nma ne C99\r\n\
         ms big 2\r\n99\r\nma big v MD D95\r\nmg big v s\r\n",
        "NF\r\nVA 1 c1 t-1\r\n5\r\nVA 1\r\n6\r\nVA 1\r\n0\r\nVA 20\r\n18446744073709551615\r\nVA 1 kn1 O1\r\n2\r\nEX\r\n\
         HD\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\nEX\r\n\
         HD\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\nHD\r\nVA 1\r\n4\r\nVA 2 s2\r\n4 \r\n",
    );
}

#[test]
fn ma_ttl_order_and_growth() {
    // When the number outgrows its value memcached 1.6.18 rebuilds the item and its T is lost.
    transcript(
        "ma a N30 t T100 v\r\nmg a t\r\nma b t T100 N30 v\r\nmg b t\r\nms g 1 T500\r\n9\r\nma g T100 t\r\nmg g t v\r\n\
         ms h 1 T500\r\n5\r\nma h T100 t\r\nmg h t\r\n",
        "VA 1 t30\r\n0\r\nHD t100\r\nVA 1 t-1\r\n0\r\nHD t30\r\nHD\r\nHD t100\r\nVA 2 t500\r\n10\r\n\
         HD\r\nHD t100\r\nHD t100\r\n",
    );
}

#[test]
fn ma_rewrites_a_shorter_number_in_place_and_rebuilds_a_longer_one() {
    // Captured one command at a time: memcached 1.6.18 rewrites the number in place (reply at
    // its exact length, value space padded to the old length) whenever nothing else holds the
    // item, exactly as incr/decr. The item keeps its flags, fetched mark, stale and win bits and
    // base64 marker, and takes T. A longer number is a new item: bits cleared, T lost.
    transcript_stepwise(
        "ms n 2\r\n10\r\n|ma n v MD D5\r\n|mg n v s\r\n|\
         ms h 3 T100 F7\r\n100\r\n|mg h v\r\n|ma h v MD c t T500\r\n|mg h v f t c h s\r\n|\
         ms s 2 F5\r\n10\r\n|md s I T30\r\n|ma s MD v c t\r\n|mg s v c t h\r\n|\
         ms azE= 2 b\r\n10\r\n|ma azE= b MD k v\r\n|mg k1 k v\r\n|\
         ms g 1 T100 F7\r\n9\r\n|mg g v\r\n|ma g v c t T500\r\n|mg g v f t c h s\r\n|\
         ms S 1 F5\r\n9\r\n|md S I T30\r\n|ma S v c t\r\n|mg S v c t h\r\n|\
         ms azI= 1 b\r\n9\r\n|ma azI= b k v\r\n|mg k2 k v\r\n",
        "HD\r\nVA 1\r\n5\r\nVA 2 s2\r\n5 \r\n\
         HD\r\nVA 3\r\n100\r\nVA 2 c4 t100\r\n99\r\nVA 3 f7 t500 c4 h1 s3\r\n99 \r\n\
         HD\r\nHD\r\nVA 1 c7 t30\r\n9\r\nVA 2 c7 t30 h0 X W\r\n9 \r\n\
         HD\r\nVA 1 kazE= b\r\n9\r\nVA 2 kazE= b\r\n9 \r\n\
         HD\r\nVA 1\r\n9\r\nVA 2 c11 t100\r\n10\r\nVA 2 f7 t100 c11 h0 s2\r\n10\r\n\
         HD\r\nHD\r\nVA 2 c14 t30\r\n10\r\nVA 2 c14 t30 h0\r\n10\r\n\
         HD\r\nVA 2 kazI= b\r\n10\r\nVA 2 kk2\r\n10\r\n",
    );
}

#[test]
fn increments_rebuild_an_item_a_reply_in_the_batch_still_holds() {
    // Captured batch by batch: memcached 1.6.18 holds the items of mg replies until it sends
    // them (after mn, a text get, or 21 requests), and an increment then makes a new item of
    // the number's exact length: bits cleared and T lost, though the reply shows it.
    let twenty = "mg o v\r\n".repeat(20);
    let nineteen = "mg o v\r\n".repeat(19);
    transcript_stepwise(
        &format!(
            "ms n 2\r\n10\r\n|mg n v\r\nma n v MD D5\r\nmg n v s h\r\n|\
             ms h 2 F3\r\n10\r\n|mg h s\r\nmn\r\nma h v MD D5\r\nmg h v s h f\r\n|\
             set d 0 0 3\r\n100\r\n|get d\r\ndecr d 95\r\nmg d v\r\n|\
             set e 0 0 3\r\n100\r\n|mg e q v\r\ndecr e 50\r\ndecr e 45\r\nmg e v\r\n|\
             ms f 3 T100\r\n100\r\n|mg f\r\nmg o\r\nget o\r\nma f v MD D95 T500 t\r\nmg f t v\r\n|\
             ms g 3 T100\r\n100\r\n|mg g\r\nmd o q\r\nma g v MD D95 T500 t\r\nmg g t v\r\n|\
             set p 0 0 3\r\n100\r\n|mg p\r\n{twenty}decr p 95\r\nmg p s\r\n|\
             set q 0 0 3\r\n100\r\n|mg q\r\n{nineteen}decr q 95\r\nmg q s\r\n"
        ),
        &format!(
            "HD\r\nVA 2\r\n10\r\nVA 1\r\n5\r\nVA 1 s1 h0\r\n5\r\n\
             HD\r\nHD s2\r\nMN\r\nVA 1\r\n5\r\nVA 2 s2 h1 f3\r\n5 \r\n\
             STORED\r\nVALUE d 0 3\r\n100\r\nEND\r\n5\r\nVA 3\r\n5  \r\n\
             STORED\r\nVA 3\r\n100\r\n50\r\n5\r\nVA 2\r\n5 \r\n\
             HD\r\nHD\r\nEN\r\nEND\r\nVA 1 t500\r\n5\r\nVA 3 t500\r\n5  \r\n\
             HD\r\nHD\r\nNF\r\nVA 1 t500\r\n5\r\nVA 1 t100\r\n5\r\n\
             STORED\r\nHD\r\n{}5\r\nHD s3\r\n\
             STORED\r\nHD\r\n{}5\r\nHD s1\r\n",
            "EN\r\n".repeat(20),
            "EN\r\n".repeat(19)
        ),
    );
}

#[test]
fn over_long_opaque_fails_after_the_flags_before_it() {
    let long = long_opaque();
    transcript(
        &format!(
            "ms foo 2 T100\r\nhi\r\nmg foo T30 {long} t\r\nmg foo t h\r\nms bar 2\r\nhi\r\nmg bar {long}\r\nmg bar h\r\n\
             mg v3 N30 {long}\r\nmg v3 t h\r\nmg v4 {long} N30\r\nmg v4 t\r\nma n {long} N0\r\nmg n v\r\n"
        ),
        "HD\r\nCLIENT_ERROR opaque token too long\r\nHD t30 h0\r\nHD\r\nCLIENT_ERROR opaque token too long\r\nHD h1\r\n\
         CLIENT_ERROR opaque token too long\r\nHD t30 h0\r\nCLIENT_ERROR opaque token too long\r\nHD t-1\r\n\
         CLIENT_ERROR opaque token too long\r\nVA 1\r\n0\r\n",
    );
}

#[test]
fn base64_keys_are_shown_encoded_while_the_item_remembers() {
    transcript(
        "ms Zm9v 2 b k c\r\nhi\r\nmg foo k\r\nmg Zm9v b k v\r\nme foo\r\nms foo 2 MA\r\nyy\r\nmg Zm9v b k\r\n\
         mg YmFy b k N30\r\nmg bar k\r\nmd eHl6 b k q\r\nmg Zm!9v b k\r\nmg Zm9vYg b k\r\nme Zm9vYg b\r\n",
        "HD kZm9v b c1\r\nHD kZm9v b\r\nVA 2 kZm9v b\r\nhi\r\nME Zm9v exp=-1 la=0 cas=1 fetch=yes cls=1 size=64\r\n\
         HD\r\nHD kfoo\r\nHD kbar W\r\nHD kbar Z\r\nNF keHl6 b\r\nHD kfoo\r\n\
         CLIENT_ERROR error decoding key\r\nCLIENT_ERROR bad command line format\r\n",
    );
}

#[test]
fn me_shows_memcached_item_layout() {
    transcript(
        "me foo\r\nms foo 2 T100 F1\r\nhi\r\nme foo\r\nmg foo\r\nme foo\r\n",
        "EN\r\nHD\r\nME foo exp=-100 la=0 cas=1 fetch=no cls=1 size=68\r\nHD\r\n\
         ME foo exp=-100 la=0 cas=1 fetch=yes cls=1 size=68\r\n",
    );
}

/// Random lines made of meta commands, flags and hostile bytes must never panic.
#[test]
fn garbage_never_panics() {
    let words: &[&[u8]] = &[
        b"mg",
        b"ms",
        b"md",
        b"ma",
        b"mn",
        b"me",
        b"m",
        b"foo",
        b"Zm9v",
        b"====",
        b"b",
        b"v",
        b"q",
        b"k",
        b"O",
        b"T",
        b"T-1",
        b"N0",
        b"R",
        b"C0",
        b"C18446744073709551615",
        b"D",
        b"J99999999999999999999",
        b"MA",
        b"M",
        b"MX",
        b"I",
        b"F-1",
        b"0",
        b"2",
        b"-1",
        b"4294967298",
        b"2147483645",
        b"\x80",
        b"\x00",
        b"\r",
        b"\t",
        b"t",
        b"s",
        b"c",
        b"h",
        b"l",
        b"f",
        b"u",
        b"P",
        b"L",
        b"E",
        b"x",
    ];
    let ctx = ctx();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Reply::default();
    for _ in 0..2000 {
        let mut buf = Vec::new();
        for _ in 0..20 {
            for _ in 0..next() % 8 {
                buf.extend_from_slice(words[(next() % words.len() as u64) as usize]);
                buf.push(if next() % 9 == 0 { b'\n' } else { b' ' });
            }
            buf.extend_from_slice(b"\r\n");
        }
        out.clear();
        let progress = text::process(&ctx, &buf, &mut out);
        assert!(progress.consumed <= buf.len());
    }
}
