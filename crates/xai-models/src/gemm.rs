//! A safe wrapper over the `gemm` crate's matrix product for row-major `f32` slices, and the
//! small products it does better without `gemm` (runtime-dispatched, see [`crate::cpu`]).

use gemm::Parallelism;

use crate::cpu::{dispatched, fma, Isa};

/// Products with up to this many rows on the left go row by row (see [`matmul`]).
const FEW_ROWS: usize = 4;

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
    if m * n * k >= 1 << 18 && crate::parallel::inner_parallelism() {
        use rayon::prelude::*;
        // Tasks of whole rows (each row's values do not depend on the split), each dispatched
        // once: about 16k multiply-adds per task.
        let rows = ((1 << 14) / (n * k)).max(1);
        c.par_chunks_mut(rows * n)
            .zip(a.par_chunks(rows * k))
            .for_each(|(c, a)| small_inner_rows(a, b, c, (k, n), accumulate));
    } else {
        small_inner_rows(a, b, c, (k, n), accumulate);
    }
}

/// The rows of [`small_inner_matmul`]: `a` is `rows x k`, `c` is `rows x n`.
#[inline(always)]
fn small_inner_rows_with<I: Isa>(
    isa: I,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    (k, n): (usize, usize),
    accumulate: bool,
) {
    for (c_row, a_row) in c.chunks_mut(n).zip(a.chunks(k)) {
        if !accumulate {
            c_row.fill(0.0);
        }
        for (l, &a_il) in a_row.iter().enumerate() {
            let b_row = &b[l * n..(l + 1) * n];
            for (cv, bv) in c_row.iter_mut().zip(b_row) {
                *cv = fma(isa, a_il, *bv, *cv);
            }
        }
    }
}

dispatched! {
    /// [`small_inner_rows_with`] for this CPU.
    fn small_inner_rows(
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        kn: (usize, usize),
        accumulate: bool,
    ) = small_inner_rows_with;
}

/// Dot products of `a` with four rows at once (each at least `a.len()` long): the rows share
/// the loads of `a`, and eight vector accumulators hide the multiply-add latency that limits a
/// single dot product. Explicit AVX2 + FMA intrinsics on that path (LLVM's auto-vectoriser made
/// poor code of this loop nest), portable code otherwise.
#[inline(always)]
pub(crate) fn dots4<I: Isa>(isa: I, a: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    let k = a.len();
    let rows = rows.map(|r| &r[..k]);
    #[cfg(target_arch = "x86_64")]
    if I::AVX2_FMA {
        // SAFETY: only the `Avx2Fma` token has `AVX2_FMA`, and it exists only where the CPU has
        // AVX2 and FMA (`cpu::Avx2Fma::detect`).
        return unsafe { avx2::dots4(a, rows) };
    }
    rows.map(|r| dot(isa, a, r))
}

