//! Matrix products: `MatMul` (NumPy semantics: 1-D operands promoted and the added axis
//! removed, batched over broadcast leading dimensions) and `Gemm` (`Y = alpha op(A) op(B) +
//! beta C`, with `transA`, `transB` and `C` broadcast to the output).
//!
//! Every 2-D product runs through `ndarray`'s `general_mat_mul` (matrixmultiply's kernels) on
//! views, so transposed operands are never copied; large products are split by rows, and many
//! batch elements run side by side, on rayon's threads. A `MatMul` whose second operand has no
//! batch dimensions (a linear layer on `[batch, tokens, features]`) is one product of the
//! flattened first operand.
//!
//! Backward: `dA = G Bᵀ`, `dB = Aᵀ G`, each summed over the batch dimensions along which its
//! operand was broadcast.

use std::borrow::Cow;

use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArrayD, ArrayView2, ArrayViewMut2, IxDyn};
use rayon::prelude::*;

use crate::broadcast::{broadcast_shape, unbroadcast};
use crate::error::{OpError, OpResult};
use crate::op::{first_grad, optional, required, required_f32, Builder, NodeSpec, Operator};
use crate::value::{reshape, Value};

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[("MatMul", build_matmul), ("Gemm", build_gemm)];

/// Multiply-adds above which a single product is split by rows over rayon's threads.
const PARALLEL_WORK: usize = 1 << 20;

/// The elements of `x` in row-major order, borrowed when it is contiguous.
fn contiguous(x: &ArrayD<f32>) -> Cow<'_, [f32]> {
    match x.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(x.iter().copied().collect()),
    }
}

