//! Normalisations: `BatchNormalization` (inference, running statistics), `LayerNormalization`,
//! `InstanceNormalization`, `GroupNormalization` (opset 18's per-group and opset 21's
//! per-channel scale and bias) and `LRN`.
//!
//! The last four normalise rows of the input (a row: the positions that share one mean and
//! variance) with `x̂ = (x − μ) / √(σ² + ε)` and `y = γ x̂ + β`; their backward pass is
//! `dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)) / √(σ² + ε)` with `dx̂ = γ dy`, and
//! `dγ = Σ dy x̂`, `dβ = Σ dy` (Ba et al. 2016, eq. 3-4; Wu & He 2018).

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::broadcast::broadcast_to;
use crate::error::{OpError, OpResult};
use crate::op::{first_grad, optional, required_f32, Builder, NodeSpec, Operator};
use crate::value::{normalize_axis, Value};

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[
    ("BatchNormalization", build_batch_norm),
    ("LayerNormalization", build_layer_norm),
    ("InstanceNormalization", build_instance_norm),
    ("GroupNormalization", build_group_norm),
    ("LRN", build_lrn),
];

fn epsilon(spec: &NodeSpec) -> OpResult<f32> {
    let e = spec.attrs.float_or("epsilon", 1e-5)?;
    if e.is_finite() && e >= 0.0 {
        Ok(e)
    } else {
        Err(OpError(format!(
            "attribute `epsilon` is {e}, expected a finite value >= 0"
        )))
    }
}

/// Per-channel vector input `i` of length `c`.
fn channel_vector(inputs: &[Option<&Value>], i: usize, what: &str, c: usize) -> OpResult<Vec<f32>> {
    let v = required_f32(inputs, i, what)?;
    if v.len() != c {
        return Err(OpError(format!(
            "{what} has shape {:?}, expected {c} values (one per channel)",
            v.shape()
        )));
    }
    Ok(v.iter().copied().collect())
}

fn channels(x: &ArrayD<f32>) -> OpResult<(usize, usize, usize)> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(OpError(format!(
            "the input has shape {s:?}, expected [n, c, ...]"
        )));
    }
    Ok((s[0], s[1], s[2..].iter().product()))
}

/// `BatchNormalization` in inference: `y = γ (x − mean) / √(var + ε) + β` per channel.
#[derive(Debug)]
struct BatchNorm {
    epsilon: f32,
}

fn build_batch_norm(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    if spec.attrs.int_or("training_mode", 0)? != 0 {
        return Err(OpError(
            "training_mode = 1 (batch statistics): export the model in evaluation mode (model.eval())".into(),
        ));
    }
    Ok(Box::new(BatchNorm {
        epsilon: epsilon(spec)?,
    }))
}

impl BatchNorm {
    /// Per-channel scale `γ/σ` and shift `β − mean γ/σ`.
    fn affine(
        &self,
        inputs: &[Option<&Value>],
        c: usize,
    ) -> OpResult<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let gamma = channel_vector(inputs, 1, "scale", c)?;
        let beta = channel_vector(inputs, 2, "B", c)?;
        let mean = channel_vector(inputs, 3, "input_mean", c)?;
        let var = channel_vector(inputs, 4, "input_var", c)?;
        let inv: Vec<f32> = var
            .iter()
            .map(|v| 1.0 / (v + self.epsilon).sqrt())
            .collect();
        let scale: Vec<f32> = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
        let shift: Vec<f32> = (0..c).map(|k| beta[k] - mean[k] * scale[k]).collect();
        Ok((scale, shift, inv))
    }
}