/// The dot product of `a` with `row` (at least `a.len()` long).
#[inline(always)]
pub(crate) fn dot<I: Isa>(isa: I, a: &[f32], row: &[f32]) -> f32 {
    let row = &row[..a.len()];
    let mut acc = [0.0f32; 16];
    let (a16, a_rest) = a.split_at(a.len() / 16 * 16);
    let (r16, r_rest) = row.split_at(a16.len());
    for (x, y) in a16.chunks_exact(16).zip(r16.chunks_exact(16)) {
        for l in 0..16 {
            acc[l] = fma(isa, x[l], y[l], acc[l]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in a_rest.iter().zip(r_rest) {
        sum = fma(isa, *x, *y, sum);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// See [`super::dots4`]; every row has exactly `a.len()` values.
    ///
    /// # Safety
    ///
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn dots4(a: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        let k = a.len();
        assert!(rows.iter().all(|r| r.len() == k), "dots4: row lengths");
        let k16 = k / 16 * 16;
        let mut out = [0.0f32; 4];
        // SAFETY: every load reads 8 floats at offsets `i` and `i + 8` with `i + 16 <= k16 <= k`,
        // inside `a` and every row (length `k`, asserted above); the caller guarantees AVX2 and
        // FMA. Unaligned loads are used throughout.
        unsafe {
            let zero = _mm256_setzero_ps();
            let mut acc = [[zero; 2]; 4];
            let mut i = 0;
            while i < k16 {
                let x0 = _mm256_loadu_ps(a.as_ptr().add(i));
                let x1 = _mm256_loadu_ps(a.as_ptr().add(i + 8));
                for (acc_r, row) in acc.iter_mut().zip(&rows) {
                    let p = row.as_ptr().add(i);
                    acc_r[0] = _mm256_fmadd_ps(x0, _mm256_loadu_ps(p), acc_r[0]);
                    acc_r[1] = _mm256_fmadd_ps(x1, _mm256_loadu_ps(p.add(8)), acc_r[1]);
                }
                i += 16;
            }
            for ((o, acc_r), row) in out.iter_mut().zip(&acc).zip(&rows) {
                // The horizontal sum of the eight lanes of the two accumulators' sum.
                let v = _mm256_add_ps(acc_r[0], acc_r[1]);
                let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
                let mut sum = _mm_cvtss_f32(s);
                for (x, y) in a[k16..].iter().zip(&row[k16..]) {
                    sum = x.mul_add(*y, sum);
                }
                *o = sum;
            }
        }
        out
    }
}

/// `c = a · b (+ c)` for a single row `a` (length `k`) and row-major `b` (`k x n`): the rows of
/// `b` scaled by `a` and summed, 64 columns at a time so that those columns of `c` stay in
/// registers while `b` streams past.
#[inline(always)]
fn row_times_matrix<I: Isa>(isa: I, a: &[f32], b: &[f32], c: &mut [f32], accumulate: bool) {
    const BLOCK: usize = 64;
    let n = c.len();
    let mut j0 = 0;
    while j0 < n {
        let width = BLOCK.min(n - j0);
        let mut acc = [0.0f32; BLOCK];
        if accumulate {
            acc[..width].copy_from_slice(&c[j0..j0 + width]);
        }
        if width == BLOCK {
            for (&a_l, b_row) in a.iter().zip(b.chunks_exact(n)) {
                let bv: &[f32; BLOCK] = b_row[j0..j0 + BLOCK].try_into().expect("BLOCK");
                for q in 0..BLOCK {
                    acc[q] = fma(isa, a_l, bv[q], acc[q]);
                }
            }
        } else {
            for (&a_l, b_row) in a.iter().zip(b.chunks_exact(n)) {
                for (q, bv) in b_row[j0..j0 + width].iter().enumerate() {
                    acc[q] = fma(isa, a_l, *bv, acc[q]);
                }
            }
        }
        c[j0..j0 + width].copy_from_slice(&acc[..width]);
        j0 += width;
    }
}

/// `c[j] = a · b_j (+ c[j])` for the rows `b_j` of a row-major `n x k` matrix `b`.
#[inline(always)]
fn row_dots<I: Isa>(isa: I, a: &[f32], b: &[f32], c: &mut [f32], accumulate: bool) {
    let k = a.len();
    let n = c.len();
    let mut store = |j: usize, v: f32| {
        c[j] = if accumulate { c[j] + v } else { v };
    };
    let n4 = n / 4 * 4;
    for j in (0..n4).step_by(4) {
        let rows = [0, 1, 2, 3].map(|r| &b[(j + r) * k..(j + r + 1) * k]);
        for (r, v) in dots4(isa, a, rows).into_iter().enumerate() {
            store(j + r, v);
        }
    }
    for j in n4..n {
        store(j, dot(isa, a, &b[j * k..(j + 1) * k]));
    }
}

dispatched! {
    /// [`row_dots`] for this CPU: a matrix-vector product.
    fn matrix_vector(a: &[f32], b: &[f32], c: &mut [f32], accumulate: bool) = row_dots;
}

/// Each row of `a` (`rows x k`) times `b` (`k x n`, or stored `n x k` when `op_b` is
/// [`Op::T`]) into the same row of `c`, one row at a time.
#[inline(always)]
fn few_rows_with<I: Isa>(
    isa: I,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    (k, n): (usize, usize),
    op_b: Op,
    accumulate: bool,
) {
    for (a_row, c_row) in a.chunks_exact(k).zip(c.chunks_exact_mut(n)) {
        match op_b {
            Op::N => row_times_matrix(isa, a_row, b, c_row, accumulate),
            Op::T => row_dots(isa, a_row, b, c_row, accumulate),
        }
    }
}

dispatched! {
    /// [`few_rows_with`] for this CPU.
    fn few_rows(
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        kn: (usize, usize),
        op_b: Op,
        accumulate: bool,
    ) = few_rows_with;
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
    if m <= FEW_ROWS && op_a == Op::N {
        // A few rows times a matrix (a dense layer at batch 1 or 2, as CEM calls it): row by
        // row, so that each row's result is bit-identical to a batch of one; `b` as stored is
        // read once per row, in order.
        few_rows(a, b, c, (k, n), op_b, accumulate);
        return;
    }
    if n == 1 && op_a == Op::N {
        // A matrix-vector product (e.g. a convolution to one channel): `b` is a contiguous
        // column whatever its op, so each output is one dot product of contiguous rows.
        matrix_vector(b, a, c, accumulate);
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
    let parallelism = if flops >= 1 << 20 && crate::parallel::inner_parallelism_for(flops) {
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
        // One to four rows (a dense layer at batch 1 or 2), short and long rows of the weights.
        for (m, k, n) in [(1, 3, 5), (1, 13, 1), (1, 40, 37), (2, 40, 70), (4, 21, 9)] {
            check_combinations(m, k, n);
        }
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32 + seed as f32 * 0.618) * 0.731).sin())
            .collect()
    }

    /// `|x - y|` within rounding of a sum of `terms` products of values in [-1, 1], whichever
    /// order and fusing each path uses (a wrong term would be off by ~0.1).
    fn close(x: f32, y: f32, terms: usize) -> bool {
        (x - y).abs() <= 1e-5 * (1.0 + terms as f32)
    }

    #[test]
    fn chunked_small_inner_products_equal_row_by_row() {
        // 4096 x 8 x 8 takes the parallel path in tasks of rows (when rayon has threads); every
        // row must equal the same row computed on its own.
        let (m, k, n) = (4096, 8, 8);
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let mut c = vec![0.5; m * n];
        matmul(&a, (m, k), Op::N, &b, (k, n), Op::N, &mut c, true);
        for i in (0..m).step_by(97) {
            let mut row = vec![0.5; n];
            small_inner_rows(&a[i * k..(i + 1) * k], &b, &mut row, (k, n), true);
            assert_eq!(row, c[i * n..(i + 1) * n]);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// The kernels chosen at run time agree with the portable ones (up to summation order
        /// and fusing), and a few rows together equal each row alone, bit for bit.
        #[test]
        fn dispatched_kernels_match_portable(
            m in 1usize..5,
            k in 1usize..70,
            n in 1usize..80,
            seed in 0u64..1000,
            accumulate: bool,
        ) {
            use crate::cpu::Portable;
            let a = values(m * k, seed);
            let b = values(k * n, seed + 1);
            let c0 = values(m * n, seed + 2);
            for op_b in [Op::N, Op::T] {
                let mut got = c0.clone();
                few_rows(&a, &b, &mut got, (k, n), op_b, accumulate);
                let mut want = c0.clone();
                few_rows_with(Portable, &a, &b, &mut want, (k, n), op_b, accumulate);
                for (x, y) in got.iter().zip(&want) {
                    proptest::prop_assert!(close(*x, *y, k), "{x} vs {y}");
                }
                for i in 0..m {
                    let mut row = c0[i * n..(i + 1) * n].to_vec();
                    few_rows(&a[i * k..(i + 1) * k], &b, &mut row, (k, n), op_b, accumulate);
                    proptest::prop_assert_eq!(&row[..], &got[i * n..(i + 1) * n]);
                }
            }
            // A matrix-vector product: `n` rows of length `k` times the vector `a[..k]`.
            let mut got = c0[..n].to_vec();
            matrix_vector(&a[..k], &b, &mut got, accumulate);
            let mut want = c0[..n].to_vec();
            row_dots(Portable, &a[..k], &b, &mut want, accumulate);
            for (x, y) in got.iter().zip(&want) {
                proptest::prop_assert!(close(*x, *y, k), "{x} vs {y}");
            }
            // A small inner dimension.
            let ks = k.min(SMALL_INNER);
            let mut got = c0.clone();
            small_inner_rows(&a[..m * ks], &b[..ks * n], &mut got, (ks, n), accumulate);
            let mut want = c0.clone();
            small_inner_rows_with(Portable, &a[..m * ks], &b[..ks * n], &mut want, (ks, n), accumulate);
            for (x, y) in got.iter().zip(&want) {
                proptest::prop_assert!(close(*x, *y, ks), "{x} vs {y}");
            }
        }
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
