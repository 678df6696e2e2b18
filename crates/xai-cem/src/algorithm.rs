//! The explainer: [`Cem`] (construction, [`Cem::fit`], [`Cem::explain`]) and the search over `c`
//! that runs FISTA for every instance of a batch in lock-step, so that each model call
//! evaluates all instances at once.

use ndarray::{ArrayD, ArrayView2, ArrayViewD, IxDyn};
use serde::Serialize;
use xai_core::{
    argmax_rows, check_batch, check_finite, CoreError, DifferentiableModel, Explanation, Meta,
    Predictor,
};

use crate::error::{CemError, Result};
use crate::explanation::{CStepTrace, CemData, Pertinent};
use crate::fista::{fista_step, learning_rate, FistaGeometry, Projection};
use crate::hyperparams::{CemValidParams, FeatureRange, Mode, NoInfoValue};
use crate::objective::{
    attack_hinge, attack_output_weights, l1_l2, reconstruction_error, satisfies_condition,
    AttackHinge, LossTerms,
};

/// Upper bound of `c` before any solution was found (alibi's `1e10`); while it stays above
/// `1e9`, a failed c-step multiplies `c` by 10 instead of bisecting.
const C_UPPER_UNSET: f32 = 1e10;

/// Up to this many rows (y rows plus pending x rows, i.e. one or two instances) the white-box
/// classifier evaluates x and differentiates at y in one pass (see `smooth_gradients`).
const COMBINED_ROWS: usize = 4;

/// The classifier CEM explains and how its gradients are obtained.
#[derive(Clone, Copy)]
pub enum Classifier<'a> {
    /// Gradients of the attack loss from the model's vector-Jacobian product
    /// ([`DifferentiableModel::input_gradient`]).
    WhiteBox(&'a dyn DifferentiableModel),
    /// Gradients of the attack loss from central differences of the predictions with step
    /// `eps` (alibi's black-box mode): `2 * n_features` perturbed inputs per instance, in model
    /// calls of at most [`MAX_PERTURBED_BYTES`] of inputs ([`Cem::black_box_memory`]).
    BlackBox(&'a dyn Predictor),
}

impl Classifier<'_> {
    fn input_shape(&self) -> &[usize] {
        match self {
            Classifier::WhiteBox(m) => m.input_shape(),
            Classifier::BlackBox(m) => m.input_shape(),
        }
    }

    fn n_outputs(&self) -> usize {
        match self {
            Classifier::WhiteBox(m) => m.n_outputs(),
            Classifier::BlackBox(m) => m.n_outputs(),
        }
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<ndarray::Array2<f32>> {
        match self {
            Classifier::WhiteBox(m) => m.predict(x),
            Classifier::BlackBox(m) => m.predict(x),
        }
    }

    fn is_white_box(&self) -> bool {
        matches!(self, Classifier::WhiteBox(_))
    }
}

/// How [`Cem::fit_with`] summarises the training data into per-feature "no information" values
/// (alibi's `no_info_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoInfoType {
    /// The per-feature median (alibi's default).
    Median,
    /// The per-feature mean.
    Mean,
}

/// Where the "no information" values in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum NoInfoSource {
    Parameter,
    Fit(NoInfoType),
}

/// The contrastive explanation method (Dhurandhar et al. 2018; alibi's `CEM`): finds a pertinent
/// negative (the smallest addition that changes the class) or a pertinent positive (the smallest
/// part of the input that keeps the class) for each instance.
///
/// Build it from validated parameters and a classifier ([`Cem::white_box`] or
/// [`Cem::black_box`]), optionally add an autoencoder ([`Cem::with_autoencoder`]), set the
/// "no information" values through the parameters or [`Cem::fit`], then call [`Cem::explain`].
pub struct Cem<'a> {
    params: CemValidParams,
    classifier: Classifier<'a>,
    autoencoder: Option<&'a dyn DifferentiableModel>,
    input_shape: Vec<usize>,
    n_features: usize,
    n_classes: usize,
    feature_min: Vec<f32>,
    feature_max: Vec<f32>,
    no_info: Option<Vec<f32>>,
    no_info_source: NoInfoSource,
    /// Black-box gradients: the most bytes of perturbed inputs per model call.
    max_perturbed_bytes: usize,
}

impl std::fmt::Debug for Cem<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cem")
            .field("params", &self.params)
            .field("white_box", &self.classifier.is_white_box())
            .field("has_autoencoder", &self.autoencoder.is_some())
            .field("input_shape", &self.input_shape)
            .field("n_classes", &self.n_classes)
            .finish()
    }
}

/// Everything recorded in the explanation's `meta.params`.
#[derive(Serialize)]
struct MetaParams<'p> {
    #[serde(flatten)]
    params: &'p CemValidParams,
    white_box: bool,
    has_autoencoder: bool,
    no_info_source: NoInfoSource,
    input_shape: &'p [usize],
}

impl<'a> Cem<'a> {
    /// CEM for a differentiable classifier (white-box gradients).
    pub fn white_box(params: CemValidParams, model: &'a dyn DifferentiableModel) -> Result<Self> {
        Self::new(params, Classifier::WhiteBox(model))
    }

    /// CEM for a black-box classifier: gradients of the attack loss by central differences.
    pub fn black_box(params: CemValidParams, predictor: &'a dyn Predictor) -> Result<Self> {
        Self::new(params, Classifier::BlackBox(predictor))
    }

    /// CEM for either kind of classifier.
    pub fn new(params: CemValidParams, classifier: Classifier<'a>) -> Result<Self> {
        let input_shape = classifier.input_shape().to_vec();
        let n_features: usize = input_shape.iter().product();
        if n_features == 0 {
            return Err(CoreError::Empty("the classifier's input shape".into()).into());
        }
        let n_classes = classifier.n_outputs();
        if n_classes < 2 {
            return Err(CemError::TooFewClasses(n_classes));
        }
        let (feature_min, feature_max) = match params.feature_range() {
            FeatureRange::Global { min, max } => (vec![*min; n_features], vec![*max; n_features]),
            FeatureRange::PerFeature { min, max } => {
                if min.len() != n_features {
                    return Err(CemError::FeatureCount {
                        what: "feature_range",
                        got: min.len(),
                        expected: n_features,
                    });
                }
                (min.clone(), max.clone())
            }
        };
        let no_info = match params.no_info_val() {
            None => None,
            Some(NoInfoValue::Scalar(v)) => Some(vec![*v; n_features]),
            Some(NoInfoValue::PerFeature(values)) => {
                if values.len() != n_features {
                    return Err(CemError::FeatureCount {
                        what: "no_info_val",
                        got: values.len(),
                        expected: n_features,
                    });
                }
                Some(values.clone())
            }
        };
        Ok(Self {
            params,
            classifier,
            autoencoder: None,
            input_shape,
            n_features,
            n_classes,
            feature_min,
            feature_max,
            no_info,
            no_info_source: NoInfoSource::Parameter,
            max_perturbed_bytes: MAX_PERTURBED_BYTES,
        })
    }

