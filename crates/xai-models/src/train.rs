//! Training with Adam (Kingma & Ba 2015), seeded shuffling, dropout, an `indicatif` progress bar,
//! and evaluation.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, Array4, ArrayView4, Axis};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xai_core::{argmax_rows, CoreError, Loss, OutputKind, Targets};

use crate::cpu::{dispatched, Isa};
use crate::layers::Layer;
use crate::{ModelError, Network, TrainGradients};

/// Adam optimiser state (Kingma & Ba 2015, Algorithm 1), with Keras' defaults.
#[derive(Debug, Clone)]
pub struct Adam {
    /// Step size α.
    pub learning_rate: f32,
    /// Exponential decay of the first moment, β₁.
    pub beta1: f32,
    /// Exponential decay of the second moment, β₂.
    pub beta2: f32,
    /// ε added to the denominator.
    pub epsilon: f32,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl Adam {
    /// Adam with learning rate `learning_rate`, β₁ = 0.9, β₂ = 0.999, ε = 1e-7 (Keras).
    pub fn new(learning_rate: f32) -> Self {
        Self {
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            m: Vec::new(),
            v: Vec::new(),
            t: 0,
        }
    }

    /// One update of `params` with gradients `grads` (same order and lengths).
    pub fn step(
        &mut self,
        params: Vec<&mut Vec<f32>>,
        grads: &[Vec<f32>],
    ) -> Result<(), ModelError> {
        if params.len() != grads.len() {
            return Err(ModelError::Internal(format!(
                "{} parameter tensors but {} gradients",
                params.len(),
                grads.len()
            )));
        }
        if self.m.is_empty() {
            self.m = grads.iter().map(|g| vec![0.0; g.len()]).collect();
            self.v = self.m.clone();
        }
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2 = 1.0 - self.beta2.powi(self.t);
        let step = self.learning_rate * bc2.sqrt() / bc1;
        for (k, (p, g)) in params.into_iter().zip(grads).enumerate() {
            if p.len() != g.len() || self.m[k].len() != g.len() {
                return Err(ModelError::Internal(format!(
                    "gradient {k} has the wrong length"
                )));
            }
            let (m, v) = (&mut self.m[k], &mut self.v[k]);
            let consts = [self.beta1, self.beta2, step, self.epsilon];
            if p.len() >= 1 << 16 && rayon::current_num_threads() > 1 {
                // Elementwise: the same values whichever thread updates a block.
                p.par_chunks_mut(1 << 14)
                    .zip(m.par_chunks_mut(1 << 14))
                    .zip(v.par_chunks_mut(1 << 14))
                    .zip(g.par_chunks(1 << 14))
                    .for_each(|(((p, m), v), g)| adam_update(p, (m, v), g, consts));
            } else {
                adam_update(p, (m, v), g, consts);
            }
        }
        Ok(())
    }
}

/// Adam's update of one block of parameters `p` with gradients `g` and moments `m`, `v`
/// (Kingma & Ba 2015, Algorithm 1, with the bias corrections folded into `step`):
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `p ← p − step·m/(√v + ε)`. No multiply-add is
/// fused, so every instruction set gives the same bits.
#[inline(always)]
fn adam_update_with<I: Isa>(
    _: I,
    p: &mut [f32],
    (m, v): (&mut [f32], &mut [f32]),
    g: &[f32],
    [beta1, beta2, step, epsilon]: [f32; 4],
) {
    let lanes = p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g);
    for (((p, m), v), &g) in lanes {
        *m = beta1 * *m + (1.0 - beta1) * g;
        *v = beta2 * *v + (1.0 - beta2) * g * g;
        *p -= step * *m / (v.sqrt() + epsilon);
    }
}

dispatched! {
    /// [`adam_update_with`] for this CPU (see [`crate::cpu`]).
    fn adam_update(p: &mut [f32], mv: (&mut [f32], &mut [f32]), g: &[f32], consts: [f32; 4]) =
        adam_update_with;
}

/// How to train a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per Adam step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f32,
    /// Seed for shuffling and dropout.
    pub seed: u64,
    /// The loss (cross-entropy on the model's output kind, or MSE).
    pub loss: Loss,
    /// Show an `indicatif` progress bar with the running loss and accuracy.
    pub progress: bool,
}

/// Loss and accuracy of one epoch or evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean loss per sample.
    pub loss: f32,
    /// Fraction of correct argmax predictions (`None` for regression targets).
    pub accuracy: Option<f32>,
}

fn batch_images(x: &ArrayView4<'_, f32>, idx: &[usize]) -> Array4<f32> {
    x.select(Axis(0), idx)
}

fn accuracy(outputs: &Array2<f32>, targets: &Targets) -> Option<f32> {
    let Targets::Classes(c) = targets else {
        return None;
    };
    let pred = argmax_rows(outputs.view());
    let correct = pred.iter().zip(c).filter(|(p, t)| p == t).count();
    Some(correct as f32 / c.len().max(1) as f32)
}

