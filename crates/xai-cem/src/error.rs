use xai_core::CoreError;

/// Everything that can go wrong when configuring or running CEM. Each message says what was
/// wrong and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum CemError {
    /// A scalar parameter was outside its valid range.
    #[error("parameter `{name}` = {value} is invalid: expected {expected}")]
    InvalidParameter {
        /// Parameter name as in [`crate::CemParams`].
        name: &'static str,
        /// The value passed, formatted.
        value: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// `feature_range` has a minimum above its maximum (an empty interval).
    #[error(
        "feature_range is empty for {location}: min {min} > max {max}; expected min <= max \
         (and neither NaN)"
    )]
    EmptyFeatureRange {
        /// `"all features"` or `"feature <i>"`.
        location: String,
        /// The lower bound.
        min: f32,
        /// The upper bound.
        max: f32,
    },
    /// A per-feature array (feature range or `no_info_val`) had the wrong length.
    #[error("{what} has {got} values, expected one per input feature ({expected})")]
    FeatureCount {
        /// Which array.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The model's number of input features.
        expected: usize,
    },
    /// Neither `no_info_val` nor `fit` supplied the "no information" values.
    #[error(
        "no_info_val is not set: pass CemParams::no_info_val(..) (a scalar or one value per \
         feature) or call Cem::fit(train) to use the per-feature median of the training data"
    )]
    NoInfoValueMissing,
    /// An instance to explain lies outside `feature_range`.
    #[error(
        "instance {instance}, feature {feature} = {value} lies outside feature_range \
         [{min}, {max}]; expected every feature inside the range (widen feature_range or rescale \
         the input)"
    )]
    OutsideFeatureRange {
        /// Index of the instance in the batch.
        instance: usize,
        /// Flat feature index.
        feature: usize,
        /// The feature's value.
        value: f32,
        /// The range's lower bound for this feature.
        min: f32,
        /// The range's upper bound for this feature.
        max: f32,
    },
    /// The classifier has fewer than two outputs, so no contrast is possible.
    #[error("the classifier has {0} output(s); CEM needs at least 2 classes")]
    TooFewClasses(usize),
    /// A requested target class is not one of the classifier's outputs.
    #[error("target class {target} of instance {instance} is out of range: the classifier has {n_classes} classes")]
    TargetOutOfRange {
        /// Index of the instance.
        instance: usize,
        /// The class requested.
        target: usize,
        /// Number of classifier outputs.
        n_classes: usize,
    },
    /// The number of targets did not match the number of instances.
    #[error("{got} target classes for {expected} instances; expected one per instance")]
    TargetCount {
        /// Number of targets passed.
        got: usize,
        /// Number of instances.
        expected: usize,
    },
    /// The autoencoder does not map the classifier's inputs to reconstructions of them.
    #[error(
        "the autoencoder takes inputs of shape {ae_input:?} and has {ae_outputs} outputs; expected \
         input shape {model_input:?} (the classifier's) and {n_features} outputs (the flattened \
         reconstruction)"
    )]
    AutoencoderShape {
        /// The autoencoder's per-sample input shape.
        ae_input: Vec<usize>,
        /// The autoencoder's number of outputs.
        ae_outputs: usize,
        /// The classifier's per-sample input shape.
        model_input: Vec<usize>,
        /// Features per sample.
        n_features: usize,
    },
    /// A model returned NaN or infinity during the search (outputs or gradients).
    #[error(
        "the {what} became non-finite at c-step {c_step}, iteration {iteration}; expected finite \
         model outputs and gradients (check the model, or lower learning_rate_init / clip)"
    )]
    NonFiniteDuringSearch {
        /// What was non-finite, e.g. "classifier outputs".
        what: &'static str,
        /// The c-step (0-based).
        c_step: usize,
        /// The iteration within the c-step (0-based).
        iteration: usize,
    },
    /// A model returned an array of an unexpected shape.
    #[error("{what} returned shape {got:?}, expected {expected:?}")]
    ModelOutputShape {
        /// Which call.
        what: &'static str,
        /// The shape returned.
        got: Vec<usize>,
        /// The shape expected.
        expected: Vec<usize>,
    },
    /// An error from the core traits (shape checks, non-finite inputs, model failures, I/O).
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Shorthand for results with [`CemError`].
pub type Result<T, E = CemError> = std::result::Result<T, E>;
