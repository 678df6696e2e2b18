//! Where the layers may use more than one thread.
//!
//! A batch is split into chunks that run on rayon's threads, each chunk with single-threaded
//! layers ([`serial`]): small chunks keep the activations in cache and the large buffers of a
//! whole-batch pass (and their page faults) never exist. A pass over a batch too small to split
//! (e.g. one image, as CEM evaluates) may still parallelise inside its layers.

use std::cell::Cell;

/// What the layers running on a thread may split across rayon's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    /// Any layer (the default, outside the network's passes).
    All,
    /// Only layers of at least [`LARGE_LAYER_MACS`] multiply-adds ([`large_layers_only`]).
    LargeLayers,
    /// None ([`serial`]).
    None,
}

thread_local! {
    static INNER: Cell<Inner> = const { Cell::new(Inner::All) };
}

/// Multiply-adds per sample from which a layer of a pass over a batch too small to split (one
/// image) runs on several threads: ResNet-18's 3x3 convolutions on 32 x 32 inputs (19-38 M) do;
/// the MNIST CNNs (PyTorch's example: 10.6 M, alibi's: at most 1.6 M) stay on one thread, where
/// a one-image pass is faster (waking the other threads costs more than they save; measured on
/// PyTorch's MNIST net, docs/BENCHMARKS.md).
pub(crate) const LARGE_LAYER_MACS: usize = 1 << 24;

/// Runs `f` with `mode` on this thread, unless the thread is already more restricted.
fn with_inner<R>(mode: Inner, f: impl FnOnce() -> R) -> R {
    let before = INNER.with(|s| s.get());
    let stricter = match (before, mode) {
        (Inner::None, _) | (Inner::LargeLayers, Inner::All) => before,
        _ => mode,
    };
    INNER.with(|s| s.set(stricter));
    let out = f();
    INNER.with(|s| s.set(before));
    out
}

/// Runs `f` with the layers' inner parallelism switched off on this thread.
pub(crate) fn serial<R>(f: impl FnOnce() -> R) -> R {
    with_inner(Inner::None, f)
}

/// Runs `f` with inner parallelism only for layers of at least [`LARGE_LAYER_MACS`]
/// multiply-adds per sample (see [`inner_parallelism_for`]): a pass over one chunk.
pub(crate) fn large_layers_only<R>(f: impl FnOnce() -> R) -> R {
    with_inner(Inner::LargeLayers, f)
}

/// Whether a layer running on this thread may split its work across rayon's threads.
pub(crate) fn inner_parallelism() -> bool {
    INNER.with(|s| s.get()) == Inner::All && rayon::current_num_threads() > 1
}

/// Whether a layer of `macs` multiply-adds per sample running on this thread may split its
/// work across rayon's threads: as [`inner_parallelism`], and also inside
/// [`large_layers_only`] when `macs >= LARGE_LAYER_MACS`.
pub(crate) fn inner_parallelism_for(macs: usize) -> bool {
    rayon::current_num_threads() > 1
        && match INNER.with(|s| s.get()) {
            Inner::All => true,
            Inner::LargeLayers => macs >= LARGE_LAYER_MACS,
            Inner::None => false,
        }
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
    fn large_layers_only_never_loosens_serial() {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool")
            .install(|| {
                assert!(inner_parallelism() && inner_parallelism_for(1));
                large_layers_only(|| {
                    assert!(!inner_parallelism());
                    assert!(!inner_parallelism_for(LARGE_LAYER_MACS - 1));
                    assert!(inner_parallelism_for(LARGE_LAYER_MACS));
                    serial(|| assert!(!inner_parallelism_for(LARGE_LAYER_MACS)));
                    assert!(inner_parallelism_for(LARGE_LAYER_MACS));
                });
                serial(|| {
                    large_layers_only(|| assert!(!inner_parallelism_for(usize::MAX)));
                });
                assert!(inner_parallelism_for(1));
            });
    }

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
