//! CEM's parameters: a builder ([`CemParams`]) with alibi's defaults, a preset with the
//! parameters of alibi's MNIST example, and [`CemParams::check`] which validates everything that
//! does not depend on the model into a [`CemValidParams`].

use serde::{Deserialize, Serialize};

use crate::error::{CemError, Result};

/// What CEM looks for (Dhurandhar et al. 2018, Sec. 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Pertinent negative ("PN", Eq. 1): the smallest *addition* to the input (moving features
    /// away from `no_info_val`) that changes the predicted class.
    #[serde(rename = "PN")]
    PertinentNegative,
    /// Pertinent positive ("PP", Eq. 3): the smallest *part* of the input (features moved towards
    /// `no_info_val`, never beyond the original value) that keeps the predicted class.
    #[serde(rename = "PP")]
    PertinentPositive,
}

impl Mode {
    /// `"PN"` or `"PP"`, alibi's names.
    pub fn short_name(self) -> &'static str {
        match self {
            Mode::PertinentNegative => "PN",
            Mode::PertinentPositive => "PP",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short_name())
    }
}

/// Bounds for every feature of a perturbed instance (alibi's `feature_range`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeatureRange {
    /// The same `[min, max]` for every feature.
    Global {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// One `[min[i], max[i]]` per (flattened) feature.
    PerFeature {
        /// Lower bounds, one per feature.
        min: Vec<f32>,
        /// Upper bounds, one per feature.
        max: Vec<f32>,
    },
}

/// Values regarded as carrying no information (alibi's `no_info_val`): moving a feature away
/// from its value *adds* to the input, moving it towards the value *removes*.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NoInfoValue {
    /// One value for every feature (the seed uses `-1` for MNIST scaled to `[-0.5, 0.5]`).
    Scalar(f32),
    /// One value per (flattened) feature, e.g. from [`crate::Cem::fit`].
    PerFeature(Vec<f32>),
}

/// Optional early stop of a c-step once the objective stalls. Off by default, which reproduces
/// alibi's fixed `max_iterations` per c-step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStop {
    /// Stop after this many consecutive iterations without sufficient improvement.
    pub patience: usize,
    /// An iteration improves when the objective at the FISTA point falls below
    /// `best * (1 - min_relative_improvement)`.
    pub min_relative_improvement: f32,
}

impl Default for EarlyStop {
    /// `patience = 50`, `min_relative_improvement = 1e-4`: on the toy bar classifier this cuts
    /// the iterations of the seed's 10 x 1000 budget about 15-fold with every PN / PP still found
    /// and perturbations about 3% larger (L1). A starting point, to be tuned per model.
    fn default() -> Self {
        Self {
            patience: 50,
            min_relative_improvement: 1e-4,
        }
    }
}

/// Builder for CEM's parameters. [`CemParams::new`] uses alibi's defaults;
/// [`CemParams::alibi_mnist_example`] the settings of alibi's MNIST example.
///
/// Names follow alibi's `CEM.__init__`. Call [`CemParams::check`] to validate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CemParams {
    mode: Mode,
    kappa: f32,
    beta: f32,
    gamma: f32,
    c_init: f32,
    c_steps: usize,
    max_iterations: usize,
    feature_range: FeatureRange,
    clip: (f32, f32),
    learning_rate_init: f32,
    no_info_val: Option<NoInfoValue>,
    eps: f32,
    update_num_grad: usize,
    early_stop: Option<EarlyStop>,
}