/// `out = alpha x y` for an `[m, k]` view `x` and a `[k, n]` view `y`, `out` row-major
/// `[m, n]`; split by rows over rayon's threads when large.
fn gemm_into(alpha: f32, x: ArrayView2<f32>, y: ArrayView2<f32>, out: &mut [f32]) -> OpResult<()> {
    let (m, k) = x.dim();
    let (ky, n) = y.dim();
    if k != ky || out.len() != m * n {
        return Err(OpError(format!(
            "internal product of [{m}, {k}] and [{ky}, {n}] into {} elements",
            out.len()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    if m * n * k > PARALLEL_WORK && threads > 1 && m >= 16 {
        let rows = m.div_ceil(threads * 2).max(8);
        out.par_chunks_mut(rows * n)
            .enumerate()
            .try_for_each(|(i, c)| -> OpResult<()> {
                let r0 = i * rows;
                let r = c.len() / n;
                let xs = x.slice(s![r0..r0 + r, ..]);
                let mut cm = ArrayViewMut2::from_shape((r, n), c)?;
                general_mat_mul(alpha, &xs, &y, 0.0, &mut cm);
                Ok(())
            })
    } else {
        let mut cm = ArrayViewMut2::from_shape((m, n), out)?;
        general_mat_mul(alpha, &x, &y, 0.0, &mut cm);
        Ok(())
    }
}

/// One operand of a batched product: row-major data holding `prod(batch)` matrices of
/// `rows × cols`, its batch dimensions aligned with the output's, transposed or not.
struct Operand<'a> {
    data: &'a [f32],
    batch: &'a [usize],
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl Operand<'_> {
    /// The matrix of batch element `o` of the output (whose batch shape is `out_batch`).
    fn matrix(&self, o: usize, out_batch: &[usize]) -> OpResult<ArrayView2<'_, f32>> {
        // Unravel `o` over the output's batch shape and ravel it over this operand's, where
        // dimensions of size 1 are broadcast.
        let mut rem = o;
        let mut flat = 0;
        let mut stride = 1;
        for d in (0..out_batch.len()).rev() {
            let i = rem % out_batch[d].max(1);
            rem /= out_batch[d].max(1);
            let size = self.batch.get(d).copied().unwrap_or(1);
            if size != 1 {
                flat += i * stride;
            }
            stride *= size;
        }
        let len = self.rows * self.cols;
        let data = self
            .data
            .get(flat * len..(flat + 1) * len)
            .ok_or_else(|| OpError("internal: batch element out of range".into()))?;
        let m = ArrayView2::from_shape((self.rows, self.cols), data)?;
        Ok(if self.transposed {
            m.reversed_axes()
        } else {
            m
        })
    }

    /// Rows and columns of the (possibly transposed) matrices.
    fn dims(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
}

/// `x[o] · y[o]` for every batch element `o` of `batch`, as row-major `[prod(batch), m, n]`.
fn batched(batch: &[usize], x: &Operand, y: &Operand) -> OpResult<Vec<f32>> {
    let (m, k) = x.dims();
    let (ky, n) = y.dims();
    if k != ky {
        return Err(OpError(format!(
            "internal: inner dimensions {k} and {ky} differ"
        )));
    }
    let nb: usize = batch.iter().product();
    let mut out = vec![0.0f32; nb * m * n];
    if m * n == 0 {
        return Ok(out);
    }
    let one = |(o, c): (usize, &mut [f32])| -> OpResult<()> {
        gemm_into(1.0, x.matrix(o, batch)?, y.matrix(o, batch)?, c)
    };
    if nb > 1 && nb * m * n * k > PARALLEL_WORK / 8 {
        out.par_chunks_mut(m * n).enumerate().try_for_each(one)?;
    } else {
        out.chunks_mut(m * n).enumerate().try_for_each(one)?;
    }
    Ok(out)
}

/// `MatMul`.
#[derive(Debug)]
struct MatMul;

fn build_matmul(_spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    Ok(Box::new(MatMul))
}

/// How the operands of a `MatMul` are multiplied.
#[derive(Debug)]
struct Plan {
    /// Batch shape of the product (empty when folded).
    batch: Vec<usize>,
    /// The operands' batch shapes aligned to `batch`'s rank.
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
    out_shape: Vec<usize>,
}

fn plan(a: &[usize], b: &[usize]) -> OpResult<Plan> {
    if a.is_empty() || b.is_empty() {
        return Err(OpError(format!(
            "MatMul of shapes {a:?} and {b:?}: expected operands of rank 1 or more"
        )));
    }
    let (ab, m, ka) = match a.len() {
        1 => (&a[..0], 1, a[0]),
        r => (&a[..r - 2], a[r - 2], a[r - 1]),
    };
    let (bb, kb, n) = match b.len() {
        1 => (&b[..0], b[0], 1),
        r => (&b[..r - 2], b[r - 2], b[r - 1]),
    };
    if ka != kb {
        return Err(OpError(format!(
            "MatMul of shapes {a:?} and {b:?}: the inner dimensions {ka} and {kb} differ, \
             expected equal"
        )));
    }
    let batch = broadcast_shape(ab, bb).map_err(|e| {
        OpError(format!(
            "MatMul of shapes {a:?} and {b:?}: the batch dimensions do not broadcast ({e})"
        ))
    })?;
    let pad = |s: &[usize]| {
        let mut v = vec![1; batch.len() - s.len()];
        v.extend_from_slice(s);
        v
    };
    let mut out_shape = batch.clone();
    if a.len() > 1 {
        out_shape.push(m);
    }
    if b.len() > 1 {
        out_shape.push(n);
    }
    let (a_batch, b_batch) = (pad(ab), pad(bb));
    if bb.iter().product::<usize>() == 1 {
        // The second operand is one matrix: fold the first's batch into its rows.
        let nb: usize = batch.iter().product();
        return Ok(Plan {
            batch: vec![],
            a_batch: vec![],
            b_batch: vec![],
            m: nb * m,
            k: ka,
            n,
            out_shape,
        });
    }
    Ok(Plan {
        batch,
        a_batch,
        b_batch,
        m,
        k: ka,
        n,
        out_shape,
    })
}

impl Plan {
    /// The shape of the full (batch-broadcast) gradient of an operand, and the shape that
    /// gradient is summed to: `[batch..., rows, cols]` and `[operand_batch..., rows, cols]`.
    fn grad_shapes(
        &self,
        operand_batch: &[usize],
        rows: usize,
        cols: usize,
    ) -> (Vec<usize>, Vec<usize>) {
        let mut full = self.batch.clone();
        full.extend([rows, cols]);
        let mut to = operand_batch.to_vec();
        to.extend([rows, cols]);
        (full, to)
    }
}

fn f32_operands<'a>(inputs: &[Option<&'a Value>]) -> OpResult<(&'a ArrayD<f32>, &'a ArrayD<f32>)> {
    let a = required(inputs, 0, "A")?;
    let b = required(inputs, 1, "B")?;
    match (a, b) {
        (Value::F32(a), Value::F32(b)) => Ok((a, b)),
        _ => Err(OpError(format!(
            "MatMul of {} and {} tensors is not supported, expected float tensors",
            a.type_name(),
            b.type_name()
        ))),
    }
}

impl Operator for MatMul {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let (a, b) = f32_operands(inputs)?;
        let p = plan(a.shape(), b.shape())?;
        let ad = contiguous(a);
        let bd = contiguous(b);
        let out = batched(
            &p.batch,
            &Operand {
                data: &ad,
                batch: &p.a_batch,
                rows: p.m,
                cols: p.k,
                transposed: false,
            },
            &Operand {
                data: &bd,
                batch: &p.b_batch,
                rows: p.k,
                cols: p.n,
                transposed: false,
            },
        )?;
        Ok(vec![Value::F32(ArrayD::from_shape_vec(
            IxDyn(&p.out_shape),
            out,
        )?)])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let Some(g) = first_grad(output_grads) else {
            return Ok(grads);
        };
        let (a, b) = f32_operands(inputs)?;
        let p = plan(a.shape(), b.shape())?;
        if g.shape() != p.out_shape.as_slice() {
            return Err(OpError(format!(
                "the output gradient has shape {:?}, expected {:?}",
                g.shape(),
                p.out_shape
            )));
        }
        let ad = contiguous(a);
        let bd = contiguous(b);
        let gd = contiguous(g);
        let g_op = |transposed| Operand {
            data: &gd,
            batch: &p.batch,
            rows: p.m,
            cols: p.n,
            transposed,
        };
        // dA = G Bᵀ.
        let da = batched(
            &p.batch,
            &g_op(false),
            &Operand {
                data: &bd,
                batch: &p.b_batch,
                rows: p.k,
                cols: p.n,
                transposed: true,
            },
        )?;
        let (full, to) = p.grad_shapes(&p.a_batch, p.m, p.k);
        let da = unbroadcast(ArrayD::from_shape_vec(IxDyn(&full), da)?, &to)?;
        grads[0] = Some(reshape(&da, a.shape())?);
        // dB = Aᵀ G.
        let db = batched(
            &p.batch,
            &Operand {
                data: &ad,
                batch: &p.a_batch,
                rows: p.m,
                cols: p.k,
                transposed: true,
            },
            &g_op(false),
        )?;
        let (full, to) = p.grad_shapes(&p.b_batch, p.k, p.n);
        let db = unbroadcast(ArrayD::from_shape_vec(IxDyn(&full), db)?, &to)?;
        grads[1] = Some(reshape(&db, b.shape())?);
        Ok(grads)
    }
}

