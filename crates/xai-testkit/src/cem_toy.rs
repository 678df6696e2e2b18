//! Small differentiable models and synthetic "images" for tests, benchmarks and demos without
//! the MNIST networks: a two-layer `tanh` network ([`TwoLayerNet`]) that is either a softmax
//! classifier or an autoencoder, trained by full-batch Adam, and images of bars
//! ([`bar_images`]) whose classes differ by *added* strokes, so that pertinent negatives exist.

use ndarray::{Array1, Array2, Array4, ArrayD, ArrayView2, ArrayViewD, Axis, Ix2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{
    check_batch, CoreError, DifferentiableModel, GradBlock, Loss, ParamGroup, ParamSelection,
    PerSampleGrads, Predictor, Result, Targets,
};

/// The output layer's activation of a [`TwoLayerNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputActivation {
    /// Softmax: the outputs are class probabilities (like the alibi MNIST CNN).
    Softmax,
    /// Identity: the outputs are unbounded values (an autoencoder's reconstruction).
    Identity,
}

/// `out = act(tanh(x W1 + b1) W2 + b2)` on flattened inputs: a softmax classifier or an
/// autoencoder (`n_outputs = n_features`) with exact input gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoLayerNet {
    input_shape: Vec<usize>,
    w1: Array2<f32>,
    b1: Array1<f32>,
    w2: Array2<f32>,
    b2: Array1<f32>,
    output: OutputActivation,
}

/// Activations kept for the backward pass.
struct Forward {
    hidden: Array2<f32>,
    out: Array2<f32>,
}

/// Gradients of a batch's summed loss with respect to the parameters.
struct Backward {
    d_w1: Array2<f32>,
    d_b1: Array1<f32>,
    d_w2: Array2<f32>,
    d_b2: Array1<f32>,
}

impl TwoLayerNet {
    /// A network with Glorot-uniform weights drawn from `seed` and zero biases.
    pub fn new(
        input_shape: &[usize],
        hidden: usize,
        n_outputs: usize,
        output: OutputActivation,
        seed: u64,
    ) -> Self {
        let f: usize = input_shape.iter().product();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut glorot = |rows: usize, cols: usize| {
            let limit = (6.0 / (rows + cols) as f32).sqrt();
            Array2::from_shape_fn((rows, cols), |_| rng.gen_range(-limit..limit))
        };
        Self {
            input_shape: input_shape.to_vec(),
            w1: glorot(f, hidden),
            b1: Array1::zeros(hidden),
            w2: glorot(hidden, n_outputs),
            b2: Array1::zeros(n_outputs),
            output,
        }
    }

    /// Trains on `x` (`[n, ..input_shape]`) towards `targets` (`[n, n_outputs]`: one-hot rows
    /// for a classifier with [`Loss::CrossEntropy`], the flattened inputs for an autoencoder with
    /// [`Loss::MeanSquaredError`]) by full-batch Adam; returns the final mean loss.
    pub fn train(
        &mut self,
        x: ArrayViewD<'_, f32>,
        targets: ArrayView2<'_, f32>,
        loss: Loss,
        epochs: usize,
        learning_rate: f32,
    ) -> Result<f32> {
        let x = self.flat_batch(x)?;
        let n = x.nrows();
        if targets.dim() != (n, self.n_outputs()) {
            return Err(CoreError::shape(
                "targets",
                targets.shape(),
                format!("[{n}, {}]", self.n_outputs()),
            ));
        }
        let targets = Targets::Values(targets.to_owned());
        let mut adam = Adam::new(self);
        let mut last = f32::NAN;
        for _ in 0..epochs {
            let fwd = self.forward(x.view());
            let (values, grad_out) = loss.value_and_grad(fwd.out.view(), &targets)?;
            last = values.mean().unwrap_or(f32::NAN);
            let back = self.backward(x.view(), &fwd, (grad_out / n as f32).view());
            adam.step(self, &back, learning_rate);
        }
        Ok(last)
    }

    /// Fraction of rows of `x` whose arg-max output is `labels[i]`.
    pub fn accuracy(&self, x: ArrayViewD<'_, f32>, labels: &[usize]) -> Result<f32> {
        let out = self.predict(x)?;
        let pred = xai_core::argmax_rows(out.view());
        let hits = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
        Ok(hits as f32 / labels.len().max(1) as f32)
    }

    fn n_features(&self) -> usize {
        self.w1.nrows()
    }