impl CemParams {
    /// Parameters with alibi's defaults: `kappa = 0`, `beta = 0.1`, `gamma = 0`,
    /// `c_init = 10`, `c_steps = 10`, `max_iterations = 1000`,
    /// `feature_range = (-1e10, 1e10)`, `clip = (-100, 100)`, `learning_rate_init = 0.01`,
    /// `eps = 1e-3`, `update_num_grad = 1`, no `no_info_val` (set it or call
    /// [`crate::Cem::fit`]) and no early stop.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            kappa: 0.0,
            beta: 0.1,
            gamma: 0.0,
            c_init: 10.0,
            c_steps: 10,
            max_iterations: 1000,
            feature_range: FeatureRange::Global {
                min: -1e10,
                max: 1e10,
            },
            clip: (-100.0, 100.0),
            learning_rate_init: 1e-2,
            no_info_val: None,
            eps: 1e-3,
            update_num_grad: 1,
            early_stop: None,
        }
    }

    /// The parameters of alibi's CEM MNIST example (inputs scaled to `[-0.5, 0.5]`):
    /// `kappa = 0`, `beta = 0.1`, `gamma = 100` (used when an autoencoder is given),
    /// `c_init = 1`, `c_steps = 10`, `max_iterations = 1000`, `feature_range = (-0.5, 0.5)`,
    /// `clip = (-1000, 1000)`, `learning_rate_init = 0.01`, `no_info_val = -1`.
    pub fn alibi_mnist_example(mode: Mode) -> Self {
        Self::new(mode)
            .kappa(0.0)
            .beta(0.1)
            .gamma(100.0)
            .c_init(1.0)
            .c_steps(10)
            .max_iterations(1000)
            .feature_range(-0.5, 0.5)
            .clip(-1000.0, 1000.0)
            .learning_rate_init(1e-2)
            .no_info_val(-1.0)
    }

    /// Sets the mode (PN or PP).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Confidence margin `kappa >= 0` of the attack loss (Eq. 2 and 4).
    pub fn kappa(mut self, kappa: f32) -> Self {
        self.kappa = kappa;
        self
    }

    /// Weight `beta >= 0` of the L1 term; also the shrinkage threshold of FISTA (Eq. 7).
    pub fn beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }

    /// Weight `gamma >= 0` of the autoencoder term `||AE(z) - z||_2^2`; without an autoencoder it
    /// has no effect.
    pub fn gamma(mut self, gamma: f32) -> Self {
        self.gamma = gamma;
        self
    }

    /// Initial weight `c > 0` of the attack loss.
    pub fn c_init(mut self, c_init: f32) -> Self {
        self.c_init = c_init;
        self
    }

    /// Number of values of `c` tried (bisection, or `x10` while no solution is found).
    pub fn c_steps(mut self, c_steps: usize) -> Self {
        self.c_steps = c_steps;
        self
    }

    /// FISTA iterations per value of `c`.
    pub fn max_iterations(mut self, max_iterations: usize) -> Self {
        self.max_iterations = max_iterations;
        self
    }

    /// The same `[min, max]` for every feature.
    pub fn feature_range(mut self, min: f32, max: f32) -> Self {
        self.feature_range = FeatureRange::Global { min, max };
        self
    }

    /// One `[min[i], max[i]]` per flattened feature.
    pub fn feature_range_per_feature(mut self, min: Vec<f32>, max: Vec<f32>) -> Self {
        self.feature_range = FeatureRange::PerFeature { min, max };
        self
    }

    /// Gradients are clipped elementwise to `[min, max]`.
    pub fn clip(mut self, min: f32, max: f32) -> Self {
        self.clip = (min, max);
        self
    }

    /// Initial learning rate; it decays as `lr * sqrt(1 - k / max_iterations)` (TensorFlow's
    /// `polynomial_decay` with `power = 0.5`, as alibi).
    pub fn learning_rate_init(mut self, learning_rate_init: f32) -> Self {
        self.learning_rate_init = learning_rate_init;
        self
    }

    /// One "no information" value for every feature.
    pub fn no_info_val(mut self, value: f32) -> Self {
        self.no_info_val = Some(NoInfoValue::Scalar(value));
        self
    }

    /// One "no information" value per flattened feature.
    pub fn no_info_val_per_feature(mut self, values: Vec<f32>) -> Self {
        self.no_info_val = Some(NoInfoValue::PerFeature(values));
        self
    }

    /// Step of the central differences used for black-box gradients (alibi's `eps[1]`).
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// Black-box only: recompute the numerical gradient every `n >= 1` iterations and reuse it
    /// in between.
    pub fn update_num_grad(mut self, n: usize) -> Self {
        self.update_num_grad = n;
        self
    }

    /// Stops a c-step once the objective has not improved by `min_relative_improvement` for
    /// `patience` iterations (`None`, the default, runs every iteration as alibi).
    pub fn early_stop(mut self, early_stop: Option<EarlyStop>) -> Self {
        self.early_stop = early_stop;
        self
    }

    /// Validates the parameters that do not depend on the model (the per-feature lengths are
    /// checked against the model in [`crate::Cem::white_box`] / [`crate::Cem::black_box`]).
    pub fn check(&self) -> Result<CemValidParams> {
        let p = self;
        require(
            "kappa",
            p.kappa,
            p.kappa.is_finite() && p.kappa >= 0.0,
            "a finite value >= 0",
        )?;
        require(
            "beta",
            p.beta,
            p.beta.is_finite() && p.beta >= 0.0,
            "a finite value >= 0",
        )?;
        require(
            "gamma",
            p.gamma,
            p.gamma.is_finite() && p.gamma >= 0.0,
            "a finite value >= 0",
        )?;
        require(
            "c_init",
            p.c_init,
            p.c_init.is_finite() && p.c_init > 0.0,
            "a finite value > 0",
        )?;
        require("c_steps", p.c_steps, p.c_steps >= 1, "at least 1")?;
        require(
            "max_iterations",
            p.max_iterations,
            p.max_iterations >= 1,
            "at least 1",
        )?;
        require(
            "learning_rate_init",
            p.learning_rate_init,
            p.learning_rate_init.is_finite() && p.learning_rate_init > 0.0,
            "a finite value > 0",
        )?;
        require(
            "eps",
            p.eps,
            p.eps.is_finite() && p.eps > 0.0,
            "a finite value > 0",
        )?;
        require(
            "update_num_grad",
            p.update_num_grad,
            p.update_num_grad >= 1,
            "at least 1",
        )?;
        let (clip_min, clip_max) = p.clip;
        if clip_min.is_nan() || clip_max.is_nan() || clip_min > clip_max {
            return Err(CemError::InvalidParameter {
                name: "clip",
                value: format!("({clip_min}, {clip_max})"),
                expected: "(min, max) with min <= max, neither NaN".into(),
            });
        }
        match &p.feature_range {
            FeatureRange::Global { min, max } => check_interval("all features".into(), *min, *max)?,
            FeatureRange::PerFeature { min, max } => {
                if min.is_empty() {
                    return Err(CemError::InvalidParameter {
                        name: "feature_range",
                        value: "per-feature arrays of length 0".into(),
                        expected: "one bound per feature".into(),
                    });
                }
                if min.len() != max.len() {
                    return Err(CemError::FeatureCount {
                        what: "feature_range max",
                        got: max.len(),
                        expected: min.len(),
                    });
                }
                for (i, (lo, hi)) in min.iter().zip(max).enumerate() {
                    check_interval(format!("feature {i}"), *lo, *hi)?;
                }
            }
        }
        match &p.no_info_val {
            None => {}
            Some(NoInfoValue::Scalar(v)) => {
                require("no_info_val", v, v.is_finite(), "a finite value")?;
            }
            Some(NoInfoValue::PerFeature(values)) => {
                if values.is_empty() {
                    return Err(CemError::InvalidParameter {
                        name: "no_info_val",
                        value: "an empty array".into(),
                        expected: "one finite value per feature".into(),
                    });
                }
                if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(CemError::InvalidParameter {
                        name: "no_info_val",
                        value: format!("{v} at feature {i}"),
                        expected: "one finite value per feature".into(),
                    });
                }
            }
        }
        if let Some(stop) = p.early_stop {
            require(
                "early_stop.patience",
                stop.patience,
                stop.patience >= 1,
                "at least 1",
            )?;
            let tol = stop.min_relative_improvement;
            require(
                "early_stop.min_relative_improvement",
                tol,
                tol.is_finite() && (0.0..1.0).contains(&tol),
                "a value in [0, 1)",
            )?;
        }
        Ok(CemValidParams(self.clone()))
    }
}

