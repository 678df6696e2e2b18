//! What a CEM explanation holds ([`CemData`], the `data` of an [`xai_core::Explanation`]).

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};
use xai_core::NpyArrays;

use crate::hyperparams::Mode;
use crate::objective::LossTerms;

/// The pertinent negative or positive found for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pertinent {
    /// The PN (`x0 + delta`) or PP instance, `[1, ..input_shape]` like alibi's `PN` / `PP`.
    pub instance: ArrayD<f32>,
    /// Its predicted class (alibi's `PN_pred` / `PP_pred`).
    pub pred: usize,
    /// The classifier's outputs for it, as computed when it was found.
    pub proba: Vec<f32>,
    /// `||z - a||_1` with `a` the anchor (`X` for PN, the "nothing kept" instance for PP).
    pub l1: f64,
    /// `||z - a||_2^2`.
    pub l2_squared: f64,
    /// `l2_squared + beta * l1`, the distance that ranked the solutions.
    pub elastic_net: f64,
    /// The c-step (0-based) in which it was found.
    pub c_step: usize,
    /// The iteration (0-based) within that c-step.
    pub iteration: usize,
    /// The value of `c` in that c-step.
    pub c: f32,
}

/// The record of one c-step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CStepTrace {
    /// The c-step (0-based).
    pub c_step: usize,
    /// The weight `c` of the attack loss used.
    pub c: f32,
    /// FISTA iterations run (fewer than `max_iterations` after an early stop).
    pub iterations: usize,
    /// Whether the early stop ended the c-step.
    pub stopped_early: bool,
    /// Whether an iterate met the PN/PP condition in this c-step.
    pub found: bool,
    /// The smallest elastic-net distance among those iterates.
    pub best_elastic_net: Option<f64>,
    /// The objective's terms at the last iterate.
    pub final_loss: LossTerms,
    /// The objective at FISTA's extrapolated point `y_k`, one value per iteration.
    pub objective: Vec<f32>,
}

/// The data of a CEM explanation (alibi's `X`, `X_pred`, `PN` / `PP`, `PN_pred` / `PP_pred`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CemData {
    /// PN or PP.
    pub mode: Mode,
    /// The explained instance, `[1, ..input_shape]`.
    #[serde(rename = "X")]
    pub x: ArrayD<f32>,
    /// The classifier's predicted class for `X`.
    #[serde(rename = "X_pred")]
    pub x_pred: usize,
    /// The classifier's outputs (per-class probabilities) for `X`.
    #[serde(rename = "X_proba")]
    pub x_proba: Vec<f32>,
    /// The class the explanation is about (the prediction unless a target was given).
    pub target_class: usize,
    /// The point distances are measured from: `X` for PN; for PP the "nothing kept" instance
    /// (`no_info_val` clipped to the feature range).
    pub anchor: ArrayD<f32>,
    /// The "no information" values used, `[1, ..input_shape]`.
    pub no_info_val: ArrayD<f32>,
    /// The PN or PP, or `None` when no iterate met the condition within the budget.
    pub pertinent: Option<Pertinent>,
    /// One record per c-step: `c`, iterations, success and the loss trace.
    pub c_steps: Vec<CStepTrace>,
}

impl CemData {
    /// Whether a PN / PP was found.
    pub fn found(&self) -> bool {
        self.pertinent.is_some()
    }

    /// The pertinent negative, if this is a PN explanation and one was found.
    pub fn pn(&self) -> Option<&ArrayD<f32>> {
        self.pertinent_of(Mode::PertinentNegative)
            .map(|p| &p.instance)
    }

    /// The predicted class of the pertinent negative, if found.
    pub fn pn_pred(&self) -> Option<usize> {
        self.pertinent_of(Mode::PertinentNegative).map(|p| p.pred)
    }

    /// The pertinent positive, if this is a PP explanation and one was found.
    pub fn pp(&self) -> Option<&ArrayD<f32>> {
        self.pertinent_of(Mode::PertinentPositive)
            .map(|p| &p.instance)
    }

    /// The predicted class of the pertinent positive, if found.
    pub fn pp_pred(&self) -> Option<usize> {
        self.pertinent_of(Mode::PertinentPositive).map(|p| p.pred)
    }

    /// The optimised perturbation `z - anchor`: what the PN adds to `X`, or what the PP keeps
    /// of `X` on top of the "nothing kept" instance.
    pub fn delta(&self) -> Option<ArrayD<f32>> {
        self.pertinent.as_ref().map(|p| &p.instance - &self.anchor)
    }

    /// A one-line summary, e.g. `"PN found: class 4 -> 9 (L1 3.2, L2 1.1)"`.
    pub fn summary(&self) -> String {
        match &self.pertinent {
            Some(p) => format!(
                "{} found: class {} -> {} (L1 {:.3}, L2 {:.3}, c {})",
                self.mode,
                self.x_pred,
                p.pred,
                p.l1,
                p.l2_squared.sqrt(),
                p.c
            ),
            None => format!(
                "no {} found for class {} within {} c-steps",
                self.mode,
                self.target_class,
                self.c_steps.len()
            ),
        }
    }

    fn pertinent_of(&self, mode: Mode) -> Option<&Pertinent> {
        if self.mode == mode {
            self.pertinent.as_ref()
        } else {
            None
        }
    }
}

impl NpyArrays for CemData {
    /// `X`, `X_proba`, `no_info_val`, and when found `PN`/`PP`, its `_proba` and `_delta`.
    fn npy_arrays(&self) -> Vec<(String, ArrayD<f32>)> {
        let mut out = vec![
            ("X".to_string(), self.x.clone()),
            (
                "X_proba".to_string(),
                ndarray::Array1::from(self.x_proba.clone()).into_dyn(),
            ),
            ("no_info_val".to_string(), self.no_info_val.clone()),
        ];
        if let Some(p) = &self.pertinent {
            let name = self.mode.short_name();
            out.push((name.to_string(), p.instance.clone()));
            out.push((
                format!("{name}_proba"),
                ndarray::Array1::from(p.proba.clone()).into_dyn(),
            ));
            out.push((format!("{name}_delta"), &p.instance - &self.anchor));
        }
        out
    }
}
