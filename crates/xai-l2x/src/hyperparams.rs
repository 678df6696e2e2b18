//! L2X's parameters: a builder ([`L2xParams`]) with omnixai's `L2XImage` defaults, and
//! [`L2xParams::check`] which validates everything that does not depend on the data or the
//! models into an [`L2xValidParams`].

use serde::{Deserialize, Serialize};
use xai_core::OutputKind;

use crate::error::{L2xError, Result};

/// The task of the explained model (omnixai's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The black box outputs one score per class; the variational approximator is trained with
    /// cross-entropy.
    Classification,
    /// The black box outputs real values; the approximator is trained with the mean squared
    /// error (omnixai warns that this "may not generate reasonable results").
    Regression,
}

/// What the approximator is trained to predict in classification mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The black box's class probabilities `P_m(y | x)`: the paper's objective
    /// `E[log Q(Y | X_S)]` with `Y ~ P_m(· | X)` (Chen et al. 2018, Eq. 5), as in the authors'
    /// code. The default.
    Probabilities,
    /// The black box's predicted class (the argmax), as omnixai's `L2XImage` does.
    Classes,
}

/// omnixai's automatic batch size for images: the largest of 256, 128, 64, 32 with
/// `n_samples / size > 100` (Python's float division, i.e. more than 100 full batches' worth of
/// samples), else 32.
pub fn auto_batch_size(n_samples: usize) -> usize {
    [256usize, 128, 64, 32]
        .into_iter()
        .find(|&size| n_samples > 100 * size)
        .unwrap_or(32)
}

/// Builder for L2X's parameters. [`L2xParams::new`] gives omnixai's defaults
/// (`mode = classification`, `tau = 0.5`, `k = 10`, `learning_rate = 1e-3`, automatic batch size,
/// `num_epochs = 20`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L2xParams {
    mode: Mode,
    tau: f32,
    k: usize,
    learning_rate: f32,
    batch_size: Option<usize>,
    num_epochs: usize,
    seed: u64,
    targets: TargetKind,
    black_box_outputs: OutputKind,
    background: f32,
    progress: bool,
}

impl Default for L2xParams {
    fn default() -> Self {
        Self::new()
    }
}

impl L2xParams {
    /// omnixai's defaults, `seed = 0`, the black box's class probabilities as targets
    /// ([`TargetKind::Probabilities`]), black-box outputs declared as probabilities (omnixai's
    /// contract for `predict_function`), background value 0 and a progress bar.
    pub fn new() -> Self {
        Self {
            mode: Mode::Classification,
            tau: 0.5,
            k: 10,
            learning_rate: 1e-3,
            batch_size: None,
            num_epochs: 20,
            seed: 0,
            targets: TargetKind::Probabilities,
            black_box_outputs: OutputKind::Probabilities,
            background: 0.0,
            progress: true,
        }
    }

    /// Classification or regression.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Temperature τ of the Gumbel-softmax (Chen et al. 2018, Eq. 7); must be finite and > 0.
    pub fn tau(mut self, tau: f32) -> Self {
        self.tau = tau;
        self
    }

    /// Number of patches selected per image (`k` of the paper); at least 1 and at most the
    /// number of patches of the selection model (checked when training).
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Adam's learning rate.
    pub fn learning_rate(mut self, learning_rate: f32) -> Self {
        self.learning_rate = learning_rate;
        self
    }

    /// A fixed batch size; `None` picks it as omnixai does ([`auto_batch_size`]).
    pub fn batch_size(mut self, batch_size: Option<usize>) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Passes over the training images.
    pub fn num_epochs(mut self, num_epochs: usize) -> Self {
        self.num_epochs = num_epochs;
        self
    }

    /// Seed of the default models' initialisation, the shuffling, the Gumbel noise and dropout.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// What the approximator learns in classification mode.
    pub fn targets(mut self, targets: TargetKind) -> Self {
        self.targets = targets;
        self
    }

    /// Whether the black box outputs class probabilities (checked) or logits (a softmax is
    /// applied to make targets). Only used in classification mode with
    /// [`TargetKind::Probabilities`].
    pub fn black_box_outputs(mut self, kind: OutputKind) -> Self {
        self.black_box_outputs = kind;
        self
    }

    /// The value pixels outside the selected patches are set to when the black box is asked
    /// about the selection alone ([`crate::fidelity()`]); 0 for MNIST scaled to `[0, 1]`.
    pub fn background(mut self, background: f32) -> Self {
        self.background = background;
        self
    }

