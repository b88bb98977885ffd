//! Arbitrary bytes through the replication link's decoder: no panic, and every frame that
//! decodes encodes back to exactly its bytes (the encoding is canonical).
#![no_main]

use cache_node::replication::codec::{self, DEFAULT_MAX_FRAME, LEN_PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut out = Vec::new();
    while let Ok(Some((message, used))) = codec::decode(rest, DEFAULT_MAX_FRAME) {
        assert!(used > LEN_PREFIX && used <= rest.len());
        out.clear();
        message.encode(&mut out).expect("a decoded message encodes");
        assert_eq!(out, rest[..used], "{message:?}");
        rest = &rest[used..];
    }
});
