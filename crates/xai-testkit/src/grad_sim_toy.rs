//! A small, fully differentiable model and synthetic data, for tests, benchmarks, examples and
//! the doc example: a two-layer perceptron `x ↦ act(tanh(x W1 + b1) W2 + b2)` whose per-sample
//! gradients come as factored [`GradBlock::Outer`] blocks for the weights and
//! [`GradBlock::Full`] blocks for the biases, the way a real network's dense layers give them.
//!
//! [`TwoLayerMlp::naive_flat_gradient`] computes one instance's flattened gradient with plain
//! scalar loops, independently of the batched code, so the two can be checked against each
//! other and against finite differences.

use ndarray::{Array1, Array2, ArrayD, ArrayView2, ArrayViewD, Axis};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use xai_core::{
    check_batch, CoreError, DifferentiableModel, GradBlock, Loss, ParamGroup, ParamSelection,
    PerSampleGrads, Predictor, Targets,
};

/// What the last layer outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputActivation {
    /// Class probabilities (softmax of the logits), for `Loss::CrossEntropy(Probabilities)`.
    Softmax,
    /// The raw affine outputs: logits for `Loss::CrossEntropy(Logits)`, or regression values.
    Identity,
}

/// Names of the parameter groups, in flattening order.
pub const PARAM_GROUPS: [&str; 4] = [
    "dense1.weight",
    "dense1.bias",
    "dense2.weight",
    "dense2.bias",
];

/// A two-layer perceptron with a tanh hidden layer (smooth, so finite differences are exact to
/// second order) implementing [`Predictor`] and [`DifferentiableModel`].
///
/// Weights are stored `[fan_in, fan_out]` and used as `x W + b`, so a weight's per-sample
/// gradient is the outer product `input ⊗ delta` flattened row-major, as
/// [`GradBlock::Outer`] defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoLayerMlp {
    input_shape: Vec<usize>,
    /// First layer weights, `[n_inputs, n_hidden]`.
    pub w1: Array2<f32>,
    /// First layer bias, `[n_hidden]`.
    pub b1: Array1<f32>,
    /// Second layer weights, `[n_hidden, n_outputs]`.
    pub w2: Array2<f32>,
    /// Second layer bias, `[n_outputs]`.
    pub b2: Array1<f32>,
    /// The output activation.
    pub output: OutputActivation,
}

/// Activations of a forward pass.
struct Forward {
    /// Flattened inputs `[n, n_inputs]`.
    x: Array2<f32>,
    /// Hidden activations `tanh(x W1 + b1)`, `[n, n_hidden]`.
    hidden: Array2<f32>,
    /// Model outputs (probabilities or affine outputs), `[n, n_outputs]`.
    outputs: Array2<f32>,
}