    /// Black-box gradients: the most bytes of perturbed inputs sent to the model in one call
    /// (default [`MAX_PERTURBED_BYTES`], 256 MiB); at least one `(+eps, -eps)` pair goes per
    /// call whatever the budget. The explanations do not depend on it.
    pub fn black_box_memory(mut self, bytes: usize) -> Self {
        self.max_perturbed_bytes = bytes;
        self
    }

    /// Adds the autoencoder of the `gamma` term. Its input shape must be the classifier's and
    /// its outputs the flattened reconstruction (`n_outputs = n_features`).
    pub fn with_autoencoder(mut self, autoencoder: &'a dyn DifferentiableModel) -> Result<Self> {
        if autoencoder.input_shape() != self.input_shape.as_slice()
            || autoencoder.n_outputs() != self.n_features
        {
            return Err(CemError::AutoencoderShape {
                ae_input: autoencoder.input_shape().to_vec(),
                ae_outputs: autoencoder.n_outputs(),
                model_input: self.input_shape.clone(),
                n_features: self.n_features,
            });
        }
        self.autoencoder = Some(autoencoder);
        Ok(self)
    }

    /// Sets per-feature "no information" values to the median of `train` (`[n, ..input_shape]`),
    /// as alibi's `fit(train_data, no_info_type='median')`. Overrides `no_info_val`.
    pub fn fit(&mut self, train: ArrayViewD<'_, f32>) -> Result<&mut Self> {
        self.fit_with(train, NoInfoType::Median)
    }

    /// Sets per-feature "no information" values to the median or mean of `train`.
    pub fn fit_with(
        &mut self,
        train: ArrayViewD<'_, f32>,
        no_info_type: NoInfoType,
    ) -> Result<&mut Self> {
        let n = check_batch("training data", &train, &self.input_shape)?;
        if n == 0 {
            return Err(CoreError::Empty("training data".into()).into());
        }
        check_finite("training data", &train)?;
        let train = train.as_standard_layout();
        let flat = train
            .as_slice()
            .ok_or_else(|| CoreError::Model("training data is not contiguous".into()))?;
        self.no_info = Some(per_feature_summary(flat, n, self.n_features, no_info_type));
        self.no_info_source = NoInfoSource::Fit(no_info_type);
        Ok(self)
    }

    /// The validated parameters.
    pub fn params(&self) -> &CemValidParams {
        &self.params
    }

    /// The per-feature "no information" values in use, if set.
    pub fn no_info_values(&self) -> Option<&[f32]> {
        self.no_info.as_deref()
    }

    /// Shape of one instance.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Explains one instance (`[..input_shape]` or `[1, ..input_shape]`) for its predicted class.
    pub fn explain(&self, x: ArrayViewD<'_, f32>) -> Result<Explanation<CemData>> {
        let batch = self.as_single_batch(x)?;
        let mut out = self.explain_batch(batch.view(), None)?;
        Ok(out.remove(0))
    }

    /// Explains one instance for the given class instead of the predicted one (alibi's `Y`).
    pub fn explain_with_target(
        &self,
        x: ArrayViewD<'_, f32>,
        target: usize,
    ) -> Result<Explanation<CemData>> {
        let batch = self.as_single_batch(x)?;
        let mut out = self.explain_batch(batch.view(), Some(&[target]))?;
        Ok(out.remove(0))
    }

    /// Explains every instance of `xs` (`[n, ..input_shape]`), each for its predicted class or
    /// for `targets[i]`. The instances are optimised independently (each has its own `c`), but in
    /// lock-step so that every model call evaluates all of them at once; results are the same as
    /// explaining one by one whenever the model's output for a row does not depend on the rest
    /// of the batch.
    pub fn explain_batch(
        &self,
        xs: ArrayViewD<'_, f32>,
        targets: Option<&[usize]>,
    ) -> Result<Vec<Explanation<CemData>>> {
        self.explain_batch_with_progress(xs, targets, None)
    }

