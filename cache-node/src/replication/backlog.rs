//! The replication backlog: this node's own changes, encoded as link frames, in a bounded
//! ring addressed by stream offset (as Redis's PSYNC backlog).
//!
//! The link to the peer reads from the offset the peer has, so a short disconnect resumes where
//! it stopped. When the peer falls further behind than the ring holds, its offset is gone and it
//! takes a full sync: a slow or absent peer costs bounded memory and never a silently dropped
//! write.

use std::collections::VecDeque;

/// Why a read could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The offset was overwritten: the peer needs a full sync.
    Trimmed,
    /// The offset lies beyond what was ever written (a different stream).
    Ahead,
}

#[derive(Debug)]
pub struct Backlog {
    bytes: VecDeque<u8>,
    /// Where each frame held ends, for counting ops.
    ends: VecDeque<u64>,
    /// Stream offset of `bytes[0]`.
    start: u64,
    capacity: usize,
}

impl Backlog {
    pub fn new(capacity: usize) -> Self {
        Self { bytes: VecDeque::new(), ends: VecDeque::new(), start: 0, capacity: capacity.max(1) }
    }

    /// Offset just past the last byte written.
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Oldest offset still held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Appends one frame (a big-endian `u32` length, then that many bytes, as the link codec
    /// writes it), dropping the oldest whole frames that no longer fit, so the ring never
    /// starts mid-frame. Returns the new end offset.
    pub fn append(&mut self, frame: &[u8]) -> u64 {
        // Room first, in a ring allocated once at its size: grown as it filled, it would
        // double past its capacity and hold up to twice the memory `-q` names.
        self.drop_oldest(self.capacity.saturating_sub(frame.len()));
        if self.bytes.capacity() < self.capacity {
            self.bytes.reserve_exact(self.capacity - self.bytes.len());
        }
        self.bytes.extend(frame);
        self.ends.push_back(self.end());
        // A frame larger than the whole ring does not stay.
        self.drop_oldest(self.capacity);
        self.end()
    }

    /// Drops the oldest frames until at most `len` bytes are held.
    fn drop_oldest(&mut self, len: usize) {
        while self.bytes.len() > len {
            let mut prefix = [0u8; 4];
            for (dst, src) in prefix.iter_mut().zip(self.bytes.iter()) {
                *dst = *src;
            }
            let n = (4 + u32::from_be_bytes(prefix) as usize).min(self.bytes.len());
            self.bytes.drain(..n);
            self.start += n as u64;
            self.ends.pop_front();
        }
    }

    /// How many frames end after `offset`: the ops a peer at `offset` has yet to apply.
    pub fn frames_after(&self, offset: u64) -> usize {
        self.ends.len() - self.ends.partition_point(|&end| end <= offset)
    }

    /// Copies up to `max` bytes from `offset` into `out`; returns how many.
    pub fn read(&self, offset: u64, max: usize, out: &mut Vec<u8>) -> Result<usize, Gap> {
        if offset < self.start {
            return Err(Gap::Trimmed);
        }
        if offset > self.end() {
            return Err(Gap::Ahead);
        }
        let from = (offset - self.start) as usize;
        let n = (self.bytes.len() - from).min(max);
        let (a, b) = self.bytes.as_slices();
        if from < a.len() {
            let take = n.min(a.len() - from);
            out.extend_from_slice(&a[from..from + take]);
            out.extend_from_slice(&b[..n - take]);
        } else {
            let from = from - a.len();
            out.extend_from_slice(&b[from..from + n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test frames: a u32 length prefix and that many bytes.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    fn len(b: &[u8]) -> usize {
        4 + u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
    }

    #[test]
    fn reads_resume_at_any_offset_and_trimmed_ones_are_reported() {
        let mut b = Backlog::new(20);
        assert_eq!(b.append(&frame(b"abcd")), 8);
        assert_eq!(b.append(&frame(b"efgh")), 16);
        let mut out = Vec::new();
        assert_eq!(b.read(8, 100, &mut out), Ok(8));
        assert_eq!(out, frame(b"efgh"));
        // A third frame pushes the first out, whole.
        b.append(&frame(b"ijkl"));
        assert_eq!(b.start(), 8);
        assert_eq!(b.read(0, 100, &mut Vec::new()), Err(Gap::Trimmed));
        assert_eq!(b.read(25, 100, &mut Vec::new()), Err(Gap::Ahead));
        let mut out = Vec::new();
        assert_eq!(b.read(8, 100, &mut out), Ok(16));
        assert_eq!(out, [frame(b"efgh"), frame(b"ijkl")].concat());
        assert_eq!(b.read(24, 100, &mut Vec::new()), Ok(0));
        assert_eq!((b.frames_after(8), b.frames_after(16), b.frames_after(24)), (2, 1, 0));
        assert_eq!(b.frames_after(0), 2, "trimmed frames are not counted");
    }

    #[test]
    fn memory_stays_bounded_under_any_load() {
        let mut b = Backlog::new(1000);
        for i in 0..10_000u32 {
            b.append(&frame(&i.to_be_bytes().repeat(i as usize % 7)));
            assert!(b.bytes.len() <= 1000 && b.bytes.capacity() < 1100, "{}", b.bytes.capacity());
        }
        b.append(&frame(&[7; 2000]));
        assert!(b.bytes.is_empty() && b.start() == b.end(), "a frame larger than the ring does not stay");
        // What is held still starts at a frame boundary.
        let mut out = Vec::new();
        b.read(b.start(), usize::MAX, &mut out).unwrap();
        let mut at = 0;
        while at < out.len() {
            at += len(&out[at..]);
        }
        assert_eq!(at, out.len());
    }
}