/// `Gemm`: `Y = alpha op(A) op(B) + beta C`.
#[derive(Debug)]
struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}

fn build_gemm(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let flag = |name: &str| match spec.attrs.int_or(name, 0)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(OpError(format!(
            "attribute `{name}` is {v}, expected 0 or 1"
        ))),
    };
    let finite = |name: &str| {
        let v = spec.attrs.float_or(name, 1.0)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(OpError(format!(
                "attribute `{name}` is {v}, expected a finite number"
            )))
        }
    };
    Ok(Box::new(Gemm {
        alpha: finite("alpha")?,
        beta: finite("beta")?,
        trans_a: flag("transA")?,
        trans_b: flag("transB")?,
    }))
}

impl Gemm {
    /// `op(A)`, `op(B)` as views, after checking their shapes.
    fn operands<'a>(
        &self,
        a: &'a ArrayD<f32>,
        b: &'a ArrayD<f32>,
    ) -> OpResult<(ArrayView2<'a, f32>, ArrayView2<'a, f32>)> {
        let two_d = |x: &'a ArrayD<f32>, what: &str| -> OpResult<ArrayView2<'a, f32>> {
            x.view().into_dimensionality().map_err(|_| {
                OpError(format!(
                    "Gemm's {what} has shape {:?}, expected a 2-D matrix",
                    x.shape()
                ))
            })
        };
        let a2 = two_d(a, "A")?;
        let b2 = two_d(b, "B")?;
        let a2 = if self.trans_a { a2.reversed_axes() } else { a2 };
        let b2 = if self.trans_b { b2.reversed_axes() } else { b2 };
        if a2.dim().1 != b2.dim().0 {
            return Err(OpError(format!(
                "Gemm of A {:?} (transA={}) and B {:?} (transB={}): the inner dimensions {} and \
                 {} differ, expected equal",
                a.shape(),
                self.trans_a as i32,
                b.shape(),
                self.trans_b as i32,
                a2.dim().1,
                b2.dim().0
            )));
        }
        Ok((a2, b2))
    }
}

