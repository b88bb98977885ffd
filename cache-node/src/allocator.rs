//! The memory allocator's settings, made before any thread starts.
//!
//! glibc gives every thread that allocates an arena of its own, and freed memory goes back to
//! the arena it came from. Items are allocated by the worker that stores them and freed by
//! whichever evicts them, so with several arenas each keeps free space the others cannot use:
//! under mixed item sizes from several connections the process grew to 1.5 × `-m`. With one
//! arena it stays within `-m` plus a fixed overhead, as memcached's slabs do (README, Memory);
//! small blocks still come from each thread's cache without taking the arena's lock.

/// Limits glibc to one arena. Elsewhere (musl, other systems) nothing changes.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns free memory inside the heap to the system, whole pages at a time (glibc keeps it
/// otherwise). Elsewhere nothing happens.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives free pages back; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
