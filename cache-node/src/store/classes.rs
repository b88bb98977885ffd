//! memcached's slab classes, as a table to report by. The store allocates each item to size and
//! has no classes of its own, but the tools that read `stats items`, `stats slabs`,
//! `stats cachedump` and `lru_crawler metadump` (memcached-tool, memcached_exporter, memcdump)
//! expect them: an item is reported in the class memcached 1.6.18 would keep it in.

/// memcached's default page (`slab_page_size`): 1 MiB.
pub const PAGE_SIZE: usize = 1 << 20;

/// memcached's `slab_chunk_max` (half a page): the last class, which also heads chained items.
pub const CHUNK_MAX: usize = PAGE_SIZE / 2;

/// Number of classes with memcached's defaults (`-n 48`, `-f 1.25`).
pub const COUNT: usize = 39;

/// Chunk size of each class, class 1 first: memcached's `slabs_init` with its defaults. Chunks
/// start at the 48-byte item header plus 48 bytes of data, grow by 1.25 rounded up to 8 bytes,
/// and stop once the next would pass `CHUNK_MAX / 1.25`; the last class is `CHUNK_MAX`.
pub const CHUNK_SIZES: [usize; COUNT] = chunk_sizes();

const fn chunk_sizes() -> [usize; COUNT] {
    let mut sizes = [0; COUNT];
    let mut size = 96;
    let mut i = 0;
    // size >= CHUNK_MAX / 1.25, in integers.
    while size * 5 < CHUNK_MAX * 4 {
        size = size.next_multiple_of(8);
        sizes[i] = size;
        i += 1;
        // memcached multiplies by the double 1.25 and truncates.
        size = size * 5 / 4;
    }
    assert!(i == COUNT - 1, "memcached's defaults give 38 classes below CHUNK_MAX");
    sizes[i] = CHUNK_MAX;
    sizes
}

/// The class memcached keeps an item of `size` bytes ([`super::memcached_item_size`]) in:
/// the smallest whose chunk holds it, or the last for a larger (chained) item. Classes are
/// numbered from 1.
pub fn class_of(size: usize) -> u8 {
    let at = CHUNK_SIZES.partition_point(|&chunk| chunk < size);
    at.min(COUNT - 1) as u8 + 1
}

/// memcached's `ITEM_ntotal`: its 48-byte header, the key with its NUL, the flags suffix (only
/// for non-zero flags), the value with its CRLF and the CAS.
pub fn memcached_item_size(key_len: usize, value_len: usize, flags: u32) -> usize {
    ITEM_HEADER + key_len + 1 + suffix(flags) + value_len + 2 + 8
}

/// memcached's `sizeof(item)` and `sizeof(item_chunk)`.
const ITEM_HEADER: usize = 48;
const CHUNK_HEADER: usize = 48;

fn suffix(flags: u32) -> usize {
    if flags == 0 { 0 } else { 4 }
}

/// Calls `f` with the class of each chunk memcached would take for an item: one in the item's
/// own class, or, for an item over `CHUNK_MAX`, a header chunk in a small class and the value
/// in chunks of at most `CHUNK_MAX` (memcached's `do_item_alloc` and `do_item_alloc_chunk`).
pub fn chunks(key_len: usize, value_len: usize, flags: u32, mut f: impl FnMut(u8)) {
    let size = memcached_item_size(key_len, value_len, flags);
    if size <= CHUNK_MAX {
        return f(class_of(size));
    }
    f(class_of(ITEM_HEADER + CHUNK_HEADER + key_len + 1 + suffix(flags) + 8));
    let mut remain = value_len + 2;
    while remain > 0 {
        let class = class_of((remain + CHUNK_HEADER).min(CHUNK_MAX));
        f(class);
        remain = remain.saturating_sub(chunk_size(class) - CHUNK_HEADER);
    }
}

/// Chunk size of class `class` (1-based).
pub fn chunk_size(class: u8) -> usize {
    CHUNK_SIZES[class as usize - 1]
}

/// Chunks that fit in one page of class `class`.
pub fn chunks_per_page(class: u8) -> usize {
    PAGE_SIZE / chunk_size(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_memcached_1_6_18s() {
        // From `memcached -vv` 1.6.18: the first classes, a middle one and the last two.
        assert_eq!(&CHUNK_SIZES[..5], &[96, 120, 152, 192, 240]);
        assert_eq!((chunk_size(30), chunks_per_page(30)), (66232, 15));
        assert_eq!((chunk_size(38), chunks_per_page(38)), (394840, 2));
        assert_eq!((chunk_size(39), chunks_per_page(39)), (524288, 2));
        assert_eq!(chunks_per_page(1), 10922);
    }

    #[test]
    fn an_item_goes_to_the_smallest_class_that_holds_it() {
        for (size, class) in [(1, 1), (96, 1), (97, 2), (120, 2), (121, 3), (66232, 30), (66233, 31), (66672, 31)] {
            assert_eq!(class_of(size), class, "size {size}");
        }
        assert_eq!(class_of(CHUNK_MAX), 39);
        assert_eq!(class_of(2_000_000), 39);
    }

    fn chunk_classes(key_len: usize, value_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        chunks(key_len, value_len, 0, |class| out.push(class));
        out
    }

    #[test]
    fn a_large_item_takes_a_header_chunk_and_value_chunks() {
        // Measured on memcached 1.6.18 (`stats slabs` used_chunks after one set of key "big").
        assert_eq!(chunk_classes(3, 50), vec![2]);
        assert_eq!(chunk_classes(3, 524_286), vec![2, 39, 1]);
        assert_eq!(chunk_classes(3, 524_287), vec![2, 39, 2]);
        assert_eq!(chunk_classes(3, 600_000), vec![2, 39, 31]);
        assert_eq!(chunk_classes(3, 2 * 524_240 - 2), vec![2, 39, 39]);
        assert_eq!(chunk_classes(3, 2 * 524_240 - 1), vec![2, 39, 39, 1]);
    }
}