impl Operator for BatchNorm {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required_f32(inputs, 0, "X")?
            .as_standard_layout()
            .into_owned();
        let (_, c, inner) = channels(&x)?;
        let (scale, shift, _) = self.affine(inputs, c)?;
        let mut y = x;
        if let Some(s) = y.as_slice_mut() {
            s.par_chunks_mut(inner.max(1))
                .enumerate()
                .for_each(|(p, plane)| {
                    let k = p % c;
                    plane.iter_mut().for_each(|v| *v = *v * scale[k] + shift[k]);
                });
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
        let x = required_f32(inputs, 0, "X")?
            .as_standard_layout()
            .into_owned();
        let (_, c, inner) = channels(&x)?;
        let (scale, _, inv) = self.affine(inputs, c)?;
        let mean = channel_vector(inputs, 3, "input_mean", c)?;
        let g = g.as_standard_layout().into_owned();
        let gs = g.as_slice().expect("standard layout");
        let xs = x.as_slice().expect("standard layout");
        let mut dx = g.clone();
        if let Some(d) = dx.as_slice_mut() {
            d.par_chunks_mut(inner.max(1))
                .enumerate()
                .for_each(|(p, plane)| {
                    let k = p % c;
                    plane.iter_mut().for_each(|v| *v *= scale[k]);
                });
        }
        let mut dgamma = vec![0.0f32; c];
        let mut dbeta = vec![0.0f32; c];
        for (p, (gp, xp)) in gs
            .chunks(inner.max(1))
            .zip(xs.chunks(inner.max(1)))
            .enumerate()
        {
            let k = p % c;
            for (gv, xv) in gp.iter().zip(xp) {
                dgamma[k] += gv * (xv - mean[k]) * inv[k];
                dbeta[k] += gv;
            }
        }
        grads[0] = Some(dx);
        let vec_grad = |v: Vec<f32>, i: usize| -> OpResult<Option<ArrayD<f32>>> {
            let shape = required_f32(inputs, i, "per-channel input")?
                .shape()
                .to_vec();
            Ok(Some(ArrayD::from_shape_vec(IxDyn(&shape), v)?))
        };
        grads[1] = vec_grad(dgamma, 1)?;
        grads[2] = vec_grad(dbeta, 2)?;
        Ok(grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        // The running mean and variance are buffers.
        index <= 2
    }
}

/// How a row-normalising operator lays out its rows and its affine parameters.
#[derive(Debug, Clone, Copy)]
enum Rows {
    /// LayerNormalization: rows over the axes from `axis` on; γ and β broadcast to them.
    Layer { axis: i64 },
    /// InstanceNormalization: a row per sample and channel; γ, β per channel.
    Instance,
    /// GroupNormalization: a row per sample and group of channels; γ, β per channel (opset
    /// 21) or per group (opset 18), read from their length.
    Group { groups: usize },
}

/// Geometry of one call: `rows` rows of `len` values; the affine index of position `i` of row
/// `r` is `affine(r, i)`.
struct RowGeometry {
    rows: usize,
    len: usize,
    /// Per-row: (channels per row for group/instance, positions per channel).
    spatial: usize,
    channels: usize,
    groups: usize,
    /// Affine parameters per channel (instance, group per channel), per group, or per position.
    mode: AffineMode,
}

#[derive(Clone, Copy, PartialEq)]
enum AffineMode {
    Position,
    Channel,
    Group,
}

impl RowGeometry {
    #[inline]
    fn affine(&self, r: usize, i: usize) -> usize {
        match self.mode {
            AffineMode::Position => i,
            AffineMode::Channel => {
                let g = r % self.groups;
                g * (self.channels / self.groups) + i / self.spatial
            }
            AffineMode::Group => r % self.groups,
        }
    }
}

/// A row-normalising operator.
#[derive(Debug)]
struct RowNorm {
    rows: Rows,
    epsilon: f32,
    /// LayerNormalization's optional Mean and InvStdDev outputs.
    extra_outputs: usize,
}

fn build_layer_norm(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    if spec.attrs.int_or("stash_type", 1)? != 1 {
        return Err(OpError(
            "attribute `stash_type` must be 1 (float32 statistics)".into(),
        ));
    }
    Ok(Box::new(RowNorm {
        rows: Rows::Layer {
            axis: spec.attrs.int_or("axis", -1)?,
        },
        epsilon: epsilon(spec)?,
        extra_outputs: spec.n_outputs.saturating_sub(1),
    }))
}

fn build_instance_norm(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    Ok(Box::new(RowNorm {
        rows: Rows::Instance,
        epsilon: epsilon(spec)?,
        extra_outputs: 0,
    }))
}

fn build_group_norm(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let g = spec
        .attrs
        .int("num_groups")?
        .ok_or_else(|| OpError("attribute `num_groups` is required".into()))?;
    if !(1..=1 << 16).contains(&g) {
        return Err(OpError(format!(
            "attribute `num_groups` is {g}, expected 1..=65536"
        )));
    }
    Ok(Box::new(RowNorm {
        rows: Rows::Group { groups: g as usize },
        epsilon: epsilon(spec)?,
        extra_outputs: 0,
    }))
}

impl RowNorm {
    fn geometry(&self, x: &ArrayD<f32>, gamma_len: Option<usize>) -> OpResult<RowGeometry> {
        let s = x.shape();
        Ok(match self.rows {
            Rows::Layer { axis } => {
                let a = normalize_axis(axis, s.len(), "axis")?;
                let rows = s[..a].iter().product();
                let len = s[a..].iter().product();
                RowGeometry {
                    rows,
                    len,
                    spatial: 1,
                    channels: 1,
                    groups: 1,
                    mode: AffineMode::Position,
                }
            }
            Rows::Instance => {
                let (n, c, spatial) = channels(x)?;
                RowGeometry {
                    rows: n * c,
                    len: spatial,
                    spatial,
                    channels: c,
                    groups: c,
                    mode: AffineMode::Channel,
                }
            }
            Rows::Group { groups } => {
                let (n, c, spatial) = channels(x)?;
                if c % groups != 0 {
                    return Err(OpError(format!(
                        "{c} channels do not split into num_groups = {groups}"
                    )));
                }
                let mode = match gamma_len {
                    Some(l) if l == c => AffineMode::Channel,
                    Some(l) if l == groups => AffineMode::Group,
                    Some(l) => {
                        return Err(OpError(format!(
                            "scale has {l} values, expected {c} (one per channel) or {groups} (one per group)"
                        )))
                    }
                    None => AffineMode::Channel,
                };
                RowGeometry {
                    rows: n * groups,
                    len: (c / groups) * spatial,
                    spatial,
                    channels: c,
                    groups,
                    mode,
                }
            }
        })
    }