    /// [`Cem::explain_batch`], reporting [`Progress`] to `progress` after every FISTA iteration
    /// of every `c` search step (and at the end of a step that stopped early), for progress bars
    /// on long searches. The results are those of `explain_batch`.
    pub fn explain_batch_with_progress(
        &self,
        xs: ArrayViewD<'_, f32>,
        targets: Option<&[usize]>,
        progress: Option<&mut dyn FnMut(&Progress)>,
    ) -> Result<Vec<Explanation<CemData>>> {
        let n = check_batch("instances", &xs, &self.input_shape)?;
        if n == 0 {
            return Err(CoreError::Empty("batch of instances to explain".into()).into());
        }
        check_finite("instances", &xs)?;
        let no_info = self
            .no_info
            .as_deref()
            .ok_or(CemError::NoInfoValueMissing)?;
        let xs = xs.as_standard_layout();
        let flat = xs
            .as_slice()
            .ok_or_else(|| CoreError::Model("instances are not contiguous".into()))?;
        let f = self.n_features;
        for (i, row) in flat.chunks_exact(f).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                if v < self.feature_min[j] || v > self.feature_max[j] {
                    return Err(CemError::OutsideFeatureRange {
                        instance: i,
                        feature: j,
                        value: v,
                        min: self.feature_min[j],
                        max: self.feature_max[j],
                    });
                }
            }
        }
        let original_outputs = self.classifier.predict(xs.view())?;
        check_outputs("classifier predict", &original_outputs, n, self.n_classes)?;
        let predicted = argmax_rows(original_outputs.view());
        let targets: Vec<usize> = match targets {
            None => predicted.clone(),
            Some(t) => {
                if t.len() != n {
                    return Err(CemError::TargetCount {
                        got: t.len(),
                        expected: n,
                    });
                }
                if let Some((i, &bad)) = t.iter().enumerate().find(|(_, &c)| c >= self.n_classes) {
                    return Err(CemError::TargetOutOfRange {
                        instance: i,
                        target: bad,
                        n_classes: self.n_classes,
                    });
                }
                t.to_vec()
            }
        };

        let mut states: Vec<InstanceState> = flat
            .chunks_exact(f)
            .zip(&targets)
            .map(|(x0, &t)| self.instance_state(x0, t, no_info))
            .collect();
        let mut search = Search::new(self, no_info, n);
        search.run(&mut states, progress)?;

        let meta = Meta::new(
            "CEM",
            &MetaParams {
                params: &self.params,
                white_box: self.classifier.is_white_box(),
                has_autoencoder: self.autoencoder.is_some(),
                no_info_source: self.no_info_source,
                input_shape: &self.input_shape,
            },
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
        )?;
        let mut single_shape = Vec::with_capacity(self.input_shape.len() + 1);
        single_shape.push(1);
        single_shape.extend_from_slice(&self.input_shape);
        let to_array = |v: Vec<f32>| {
            ArrayD::from_shape_vec(IxDyn(&single_shape), v)
                .map_err(|e| CoreError::Model(format!("cannot shape an instance: {e}")))
        };
        let mut explanations = Vec::with_capacity(n);
        for (i, st) in states.into_iter().enumerate() {
            let pertinent = match st.best {
                None => None,
                Some(best) => Some(Pertinent {
                    pred: first_argmax(&best.outputs),
                    proba: best.outputs,
                    instance: to_array(best.instance)?,
                    l1: best.l1,
                    l2_squared: best.l2,
                    elastic_net: best.distance,
                    c_step: best.c_step,
                    iteration: best.iteration,
                    c: best.c,
                }),
            };
            explanations.push(Explanation {
                meta: meta.clone(),
                data: CemData {
                    mode: self.params.mode(),
                    x: to_array(st.x0)?,
                    x_pred: predicted[i],
                    x_proba: original_outputs.row(i).to_vec(),
                    target_class: st.target,
                    anchor: to_array(st.anchor)?,
                    no_info_val: to_array(no_info.to_vec())?,
                    pertinent,
                    c_steps: st.traces,
                },
            });
        }
        Ok(explanations)
    }

    /// The objective's terms at the candidate `z` for the instance `x` (both `[..input_shape]` or
    /// `[1, ..input_shape]`), class `target` and weight `c`, and the gradient of its smooth part
    /// (`c * f_kappa + ||z - a||_2^2 + gamma * ||AE(z) - z||_2^2`, i.e. `total - beta * l1`) with
    /// respect to `z`, unclipped. This is the gradient FISTA steps along (before clipping); it is
    /// exposed for diagnostics and gradient checks.
    pub fn smooth_objective_gradient(
        &self,
        z: ArrayViewD<'_, f32>,
        x: ArrayViewD<'_, f32>,
        target: usize,
        c: f32,
    ) -> Result<(LossTerms, ArrayD<f32>)> {
        let z = self.as_single_batch(z)?;
        let x = self.as_single_batch(x)?;
        check_finite("candidate", &z.view())?;
        check_finite("instance", &x.view())?;
        if target >= self.n_classes {
            return Err(CemError::TargetOutOfRange {
                instance: 0,
                target,
                n_classes: self.n_classes,
            });
        }
        let no_info = self
            .no_info
            .as_deref()
            .ok_or(CemError::NoInfoValueMissing)?;
        let x_flat: Vec<f32> = x.iter().copied().collect();
        let mut st = self.instance_state(&x_flat, target, no_info);
        st.c = c;
        st.y.clear();
        st.y.extend(z.iter().copied());
        let mut search = Search::new(self, no_info, 1);
        search.clip = None;
        let mut states = [st];
        search.smooth_gradients(&mut states, &[0], true, 0, 0)?;
        let st = &states[0];
        let terms = search.objective_at_y(st);
        let grad = ArrayD::from_shape_vec(IxDyn(&self.input_shape), st.grad.clone())
            .map_err(|e| CoreError::Model(e.to_string()))?;
        Ok((terms, grad))
    }

    fn as_single_batch(&self, x: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
        let shape = x.shape();
        let s = &self.input_shape;
        if shape == s.as_slice() {
            Ok(x.to_owned().insert_axis(ndarray::Axis(0)))
        } else if shape.len() == s.len() + 1 && shape[0] == 1 && &shape[1..] == s.as_slice() {
            Ok(x.to_owned())
        } else {
            Err(CoreError::shape(
                "instance",
                shape,
                format!("{s:?} or [1, {}]", format_dims(s)),
            )
            .into())
        }
    }

    fn instance_state(&self, x0: &[f32], target: usize, no_info: &[f32]) -> InstanceState {
        let f = self.n_features;
        let mode = self.params.mode();
        let (anchor, keep_lower, keep_upper) = match mode {
            Mode::PertinentNegative => (x0.to_vec(), Vec::new(), Vec::new()),
            Mode::PertinentPositive => {
                // "Nothing kept" is the no-info value clipped into the feature range.
                let empty: Vec<f32> = (0..f)
                    .map(|j| no_info[j].clamp(self.feature_min[j], self.feature_max[j]))
                    .collect();
                let lower = (0..f).map(|j| empty[j].min(x0[j])).collect();
                let upper = (0..f).map(|j| empty[j].max(x0[j])).collect();
                (empty, lower, upper)
            }
        };
        let ae_len = if self.uses_autoencoder() { f } else { 0 };
        InstanceState {
            target,
            x0: x0.to_vec(),
            x: anchor.clone(),
            y: anchor.clone(),
            anchor,
            keep_lower,
            keep_upper,
            grad: vec![0.0; f],
            held_attack: if self.classifier.is_white_box() {
                Vec::new()
            } else {
                vec![0.0; f]
            },
            held_attack_valid: false,
            y_outputs: vec![0.0; self.n_classes],
            x_outputs: vec![0.0; self.n_classes],
            y_hinge: AttackHinge {
                value: 0.0,
                runner_up: 0,
            },
            y_residual: vec![0.0; ae_len],
            c: self.params.c_init(),
            c_lower: 0.0,
            c_upper: C_UPPER_UNSET,
            active: false,
            stalled: 0,
            x_pending: None,
            best_objective: f64::INFINITY,
            step_best: None,
            iterations: 0,
            objective: Vec::new(),
            best: None,
            traces: Vec::with_capacity(self.params.c_steps()),
        }
    }

    fn uses_autoencoder(&self) -> bool {
        self.autoencoder.is_some() && self.params.gamma() > 0.0
    }
}