    /// Show an `indicatif` progress bar while training.
    pub fn progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// Validates the parameters: `k >= 1`, `tau` finite and > 0, `learning_rate` finite and > 0,
    /// a given batch size >= 1, `num_epochs >= 1`, a finite background.
    pub fn check(self) -> Result<L2xValidParams> {
        if self.k == 0 {
            return Err(L2xError::ZeroK);
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(L2xError::InvalidTau(self.tau));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(L2xError::param(
                "learning_rate",
                self.learning_rate,
                "a finite number > 0",
            ));
        }
        if self.batch_size == Some(0) {
            return Err(L2xError::param(
                "batch_size",
                0,
                "at least 1, or None for omnixai's automatic choice",
            ));
        }
        if self.num_epochs == 0 {
            return Err(L2xError::param("num_epochs", 0, "at least 1"));
        }
        if !self.background.is_finite() {
            return Err(L2xError::param(
                "background",
                self.background,
                "a finite value",
            ));
        }
        Ok(L2xValidParams(self))
    }
}

/// Parameters that passed [`L2xParams::check`]. Read them through the getters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct L2xValidParams(L2xParams);

impl L2xValidParams {
    /// Classification or regression.
    pub fn mode(&self) -> Mode {
        self.0.mode
    }

    /// Gumbel-softmax temperature.
    pub fn tau(&self) -> f32 {
        self.0.tau
    }

    /// Patches selected per image.
    pub fn k(&self) -> usize {
        self.0.k
    }

    /// Adam's learning rate.
    pub fn learning_rate(&self) -> f32 {
        self.0.learning_rate
    }

    /// The fixed batch size, if one was given.
    pub fn batch_size(&self) -> Option<usize> {
        self.0.batch_size
    }

    /// The batch size used for `n_samples` training images.
    pub fn effective_batch_size(&self, n_samples: usize) -> usize {
        self.0
            .batch_size
            .unwrap_or_else(|| auto_batch_size(n_samples))
    }

    /// Passes over the training images.
    pub fn num_epochs(&self) -> usize {
        self.0.num_epochs
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.0.seed
    }

    /// Targets in classification mode.
    pub fn targets(&self) -> TargetKind {
        self.0.targets
    }

    /// What the black box outputs in classification mode.
    pub fn black_box_outputs(&self) -> OutputKind {
        self.0.black_box_outputs
    }

    /// Background value for pixels outside the selection.
    pub fn background(&self) -> f32 {
        self.0.background
    }

    /// Whether training shows a progress bar.
    pub fn progress(&self) -> bool {
        self.0.progress
    }

    /// The builder these were made from (e.g. to change one parameter and check again).
    pub fn to_params(&self) -> L2xParams {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_omnixais() {
        let p = L2xParams::new().check().unwrap();
        assert_eq!(p.mode(), Mode::Classification);
        assert_eq!(p.tau(), 0.5);
        assert_eq!(p.k(), 10);
        assert_eq!(p.learning_rate(), 1e-3);
        assert_eq!(p.num_epochs(), 20);
        assert_eq!(p.batch_size(), None);
        // omnixai: 60,000 / 256 = 234 > 100 -> 256; 20,000 / 256 = 78, / 128 = 156 -> 128.
        assert_eq!(p.effective_batch_size(60_000), 256);
        assert_eq!(p.effective_batch_size(20_000), 128);
        assert_eq!(p.effective_batch_size(10_000), 64);
        assert_eq!(p.effective_batch_size(3_300), 32);
        assert_eq!(p.effective_batch_size(100), 32);
        // Boundary: 25,601 / 256 = 100.004 > 100 but 25,600 / 256 = 100 is not (omnixai's
        // float division).
        assert_eq!(auto_batch_size(25_601), 256);
        assert_eq!(auto_batch_size(25_600), 128);
    }

    #[test]
    fn invalid_parameters_are_typed_errors() {
        assert!(matches!(
            L2xParams::new().k(0).check(),
            Err(L2xError::ZeroK)
        ));
        for tau in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(matches!(
                L2xParams::new().tau(tau).check(),
                Err(L2xError::InvalidTau(_))
            ));
        }
        let err = L2xParams::new().learning_rate(0.0).check().unwrap_err();
        assert!(err.to_string().contains("learning_rate"), "{err}");
        assert!(L2xParams::new().batch_size(Some(0)).check().is_err());
        assert!(L2xParams::new().num_epochs(0).check().is_err());
        assert!(L2xParams::new().background(f32::NAN).check().is_err());
        let msg = L2xParams::new().tau(-1.0).check().unwrap_err().to_string();
        assert!(msg.contains("tau = -1") && msg.contains("> 0"), "{msg}");
    }
}