fn require(
    name: &'static str,
    value: impl std::fmt::Display,
    ok: bool,
    expected: &str,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(CemError::InvalidParameter {
            name,
            value: value.to_string(),
            expected: expected.to_string(),
        })
    }
}

fn check_interval(location: String, min: f32, max: f32) -> Result<()> {
    // `!(min <= max)` also rejects NaN bounds.
    if min.is_nan() || max.is_nan() || min > max {
        return Err(CemError::EmptyFeatureRange { location, min, max });
    }
    Ok(())
}

/// Parameters that passed [`CemParams::check`]. Read-only; serialised into the explanation's
/// `meta`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct CemValidParams(CemParams);

impl CemValidParams {
    /// PN or PP.
    pub fn mode(&self) -> Mode {
        self.0.mode
    }
    /// Confidence margin of the attack loss.
    pub fn kappa(&self) -> f32 {
        self.0.kappa
    }
    /// L1 weight and shrinkage threshold.
    pub fn beta(&self) -> f32 {
        self.0.beta
    }
    /// Autoencoder weight.
    pub fn gamma(&self) -> f32 {
        self.0.gamma
    }
    /// Initial `c`.
    pub fn c_init(&self) -> f32 {
        self.0.c_init
    }
    /// Number of values of `c` tried.
    pub fn c_steps(&self) -> usize {
        self.0.c_steps
    }
    /// FISTA iterations per c-step.
    pub fn max_iterations(&self) -> usize {
        self.0.max_iterations
    }
    /// Feature bounds.
    pub fn feature_range(&self) -> &FeatureRange {
        &self.0.feature_range
    }
    /// Gradient clip range.
    pub fn clip(&self) -> (f32, f32) {
        self.0.clip
    }
    /// Initial learning rate.
    pub fn learning_rate_init(&self) -> f32 {
        self.0.learning_rate_init
    }
    /// The configured "no information" value, if any.
    pub fn no_info_val(&self) -> Option<&NoInfoValue> {
        self.0.no_info_val.as_ref()
    }
    /// Black-box finite-difference step.
    pub fn eps(&self) -> f32 {
        self.0.eps
    }
    /// Black-box gradient refresh period.
    pub fn update_num_grad(&self) -> usize {
        self.0.update_num_grad
    }
    /// Early stop settings, if enabled.
    pub fn early_stop(&self) -> Option<EarlyStop> {
        self.0.early_stop
    }
    /// The builder these were validated from.
    pub fn as_params(&self) -> &CemParams {
        &self.0
    }
}

