//! Small models with gradients in closed form, for the property tests.

#![allow(dead_code)]

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, IxDyn};
use xai_core::{
    CoreError, DifferentiableModel, LayerModel, Loss, ParamGroup, ParamSelection, PerSampleGrads,
    Predictor, Targets,
};

fn flat(x: &ArrayViewD<'_, f32>) -> Array2<f32> {
    let n = x.shape()[0];
    let d = x.len() / n.max(1);
    x.as_standard_layout().to_shape((n, d)).unwrap().to_owned()
}

/// `f(x) = flatten(x) W + c`, `W` `[d, k]`.
pub struct Linear {
    pub shape: Vec<usize>,
    pub w: Array2<f32>,
    pub c: Vec<f32>,
}

impl Predictor for Linear {
    fn input_shape(&self) -> &[usize] {
        &self.shape
    }
    fn n_outputs(&self) -> usize {
        self.w.ncols()
    }
    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        xai_core::check_batch("input", &x, &self.shape)?;
        let mut out = flat(&x).dot(&self.w);
        for mut row in out.axis_iter_mut(Axis(0)) {
            row.iter_mut().zip(&self.c).for_each(|(o, c)| *o += c);
        }
        Ok(out)
    }
}

impl DifferentiableModel for Linear {
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        w: ArrayView2<'_, f32>,
    ) -> xai_core::Result<ArrayD<f32>> {
        let g = w.dot(&self.w.t());
        Ok(g.into_shape_with_order(x.raw_dim()).unwrap())
    }
    fn parameter_groups(&self) -> Vec<ParamGroup> {
        vec![]
    }
    fn per_sample_grads(
        &self,
        _: ArrayViewD<'_, f32>,
        _: &Targets,
        _: &Loss,
        _: &ParamSelection,
    ) -> xai_core::Result<PerSampleGrads> {
        Err(CoreError::Model("not used".into()))
    }
}

/// A smooth nonlinear model: `f_c(x) = s_c tanh(z_c) + z_c² / 4`, `z = flatten(x) W`.
pub struct Smooth {
    pub shape: Vec<usize>,
    pub w: Array2<f32>,
    pub s: Vec<f32>,
}

impl Predictor for Smooth {
    fn input_shape(&self) -> &[usize] {
        &self.shape
    }
    fn n_outputs(&self) -> usize {
        self.w.ncols()
    }
    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        xai_core::check_batch("input", &x, &self.shape)?;
        let z = flat(&x).dot(&self.w);
        Ok(Array2::from_shape_fn(z.dim(), |(i, c)| {
            self.s[c] * z[[i, c]].tanh() + z[[i, c]] * z[[i, c]] / 4.0
        }))
    }
}

impl DifferentiableModel for Smooth {
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        w: ArrayView2<'_, f32>,
    ) -> xai_core::Result<ArrayD<f32>> {
        let z = flat(&x).dot(&self.w);
        let dz = Array2::from_shape_fn(z.dim(), |(i, c)| {
            let t = z[[i, c]].tanh();
            w[[i, c]] * (self.s[c] * (1.0 - t * t) + z[[i, c]] / 2.0)
        });
        Ok(dz
            .dot(&self.w.t())
            .into_shape_with_order(x.raw_dim())
            .unwrap())
    }
    fn parameter_groups(&self) -> Vec<ParamGroup> {
        vec![]
    }
    fn per_sample_grads(
        &self,
        _: ArrayViewD<'_, f32>,
        _: &Targets,
        _: &Loss,
        _: &ParamSelection,
    ) -> xai_core::Result<PerSampleGrads> {
        Err(CoreError::Model("not used".into()))
    }
}

/// One layer: `A = M x` per pixel (a 1x1 convolution, `M` `[K, C]`), `f_c = Σ V_c ∘ A`
/// (`V` `[classes, K, H, W]`); layer `"A"`.
pub struct OneLayer {
    pub shape: Vec<usize>,
    pub m: Array2<f32>,
    pub v: ArrayD<f32>,
}

