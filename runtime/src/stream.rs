//! Deterministic shuffled batch streams.
//!
//! Each stream reshuffles the sample indices every epoch with its own splitmix64 generator seeded
//! from (seed, stream id, epoch), so a position — (epoch, offset) — is all a checkpoint needs to
//! continue the stream bit for bit. The training stream and the GeN probe stream use different ids
//! and are therefore independent orders over the same samples.

use serde::{Deserialize, Serialize};

/// Stream id of the training batches.
pub const TRAIN_STREAM: u64 = 0;
/// Stream id of the GeN probe batches.
pub const PROBE_STREAM: u64 = 1;

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to shuffle.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), without modulo bias (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

/// Where a stream stands: the epoch being drawn and the next index within its order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub epoch: u64,
    pub offset: usize,
}

/// Shuffled batches of sample indices, epoch after epoch.
#[derive(Clone, Debug)]
pub struct BatchStream {
    samples: usize,
    batch: usize,
    drop_last: bool,
    seed: u64,
    id: u64,
    position: StreamPosition,
    order: Vec<usize>,
}

impl BatchStream {
    /// A stream over `samples` indices in batches of `batch` (1 ≤ batch ≤ samples). With
    /// `drop_last` an epoch's final partial batch is skipped (models with a fixed batch size).
    pub fn new(samples: usize, batch: usize, drop_last: bool, seed: u64, id: u64) -> BatchStream {
        let mut s = BatchStream {
            samples,
            batch,
            drop_last,
            seed,
            id,
            position: StreamPosition::default(),
            order: Vec::new(),
        };
        s.shuffle();
        s
    }

    /// Batches per epoch (the last one partial unless `drop_last`).
    pub fn batches_per_epoch(&self) -> usize {
        if self.drop_last {
            self.samples / self.batch
        } else {
            self.samples.div_ceil(self.batch)
        }
    }

    pub fn position(&self) -> StreamPosition {
        self.position
    }

    /// Continues from a saved position.
    pub fn seek(&mut self, position: StreamPosition) {
        let reshuffle = position.epoch != self.position.epoch;
        self.position = position;
        if reshuffle {
            self.shuffle();
        }
    }

    /// The next batch of indices, and the epoch it belongs to.
    pub fn next_batch(&mut self) -> (u64, Vec<usize>) {
        let remaining = self.samples - self.position.offset;
        if remaining == 0 || (self.drop_last && remaining < self.batch) {
            self.position = StreamPosition {
                epoch: self.position.epoch + 1,
                offset: 0,
            };
            self.shuffle();
        }
        let start = self.position.offset;
        let end = (start + self.batch).min(self.samples);
        self.position.offset = end;
        (self.position.epoch, self.order[start..end].to_vec())
    }

    fn shuffle(&mut self) {
        let mut rng = SplitMix64::new(
            self.seed
                ^ self.id.wrapping_mul(0xd6e8_feb8_6659_fd93)
                ^ self.position.epoch.wrapping_mul(0xa076_1d64_78bd_642f),
        );
        self.order = (0..self.samples).collect();
        for i in (1..self.samples).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            self.order.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_and_partial_batches_kept() {
        let mut s = BatchStream::new(10, 4, false, 42, TRAIN_STREAM);
        assert_eq!(s.batches_per_epoch(), 3);
        let mut seen: Vec<usize> = Vec::new();
        let sizes: Vec<usize> = (0..3)
            .map(|_| {
                let (epoch, b) = s.next_batch();
                assert_eq!(epoch, 0);
                seen.extend(&b);
                b.len()
            })
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(s.next_batch().0, 1);
    }

    #[test]
    fn seek_reproduces_the_stream() {
        let mut a = BatchStream::new(7, 3, false, 5, PROBE_STREAM);
        for _ in 0..4 {
            a.next_batch();
        }
        let saved = a.position();
        let rest: Vec<_> = (0..5).map(|_| a.next_batch()).collect();
        let mut b = BatchStream::new(7, 3, false, 5, PROBE_STREAM);
        b.seek(saved);
        assert_eq!((0..5).map(|_| b.next_batch()).collect::<Vec<_>>(), rest);
    }

    #[test]
    fn streams_differ_and_drop_last_skips() {
        let a = BatchStream::new(50, 50, false, 1, TRAIN_STREAM)
            .next_batch()
            .1;
        let b = BatchStream::new(50, 50, false, 1, PROBE_STREAM)
            .next_batch()
            .1;
        assert_ne!(a, b);
        let mut d = BatchStream::new(5, 2, true, 1, TRAIN_STREAM);
        assert_eq!(d.batches_per_epoch(), 2);
        assert_eq!(d.next_batch().0, 0);
        assert_eq!(d.next_batch().0, 0);
        let (epoch, batch) = d.next_batch();
        assert_eq!((epoch, batch.len()), (1, 2));
    }
}