impl TryFrom<CemParams> for CemValidParams {
    type Error = CemError;
    fn try_from(params: CemParams) -> Result<Self> {
        params.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_preset_matches_the_example() {
        let p = CemParams::alibi_mnist_example(Mode::PertinentNegative)
            .check()
            .unwrap();
        assert_eq!(p.kappa(), 0.0);
        assert_eq!(p.beta(), 0.1);
        assert_eq!(p.gamma(), 100.0);
        assert_eq!(p.c_init(), 1.0);
        assert_eq!(p.c_steps(), 10);
        assert_eq!(p.max_iterations(), 1000);
        assert_eq!(
            p.feature_range(),
            &FeatureRange::Global {
                min: -0.5,
                max: 0.5
            }
        );
        assert_eq!(p.clip(), (-1000.0, 1000.0));
        assert_eq!(p.learning_rate_init(), 1e-2);
        assert_eq!(p.no_info_val(), Some(&NoInfoValue::Scalar(-1.0)));
        assert_eq!(p.early_stop(), None);
    }

    #[test]
    fn bad_parameters_are_typed_errors() {
        let base = CemParams::new(Mode::PertinentPositive).no_info_val(0.0);
        let err = base.clone().beta(-0.1).check().unwrap_err();
        assert!(
            matches!(err, CemError::InvalidParameter { name: "beta", .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("expected a finite value >= 0"),
            "{err}"
        );
        let err = base.clone().feature_range(1.0, 0.0).check().unwrap_err();
        assert!(matches!(err, CemError::EmptyFeatureRange { .. }), "{err}");
        let err = base
            .clone()
            .feature_range_per_feature(vec![0.0, 0.0], vec![1.0, -1.0])
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("feature 1"), "{err}");
        let err = base
            .clone()
            .feature_range_per_feature(vec![0.0, 0.0], vec![1.0])
            .check()
            .unwrap_err();
        assert!(matches!(err, CemError::FeatureCount { .. }), "{err}");
        assert!(base.clone().feature_range(f32::NAN, 1.0).check().is_err());
        assert!(base.clone().c_steps(0).check().is_err());
        assert!(base.clone().max_iterations(0).check().is_err());
        assert!(base.clone().c_init(0.0).check().is_err());
        assert!(base.clone().learning_rate_init(f32::NAN).check().is_err());
        assert!(base.clone().clip(1.0, -1.0).check().is_err());
        assert!(base.clone().kappa(-1.0).check().is_err());
        assert!(base.clone().gamma(f32::INFINITY).check().is_err());
        assert!(base.clone().eps(0.0).check().is_err());
        assert!(base.clone().update_num_grad(0).check().is_err());
        assert!(base.clone().no_info_val(f32::NAN).check().is_err());
        assert!(base
            .clone()
            .early_stop(Some(EarlyStop {
                patience: 0,
                min_relative_improvement: 0.0
            }))
            .check()
            .is_err());
        assert!(base.check().is_ok());
    }

    #[test]
    fn mode_serialises_as_alibi_names() {
        assert_eq!(
            serde_json::to_string(&Mode::PertinentNegative).unwrap(),
            "\"PN\""
        );
        assert_eq!(Mode::PertinentPositive.to_string(), "PP");
    }
}