    /// γ and β as flat vectors indexed by the affine index.
    fn affine(
        &self,
        inputs: &[Option<&Value>],
        x: &ArrayD<f32>,
        geo: &RowGeometry,
    ) -> OpResult<(Vec<f32>, Vec<f32>)> {
        let n_affine = match geo.mode {
            AffineMode::Position => geo.len,
            AffineMode::Channel => geo.channels,
            AffineMode::Group => geo.groups,
        };
        let read = |i: usize, default: f32| -> OpResult<Vec<f32>> {
            let Some(v) = optional(inputs, i) else {
                return Ok(vec![default; n_affine]);
            };
            let v = v.f32(if i == 1 { "scale" } else { "bias" })?;
            if let (AffineMode::Position, Rows::Layer { .. }) = (geo.mode, self.rows) {
                let tail = &x.shape()[x.ndim() - shape_rank(x, geo)..];
                let b = broadcast_to(v, tail)?;
                return Ok(b.iter().copied().collect());
            }
            if v.len() != n_affine {
                return Err(OpError(format!(
                    "{} has shape {:?}, expected {n_affine} values",
                    if i == 1 { "scale" } else { "bias" },
                    v.shape()
                )));
            }
            Ok(v.iter().copied().collect())
        };
        Ok((read(1, 1.0)?, read(2, 0.0)?))
    }

    /// Per-row mean and 1/σ, and x̂.
    fn normalise(&self, xs: &[f32], geo: &RowGeometry) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut xhat = vec![0.0f32; xs.len()];
        let stats: Vec<(f32, f32)> = xhat
            .par_chunks_mut(geo.len.max(1))
            .zip(xs.par_chunks(geo.len.max(1)))
            .map(|(h, x)| {
                let n = x.len().max(1) as f64;
                let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                let inv = 1.0 / (var + self.epsilon as f64).sqrt();
                for (o, &v) in h.iter_mut().zip(x) {
                    *o = ((v as f64 - mean) * inv) as f32;
                }
                (mean as f32, inv as f32)
            })
            .collect();
        let (means, invs) = stats.into_iter().unzip();
        (xhat, means, invs)
    }
}

/// Rank of the normalised tail (LayerNormalization).
fn shape_rank(x: &ArrayD<f32>, geo: &RowGeometry) -> usize {
    let mut prod = 1;
    let mut k = 0;
    for d in x.shape().iter().rev() {
        if prod == geo.len && k > 0 {
            break;
        }
        prod *= d;
        k += 1;
    }
    k
}