    fn flat_batch(&self, x: ArrayViewD<'_, f32>) -> Result<Array2<f32>> {
        let n = check_batch("input", &x, &self.input_shape)?;
        let flat = x
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((n, self.n_features()))
            .map_err(|e| CoreError::Model(e.to_string()))?;
        flat.into_dimensionality::<Ix2>()
            .map_err(|e| CoreError::Model(e.to_string()))
    }

    fn forward(&self, x: ArrayView2<'_, f32>) -> Forward {
        let mut hidden = x.dot(&self.w1);
        hidden += &self.b1;
        hidden.mapv_inplace(f32::tanh);
        let mut out = hidden.dot(&self.w2);
        out += &self.b2;
        if self.output == OutputActivation::Softmax {
            for mut row in out.axis_iter_mut(Axis(0)) {
                let max = row.fold(f32::NEG_INFINITY, |m, v| m.max(*v));
                row.mapv_inplace(|v| (v - max).exp());
                let sum = row.sum();
                row /= sum;
            }
        }
        Forward { hidden, out }
    }

    /// Back-propagates `grad_out` (the loss gradient with respect to the outputs, per row).
    fn backward(
        &self,
        x: ArrayView2<'_, f32>,
        fwd: &Forward,
        grad_out: ArrayView2<'_, f32>,
    ) -> Backward {
        let grad_logits = self.grad_logits(fwd, grad_out);
        let grad_pre = self.grad_pre_activation(fwd, &grad_logits);
        Backward {
            d_w1: x.t().dot(&grad_pre),
            d_b1: grad_pre.sum_axis(Axis(0)),
            d_w2: fwd.hidden.t().dot(&grad_logits),
            d_b2: grad_logits.sum_axis(Axis(0)),
        }
    }

    fn grad_logits(&self, fwd: &Forward, grad_out: ArrayView2<'_, f32>) -> Array2<f32> {
        match self.output {
            OutputActivation::Identity => grad_out.to_owned(),
            OutputActivation::Softmax => {
                // d softmax: g_z = p * (g - <g, p>)
                let mut g = grad_out.to_owned();
                for (mut row, p) in g.axis_iter_mut(Axis(0)).zip(fwd.out.axis_iter(Axis(0))) {
                    let dot = row.dot(&p);
                    row.zip_mut_with(&p, |gv, pv| *gv = pv * (*gv - dot));
                }
                g
            }
        }
    }

    fn grad_pre_activation(&self, fwd: &Forward, grad_logits: &Array2<f32>) -> Array2<f32> {
        let mut g = grad_logits.dot(&self.w2.t());
        g.zip_mut_with(&fwd.hidden, |gv, h| *gv *= 1.0 - h * h);
        g
    }
}

impl Predictor for TwoLayerNet {
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn n_outputs(&self) -> usize {
        self.w2.ncols()
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> Result<Array2<f32>> {
        let x = self.flat_batch(x)?;
        Ok(self.forward(x.view()).out)
    }
}

impl DifferentiableModel for TwoLayerNet {
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: ArrayView2<'_, f32>,
    ) -> Result<ArrayD<f32>> {
        let shape = x.shape().to_vec();
        let flat = self.flat_batch(x)?;
        if output_weights.dim() != (flat.nrows(), self.n_outputs()) {
            return Err(CoreError::shape(
                "output_weights",
                output_weights.shape(),
                format!("[{}, {}]", flat.nrows(), self.n_outputs()),
            ));
        }
        let fwd = self.forward(flat.view());
        let grad_logits = self.grad_logits(&fwd, output_weights);
        let grad_pre = self.grad_pre_activation(&fwd, &grad_logits);
        grad_pre
            .dot(&self.w1.t())
            .into_shape_with_order(shape)
            .map_err(|e| CoreError::Model(e.to_string()))
    }

    fn parameter_groups(&self) -> Vec<ParamGroup> {
        vec![
            ParamGroup {
                name: "dense1.weight".into(),
                shape: self.w1.shape().to_vec(),
            },
            ParamGroup {
                name: "dense1.bias".into(),
                shape: vec![self.b1.len()],
            },
            ParamGroup {
                name: "dense2.weight".into(),
                shape: self.w2.shape().to_vec(),
            },
            ParamGroup {
                name: "dense2.bias".into(),
                shape: vec![self.b2.len()],
            },
        ]
    }