/// The summary (median or mean) of each feature (column) of `flat` = `[n, f]` row-major.
fn per_feature_summary(flat: &[f32], n: usize, f: usize, kind: NoInfoType) -> Vec<f32> {
    const BLOCK: usize = 16;
    let mut result = vec![0.0f32; f];
    let mut columns: Vec<Vec<f32>> = (0..BLOCK).map(|_| Vec::with_capacity(n)).collect();
    for start in (0..f).step_by(BLOCK) {
        let width = BLOCK.min(f - start);
        for col in columns.iter_mut() {
            col.clear();
        }
        for row in flat.chunks_exact(f) {
            for (b, col) in columns.iter_mut().take(width).enumerate() {
                col.push(row[start + b]);
            }
        }
        for (b, col) in columns.iter_mut().take(width).enumerate() {
            result[start + b] = match kind {
                NoInfoType::Mean => (col.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32,
                NoInfoType::Median => median(col),
            };
        }
    }
    result
}

/// NumPy's median: the middle value, or the mean of the two middle values for even lengths.
fn median(values: &mut [f32]) -> f32 {
    let n = values.len();
    let mid = n / 2;
    let (lower, upper_mid, _) = values.select_nth_unstable_by(mid, f32::total_cmp);
    let upper = *upper_mid;
    if n % 2 == 1 {
        upper
    } else {
        let below = lower.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        ((below as f64 + upper as f64) / 2.0) as f32
    }
}

/// Index of the largest value (the first one on ties), as `np.argmax`.
fn first_argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (j, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = j;
        }
    }
    best
}

fn format_dims(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_outputs(
    what: &'static str,
    outputs: &ndarray::Array2<f32>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    if outputs.dim() != (rows, cols) {
        return Err(CemError::ModelOutputShape {
            what,
            got: outputs.shape().to_vec(),
            expected: vec![rows, cols],
        });
    }
    Ok(())
}

/// The best solution found so far for one instance.
struct BestSolution {
    distance: f64,
    l1: f64,
    l2: f64,
    instance: Vec<f32>,
    outputs: Vec<f32>,
    c_step: usize,
    iteration: usize,
    c: f32,
}

/// The optimisation state of one instance.
struct InstanceState {
    target: usize,
    x0: Vec<f32>,
    /// The point distances are measured from: `x0` (PN) or the no-info instance (PP).
    anchor: Vec<f32>,
    /// PP only: the segment `[min(anchor, x0), max(anchor, x0)]` a PP may take.
    keep_lower: Vec<f32>,
    keep_upper: Vec<f32>,
    /// FISTA's iterate `x_k` (the candidate PN or PP).
    x: Vec<f32>,
    /// FISTA's extrapolated point `y_k`, where gradients are taken.
    y: Vec<f32>,
    grad: Vec<f32>,
    /// Black-box only: the last numerical attack gradient (times `c`, clipped).
    held_attack: Vec<f32>,
    held_attack_valid: bool,
    y_outputs: Vec<f32>,
    x_outputs: Vec<f32>,
    y_hinge: AttackHinge,
    /// `AE(y) - y` (empty without an autoencoder).
    y_residual: Vec<f32>,
    c: f32,
    c_lower: f32,
    c_upper: f32,
    // per c-step
    active: bool,
    stalled: usize,
    /// The FISTA step whose `x` has not been evaluated yet (it is, with the next gradient).
    x_pending: Option<usize>,
    best_objective: f64,
    step_best: Option<f64>,
    iterations: usize,
    objective: Vec<f32>,
    // overall
    best: Option<BestSolution>,
    traces: Vec<CStepTrace>,
}

impl InstanceState {
    fn begin_step(&mut self, max_iterations: usize) {
        self.x.copy_from_slice(&self.anchor);
        self.y.copy_from_slice(&self.anchor);
        self.held_attack_valid = false;
        self.active = true;
        self.stalled = 0;
        self.x_pending = None;
        self.best_objective = f64::INFINITY;
        self.step_best = None;
        self.iterations = 0;
        self.objective = Vec::with_capacity(max_iterations);
    }
}

struct CommonGeometry<'s> {
    min: &'s [f32],
    max: &'s [f32],
    no_info: &'s [f32],
    beta: f32,
}

/// Reusable buffers and the fixed settings of one search.
struct Search<'c, 'a> {
    cem: &'c Cem<'a>,
    no_info: &'c [f32],
    mode: Mode,
    kappa: f32,
    beta: f32,
    gamma: f32,
    clip: Option<(f32, f32)>,
    /// Instances stacked for a model call, `[rows, n_features]`.
    batch: Vec<f32>,
    /// `[rows, ..input_shape]` with `rows` set per call.
    batch_dims: Vec<usize>,
    /// Output weights of a vector-Jacobian product.
    weights: Vec<f32>,
    /// Which of the instances passed to a call take part in a sub-call.
    subset: Vec<usize>,
    active: Vec<usize>,
    /// Black-box only: `2 * n_features` perturbed copies of each instance.
    perturbed: Vec<f32>,
}

/// The most bytes of perturbed inputs the black-box gradient sends to the model in one call
/// (256 MiB; the buffer is reused across calls): its memory is bounded whatever the input size.
pub const MAX_PERTURBED_BYTES: usize = 256 << 20;

/// `(+eps, -eps)` pairs of perturbed inputs of `n_features` values per model call: as many as
/// `bytes` hold, at least one.
fn perturbed_pairs_per_call(n_features: usize, bytes: usize) -> usize {
    (bytes / (2 * n_features.max(1) * std::mem::size_of::<f32>())).max(1)
}

impl<'c, 'a> Search<'c, 'a> {
    fn new(cem: &'c Cem<'a>, no_info: &'c [f32], n: usize) -> Self {
        let f = cem.n_features;
        let mut batch_dims = Vec::with_capacity(cem.input_shape.len() + 1);
        batch_dims.push(0);
        batch_dims.extend_from_slice(&cem.input_shape);
        Self {
            cem,
            no_info,
            mode: cem.params.mode(),
            kappa: cem.params.kappa(),
            beta: cem.params.beta(),
            gamma: cem.params.gamma(),
            clip: Some(cem.params.clip()),
            batch: Vec::with_capacity(2 * n * f),
            batch_dims,
            weights: Vec::with_capacity(n * f.max(cem.n_classes)),
            subset: Vec::with_capacity(n),
            active: Vec::with_capacity(n),
            perturbed: Vec::new(),
        }
    }