/// `C`'s shape checked to broadcast (unidirectionally) to `[m, n]`.
fn check_c(c: &ArrayD<f32>, m: usize, n: usize) -> OpResult<()> {
    match broadcast_shape(c.shape(), &[m, n]) {
        Ok(s) if s == [m, n] => Ok(()),
        _ => Err(OpError(format!(
            "Gemm's C has shape {:?}, expected a shape broadcastable to the output's [{m}, {n}]",
            c.shape()
        ))),
    }
}

impl Operator for Gemm {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let a = required_f32(inputs, 0, "A")?;
        let b = required_f32(inputs, 1, "B")?;
        let (a2, b2) = self.operands(a, b)?;
        let (m, n) = (a2.dim().0, b2.dim().1);
        let mut out = vec![0.0f32; m * n];
        gemm_into(self.alpha, a2, b2, &mut out)?;
        let mut y = ArrayD::from_shape_vec(IxDyn(&[m, n]), out)?;
        if let Some(c) = optional(inputs, 2) {
            let c = c.f32("C")?;
            check_c(c, m, n)?;
            if self.beta != 0.0 {
                let beta = self.beta;
                ndarray::Zip::from(&mut y)
                    .and_broadcast(c)
                    .for_each(|y, &c| *y += beta * c);
            }
        }
        Ok(vec![Value::F32(y)])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let Some(g) = first_grad(output_grads) else {
            return Ok(grads);
        };
        let a = required_f32(inputs, 0, "A")?;
        let b = required_f32(inputs, 1, "B")?;
        let (a2, b2) = self.operands(a, b)?;
        let (m, k, n) = (a2.dim().0, a2.dim().1, b2.dim().1);
        let g2: ArrayView2<f32> = g.view().into_dimensionality().map_err(|_| {
            OpError(format!(
                "the output gradient has shape {:?}, expected [{m}, {n}]",
                g.shape()
            ))
        })?;
        if g2.dim() != (m, n) {
            return Err(OpError(format!(
                "the output gradient has shape {:?}, expected [{m}, {n}]",
                g.shape()
            )));
        }
        // d op(A) = alpha G op(B)ᵀ; dA is its transpose when transA.
        let mut da = vec![0.0f32; m * k];
        if self.trans_a {
            gemm_into(self.alpha, b2, g2.t(), &mut da)?;
        } else {
            gemm_into(self.alpha, g2, b2.t(), &mut da)?;
        }
        grads[0] = Some(ArrayD::from_shape_vec(IxDyn(a.shape()), da)?);
        // d op(B) = alpha op(A)ᵀ G; dB is its transpose when transB.
        let mut db = vec![0.0f32; k * n];
        if self.trans_b {
            gemm_into(self.alpha, g2.t(), a2, &mut db)?;
        } else {
            gemm_into(self.alpha, a2.t(), g2, &mut db)?;
        }
        grads[1] = Some(ArrayD::from_shape_vec(IxDyn(b.shape()), db)?);
        if let Some(Value::F32(c)) = optional(inputs, 2) {
            check_c(c, m, n)?;
            let beta = self.beta;
            grads[2] = Some(unbroadcast(g.mapv(|v| beta * v), c.shape())?);
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Attr, Attrs};
    use crate::testing::{check_gradients, random_input};
    use ndarray::{Array3, Axis, Ix3};

    fn run(op: &str, attrs: Attrs, inputs: &[ArrayD<f32>]) -> OpResult<ArrayD<f32>> {
        let spec = NodeSpec::new(op, attrs, inputs.len());
        let op = crate::ops::build(&spec).map_err(|e| OpError(format!("{e:?}")))?;
        let vals: Vec<Value> = inputs.iter().cloned().map(Value::F32).collect();
        let refs: Vec<Option<&Value>> = vals.iter().map(Some).collect();
        match op.forward(&refs)?.remove(0) {
            Value::F32(y) => Ok(y),
            Value::I64(_) => unreachable!(),
        }
    }