    fn per_sample_grads(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> Result<PerSampleGrads> {
        selection.validate(&self.parameter_groups())?;
        let flat = self.flat_batch(x)?;
        let fwd = self.forward(flat.view());
        let (_, grad_out) = loss.value_and_grad(fwd.out.view(), targets)?;
        let grad_logits = self.grad_logits(&fwd, grad_out.view());
        let grad_pre = self.grad_pre_activation(&fwd, &grad_logits);
        let mut blocks = Vec::new();
        let candidates = [
            GradBlock::Outer {
                name: "dense1.weight".into(),
                inputs: flat.clone(),
                deltas: grad_pre.clone(),
            },
            GradBlock::Full {
                name: "dense1.bias".into(),
                values: grad_pre,
            },
            GradBlock::Outer {
                name: "dense2.weight".into(),
                inputs: fwd.hidden,
                deltas: grad_logits.clone(),
            },
            GradBlock::Full {
                name: "dense2.bias".into(),
                values: grad_logits,
            },
        ];
        for block in candidates {
            if selection.contains(block.name()) {
                blocks.push(block);
            }
        }
        PerSampleGrads::new(blocks)
    }
}

/// Adam (Kingma & Ba 2015) state for a [`TwoLayerNet`].
struct Adam {
    m: [Vec<f32>; 4],
    v: [Vec<f32>; 4],
    t: i32,
}

impl Adam {
    fn new(net: &TwoLayerNet) -> Self {
        let sizes = [net.w1.len(), net.b1.len(), net.w2.len(), net.b2.len()];
        Self {
            m: sizes.map(|s| vec![0.0; s]),
            v: sizes.map(|s| vec![0.0; s]),
            t: 0,
        }
    }