impl OneLayer {
    pub fn activation(&self, x: &ArrayViewD<'_, f32>) -> ArrayD<f32> {
        let (n, c, h, w) = (x.shape()[0], self.shape[0], self.shape[1], self.shape[2]);
        let k = self.m.nrows();
        let mut a = ArrayD::zeros(IxDyn(&[n, k, h, w]));
        for i in 0..n {
            for kk in 0..k {
                for y in 0..h {
                    for z in 0..w {
                        let mut s = 0.0;
                        for cc in 0..c {
                            s += self.m[[kk, cc]] * x[[i, cc, y, z]];
                        }
                        a[[i, kk, y, z]] = s;
                    }
                }
            }
        }
        a
    }

    fn layer_grad(&self, w: ArrayView2<'_, f32>) -> ArrayD<f32> {
        let n = w.nrows();
        let inner: Vec<usize> = self.v.shape()[1..].to_vec();
        let mut shape = vec![n];
        shape.extend_from_slice(&inner);
        let mut g = ArrayD::zeros(IxDyn(&shape));
        for i in 0..n {
            for c in 0..w.ncols() {
                let vc = self.v.index_axis(Axis(0), c);
                let mut gi = g.index_axis_mut(Axis(0), i);
                gi.scaled_add(w[[i, c]], &vc);
            }
        }
        g
    }
}

impl Predictor for OneLayer {
    fn input_shape(&self) -> &[usize] {
        &self.shape
    }
    fn n_outputs(&self) -> usize {
        self.v.shape()[0]
    }
    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let n = xai_core::check_batch("input", &x, &self.shape)?;
        let a = self.activation(&x);
        let a = a.to_shape((n, a.len() / n.max(1))).unwrap().to_owned();
        let classes = self.v.shape()[0];
        let v = self.v.to_shape((classes, a.ncols())).unwrap().to_owned();
        Ok(a.dot(&v.t()))
    }
}

impl DifferentiableModel for OneLayer {
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        w: ArrayView2<'_, f32>,
    ) -> xai_core::Result<ArrayD<f32>> {
        // dL/dx[c] = Σ_k M[k, c] dL/dA[k].
        let g = self.layer_grad(w);
        let mut out = ArrayD::zeros(x.raw_dim());
        let (c, k) = (self.m.ncols(), self.m.nrows());
        for cc in 0..c {
            for kk in 0..k {
                let src = g.index_axis(Axis(1), kk).to_owned();
                let mut dst = out.index_axis_mut(Axis(1), cc);
                dst.scaled_add(self.m[[kk, cc]], &src);
            }
        }
        Ok(out)
    }
    fn parameter_groups(&self) -> Vec<ParamGroup> {
        vec![]
    }
    fn per_sample_grads(
        &self,
        _: ArrayViewD<'_, f32>,
        _: &Targets,
        _: &Loss,
        _: &ParamSelection,
    ) -> xai_core::Result<PerSampleGrads> {
        Err(CoreError::Model("not used".into()))
    }
}

impl LayerModel for OneLayer {
    fn layer_names(&self) -> Vec<String> {
        vec!["A".into()]
    }
    fn layer_activation_and_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        layer: &str,
        w: ArrayView2<'_, f32>,
    ) -> xai_core::Result<(ArrayD<f32>, ArrayD<f32>)> {
        if layer != "A" {
            return Err(xai_core::unknown_layer(layer, &self.layer_names()));
        }
        xai_core::check_batch("input", &x, &self.shape)?;
        Ok((self.activation(&x), self.layer_grad(w)))
    }
}

/// Deterministic pseudo-random values in `[lo, hi)`.
pub fn values(seed: u64, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        })
        .collect()
}

pub fn array(shape: &[usize], seed: u64, lo: f32, hi: f32) -> ArrayD<f32> {
    let len = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), values(seed, len, lo, hi)).unwrap()
}

pub fn matrix(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    array(&[rows, cols], seed, -1.0, 1.0)
        .into_dimensionality::<Ix2>()
        .unwrap()
}
