//! Arbitrary bytes through the text and meta protocols, parser and engine together: no panic,
//! bounded output, and the engine never claims more bytes than it was given.
#![no_main]

use std::sync::OnceLock;

use cache_node::engine::{Context, Settings, text};
use cache_node::store::{self, Store};
use libfuzzer_sys::fuzz_target;

fn context() -> &'static Context {
    static CTX: OnceLock<std::sync::Arc<Context>> = OnceLock::new();
    CTX.get_or_init(|| {
        let config = store::Config { limit_bytes: 4 << 20, item_size_max: 64 << 10 };
        let settings = Settings {
            tcp_port: 0,
            udp_port: 0,
            interfaces: String::new(),
            max_connections: 16,
            threads: 1,
            item_size_max: config.item_size_max,
            limit_bytes: config.limit_bytes,
        };
        Context::new(Store::new(config), settings, 0)
    })
}

fuzz_target!(|data: &[u8]| {
    let ctx = context();
    let mut out = Vec::new();
    // Feed the input in two pieces, as a connection would see it across reads.
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut buf = data[..split].to_vec();
    let mut swallow = 0;
    for chunk in [&data[split..], &[][..]] {
        let progress = text::process(ctx, &buf, &mut out);
        assert!(progress.consumed <= buf.len());
        buf.drain(..progress.consumed);
        swallow += progress.swallow;
        if progress.close {
            return;
        }
        let skip = swallow.min(chunk.len());
        swallow -= skip;
        buf.extend_from_slice(&chunk[skip..]);
        out.clear();
    }
});