impl TwoLayerMlp {
    /// A network for inputs of `input_shape` with `n_hidden` tanh units and `n_outputs`
    /// outputs, weights drawn from Glorot's uniform distribution with `seed`, biases drawn
    /// from `[-0.1, 0.1]` (non-zero so their gradients are exercised).
    pub fn new_random(
        input_shape: Vec<usize>,
        n_hidden: usize,
        n_outputs: usize,
        output: OutputActivation,
        seed: u64,
    ) -> xai_core::Result<Self> {
        let n_inputs: usize = input_shape.iter().product();
        for (name, v) in [
            ("n_inputs", n_inputs),
            ("n_hidden", n_hidden),
            ("n_outputs", n_outputs),
        ] {
            if v == 0 {
                return Err(CoreError::param(name, v, "at least 1"));
            }
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut glorot = |fan_in: usize, fan_out: usize| {
            let a = (6.0 / (fan_in + fan_out) as f32).sqrt();
            Array2::from_shape_simple_fn((fan_in, fan_out), || rng.gen_range(-a..a))
        };
        let w1 = glorot(n_inputs, n_hidden);
        let w2 = glorot(n_hidden, n_outputs);
        let b1 = Array1::from_shape_simple_fn(n_hidden, || rng.gen_range(-0.1..0.1));
        let b2 = Array1::from_shape_simple_fn(n_outputs, || rng.gen_range(-0.1..0.1));
        Ok(Self {
            input_shape,
            w1,
            b1,
            w2,
            b2,
            output,
        })
    }

    /// Number of scalar parameters.
    pub fn n_params(&self) -> usize {
        self.w1.len() + self.b1.len() + self.w2.len() + self.b2.len()
    }

    fn flatten(&self, x: &ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let n = check_batch("input", x, &self.input_shape)?;
        let d = self.w1.nrows();
        let flat = x
            .to_owned()
            .into_shape_with_order((n, d))
            .map_err(|e| CoreError::Model(format!("cannot flatten the input batch: {e}")))?;
        Ok(flat)
    }

    fn forward(&self, x: &ArrayViewD<'_, f32>) -> xai_core::Result<Forward> {
        let x = self.flatten(x)?;
        let hidden = (x.dot(&self.w1) + &self.b1).mapv(f32::tanh);
        let mut outputs = hidden.dot(&self.w2) + &self.b2;
        if self.output == OutputActivation::Softmax {
            for mut row in outputs.rows_mut() {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                row.mapv_inplace(|v| (v - max).exp());
                let sum = row.sum();
                row.mapv_inplace(|v| v / sum);
            }
        }
        Ok(Forward { x, hidden, outputs })
    }

    /// Back-propagates `grad_outputs` (`∂L/∂outputs`, `[n, n_outputs]`) to the pre-activations
    /// of both layers: `(∂L/∂z2, ∂L/∂z1)`.
    fn backward(
        &self,
        fwd: &Forward,
        grad_outputs: ArrayView2<'_, f32>,
    ) -> (Array2<f32>, Array2<f32>) {
        let mut dz2 = grad_outputs.to_owned();
        if self.output == OutputActivation::Softmax {
            // ∂L/∂z_j = p_j (g_j - Σ_k p_k g_k).
            for (mut d, p) in dz2.rows_mut().into_iter().zip(fwd.outputs.rows()) {
                let pg: f32 = d.iter().zip(p.iter()).map(|(g, p)| g * p).sum();
                d.zip_mut_with(&p, |g, &p| *g = p * (*g - pg));
            }
        }
        let mut dz1 = dz2.dot(&self.w2.t());
        dz1.zip_mut_with(&fwd.hidden, |d, &h| *d *= 1.0 - h * h);
        (dz2, dz1)
    }

    /// One instance's flattened loss gradient over all parameters (in [`PARAM_GROUPS`] order,
    /// weights row-major), computed with scalar loops only, independently of the batched path.
    /// `x` has the model's input shape (no batch axis); `target` is that instance's target.
    pub fn naive_flat_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        target: &Targets,
        loss: &Loss,
    ) -> xai_core::Result<Array1<f32>> {
        if x.shape() != self.input_shape.as_slice() {
            return Err(CoreError::shape(
                "instance",
                x.shape(),
                format!("{:?}", self.input_shape),
            ));
        }
        let xs: Vec<f32> = x.iter().copied().collect();
        let (d, h, k) = (self.w1.nrows(), self.w1.ncols(), self.w2.ncols());
        let mut hidden = vec![0.0f32; h];
        for j in 0..h {
            let mut z = self.b1[j];
            for i in 0..d {
                z += xs[i] * self.w1[[i, j]];
            }
            hidden[j] = z.tanh();
        }
        let mut out = vec![0.0f32; k];
        for o in 0..k {
            let mut z = self.b2[o];
            for j in 0..h {
                z += hidden[j] * self.w2[[j, o]];
            }
            out[o] = z;
        }
        if self.output == OutputActivation::Softmax {
            let max = out.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = out.iter().map(|v| (v - max).exp()).sum();
            for v in out.iter_mut() {
                *v = (*v - max).exp() / sum;
            }
        }
        let out_row = Array2::from_shape_vec((1, k), out.clone())
            .map_err(|e| CoreError::Model(e.to_string()))?;
        let (_, g_out) = loss.value_and_grad(out_row.view(), target)?;
        let mut dz2 = vec![0.0f32; k];
        for o in 0..k {
            dz2[o] = match self.output {
                OutputActivation::Identity => g_out[[0, o]],
                OutputActivation::Softmax => {
                    let mut s = 0.0;
                    for m in 0..k {
                        let kronecker = if m == o { 1.0 } else { 0.0 };
                        // ∂p_m/∂z_o = p_m (δ_mo - p_o)
                        s += g_out[[0, m]] * out[m] * (kronecker - out[o]);
                    }
                    s
                }
            };
        }
        let mut dz1 = vec![0.0f32; h];
        for j in 0..h {
            let mut s = 0.0;
            for o in 0..k {
                s += dz2[o] * self.w2[[j, o]];
            }
            dz1[j] = s * (1.0 - hidden[j] * hidden[j]);
        }
        let mut flat = Vec::with_capacity(self.n_params());
        for i in 0..d {
            for j in 0..h {
                flat.push(xs[i] * dz1[j]);
            }
        }
        flat.extend_from_slice(&dz1);
        for j in 0..h {
            for o in 0..k {
                flat.push(hidden[j] * dz2[o]);
            }
        }
        flat.extend_from_slice(&dz2);
        Ok(Array1::from(flat))
    }