    /// The product by broadcasting both operands and multiplying batch element by element.
    fn reference(a: &ArrayD<f32>, b: &ArrayD<f32>) -> ArrayD<f32> {
        let (ra, rb) = (a.ndim(), b.ndim());
        let batch = broadcast_shape(&a.shape()[..ra - 2], &b.shape()[..rb - 2]).unwrap();
        let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
        let nb: usize = batch.iter().product();
        let full = |x: &ArrayD<f32>, r, c| {
            let mut s = batch.clone();
            s.extend([r, c]);
            x.broadcast(IxDyn(&s))
                .unwrap()
                .to_owned()
                .into_shape_with_order(IxDyn(&[nb, r, c]))
                .unwrap()
                .into_dimensionality::<Ix3>()
                .unwrap()
        };
        let (a3, b3) = (full(a, m, k), full(b, k, n));
        let mut out = Array3::<f32>::zeros((nb, m, n));
        for i in 0..nb {
            out.index_axis_mut(Axis(0), i)
                .assign(&a3.index_axis(Axis(0), i).dot(&b3.index_axis(Axis(0), i)));
        }
        let mut s = batch.clone();
        s.extend([m, n]);
        out.into_shape_with_order(IxDyn(&s)).unwrap()
    }

    fn close(x: &ArrayD<f32>, y: &ArrayD<f32>) {
        assert_eq!(x.shape(), y.shape());
        for (u, v) in x.iter().zip(y.iter()) {
            assert!((u - v).abs() <= 1e-4 * (1.0 + v.abs()), "{u} vs {v}");
        }
    }