impl Operator for RowNorm {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required_f32(inputs, 0, "X")?
            .as_standard_layout()
            .into_owned();
        let gamma_len = optional(inputs, 1).map(|v| v.len());
        let geo = self.geometry(&x, gamma_len)?;
        let (gamma, beta) = self.affine(inputs, &x, &geo)?;
        let (mut y, means, invs) = self.normalise(x.as_slice().expect("standard layout"), &geo);
        y.par_chunks_mut(geo.len.max(1))
            .enumerate()
            .for_each(|(r, row)| {
                for (i, v) in row.iter_mut().enumerate() {
                    let a = geo.affine(r, i);
                    *v = *v * gamma[a] + beta[a];
                }
            });
        let mut outs = vec![Value::F32(ArrayD::from_shape_vec(IxDyn(x.shape()), y)?)];
        if self.extra_outputs > 0 {
            // Mean and InvStdDev, shaped like X with the normalised axes kept as 1.
            let mut shape = x.shape().to_vec();
            let rank = shape_rank(&x, &geo);
            let nd = shape.len();
            shape[nd - rank..].iter_mut().for_each(|d| *d = 1);
            outs.push(Value::F32(ArrayD::from_shape_vec(IxDyn(&shape), means)?));
            if self.extra_outputs > 1 {
                outs.push(Value::F32(ArrayD::from_shape_vec(IxDyn(&shape), invs)?));
            }
        }
        Ok(outs)
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
        let x = required_f32(inputs, 0, "X")?
            .as_standard_layout()
            .into_owned();
        let gamma_len = optional(inputs, 1).map(|v| v.len());
        let geo = self.geometry(&x, gamma_len)?;
        let (gamma, _) = self.affine(inputs, &x, &geo)?;
        let (xhat, _, invs) = self.normalise(x.as_slice().expect("standard layout"), &geo);
        let g = g.as_standard_layout().into_owned();
        let gs = g.as_slice().expect("standard layout");
        let len = geo.len.max(1);
        let mut dx = vec![0.0f32; xhat.len()];
        dx.par_chunks_mut(len).enumerate().for_each(|(r, d)| {
            let h = &xhat[r * len..][..len];
            let gr = &gs[r * len..][..len];
            let mut mean_d = 0.0f64;
            let mut mean_dh = 0.0f64;
            for i in 0..len {
                let dh = gr[i] * gamma[geo.affine(r, i)];
                d[i] = dh;
                mean_d += dh as f64;
                mean_dh += (dh * h[i]) as f64;
            }
            let (mean_d, mean_dh) = ((mean_d / len as f64) as f32, (mean_dh / len as f64) as f32);
            for i in 0..len {
                d[i] = (d[i] - mean_d - h[i] * mean_dh) * invs[r];
            }
        });
        grads[0] = Some(ArrayD::from_shape_vec(IxDyn(x.shape()), dx)?);
        let n_affine = gamma.len();
        let mut dgamma = vec![0.0f32; n_affine];
        let mut dbeta = vec![0.0f32; n_affine];
        for r in 0..geo.rows {
            for i in 0..len {
                let a = geo.affine(r, i);
                dgamma[a] += gs[r * len + i] * xhat[r * len + i];
                dbeta[a] += gs[r * len + i];
            }
        }
        for (k, v) in [(1usize, dgamma), (2, dbeta)] {
            if let Some(Value::F32(p)) = optional(inputs, k) {
                // Sum over the positions the parameter was broadcast to (LayerNormalization).
                let full_shape: Vec<usize> = match (geo.mode, self.rows) {
                    (AffineMode::Position, Rows::Layer { .. }) => {
                        x.shape()[x.ndim() - shape_rank(&x, &geo)..].to_vec()
                    }
                    _ => p.shape().to_vec(),
                };
                let full = ArrayD::from_shape_vec(IxDyn(&full_shape), v)?;
                grads[k] = Some(crate::broadcast::unbroadcast(full, p.shape())?);
            }
        }
        Ok(grads)
    }
}

/// `LRN`: `y_c = x_c / (bias + α/size · Σ_{c' ∈ window(c)} x_{c'}²)^β`, the window
/// `[c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]` (Krizhevsky et al. 2012, section 3.3).
#[derive(Debug)]
struct Lrn {
    alpha: f32,
    beta: f32,
    bias: f32,
    size: usize,
}

fn build_lrn(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let a = &spec.attrs;
    let size = a
        .int("size")?
        .ok_or_else(|| OpError("attribute `size` is required".into()))?;
    if !(1..=1 << 16).contains(&size) {
        return Err(OpError(format!(
            "attribute `size` is {size}, expected 1..=65536"
        )));
    }
    Ok(Box::new(Lrn {
        alpha: a.float_or("alpha", 1e-4)?,
        beta: a.float_or("beta", 0.75)?,
        bias: a.float_or("bias", 1.0)?,
        size: size as usize,
    }))
}