    /// Mean loss over a batch.
    pub fn mean_loss(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
    ) -> xai_core::Result<f32> {
        let out = self.predict(x)?;
        let (values, _) = loss.value_and_grad(out.view(), targets)?;
        Ok(values.mean().unwrap_or(0.0))
    }

    /// Trains with plain mini-batch gradient descent on the mean loss, shuffling with `seed`
    /// every epoch; returns the mean training loss after each epoch.
    pub fn train_sgd(
        &mut self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        epochs: usize,
        learning_rate: f32,
        batch_size: usize,
        seed: u64,
    ) -> xai_core::Result<Vec<f32>> {
        let n = check_batch("training inputs", &x, &self.input_shape)?;
        if targets.len() != n {
            return Err(CoreError::InvalidTargets(format!(
                "{} targets for {n} training instances",
                targets.len()
            )));
        }
        if batch_size == 0 || !learning_rate.is_finite() || learning_rate <= 0.0 {
            return Err(CoreError::param(
                "batch_size / learning_rate",
                format!("{batch_size} / {learning_rate}"),
                "a batch size >= 1 and a finite learning rate > 0",
            ));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        let mut history = Vec::with_capacity(epochs);
        for _ in 0..epochs {
            order.shuffle(&mut rng);
            for batch in order.chunks(batch_size) {
                let xb = x.select(Axis(0), batch);
                let tb = targets.select(batch)?;
                let fwd = self.forward(&xb.view())?;
                let (_, g_out) = loss.value_and_grad(fwd.outputs.view(), &tb)?;
                let (dz2, dz1) = self.backward(&fwd, g_out.view());
                let scale = learning_rate / batch.len() as f32;
                self.w1.scaled_add(-scale, &fwd.x.t().dot(&dz1));
                self.b1.scaled_add(-scale, &dz1.sum_axis(Axis(0)));
                self.w2.scaled_add(-scale, &fwd.hidden.t().dot(&dz2));
                self.b2.scaled_add(-scale, &dz2.sum_axis(Axis(0)));
            }
            history.push(self.mean_loss(x.view(), targets, loss)?);
        }
        Ok(history)
    }
}

impl Predictor for TwoLayerMlp {
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn n_outputs(&self) -> usize {
        self.w2.ncols()
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        Ok(self.forward(&x)?.outputs)
    }
}

impl DifferentiableModel for TwoLayerMlp {
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: ArrayView2<'_, f32>,
    ) -> xai_core::Result<ArrayD<f32>> {
        let fwd = self.forward(&x)?;
        if output_weights.dim() != fwd.outputs.dim() {
            return Err(CoreError::shape(
                "output weights",
                output_weights.shape(),
                format!("{:?}", fwd.outputs.shape()),
            ));
        }
        let (_, dz1) = self.backward(&fwd, output_weights);
        let dx = dz1.dot(&self.w1.t());
        dx.into_shape_with_order(x.shape())
            .map_err(|e| CoreError::Model(format!("cannot reshape the input gradient: {e}")))
    }