    fn step(&mut self, net: &mut TwoLayerNet, grads: &Backward, lr: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        let params = [
            net.w1.iter_mut().zip(grads.d_w1.iter()).collect::<Vec<_>>(),
            net.b1.iter_mut().zip(grads.d_b1.iter()).collect(),
            net.w2.iter_mut().zip(grads.d_w2.iter()).collect(),
            net.b2.iter_mut().zip(grads.d_b2.iter()).collect(),
        ];
        for (k, group) in params.into_iter().enumerate() {
            for (j, (p, g)) in group.into_iter().enumerate() {
                let m = &mut self.m[k][j];
                let v = &mut self.v[k][j];
                *m = B1 * *m + (1.0 - B1) * g;
                *v = B2 * *v + (1.0 - B2) * g * g;
                *p -= lr * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
            }
        }
    }
}

/// Background value of [`bar_images`] (as MNIST scaled to `[-0.5, 0.5]`).
pub const BACKGROUND: f32 = -0.5;
/// Stroke value of [`bar_images`].
pub const STROKE: f32 = 0.5;

/// Number of classes of [`bar_images`].
pub const BAR_CLASSES: usize = 3;

/// Synthetic `side x side` images `[n, 1, side, side]` in `[-0.5, 0.5]` and their labels:
/// class 0 a horizontal bar, class 1 a vertical bar, class 2 both (a cross), at random rows and
/// columns, with uniform noise of amplitude `noise` pulling pixels towards the middle grey.
/// A cross is a bar *plus* a stroke: a pertinent negative of a bar adds the other bar.
pub fn bar_images(
    n_per_class: usize,
    side: usize,
    noise: f32,
    seed: u64,
) -> (Array4<f32>, Vec<usize>) {
    let n = n_per_class * BAR_CLASSES;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut images = Array4::from_elem((n, 1, side, side), BACKGROUND);
    let mut labels = Vec::with_capacity(n);
    let margin = side / 4;
    for i in 0..n {
        let class = i % BAR_CLASSES;
        labels.push(class);
        let row = rng.gen_range(margin..side - margin);
        let col = rng.gen_range(margin..side - margin);
        for p in 0..side {
            if class == 0 || class == 2 {
                images[[i, 0, row, p]] = STROKE;
            }
            if class == 1 || class == 2 {
                images[[i, 0, p, col]] = STROKE;
            }
        }
        for v in images.slice_mut(ndarray::s![i, 0, .., ..]).iter_mut() {
            let jitter = rng.gen_range(0.0..=noise.max(0.0));
            *v = if *v > 0.0 { *v - jitter } else { *v + jitter };
        }
    }
    (images, labels)
}

/// A [`TwoLayerNet`] softmax classifier trained on [`bar_images`] (`hidden` units) and the data
/// it was trained on; deterministic for a given `seed`.
pub fn trained_bar_classifier(
    side: usize,
    hidden: usize,
    seed: u64,
) -> Result<(TwoLayerNet, Array4<f32>, Vec<usize>)> {
    let (x, labels) = bar_images(40, side, 0.1, seed);
    let mut net = TwoLayerNet::new(
        &[1, side, side],
        hidden,
        BAR_CLASSES,
        OutputActivation::Softmax,
        seed.wrapping_add(1),
    );
    let targets = Targets::Classes(labels.clone()).to_dense(BAR_CLASSES)?;
    net.train(
        x.view().into_dyn(),
        targets.view(),
        Loss::CrossEntropy(xai_core::OutputKind::Probabilities),
        300,
        0.02,
    )?;
    Ok((net, x, labels))
}

/// A [`TwoLayerNet`] autoencoder (`hidden` units) trained on `x` (`[n, 1, side, side]`).
pub fn trained_autoencoder(x: &Array4<f32>, hidden: usize, seed: u64) -> Result<TwoLayerNet> {
    let (n, c, h, w) = x.dim();
    let f = c * h * w;
    let mut ae = TwoLayerNet::new(&[c, h, w], hidden, f, OutputActivation::Identity, seed);
    let flat = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, f))
        .map_err(|e| CoreError::Model(e.to_string()))?;
    ae.train(
        x.view().into_dyn(),
        flat.view(),
        Loss::MeanSquaredError,
        300,
        0.02,
    )?;
    Ok(ae)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_gradient_matches_finite_differences() {
        let net = TwoLayerNet::new(&[1, 2, 2], 5, 3, OutputActivation::Softmax, 3);
        let x = ArrayD::from_shape_vec(
            vec![2, 1, 2, 2],
            vec![0.1, -0.2, 0.3, 0.4, -0.1, 0.2, 0.0, 0.5],
        )
        .unwrap();
        let w = ndarray::array![[1.0f32, -2.0, 0.5], [0.0, 1.0, -1.0]];
        let g = net.input_gradient(x.view(), w.view()).unwrap();
        let h = 1e-3f32;
        for idx in 0..x.len() {
            let mut plus = x.clone();
            plus.as_slice_mut().unwrap()[idx] += h;
            let mut minus = x.clone();
            minus.as_slice_mut().unwrap()[idx] -= h;
            let fp = (net.predict(plus.view()).unwrap() * &w).sum();
            let fm = (net.predict(minus.view()).unwrap() * &w).sum();
            let fd = (fp - fm) / (2.0 * h);
            let got = g.as_slice().unwrap()[idx];
            assert!((fd - got).abs() < 2e-3, "feature {idx}: {got} vs {fd}");
        }
    }

    #[test]
    fn per_sample_grads_sum_to_the_batch_gradient() {
        let net = TwoLayerNet::new(&[3], 4, 2, OutputActivation::Softmax, 5);
        let x = ndarray::array![[0.1f32, 0.2, -0.3], [0.5, -0.5, 0.0]].into_dyn();
        let t = Targets::Classes(vec![0, 1]);
        let loss = Loss::CrossEntropy(xai_core::OutputKind::Probabilities);
        let g = net
            .per_sample_grads(x.view(), &t, &loss, &ParamSelection::All)
            .unwrap();
        assert_eq!(g.n_params(), 3 * 4 + 4 + 4 * 2 + 2);
        let flat = g.to_flat();
        let x2 = net.flat_batch(x.view()).unwrap();
        let fwd = net.forward(x2.view());
        let (_, go) = loss.value_and_grad(fwd.out.view(), &t).unwrap();
        let b = net.backward(x2.view(), &fwd, go.view());
        let summed = flat.sum_axis(Axis(0));
        for (a, e) in summed.iter().zip(b.d_w1.iter()) {
            assert!((a - e).abs() < 1e-5);
        }
        let sel = ParamSelection::Groups(vec!["dense2.bias".into()]);
        let only = net.per_sample_grads(x.view(), &t, &loss, &sel).unwrap();
        assert_eq!(only.n_params(), 2);
    }

    #[test]
    fn bar_classifier_learns_the_classes() {
        let (net, x, labels) = trained_bar_classifier(8, 12, 7).unwrap();
        let acc = net.accuracy(x.view().into_dyn(), &labels).unwrap();
        assert!(acc > 0.95, "training accuracy {acc}");
        let (test_x, test_labels) = bar_images(10, 8, 0.1, 99);
        let acc = net
            .accuracy(test_x.view().into_dyn(), &test_labels)
            .unwrap();
        assert!(acc > 0.9, "test accuracy {acc}");
        assert!(x.iter().all(|v| (BACKGROUND..=STROKE).contains(v)));
    }
}
