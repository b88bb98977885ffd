//! What both fuzz targets share: one engine context, and feeding input the way a connection
//! does (in two reads, honouring the engine's consumed/swallow/close answers).

use std::sync::{Arc, OnceLock};

use cache_node::engine::{Context, Progress, Reply};
use cache_node::store;

fn context() -> &'static Context {
    static CTX: OnceLock<Arc<Context>> = OnceLock::new();
    CTX.get_or_init(|| {
        // Small limits so that eviction and too-large paths are reachable.
        Context::detached(store::Config { limit_bytes: 4 << 20, item_size_max: 64 << 10 })
    })
}

/// Runs `process` over `data` split at a point chosen by its first byte: no panic, and the
/// engine never claims more bytes than it was given.
pub fn drive(data: &[u8], process: fn(&Context, &[u8], &mut Reply) -> Progress) {
    let ctx = context();
    let mut out = Reply::default();
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut buf = data[..split].to_vec();
    let mut swallow = 0;
    for chunk in [&data[split..], &[][..]] {
        let progress = process(ctx, &buf, &mut out);
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
}
