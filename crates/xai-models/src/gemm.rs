//! A safe wrapper over the `gemm` crate's matrix product for row-major `f32` slices.

use gemm::Parallelism;

/// Inner dimensions up to this size (e.g. a first convolution over one channel with a 2x2
/// kernel: 4) are computed directly; `gemm`'s packing costs more than it saves there.
const SMALL_INNER: usize = 8;

/// `c = a · b (+ c)` for a small inner dimension: a sum of `k` scaled rows of `b` per row of `c`,
/// which the compiler vectorises over `n`.
fn small_inner_matmul(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
) {
    let row = |(c_row, a_row): (&mut [f32], &[f32])| {
        if !accumulate {
            c_row.fill(0.0);
        }
        for (l, &a_il) in a_row.iter().enumerate() {
            let b_row = &b[l * n..(l + 1) * n];
            for (cv, bv) in c_row.iter_mut().zip(b_row) {
                *cv += a_il * bv;
            }
        }
    };
    if m * n * k >= 1 << 18 && crate::parallel::inner_parallelism() {
        use rayon::prelude::*;
        c.par_chunks_mut(n).zip(a.par_chunks(k)).for_each(row);
    } else {
        c.chunks_mut(n).zip(a.chunks(k)).for_each(row);
    }
}

/// Dot product with eight independent accumulators, so that it vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

/// How a row-major operand is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// As stored.
    N,
    /// Transposed.
    T,
}

/// `c = a' · b' (+ c if accumulate)`, where `a'` is `a` (stored row-major as `rows_a x cols_a`)
/// or its transpose, likewise `b'`, and `c` is row-major `m x n`.
///
/// Internal invariants (slice lengths) are checked with `assert!`: callers in this crate size
/// every buffer from validated shapes, so a failure is a bug here, not bad user input.
#[allow(clippy::many_single_char_names)]
pub(crate) fn matmul(
    a: &[f32],
    (rows_a, cols_a): (usize, usize),
    op_a: Op,
    b: &[f32],
    (rows_b, cols_b): (usize, usize),
    op_b: Op,
    c: &mut [f32],
    accumulate: bool,
) {
    assert_eq!(a.len(), rows_a * cols_a, "matmul: lhs length");
    assert_eq!(b.len(), rows_b * cols_b, "matmul: rhs length");
    let (m, k) = match op_a {
        Op::N => (rows_a, cols_a),
        Op::T => (cols_a, rows_a),
    };
    let (k2, n) = match op_b {
        Op::N => (rows_b, cols_b),
        Op::T => (cols_b, rows_b),
    };
    assert_eq!(k, k2, "matmul: inner dimensions");
    assert_eq!(c.len(), m * n, "matmul: output length");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    if k <= SMALL_INNER && op_a == Op::N {
        match op_b {
            Op::N => small_inner_matmul(a, b, c, (m, k, n), accumulate),
            Op::T => {
                // `b` is stored n x k; its transpose is tiny (e.g. a conv's weights to one
                // output channel in the backward pass), so make it k x n and take the same path.
                let mut bt = vec![0.0f32; k * n];
                for (j, b_row) in b.chunks_exact(k).enumerate() {
                    for (l, v) in b_row.iter().enumerate() {
                        bt[l * n + j] = *v;
                    }
                }
                small_inner_matmul(a, &bt, c, (m, k, n), accumulate);
            }
        }
        return;
    }
    if n == 1 && op_a == Op::N {
        // A matrix-vector product (e.g. a convolution to one channel): `b` is a contiguous
        // column whatever its op, so each output is one dot product of contiguous rows.
        for (cv, a_row) in c.iter_mut().zip(a.chunks_exact(k)) {
            let dot = dot(a_row, b);
            *cv = if accumulate { *cv + dot } else { dot };
        }
        return;
    }
    // Element (i, j) of a row-major r x c matrix sits at i * c + j: row stride c, column stride 1.
    // Its transpose swaps the strides.
    let (a_rs, a_cs) = match op_a {
        Op::N => (cols_a as isize, 1),
        Op::T => (1, cols_a as isize),
    };
    let (b_rs, b_cs) = match op_b {
        Op::N => (cols_b as isize, 1),
        Op::T => (1, cols_b as isize),
    };
    let flops = m * n * k;
    let parallelism = if flops >= 1 << 20 && crate::parallel::inner_parallelism() {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above guarantee every index the kernel touches lies inside the slices
    // (m x k, k x n and m x n matrices with the strides computed from their row-major layouts),
    // and `c` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], m: usize, k: usize, b: &[f32], n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    c[i * n + j] += a[i * k + l] * b[l * n + j];
                }
            }
        }
        c
    }

    fn transpose(a: &[f32], r: usize, c: usize) -> Vec<f32> {
        let mut t = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = a[i * c + j];
            }
        }
        t
    }

    #[test]
    fn all_transpose_combinations_match_naive() {
        // k = 5 takes the small-inner-dimension path for (N, N) and (N, T); k = 13 takes gemm.
        for k in [5, 13] {
            check_combinations(7, k, 3);
        }
        // n = 1 (matrix-vector), with inner lengths below, at and above the 8-wide unrolling.
        for k in [3, 8, 13, 21] {
            check_combinations(7, k, 1);
        }
        // An inner dimension of one (outer products), as a conv to one channel's backward.
        check_combinations(9, 1, 6);
    }

    fn check_combinations(m: usize, k: usize, n: usize) {
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(&a, m, k, &b, n);
        let at = transpose(&a, m, k);
        let bt = transpose(&b, k, n);
        for (op_a, aa, sa) in [(Op::N, &a, (m, k)), (Op::T, &at, (k, m))] {
            for (op_b, bb, sb) in [(Op::N, &b, (k, n)), (Op::T, &bt, (n, k))] {
                let mut c = vec![1.0; m * n];
                matmul(aa, sa, op_a, bb, sb, op_b, &mut c, false);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-5);
                }
                matmul(aa, sa, op_a, bb, sb, op_b, &mut c, true);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - 2.0 * y).abs() < 1e-5);
                }
            }
        }
    }
}