    fn parameter_groups(&self) -> Vec<ParamGroup> {
        let shapes = [
            self.w1.shape().to_vec(),
            vec![self.b1.len()],
            self.w2.shape().to_vec(),
            vec![self.b2.len()],
        ];
        PARAM_GROUPS
            .iter()
            .zip(shapes)
            .map(|(name, shape)| ParamGroup {
                name: name.to_string(),
                shape,
            })
            .collect()
    }

    fn per_sample_grads(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> xai_core::Result<PerSampleGrads> {
        selection.validate(&self.parameter_groups())?;
        let fwd = self.forward(&x)?;
        let (_, g_out) = loss.value_and_grad(fwd.outputs.view(), targets)?;
        let (dz2, dz1) = self.backward(&fwd, g_out.view());
        let mut blocks = Vec::with_capacity(4);
        let [w1, b1, w2, b2] = PARAM_GROUPS;
        if selection.contains(w1) {
            blocks.push(GradBlock::Outer {
                name: w1.into(),
                inputs: fwd.x.clone(),
                deltas: dz1.clone(),
            });
        }
        if selection.contains(b1) {
            blocks.push(GradBlock::Full {
                name: b1.into(),
                values: dz1,
            });
        }
        if selection.contains(w2) {
            blocks.push(GradBlock::Outer {
                name: w2.into(),
                inputs: fwd.hidden,
                deltas: dz2.clone(),
            });
        }
        if selection.contains(b2) {
            blocks.push(GradBlock::Full {
                name: b2.into(),
                values: dz2,
            });
        }
        PerSampleGrads::new(blocks)
    }
}

/// `n_per_class` points of each of `n_classes` Gaussian blobs in `n_features` dimensions:
/// class `c` is centred on a random point of `[-1, 1]^n_features` scaled by `separation`,
/// with unit-free standard deviation `spread`. Returns the points `[n, n_features]` and their
/// classes, interleaved by class.
pub fn gaussian_blobs(
    n_per_class: usize,
    n_classes: usize,
    n_features: usize,
    separation: f32,
    spread: f32,
    seed: u64,
) -> (Array2<f32>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres = Array2::from_shape_simple_fn((n_classes, n_features), || {
        rng.gen_range(-1.0f32..1.0) * separation
    });
    let n = n_per_class * n_classes;
    let mut x = Array2::zeros((n, n_features));
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % n_classes;
        labels.push(c);
        for f in 0..n_features {
            // Box-Muller from two uniforms.
            let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
            let u2: f32 = rng.gen_range(0.0..1.0);
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos();
            x[[i, f]] = centres[[c, f]] + spread * z;
        }
    }
    (x, labels)
}

/// Reshapes `[n, d]` rows into `[n, ..shape]` with `shape.iter().product() == d`.
pub fn reshape_rows(x: Array2<f32>, shape: &[usize]) -> xai_core::Result<ArrayD<f32>> {
    let mut full = vec![x.nrows()];
    full.extend_from_slice(shape);
    let got = x.shape().to_vec();
    x.into_shape_with_order(full.clone())
        .map_err(|_| CoreError::shape("rows", &got, format!("{full:?}")))
}
