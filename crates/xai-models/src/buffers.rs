//! Activation buffers recycled within a thread.
//!
//! A network's evaluation in chunks of samples ([`crate::parallel`]) allocates each large
//! layer's output afresh for every chunk, and the allocator hands back memory it must zero (or
//! new pages the kernel must clear): about a tenth of PyTorch's MNIST CNN's evaluation time
//! (`perf`, docs/BENCHMARKS.md). The evaluation passes give each activation they are done with
//! back here ([`recycle`]), and the layers whose kernels write every output value take their
//! output from here ([`overwritten`]) with whatever an earlier activation left in it.

use std::cell::RefCell;

/// Buffers kept per thread: a chain needs two at a time (a layer's input and output), a graph
/// a few more.
const MAX_BUFFERS: usize = 4;
/// Floats from which a buffer is worth keeping; smaller ones come cheaply from the allocator.
const MIN_RECYCLED: usize = 1 << 14;
/// Floats all of a thread's kept buffers may hold together (64 MiB).
const MAX_KEPT: usize = 1 << 24;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` floats with unspecified contents (zeros, or values of an earlier
/// activation of this thread): for outputs whose every element the caller writes before it
/// reads any. Debug builds fill it with NaN, so that an element left unwritten shows in the
/// tests' results.
pub(crate) fn overwritten(len: usize) -> Vec<f32> {
    let reused = FREE.with(|free| {
        let mut free = free.try_borrow_mut().ok()?;
        // The smallest kept buffer that holds `len` floats without growing.
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i)?;
        Some(free.swap_remove(best))
    });
    let mut buf = match reused {
        Some(mut buf) => {
            if buf.len() >= len {
                buf.truncate(len);
            } else {
                buf.resize(len, 0.0);
            }
            buf
        }
        None => vec![0.0; len],
    };
    if cfg!(debug_assertions) {
        buf.fill(f32::NAN);
    }
    buf
}

/// Keeps `buf` for a later [`overwritten`] on this thread, if it is large enough to be worth it
/// and the thread keeps fewer than [`MAX_BUFFERS`] of at most [`MAX_KEPT`] floats in all;
/// otherwise (or the smallest kept buffer, if `buf` is larger) it is freed.
pub(crate) fn recycle(buf: Vec<f32>) {
    if buf.capacity() < MIN_RECYCLED || buf.capacity() > MAX_KEPT {
        return;
    }
    FREE.with(|free| {
        let Ok(mut free) = free.try_borrow_mut() else {
            return;
        };
        if free.len() == MAX_BUFFERS {
            let smallest = (0..free.len()).min_by_key(|&i| free[i].capacity());
            match smallest {
                Some(i) if free[i].capacity() < buf.capacity() => {
                    free.swap_remove(i);
                }
                _ => return,
            }
        }
        let kept: usize = free.iter().map(Vec::capacity).sum();
        if kept + buf.capacity() <= MAX_KEPT {
            free.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_buffer_comes_back_at_the_length_asked() {
        let buf = vec![1.0f32; 2 * MIN_RECYCLED];
        let at = buf.as_ptr();
        recycle(buf);
        let again = overwritten(MIN_RECYCLED + 3);
        assert_eq!(again.len(), MIN_RECYCLED + 3);
        assert_eq!(again.as_ptr(), at, "the kept buffer is reused");
        // A request larger than every kept buffer gets a fresh one.
        recycle(again);
        let larger = overwritten(4 * MIN_RECYCLED);
        assert_eq!(larger.len(), 4 * MIN_RECYCLED);
        assert_ne!(larger.as_ptr(), at);
        if cfg!(debug_assertions) {
            assert!(larger.iter().all(|v| v.is_nan()));
        }
    }

    #[test]
    fn small_and_surplus_buffers_are_not_kept() {
        recycle(vec![0.0; MIN_RECYCLED - 1]);
        for _ in 0..2 * MAX_BUFFERS {
            recycle(vec![0.0; MIN_RECYCLED]);
        }
        let kept = FREE.with(|f| f.borrow().len());
        assert!(kept <= MAX_BUFFERS);
        assert!(FREE.with(|f| f.borrow().iter().all(|b| b.capacity() >= MIN_RECYCLED)));
    }
}