impl Lrn {
    fn window(&self, c: usize, channels: usize) -> std::ops::Range<usize> {
        let lo = c.saturating_sub((self.size - 1) / 2);
        let hi = (c + (self.size - 1).div_ceil(2) + 1).min(channels);
        lo..hi
    }

    /// The denominators' base `d_c = bias + α/size Σ x²` per position.
    fn bases(&self, xs: &[f32], c: usize, inner: usize) -> Vec<f32> {
        let mut d = vec![0.0f32; xs.len()];
        d.par_chunks_mut(c * inner.max(1))
            .enumerate()
            .for_each(|(s, ds)| {
                let xsample = &xs[s * c * inner..][..c * inner];
                for ch in 0..c {
                    for p in 0..inner {
                        let sum: f32 = self
                            .window(ch, c)
                            .map(|k| xsample[k * inner + p].powi(2))
                            .sum();
                        ds[ch * inner + p] = self.bias + self.alpha / self.size as f32 * sum;
                    }
                }
            });
        d
    }
}

impl Operator for Lrn {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required_f32(inputs, 0, "X")?
            .as_standard_layout()
            .into_owned();
        let (_, c, inner) = channels(&x)?;
        let xs = x.as_slice().expect("standard layout");
        let d = self.bases(xs, c, inner);
        let y: Vec<f32> = xs
            .iter()
            .zip(&d)
            .map(|(v, b)| v / b.powf(self.beta))
            .collect();
        Ok(vec![Value::F32(ArrayD::from_shape_vec(
            IxDyn(x.shape()),
            y,
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
        let x = required_f32(inputs, 0, "X")?
            .as_standard_layout()
            .into_owned();
        let (_, c, inner) = channels(&x)?;
        let xs = x.as_slice().expect("standard layout");
        let g = g.as_standard_layout().into_owned();
        let gs = g.as_slice().expect("standard layout");
        let d = self.bases(xs, c, inner);
        // t_c = g_c x_c d_c^(−β−1); dx_k = g_k d_k^(−β) − 2αβ/size x_k Σ_{c: k ∈ window(c)} t_c.
        let t: Vec<f32> = (0..xs.len())
            .map(|i| gs[i] * xs[i] * d[i].powf(-self.beta - 1.0))
            .collect();
        let coef = 2.0 * self.alpha * self.beta / self.size as f32;
        let mut dx = vec![0.0f32; xs.len()];
        dx.par_chunks_mut(c * inner.max(1))
            .enumerate()
            .for_each(|(s, out)| {
                let base = s * c * inner;
                for ch in 0..c {
                    for p in 0..inner {
                        let i = base + ch * inner + p;
                        let mut acc = 0.0f32;
                        for k in 0..c {
                            if self.window(k, c).contains(&ch) {
                                acc += t[base + k * inner + p];
                            }
                        }
                        out[ch * inner + p] = gs[i] * d[i].powf(-self.beta) - coef * xs[i] * acc;
                    }
                }
            });
        grads[0] = Some(ArrayD::from_shape_vec(IxDyn(x.shape()), dx)?);
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Attr, Attrs};
    use crate::testing::{check_gradients, check_gradients_spec, random_input};

    #[test]
    fn batch_norm_values_and_gradients() {
        let x = random_input(&[2, 3, 2, 2], 1, -1.0, 1.0);
        let gamma = random_input(&[3], 2, 0.5, 1.5);
        let beta = random_input(&[3], 3, -1.0, 1.0);
        let mean = random_input(&[3], 4, -0.5, 0.5);
        let var = random_input(&[3], 5, 0.5, 2.0);
        let op = build_batch_norm(&NodeSpec::new("BatchNormalization", Attrs::new(), 5)).unwrap();
        let ins: Vec<Value> = [&x, &gamma, &beta, &mean, &var]
            .iter()
            .map(|a| Value::F32((*a).clone()))
            .collect();
        let refs: Vec<Option<&Value>> = ins.iter().map(Some).collect();
        let y = op.forward(&refs).unwrap().remove(0).to_f32_vec();
        let k = 1;
        // Sample 0, channel k, position 2.
        let i = k * 4 + 2;
        let expect =
            gamma[k] * (x.as_slice().unwrap()[i] - mean[k]) / (var[k] + 1e-5).sqrt() + beta[k];
        assert!((y[i] - expect).abs() < 1e-6);
        check_gradients("BatchNormalization", Attrs::new(), ins, &[0, 1, 2], 2e-2);
        assert!(!op.is_parameter_input(3) && !op.is_parameter_input(4) && op.is_parameter_input(1));
        let training = NodeSpec::new(
            "BatchNormalization",
            Attrs::new().with("training_mode", Attr::Int(1)),
            5,
        );
        assert!(build_batch_norm(&training).is_err());
    }

    #[test]
    fn layer_norm_matches_definition_and_gradients() {
        let x = random_input(&[2, 3, 4], 6, -2.0, 2.0);
        let gamma = random_input(&[4], 7, 0.5, 1.5);
        let beta = random_input(&[4], 8, -1.0, 1.0);
        let ins = vec![
            Value::F32(x.clone()),
            Value::F32(gamma.clone()),
            Value::F32(beta.clone()),
        ];
        let refs: Vec<Option<&Value>> = ins.iter().map(Some).collect();
        let op = build_layer_norm(&NodeSpec::new("LayerNormalization", Attrs::new(), 3)).unwrap();
        let y = op.forward(&refs).unwrap().remove(0).to_f32_vec();
        let row: Vec<f32> = x.as_slice().unwrap()[4..8].to_vec();
        let m = row.iter().sum::<f32>() / 4.0;
        let v = row.iter().map(|a| (a - m).powi(2)).sum::<f32>() / 4.0;
        let expect = (row[1] - m) / (v + 1e-5).sqrt() * gamma[1] + beta[1];
        assert!((y[5] - expect).abs() < 1e-5);
        check_gradients("LayerNormalization", Attrs::new(), ins, &[0, 1, 2], 2e-2);
        // Over the last two axes, with a scale of shape [3, 4].
        let ins = vec![
            Value::F32(x),
            Value::F32(random_input(&[3, 4], 9, 0.5, 1.5)),
        ];
        check_gradients(
            "LayerNormalization",
            Attrs::new().with("axis", Attr::Int(1)),
            ins,
            &[0, 1],
            2e-2,
        );
    }

    #[test]
    fn instance_and_group_norm_gradients() {
        let x = random_input(&[2, 4, 3, 2], 10, -2.0, 2.0);
        let ins = vec![
            Value::F32(x.clone()),
            Value::F32(random_input(&[4], 11, 0.5, 1.5)),
            Value::F32(random_input(&[4], 12, -1.0, 1.0)),
        ];
        check_gradients(
            "InstanceNormalization",
            Attrs::new(),
            ins.clone(),
            &[0, 1, 2],
            2e-2,
        );
        check_gradients(
            "GroupNormalization",
            Attrs::new().with("num_groups", Attr::Int(2)),
            ins,
            &[0, 1, 2],
            2e-2,
        );
        // Opset 18's per-group scale and bias.
        let ins = vec![
            Value::F32(x),
            Value::F32(random_input(&[2], 13, 0.5, 1.5)),
            Value::F32(random_input(&[2], 14, -1.0, 1.0)),
        ];
        check_gradients(
            "GroupNormalization",
            Attrs::new().with("num_groups", Attr::Int(2)),
            ins.clone(),
            &[0, 1, 2],
            2e-2,
        );
        let mut bad = NodeSpec::new(
            "GroupNormalization",
            Attrs::new().with("num_groups", Attr::Int(3)),
            3,
        );
        bad.opset = 21;
        let op = build_group_norm(&bad).unwrap();
        let refs: Vec<Option<&Value>> = ins.iter().map(Some).collect();
        assert!(op.forward(&refs).is_err());
    }

    #[test]
    fn lrn_matches_definition_and_gradients() {
        let x = random_input(&[1, 5, 2, 2], 15, -2.0, 2.0);
        let attrs = Attrs::new()
            .with("size", Attr::Int(3))
            .with("alpha", Attr::Float(0.1))
            .with("beta", Attr::Float(0.75))
            .with("bias", Attr::Float(1.5));
        let op = build_lrn(&NodeSpec::new("LRN", attrs.clone(), 1)).unwrap();
        let y = op
            .forward(&[Some(&Value::F32(x.clone()))])
            .unwrap()
            .remove(0)
            .to_f32_vec();
        let xs = x.as_slice().unwrap();
        // Channel 0 at position 0: window channels 0..=1.
        let sum = xs[0].powi(2) + xs[4].powi(2);
        let expect = xs[0] / (1.5 + 0.1 / 3.0 * sum).powf(0.75);
        assert!((y[0] - expect).abs() < 1e-6);
        check_gradients_spec(
            &NodeSpec::new("LRN", attrs, 1),
            vec![Value::F32(x)],
            &[0],
            2e-2,
        );
    }
}
