//! A scheduling hint for the threads that carry replication and accept connections: a short
//! time slice. Linux's EEVDF scheduler (6.6+) runs a woken thread with a short slice sooner, so
//! a change reaches the peer without waiting behind busy client workers for a whole slice. It
//! asks for no privilege and changes neither policy nor priority; where the kernel does not
//! take it, nothing changes.

/// The slice asked for: the kernel's minimum.
const SLICE_NS: u64 = 100_000;

/// Asks for a short slice for the calling thread; returns whether the kernel took it.
pub fn prefer_short_slices() -> bool {
    // SAFETY: getpriority has no memory effects; 0 names the calling thread.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        // The thread keeps its nice value.
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: SLICE_NS,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid, initialised sched_attr whose size field matches its type; the
    // call reads it and changes only this thread's scheduling attributes.
    unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0) == 0 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_takes_the_short_slice_where_it_has_slices() {
        std::thread::spawn(|| {
            let took = super::prefer_short_slices();
            let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap_or_default();
            let slice = sched.lines().find(|l| l.starts_with("se.slice")).and_then(|l| l.split(':').nth(1));
            match slice {
                // EEVDF kernels show the slice: it must be the one asked for.
                Some(slice) => {
                    assert!(took && slice.trim() == super::SLICE_NS.to_string(), "slice {slice:?}, took {took}")
                }
                // Older kernels: the hint may be refused, and nothing else changes.
                None => eprintln!("no se.slice in /proc/thread-self/sched; the hint was taken: {took}"),
            }
        })
        .join()
        .unwrap();
    }
}