/// Trains `net` on images `x` (`[n, c, h, w]`) with `targets`, returning the metrics of each epoch.
///
/// When the network ends in a softmax and the loss is cross-entropy on probabilities, the
/// gradient is taken through the fused softmax-cross-entropy (`p - t`), as Keras does. Batch norm
/// layers train as PyTorch's do: batch statistics in the forward pass (over the whole batch),
/// gradients through them, running statistics updated after each step with momentum 0.1.
pub fn train(
    net: &mut Network,
    x: ArrayView4<'_, f32>,
    targets: &Targets,
    config: &TrainConfig,
) -> Result<Vec<Metrics>, ModelError> {
    let n = x.shape()[0];
    if n == 0 {
        return Err(CoreError::Empty("training set".into()).into());
    }
    if targets.len() != n {
        return Err(
            CoreError::InvalidTargets(format!("{} targets for {n} images", targets.len())).into(),
        );
    }
    if config.batch_size == 0 || config.epochs == 0 {
        return Err(CoreError::param(
            "batch_size/epochs",
            format!("{}/{}", config.batch_size, config.epochs),
            "both at least 1",
        )
        .into());
    }
    if !(config.learning_rate > 0.0 && config.learning_rate.is_finite()) {
        return Err(
            CoreError::param("learning_rate", config.learning_rate, "a finite value > 0").into(),
        );
    }
    // For the whole-batch path of networks with batch norm (see below).
    let fused_softmax = matches!(config.loss, Loss::CrossEntropy(OutputKind::Probabilities))
        && matches!(net.layers().last().map(|l| &l.layer), Some(Layer::Softmax));
    let n_out = xai_core::Predictor::n_outputs(net);
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut adam = Adam::new(config.learning_rate);
    let mut order: Vec<usize> = (0..n).collect();
    let mut history = Vec::with_capacity(config.epochs);
    let steps = n.div_ceil(config.batch_size);
    for epoch in 0..config.epochs {
        order.shuffle(&mut rng);
        let bar = if config.progress {
            let b = ProgressBar::new(steps as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(format!(
                "{} epoch {}/{}",
                net.name(),
                epoch + 1,
                config.epochs
            ));
            b
        } else {
            ProgressBar::hidden()
        };
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for idx in order.chunks(config.batch_size) {
            let xb = batch_images(&x, idx);
            let tb = targets.select(idx)?;
            // A network with batch norm runs the whole batch as one trace: its statistics are
            // the whole batch's, and the trace moves the running statistics afterwards. Other
            // networks run chunk by chunk (`Network::train_gradients`).
            let (outputs, values) = if net.couples_samples_in_training() {
                let trace = net.forward_trace(xb.view(), Some(&mut rng))?;
                let outputs =
                    Array2::from_shape_vec((idx.len(), n_out), trace.output_flat().to_vec())
                        .map_err(|e| ModelError::Internal(e.to_string()))?;
                let (values, mut grad) = config.loss.value_and_grad(outputs.view(), &tb)?;
                let grads = if fused_softmax {
                    // d(CE ∘ softmax)/dz = p·Σt - t at the logits z, taken below the softmax layer
                    // (exact even where p underflows to 0). Mean over the batch, as Keras does.
                    let t = tb.to_dense(n_out)?;
                    let scale = 1.0 / idx.len() as f32;
                    let mut logit_grad = outputs.clone();
                    for (mut g, t_row) in logit_grad.rows_mut().into_iter().zip(t.rows()) {
                        let t_sum = t_row.sum();
                        g.zip_mut_with(&t_row, |p, tv| *p = (*p * t_sum - tv) * scale);
                    }
                    net.backward_below(&trace, 1, logit_grad.view(), false)?
                } else {
                    grad /= idx.len() as f32;
                    net.backward(&trace, grad.view(), false)?
                };
                adam.step(net.param_slices_mut(), &grads.params)?;
                // Batch norm: the forward pass above normalised with the whole batch's statistics;
                // move the running statistics (used when evaluating) towards them.
                net.update_batch_norm_statistics(&trace, crate::BatchNorm::DEFAULT_MOMENTUM)?;
                (outputs, values.to_vec())
            } else {
                // Forward with dropout, loss and backward chunk by chunk (fused softmax
                // cross-entropy where the network ends in a softmax), mean over the batch.
                let TrainGradients {
                    outputs,
                    losses: values,
                    params,
                } = net.train_gradients(xb.view(), &tb, &config.loss, &mut rng)?;
                adam.step(net.param_slices_mut(), &params)?;
                (outputs, values)
            };
            loss_sum += values.iter().map(|v| *v as f64).sum::<f64>();
            if let Targets::Classes(c) = &tb {
                let pred = argmax_rows(outputs.view());
                correct += pred.iter().zip(c).filter(|(p, t)| p == t).count();
            }
            seen += idx.len();
            let acc = if matches!(targets, Targets::Classes(_)) {
                format!(" acc {:.4}", correct as f64 / seen as f64)
            } else {
                String::new()
            };
            bar.set_message(format!("loss {:.4}{acc}", loss_sum / seen as f64));
            bar.inc(1);
        }
        bar.finish();
        let metrics = Metrics {
            loss: (loss_sum / seen as f64) as f32,
            accuracy: matches!(targets, Targets::Classes(_)).then(|| correct as f32 / seen as f32),
        };
        if config.progress && !std::io::stderr().is_terminal() {
            // No terminal for the bar (CI, a log file): one line per epoch instead.
            eprintln!(
                "{} epoch {}/{}: loss {:.4}{}",
                net.name(),
                epoch + 1,
                config.epochs,
                metrics.loss,
                metrics
                    .accuracy
                    .map(|a| format!(" acc {a:.4}"))
                    .unwrap_or_default()
            );
        }
        history.push(metrics);
    }
    Ok(history)
}

/// Mean loss and accuracy of `net` on `x` with `targets` (evaluation mode: no dropout).
pub fn evaluate(
    net: &Network,
    x: ArrayView4<'_, f32>,
    targets: &Targets,
    loss: &Loss,
) -> Result<Metrics, ModelError> {
    let outputs = net.forward(x)?;
    let (values, _) = loss.value_and_grad(outputs.view(), targets)?;
    Ok(Metrics {
        loss: values.mean().unwrap_or(f32::NAN),
        accuracy: accuracy(&outputs, targets),
    })
}
