//! # xai-cem
//!
//! Contrastive explanations: **pertinent negatives** (PN) and **pertinent positives** (PP), after
//! Dhurandhar et al. 2018, *Explanations based on the Missing: Towards Contrastive Explanations
//! with Pertinent Negatives* (NeurIPS), with alibi's `CEM` as the behavioural reference.
//!
//! * A **PN** is the smallest *addition* to an input that changes its predicted class (Eq. 1):
//!   features may only move away from their "no information" value (`no_info_val`).
//! * A **PP** is the smallest *part* of an input that keeps its class (Eq. 3): features lie
//!   between their "no information" value (nothing kept) and their original value (all kept).
//!
//! Both minimise `c * f_kappa(z) + beta * ||z - a||_1 + ||z - a||_2^2 + gamma * ||AE(z) - z||_2^2`
//! ([`objective`]) with FISTA and projected shrinkage-thresholding ([`fista`], Eq. 5-7), for
//! `c_steps` values of `c` (bisection after a success, `x10` while nothing was found), keeping
//! the solution with the smallest elastic-net distance among those meeting the condition.
//!
//! Gradients of the attack loss come from the model ([`xai_core::DifferentiableModel`],
//! [`Cem::white_box`]) or, for a black box ([`xai_core::Predictor`], [`Cem::black_box`]), from
//! central differences with step `eps`, all perturbed inputs in one `predict` call.
//!
//! The result ([`CemData`], the `data` of an [`xai_core::Explanation`]) holds `X`, `X_pred`,
//! the class probabilities, the PN / PP with its prediction when one was found (`None`
//! otherwise: nothing is invented), and per c-step the value of `c`, success and the loss trace.
//!
//! ## Speed
//!
//! All instances of a batch ([`Cem::explain_batch`]) iterate in lock-step. Each iteration makes
//! one classifier pullback at `y_k` (outputs and vector-Jacobian product from one forward pass,
//! [`xai_core::DifferentiableModel::predict_and_input_gradient`]; the backward pass is skipped
//! while every hinge is inactive), one classifier forward at the previous step's `x_k` (the PN/PP
//! test) and, with an autoencoder, one autoencoder pullback at `y_k`. In white-box mode, for one
//! or two instances, the classifier's two calls are one: a pullback of `[y_k; x_k]` whose
//! output weights are zero on the `x_k` rows (a `Network` then skips their backward pass), run
//! beside the autoencoder's pullback on the other thread (`rayon::join`); larger lock-step
//! batches run the classifier's pullback and forward pass as two calls on the two threads. The
//! FISTA loop reuses its buffers; the model calls dominate (0.30-0.38 ms per iteration with the
//! seed's MNIST models, so 3.0-3.8 s for the seed's 10,000 iterations; see
//! `docs/BENCHMARKS.md`). An optional early stop ends a c-step once its objective stalls
//! ([`EarlyStop`], off by default to reproduce alibi).
//!
//! ## Differences from alibi
//!
//! * PP: alibi evaluates the classifier on `x0 - r` (its optimisation variable `r` starts at
//!   `x0` and moves towards `no_info_val`), which lies in the feature range only when the
//!   "no information" value is 0. Here the PP is the in-range instance `a + (x0 - r)` where `a` is
//!   `no_info_val` clipped to the feature range; with `a = 0` (the paper's setting) both agree.
//!   The PP projection clamps each feature to the segment between `a` and `x0` (the paper's
//!   `Π`), so a PP never holds more than the input.
//! * Black box: the derivative of the hinge with respect to the probabilities is exact (alibi
//!   approximates it with `eps[0]`, with the PN sign also used for PP); `update_num_grad > 1`
//!   reuses the last numerical gradient in between updates (alibi applies none then), and the
//!   first iteration has a gradient too.
//! * Optional early stop of a c-step once the objective stalls ([`EarlyStop`]; off by default).
//!
//! ## Example
//!
//! ```
//! use ndarray::Axis;
//! use xai_cem::{Cem, CemParams, Mode};
//! use xai_testkit::cem_toy as toy;
//!
//! // A small softmax classifier of 8x8 "images" of bars (horizontal, vertical, cross).
//! let (model, images, _labels) = toy::trained_bar_classifier(8, 12, 7)?;
//! let params = CemParams::alibi_mnist_example(Mode::PertinentNegative)
//!     .c_steps(3)
//!     .max_iterations(200)
//!     .check()?;
//! let cem = Cem::white_box(params, &model)?;
//! let horizontal_bar = images.index_axis(Axis(0), 0).into_dyn();
//! let explanation = cem.explain(horizontal_bar)?;
//! let data = &explanation.data;
//! if let (Some(pn), Some(pred)) = (data.pn(), data.pn_pred()) {
//!     assert_ne!(pred, data.x_pred);
//!     assert!(pn.iter().all(|v| (-0.5..=0.5).contains(v)));
//! }
//! println!("{}", data.summary());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod algorithm;
mod error;
mod explanation;
pub mod fista;
mod hyperparams;
pub mod objective;

pub use algorithm::{Cem, Classifier, NoInfoType, Progress, MAX_PERTURBED_BYTES};
pub use error::{CemError, Result};
pub use explanation::{CStepTrace, CemData, Pertinent};
pub use hyperparams::{CemParams, CemValidParams, EarlyStop, FeatureRange, Mode, NoInfoValue};
pub use objective::LossTerms;