    /// alibi's `attack`: `c_steps` values of `c`, `max_iterations` FISTA steps each, keeping the
    /// overall best solution (by elastic-net distance) among those meeting the PN/PP condition.
    fn run(
        &mut self,
        states: &mut [InstanceState],
        mut progress: Option<&mut dyn FnMut(&Progress)>,
    ) -> Result<()> {
        let params = &self.cem.params;
        let max_iterations = params.max_iterations();
        let lr_init = params.learning_rate_init();
        let update_num_grad = params.update_num_grad();
        let early_stop = params.early_stop();
        let all: Vec<usize> = (0..states.len()).collect();
        let cem = self.cem;
        let common = CommonGeometry {
            min: &cem.feature_min,
            max: &cem.feature_max,
            no_info: self.no_info,
            beta: self.beta,
        };
        let c_steps = params.c_steps();
        let mut report = |c_step: usize, iterations_done: usize, states: &[InstanceState]| {
            if let Some(f) = progress.as_mut() {
                f(&Progress {
                    c_step,
                    c_steps,
                    iterations_done,
                    max_iterations,
                    active_instances: states.iter().filter(|s| s.active).count(),
                });
            }
        };
        for c_step in 0..c_steps {
            for st in states.iter_mut() {
                st.begin_step(max_iterations);
            }
            for iteration in 0..max_iterations {
                if iteration > 0 {
                    report(c_step, iteration, states);
                }
                let mut active = std::mem::take(&mut self.active);
                active.clear();
                active.extend((0..states.len()).filter(|&i| states[i].active));
                if active.is_empty() {
                    self.active = active;
                    break;
                }
                // Outputs and gradient at y_k, from one forward pass per model.
                let refresh = iteration % update_num_grad == 0;
                self.smooth_gradients(states, &active, refresh, c_step, iteration)?;
                // The objective at y_k: the loss trace and the early-stop test.
                active.retain(|&i| {
                    let st = &mut states[i];
                    let terms = self.objective_at_y(st);
                    st.objective.push(terms.total as f32);
                    if let Some(stop) = early_stop {
                        let threshold =
                            st.best_objective * (1.0 - stop.min_relative_improvement as f64);
                        if terms.total < threshold {
                            st.best_objective = terms.total;
                            st.stalled = 0;
                        } else {
                            st.stalled += 1;
                            if st.stalled >= stop.patience {
                                st.active = false;
                                return false;
                            }
                        }
                    }
                    true
                });
                if active.is_empty() {
                    self.active = active;
                    break;
                }
                let lr = learning_rate(lr_init, iteration, max_iterations);
                for &i in &active {
                    let st = &mut states[i];
                    let geometry = FistaGeometry {
                        anchor: &st.anchor,
                        min: common.min,
                        max: common.max,
                        beta: common.beta,
                        projection: match self.mode {
                            Mode::PertinentNegative => Projection::AddOnly {
                                original: &st.x0,
                                no_info: common.no_info,
                            },
                            Mode::PertinentPositive => Projection::KeepOnly {
                                lower: &st.keep_lower,
                                upper: &st.keep_upper,
                            },
                        },
                    };
                    fista_step(&geometry, &mut st.x, &mut st.y, &st.grad, lr, iteration + 1);
                    st.iterations = iteration + 1;
                    // x_{k+1} is evaluated beside the next gradient (or after the last step).
                    st.x_pending = Some(iteration);
                }
                self.active = active;
            }
            let pending: Vec<usize> = (0..states.len())
                .filter(|&i| states[i].x_pending.is_some())
                .collect();
            if !pending.is_empty() {
                self.evaluate_x(states, &pending, c_step)?;
            }
            self.finish_step(states, &all, c_step)?;
            report(c_step, max_iterations, states);
        }
        Ok(())
    }

