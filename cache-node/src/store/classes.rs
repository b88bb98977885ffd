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
}