    #[test]
    fn matmul_values_and_numpy_shapes() {
        let a = ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]).into_dyn();
        let b = ndarray::arr2(&[[5.0f32, 6.0], [7.0, 8.0]]).into_dyn();
        let y = run("MatMul", Attrs::new(), &[a.clone(), b.clone()]).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![19.0, 22.0, 43.0, 50.0]
        );
        let v = ndarray::arr1(&[1.0f32, -1.0]).into_dyn();
        // [2] @ [2, 2] -> [2]; [2, 2] @ [2] -> [2]; [2] @ [2] -> [].
        let y = run("MatMul", Attrs::new(), &[v.clone(), b.clone()]).unwrap();
        assert_eq!(y.shape(), &[2]);
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![-2.0, -2.0]);
        let y = run("MatMul", Attrs::new(), &[a.clone(), v.clone()]).unwrap();
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![-1.0, -1.0]);
        let y = run("MatMul", Attrs::new(), &[v.clone(), v.clone()]).unwrap();
        assert_eq!(y.shape(), &[] as &[usize]);
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![2.0]);
        // Batched with a 1-D operand: [3, 2, 2] @ [2] -> [3, 2].
        let a3 = random_input(&[3, 2, 2], 1, -1.0, 1.0);
        let y = run("MatMul", Attrs::new(), &[a3.clone(), v.clone()]).unwrap();
        assert_eq!(y.shape(), &[3, 2]);
        for cases in [
            (vec![2, 3, 4], vec![4, 5]),
            (vec![4, 5], vec![2, 5, 3]),
            (vec![2, 1, 3, 4], vec![3, 4, 2]),
            (vec![1, 3, 4], vec![2, 4, 2]),
            (vec![2, 3, 4], vec![2, 4, 2]),
        ] {
            let a = random_input(&cases.0, 2, -1.0, 1.0);
            let b = random_input(&cases.1, 3, -1.0, 1.0);
            let y = run("MatMul", Attrs::new(), &[a.clone(), b.clone()]).unwrap();
            close(&y, &reference(&a, &b));
        }
    }

    #[test]
    fn large_products_take_the_parallel_paths() {
        for (sa, sb) in [
            (vec![8, 128, 64], vec![64, 96]),
            (vec![16, 48, 40], vec![16, 40, 56]),
            (vec![300, 200], vec![200, 100]),
        ] {
            let a = random_input(&sa, 4, -1.0, 1.0);
            let b = random_input(&sb, 5, -1.0, 1.0);
            let y = run("MatMul", Attrs::new(), &[a.clone(), b.clone()]).unwrap();
            close(&y, &reference(&a, &b));
        }
    }

    #[test]
    fn matmul_errors() {
        let a = random_input(&[2, 3], 1, -1.0, 1.0);
        let b = random_input(&[4, 2], 1, -1.0, 1.0);
        assert!(run("MatMul", Attrs::new(), &[a.clone(), b]).is_err());
        let c = random_input(&[2, 3, 4], 1, -1.0, 1.0);
        let d = random_input(&[3, 4, 2], 1, -1.0, 1.0);
        assert!(run("MatMul", Attrs::new(), &[c, d]).is_err());
        let s = ndarray::arr0(1.0f32).into_dyn();
        assert!(run("MatMul", Attrs::new(), &[s, a]).is_err());
    }

    #[test]
    fn gemm_values_and_attributes() {
        let a = ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]).into_dyn(); // [3, 2]
        let b = ndarray::arr2(&[[1.0f32, 0.0, 2.0], [0.0, 1.0, -1.0]]).into_dyn(); // [2, 3]
        let c = ndarray::arr1(&[1.0f32, 2.0, 3.0]).into_dyn();
        let attrs = Attrs::new()
            .with("alpha", Attr::Float(2.0))
            .with("beta", Attr::Float(0.5));
        let y = run("Gemm", attrs.clone(), &[a.clone(), b.clone(), c.clone()]).unwrap();
        let ab = reference(&a, &b);
        let expect = ab.mapv(|v| 2.0 * v) + c.mapv(|v| 0.5 * v);
        close(&y, &expect);
        // Transposed operands give the same product.
        let at = a.t().to_owned();
        let bt = b.t().to_owned();
        let t = attrs
            .clone()
            .with("transA", Attr::Int(1))
            .with("transB", Attr::Int(1));
        let y2 = run("Gemm", t, &[at, bt, c.clone()]).unwrap();
        close(&y2, &expect);
        // No C.
        let y3 = run("Gemm", Attrs::new(), &[a.clone(), b.clone()]).unwrap();
        close(&y3, &ab);
        // C that does not broadcast; mismatched inner dimensions; bad flags.
        let bad_c = ndarray::arr1(&[1.0f32, 2.0]).into_dyn();
        assert!(run("Gemm", Attrs::new(), &[a.clone(), b.clone(), bad_c]).is_err());
        assert!(run("Gemm", Attrs::new(), &[a.clone(), a.clone()]).is_err());
        let e = build_gemm(&NodeSpec::new(
            "Gemm",
            Attrs::new().with("transA", Attr::Int(2)),
            2,
        ))
        .unwrap_err();
        assert!(e.0.contains("transA"), "{e}");
        assert!(run("Gemm", Attrs::new(), &[c.clone(), b]).is_err());
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (k, (sa, sb)) in [
            (vec![3, 4], vec![4, 2]),
            (vec![4], vec![4, 3]),
            (vec![3, 4], vec![4]),
            (vec![4], vec![4]),
            (vec![2, 3, 4], vec![4, 2]),
            (vec![2, 1, 3, 4], vec![3, 4, 2]),
            (vec![3, 4], vec![2, 4, 2]),
            (vec![1, 3, 4], vec![2, 4, 2]),
            (vec![2, 3], vec![2, 2, 3, 2]),
        ]
        .into_iter()
        .enumerate()
        {
            let a = random_input(&sa, k as u64, -1.0, 1.0);
            let b = random_input(&sb, 40 + k as u64, -1.0, 1.0);
            check_gradients(
                "MatMul",
                Attrs::new(),
                vec![Value::F32(a), Value::F32(b)],
                &[0, 1],
                1e-2,
            );
        }
        for (ta, tb) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (m, k, n) = (3, 4, 2);
            let a = random_input(&if ta == 1 { [k, m] } else { [m, k] }, 1, -1.0, 1.0);
            let b = random_input(&if tb == 1 { [n, k] } else { [k, n] }, 2, -1.0, 1.0);
            for c_shape in [vec![m, n], vec![n], vec![m, 1], vec![1]] {
                let c = random_input(&c_shape, 3, -1.0, 1.0);
                let attrs = Attrs::new()
                    .with("transA", Attr::Int(ta))
                    .with("transB", Attr::Int(tb))
                    .with("alpha", Attr::Float(0.7))
                    .with("beta", Attr::Float(1.3));
                check_gradients(
                    "Gemm",
                    attrs,
                    vec![Value::F32(a.clone()), Value::F32(b.clone()), Value::F32(c)],
                    &[0, 1, 2],
                    1e-2,
                );
            }
        }
    }
}