    fn view_batch(&mut self, rows: usize) -> Result<ArrayViewD<'_, f32>> {
        shaped_rows(&mut self.batch_dims, &self.batch, rows)
    }

    fn gather<'s>(&mut self, rows: impl Iterator<Item = &'s [f32]>) -> usize {
        self.batch.clear();
        let mut count = 0;
        for r in rows {
            self.batch.extend_from_slice(r);
            count += 1;
        }
        count
    }

    /// At `y` for `indices`: the classifier's outputs and attack hinge, the autoencoder's
    /// residual `AE(y) - y`, and the gradient of the smooth part of the objective, clipped as
    /// alibi (white-box: the whole gradient; black-box: the numerical attack gradient and the
    /// rest separately), into each state. Each model makes one forward pass (a pullback, see
    /// [`DifferentiableModel::predict_and_input_gradient`]); in white-box mode the classifier's
    /// and the autoencoder's passes run concurrently.
    fn smooth_gradients(
        &mut self,
        states: &mut [InstanceState],
        indices: &[usize],
        refresh_numerical: bool,
        c_step: usize,
        iteration: usize,
    ) -> Result<()> {
        let cem = self.cem;
        let f = cem.n_features;
        let k = cem.n_classes;
        let m = self.gather(indices.iter().map(|&i| states[i].y.as_slice()));
        // The x of the previous FISTA step, for the same classifier call or thread.
        let pending: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| states[i].x_pending.is_some())
            .collect();
        for &i in &pending {
            self.batch.extend_from_slice(&states[i].x);
        }
        let p = pending.len();
        // A few instances (one explanation at a time): the classifier evaluates the pending x
        // rows in the same pass as it differentiates at the y rows (the pullback skips the
        // backward pass of trailing rows whose output weights are zero), which saves a pass
        // and a hand-over between threads per iteration. Larger lock-step batches keep the
        // two calls, so that the x rows go through `predict`'s parallel chunks.
        let combined = cem.classifier.is_white_box() && p > 0 && m + p <= COMBINED_ROWS;
        let mut x_dims = self.batch_dims.clone();
        let x_view = shaped_rows(&mut x_dims, &self.batch[m * f..], p)?;
        let mut all_dims = self.batch_dims.clone();
        let all_view = shaped_rows(&mut all_dims, &self.batch, m + p)?;
        let view = shaped_rows(&mut self.batch_dims, &self.batch, m)?;
        let (mode, kappa, gamma) = (self.mode, self.kappa, self.gamma);
        let targets_and_c: Vec<(usize, f32)> = indices
            .iter()
            .map(|&i| (states[i].target, states[i].c))
            .collect();

        // The classifier at the pending x rows (to test the PN/PP condition).
        let x_pass = || -> Result<Option<ndarray::Array2<f32>>> {
            if p == 0 || combined {
                return Ok(None);
            }
            Ok(Some(cem.classifier.predict(x_view.view())?))
        };
        // The classifier: outputs (and, white-box, the attack term's gradient) at y.
        let classifier_pass = || -> Result<(ndarray::Array2<f32>, Option<ArrayD<f32>>)> {
            match cem.classifier {
                Classifier::WhiteBox(model) => {
                    let rows = if combined { m + p } else { m };
                    let mut weights_from_outputs =
                        |outputs: ArrayView2<'_, f32>| -> xai_core::Result<ndarray::Array2<f32>> {
                            // Rows past `m` (pending x rows) keep zero weights.
                            let mut w = ndarray::Array2::zeros((rows, k));
                            if outputs.dim() != (rows, k) || outputs.iter().any(|v| !v.is_finite())
                            {
                                // Reported after the pass, with the model's own shape.
                                return Ok(w);
                            }
                            for (row, &(target, c)) in targets_and_c.iter().enumerate() {
                                let out = outputs.row(row);
                                let out = out.as_slice().ok_or_else(|| {
                                    CoreError::Model("classifier outputs are not contiguous".into())
                                })?;
                                let hinge = attack_hinge(mode, out, target, kappa);
                                let w_row = w.row_mut(row).into_slice().ok_or_else(|| {
                                    CoreError::Model("weight rows are not contiguous".into())
                                })?;
                                attack_output_weights(mode, &hinge, target, c, w_row);
                            }
                            Ok(w)
                        };
                    let input = if combined {
                        all_view.view()
                    } else {
                        view.view()
                    };
                    let (outputs, g) =
                        model.predict_and_input_gradient(input, &mut weights_from_outputs)?;
                    Ok((outputs, Some(g)))
                }
                Classifier::BlackBox(predictor) => Ok((predictor.predict(view.view())?, None)),
            }
        };
        // The autoencoder: its reconstruction and the gradient of gamma ||AE(y) - y||^2, which is
        // 2 gamma (J_AE^T r - r) with r = AE(y) - y; the pass returns J_AE^T (2 gamma r).
        let autoencoder_pass = || -> Result<Option<(ndarray::Array2<f32>, ArrayD<f32>)>> {
            let Some(ae) = cem.autoencoder.filter(|_| cem.uses_autoencoder()) else {
                return Ok(None);
            };
            let y_rows = &self.batch[..m * f];
            let mut weights_from_reconstruction =
                |recon: ArrayView2<'_, f32>| -> xai_core::Result<ndarray::Array2<f32>> {
                    let mut w = ndarray::Array2::zeros((m, f));
                    if recon.dim() != (m, f) {
                        return Ok(w);
                    }
                    for ((wv, r), yv) in w.iter_mut().zip(recon.iter()).zip(y_rows) {
                        *wv = 2.0 * gamma * (r - yv);
                    }
                    Ok(w)
                };
            let (recon, g) =
                ae.predict_and_input_gradient(view.view(), &mut weights_from_reconstruction)?;
            Ok(Some((recon, g)))
        };
        // On two threads. Combined (one or two instances): the classifier's one pass on this
        // thread, the autoencoder's pullback (if any) on the other. Otherwise, with the
        // autoencoder: the classifier at y (pullback) on this thread and the autoencoder at y on
        // the other, while the classifier at x waits as a job of its own, taken by whichever
        // thread is free first; without it: the classifier at y on one thread and at x on the
        // other. Black-box: the calls in turn.
        let ((classified, x_outputs), reconstructed) = if !cem.classifier.is_white_box() {
            ((classifier_pass(), x_pass()), autoencoder_pass())
        } else if combined && cem.uses_autoencoder() {
            // The classifier (y and x rows) on this thread, the autoencoder on the other.
            let (classified, reconstructed) = rayon::join(classifier_pass, autoencoder_pass);
            ((classified, Ok(None)), reconstructed)
        } else if combined {
            ((classifier_pass(), Ok(None)), Ok(None))
        } else if cem.uses_autoencoder() {
            rayon::join(|| rayon::join(classifier_pass, x_pass), autoencoder_pass)
        } else {
            (rayon::join(classifier_pass, x_pass), Ok(None))
        };
        let (mut outputs, mut attack_grad) = classified?;
        let reconstructed = reconstructed?;
        let mut x_outputs = x_outputs?;
        if combined {
            // Split the combined pass: rows past `m` are the pending x rows.
            check_outputs("classifier predict", &outputs, m + p, k)?;
            x_outputs = Some(outputs.slice(ndarray::s![m.., ..]).to_owned());
            outputs = outputs.slice(ndarray::s![..m, ..]).to_owned();
            attack_grad =
                attack_grad.map(|g| g.slice_axis(ndarray::Axis(0), (..m).into()).to_owned());
        }
        if let Some(x_outputs) = x_outputs {
            self.record_x(states, &pending, &x_outputs, c_step)?;
        }

        check_outputs("classifier predict", &outputs, m, k)?;
        if outputs.iter().any(|v| !v.is_finite()) {
            return Err(non_finite("classifier outputs", c_step, iteration));
        }
        for (row, &i) in indices.iter().enumerate() {
            let st = &mut states[i];
            for (dst, src) in st.y_outputs.iter_mut().zip(outputs.row(row)) {
                *dst = *src;
            }
            st.y_hinge = attack_hinge(self.mode, &st.y_outputs, st.target, self.kappa);
            st.grad.fill(0.0);
        }
        // Attack term: instances whose hinge is active.
        if let Some(g) = attack_grad {
            let g = g.as_standard_layout();
            let flat = g.as_slice().filter(|s| s.len() == m * f).ok_or_else(|| {
                CemError::ModelOutputShape {
                    what: "classifier input_gradient",
                    got: g.shape().to_vec(),
                    expected: self.batch_dims_with(m),
                }
            })?;
            for (row, &i) in indices.iter().enumerate() {
                if states[i].y_hinge.is_active() {
                    states[i]
                        .grad
                        .copy_from_slice(&flat[row * f..(row + 1) * f]);
                }
            }
        } else if let Classifier::BlackBox(predictor) = cem.classifier {
            let mut subset = std::mem::take(&mut self.subset);
            subset.clear();
            subset.extend(
                indices
                    .iter()
                    .copied()
                    .filter(|&i| states[i].y_hinge.is_active()),
            );
            if !subset.is_empty() && refresh_numerical {
                let h = self.gather(subset.iter().map(|&i| states[i].y.as_slice()));
                self.weights.clear();
                self.weights.resize(h * k, 0.0);
                for (row, &i) in subset.iter().enumerate() {
                    let st = &states[i];
                    attack_output_weights(
                        self.mode,
                        &st.y_hinge,
                        st.target,
                        st.c,
                        &mut self.weights[row * k..(row + 1) * k],
                    );
                }
                self.numerical_attack_gradients(predictor, states, &subset, h)?;
            }
            for &i in indices {
                if !states[i].y_hinge.is_active() {
                    states[i].held_attack_valid = false;
                }
            }
            self.subset = subset;
        }
        // L2 term: 2 (y - a).
        for &i in indices {
            let st = &mut states[i];
            for ((g, yv), a) in st.grad.iter_mut().zip(&st.y).zip(&st.anchor) {
                *g += 2.0 * (yv - a);
            }
        }
        // Autoencoder term: 2 gamma (J_AE^T r - r).
        if let Some((recon, vjp)) = reconstructed {
            check_outputs("autoencoder predict", &recon, m, f)?;
            if recon.iter().any(|v| !v.is_finite()) {
                return Err(non_finite("autoencoder outputs", c_step, iteration));
            }
            let vjp = vjp.as_standard_layout();
            let flat = vjp.as_slice().filter(|s| s.len() == m * f).ok_or_else(|| {
                CemError::ModelOutputShape {
                    what: "autoencoder input_gradient",
                    got: vjp.shape().to_vec(),
                    expected: self.batch_dims_with(m),
                }
            })?;
            for (row, &i) in indices.iter().enumerate() {
                let st = &mut states[i];
                for ((res, r), yv) in st.y_residual.iter_mut().zip(recon.row(row)).zip(&st.y) {
                    *res = r - yv;
                }
                let vjp_row = &flat[row * f..(row + 1) * f];
                for ((gv, v), r) in st.grad.iter_mut().zip(vjp_row).zip(&st.y_residual) {
                    *gv += v - 2.0 * self.gamma * r;
                }
            }
        }
        // Clip, then (black-box) add the separately clipped numerical attack gradient.
        let white_box = cem.classifier.is_white_box();
        for &i in indices {
            let st = &mut states[i];
            if let Some((lo, hi)) = self.clip {
                for g in st.grad.iter_mut() {
                    *g = g.clamp(lo, hi);
                }
            }
            if !white_box && st.held_attack_valid && st.y_hinge.is_active() {
                for (g, a) in st.grad.iter_mut().zip(&st.held_attack) {
                    *g += a;
                }
            }
            if st.grad.iter().any(|g| !g.is_finite()) {
                return Err(non_finite("objective gradient", c_step, iteration));
            }
        }
        Ok(())
    }

    fn batch_dims_with(&self, rows: usize) -> Vec<usize> {
        let mut d = self.batch_dims.clone();
        d[0] = rows;
        d
    }

    /// Black-box attack gradients by central differences for the `h` instances in `subset`
    /// (their `y` rows are in `self.batch`, the output weights `c * d f / d p` in
    /// `self.weights`): `2 * n_features` perturbed inputs per instance, sent to the model in
    /// chunks of whole `(+eps, -eps)` pairs that hold at most [`MAX_PERTURBED_BYTES`] of inputs,
    /// so memory stays bounded whatever the input size (224 x 224 x 3 photos: 150,528 features,
    /// 301,056 perturbed inputs per instance, 181 GB at once).
    fn numerical_attack_gradients(
        &mut self,
        predictor: &dyn Predictor,
        states: &mut [InstanceState],
        subset: &[usize],
        h: usize,
    ) -> Result<()> {
        let cem = self.cem;
        let f = cem.n_features;
        let k = cem.n_classes;
        let eps = cem.params.eps();
        let scale = 1.0 / (2.0 * eps);
        let pairs_per_call = perturbed_pairs_per_call(f, cem.max_perturbed_bytes);
        let total = h * f;
        let mut start = 0;
        while start < total {
            let end = (start + pairs_per_call).min(total);
            self.perturbed.clear();
            // Pair q = (instance r, feature j): rows 2q (+eps) and 2q + 1 (-eps).
            for q in start..end {
                let (r, j) = (q / f, q % f);
                let y = &self.batch[r * f..(r + 1) * f];
                for sign in [1.0f32, -1.0] {
                    let row = self.perturbed.len();
                    self.perturbed.extend_from_slice(y);
                    self.perturbed[row + j] += sign * eps;
                }
            }
            let rows = 2 * (end - start);
            let view = shaped_rows(&mut self.batch_dims, &self.perturbed, rows)?;
            let preds = predictor.predict(view)?;
            check_outputs("classifier predict (numerical gradient)", &preds, rows, k)?;
            for q in start..end {
                let (r, j) = (q / f, q % f);
                let w = &self.weights[r * k..(r + 1) * k];
                let plus = preds.row(2 * (q - start));
                let minus = preds.row(2 * (q - start) + 1);
                let mut g = 0.0f32;
                for c in 0..k {
                    g += w[c] * (plus[c] - minus[c]);
                }
                let g = g * scale;
                let st = &mut states[subset[r]];
                st.held_attack[j] = match self.clip {
                    Some((lo, hi)) => g.clamp(lo, hi),
                    None => g,
                };
            }
            start = end;
        }
        for &i in subset.iter().take(h) {
            states[i].held_attack_valid = true;
        }
        Ok(())
    }

    /// Classifier outputs at the pending `x` of `indices` (after a c-step's last FISTA step),
    /// recorded as [`Search::record_x`] does.
    fn evaluate_x(
        &mut self,
        states: &mut [InstanceState],
        indices: &[usize],
        c_step: usize,
    ) -> Result<()> {
        let cem = self.cem;
        let m = self.gather(indices.iter().map(|&i| states[i].x.as_slice()));
        let view = self.view_batch(m)?;
        let outputs = cem.classifier.predict(view)?;
        self.record_x(states, indices, &outputs, c_step)
    }

    /// Records the classifier `outputs` at the pending `x_{k+1}` of `indices` (one row each): the
    /// PN/PP condition, and the best solution of the c-step and overall.
    fn record_x(
        &self,
        states: &mut [InstanceState],
        indices: &[usize],
        outputs: &ndarray::Array2<f32>,
        c_step: usize,
    ) -> Result<()> {
        let k = self.cem.n_classes;
        let m = indices.len();
        let iteration = indices
            .first()
            .and_then(|&i| states[i].x_pending)
            .unwrap_or(0);
        check_outputs("classifier predict", outputs, m, k)?;
        if outputs.iter().any(|v| !v.is_finite()) {
            return Err(non_finite("classifier outputs", c_step, iteration));
        }
        for (row, &i) in indices.iter().enumerate() {
            let st = &mut states[i];
            let Some(iteration) = st.x_pending.take() else {
                continue;
            };
            for (dst, src) in st.x_outputs.iter_mut().zip(outputs.row(row)) {
                *dst = *src;
            }
            if satisfies_condition(self.mode, &st.x_outputs, st.target, self.kappa) {
                let (l1, l2) = l1_l2(&st.x, &st.anchor);
                let distance = l2 + self.beta as f64 * l1;
                if st.step_best.is_none_or(|d| distance < d) {
                    st.step_best = Some(distance);
                }
                if st.best.as_ref().is_none_or(|b| distance < b.distance) {
                    match &mut st.best {
                        Some(b) => {
                            b.instance.copy_from_slice(&st.x);
                            b.outputs.copy_from_slice(&st.x_outputs);
                            b.distance = distance;
                            b.l1 = l1;
                            b.l2 = l2;
                            b.c_step = c_step;
                            b.iteration = iteration;
                            b.c = st.c;
                        }
                        None => {
                            st.best = Some(BestSolution {
                                distance,
                                l1,
                                l2,
                                instance: st.x.clone(),
                                outputs: st.x_outputs.clone(),
                                c_step,
                                iteration,
                                c: st.c,
                            })
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The objective's terms at `y` from its classifier outputs and autoencoder residual.
    fn objective_at_y(&self, st: &InstanceState) -> LossTerms {
        let hinge = attack_hinge(self.mode, &st.y_outputs, st.target, self.kappa);
        let (l1, l2) = l1_l2(&st.y, &st.anchor);
        let ae = if self.cem.uses_autoencoder() {
            let squared: f64 = st
                .y_residual
                .iter()
                .map(|r| (*r as f64) * (*r as f64))
                .sum();
            self.gamma as f64 * squared
        } else {
            0.0
        };
        LossTerms::new(st.c as f64 * hinge.value as f64, l1, l2, ae, self.beta)
    }

    /// End of a c-step: record its trace (with the loss at the final `x`) and update `c` as
    /// alibi: bisect towards smaller `c` after a success, towards larger `c` (or `x10` while no
    /// upper bound is known) after a failure.
    fn finish_step(
        &mut self,
        states: &mut [InstanceState],
        indices: &[usize],
        c_step: usize,
    ) -> Result<()> {
        let cem = self.cem;
        let f = cem.n_features;
        let ae_errors: Option<Vec<f64>> = match cem.autoencoder {
            Some(ae) if cem.uses_autoencoder() => {
                let m = self.gather(indices.iter().map(|&i| states[i].x.as_slice()));
                let view = self.view_batch(m)?;
                let recon = ae.predict(view)?;
                check_outputs("autoencoder predict", &recon, m, f)?;
                Some(
                    indices
                        .iter()
                        .enumerate()
                        .map(|(row, &i)| reconstruction_error(recon.row(row), &states[i].x))
                        .collect(),
                )
            }
            _ => None,
        };
        for (row, &i) in indices.iter().enumerate() {
            let st = &mut states[i];
            let hinge = attack_hinge(self.mode, &st.x_outputs, st.target, self.kappa);
            let (l1, l2) = l1_l2(&st.x, &st.anchor);
            let ae = ae_errors
                .as_ref()
                .map_or(0.0, |e| self.gamma as f64 * e[row]);
            let final_loss =
                LossTerms::new(st.c as f64 * hinge.value as f64, l1, l2, ae, self.beta);
            let found = st.step_best.is_some();
            st.traces.push(CStepTrace {
                c_step,
                c: st.c,
                iterations: st.iterations,
                stopped_early: st.iterations < cem.params.max_iterations(),
                found,
                best_elastic_net: st.step_best,
                final_loss,
                objective: std::mem::take(&mut st.objective),
            });
            if found {
                st.c_upper = st.c_upper.min(st.c);
                if st.c_upper < 1e9 {
                    st.c = (st.c_lower + st.c_upper) / 2.0;
                }
            } else {
                st.c_lower = st.c_lower.max(st.c);
                if st.c_upper < 1e9 {
                    st.c = (st.c_lower + st.c_upper) / 2.0;
                } else {
                    st.c *= 10.0;
                }
            }
        }
        Ok(())
    }
}

/// `buf[..rows * n_features]` viewed as `[rows, ..input_shape]` (`dims` holds the shape with
/// the batch axis first; for up to four axes `IxDyn` stores it inline, without allocating).
fn shaped_rows<'b>(dims: &mut [usize], buf: &'b [f32], rows: usize) -> Result<ArrayViewD<'b, f32>> {
    dims[0] = rows;
    let len: usize = dims.iter().product();
    let data = buf.get(..len).ok_or_else(|| {
        CoreError::Model(format!(
            "internal batch buffer holds {} values, {len} needed",
            buf.len()
        ))
    })?;
    ArrayViewD::from_shape(IxDyn(dims), data).map_err(|e| {
        CoreError::Model(format!("cannot shape a batch of {rows} instances: {e}")).into()
    })
}

fn non_finite(what: &'static str, c_step: usize, iteration: usize) -> CemError {
    CemError::NonFiniteDuringSearch {
        what,
        c_step,
        iteration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perturbed_pairs_fit_the_budget() {
        // A 224 x 224 x 3 photo: 222 pairs (178 MiB of 256) per call.
        let f = 224 * 224 * 3;
        let pairs = perturbed_pairs_per_call(f, MAX_PERTURBED_BYTES);
        assert_eq!(pairs, 222);
        assert!(pairs * 2 * f * 4 <= MAX_PERTURBED_BYTES);
        assert_eq!(perturbed_pairs_per_call(f, 0), 1);
        assert_eq!(perturbed_pairs_per_call(784, 784 * 8 * 3), 3);
    }

    #[test]
    fn median_matches_numpy() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [5.0]), 5.0);
        let flat = [1.0f32, 10.0, 3.0, 30.0, 2.0, 20.0, 4.0, 40.0];
        assert_eq!(
            per_feature_summary(&flat, 4, 2, NoInfoType::Median),
            vec![2.5, 25.0]
        );
        assert_eq!(
            per_feature_summary(&flat, 4, 2, NoInfoType::Mean),
            vec![2.5, 25.0]
        );
        let flat = [1.0f32, 0.0, 2.0, 0.0, 9.0, 3.0];
        assert_eq!(
            per_feature_summary(&flat, 3, 2, NoInfoType::Median),
            vec![2.0, 0.0]
        );
    }
}

/// A progress report of [`Cem::explain_batch_with_progress`]: where the search over `c` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Progress {
    /// The current `c` search step (0-based).
    pub c_step: usize,
    /// Search steps in all (`c_steps`).
    pub c_steps: usize,
    /// FISTA iterations finished in this step (`max_iterations` once the step is over, also
    /// when every instance stopped early).
    pub iterations_done: usize,
    /// Iterations per step (`max_iterations`).
    pub max_iterations: usize,
    /// Instances still iterating in this step (the others stopped early).
    pub active_instances: usize,
}

impl Progress {
    /// Iterations finished over the whole search, counting a step that stopped early as whole.
    pub fn done(&self) -> usize {
        self.c_step * self.max_iterations + self.iterations_done
    }

    /// Iterations of the whole search (`c_steps * max_iterations`).
    pub fn total(&self) -> usize {
        self.c_steps * self.max_iterations
    }
}
