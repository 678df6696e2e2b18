//! Where the layers may use more than one thread.
//!
//! A batch is split into chunks that run on rayon's threads, each chunk with single-threaded
//! layers ([`serial`]): small chunks keep the activations in cache and the large buffers of a
//! whole-batch pass (and their page faults) never exist. A pass over a batch too small to split
//! (e.g. one image, as CEM evaluates) may still parallelise inside its layers.

use std::cell::Cell;

thread_local! {
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the layers' inner parallelism switched off on this thread.
pub(crate) fn serial<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL.with(|s| s.replace(true));
    let out = f();
    SERIAL.with(|s| s.set(before));
    out
}

/// Whether a layer running on this thread may split its work across rayon's threads.
pub(crate) fn inner_parallelism() -> bool {
    !SERIAL.with(|s| s.get()) && rayon::current_num_threads() > 1
}

/// Samples per chunk when a batch is split across threads: enough rows for efficient matrix
/// products, few enough that a chunk's activations stay in cache (alibi's CNN: ~1.6 MB of
/// im2col patches per 8 images).
pub(crate) const CHUNK: usize = 16;

/// The `[start, end)` sample ranges of a batch of `n` split into chunks of [`CHUNK`] samples,
/// or one range when the batch is no larger than a chunk.
pub(crate) fn chunk_ranges(n: usize) -> Vec<(usize, usize)> {
    if n <= CHUNK {
        return vec![(0, n)];
    }
    (0..n)
        .step_by(CHUNK)
        .map(|s| (s, (s + CHUNK).min(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_scopes_nest_and_restore() {
        let outer = inner_parallelism();
        serial(|| {
            assert!(!inner_parallelism());
            serial(|| assert!(!inner_parallelism()));
            assert!(!inner_parallelism());
        });
        assert_eq!(inner_parallelism(), outer);
    }

    #[test]
    fn chunk_ranges_cover_the_batch_once() {
        for n in [0, 1, CHUNK, CHUNK + 1, 5 * CHUNK + 3] {
            let r = chunk_ranges(n);
            let mut next = 0;
            for (s, e) in r {
                assert_eq!(s, next);
                assert!(e > s || n == 0);
                next = e;
            }
            assert_eq!(next, n);
        }
    }
}
