//! [`OnnxOptions`]: how an ONNX classifier is fed and what it returns. Build with the setters,
//! then [`OnnxOptions::check`] into [`ValidOnnxOptions`], which loads models.

use std::fmt;
use std::str::FromStr;

use crate::error::{OnnxError, Result};

/// One sample at the [`xai_core::Predictor`] API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SampleShape {
    /// `[channels, height, width]`.
    Image([usize; 3]),
    /// A row of this many features.
    Features(usize),
}

impl SampleShape {
    fn dims(self) -> Vec<usize> {
        match self {
            SampleShape::Image(s) => s.to_vec(),
            SampleShape::Features(n) => vec![n],
        }
    }
}

/// Memory layout of the ONNX model's image input.
///
/// The [`xai_core::Predictor`] API is always NCHW (`[n, c, h, w]`); with [`Layout::Nhwc`] the
/// batch is transposed to `[n, h, w, c]` before it reaches the model (as Keras/TensorFlow exports
/// expect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Layout {
    /// `[n, c, h, w]` (PyTorch, and this workspace's exports).
    #[default]
    Nchw,
    /// `[n, h, w, c]` (Keras / TensorFlow through tf2onnx).
    Nhwc,
}

/// What the ONNX model's outputs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// Unnormalised class scores.
    Logits,
    /// Class probabilities (rows sum to 1, e.g. after a `Softmax`).
    Probabilities,
    /// Log-probabilities (e.g. after a `LogSoftmax`).
    LogProbabilities,
}

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// The importer when every node is one it knows, otherwise the graph engine when it reads
    /// every node, otherwise tract.
    #[default]
    Auto,
    /// Only the importer (our own layers; fast and differentiable); an error for other graphs.
    Import,
    /// Only the general graph engine (`xai-graph`: N-D tensors, every operator it reads,
    /// differentiable); an error naming the node for other graphs.
    Graph,
    /// Only tract (any graph tract supports; outputs only, no gradients).
    Tract,
}

/// The engine a loaded model runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Imported into an [`xai_models::Network`].
    Imported,
    /// Run by the general graph engine ([`xai_graph::GraphModel`]; differentiable).
    Graph,
    /// Run by tract-onnx.
    Tract,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        })
    }
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputKind::Logits => "logits",
            OutputKind::Probabilities => "probabilities",
            OutputKind::LogProbabilities => "log-probabilities",
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Import => "import",
            Backend::Graph => "graph",
            Backend::Tract => "tract",
        })
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Imported => "imported (xai-models layers)",
            Engine::Graph => "graph engine (xai-graph)",
            Engine::Tract => "tract",
        })
    }
}

impl FromStr for Layout {
    type Err = OnnxError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            _ => Err(OnnxError::option("layout", s, "`nchw` or `nhwc`")),
        }
    }
}

impl FromStr for OutputKind {
    type Err = OnnxError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "logits" => Ok(OutputKind::Logits),
            "probabilities" | "probs" => Ok(OutputKind::Probabilities),
            "log-probabilities" | "log_probabilities" | "logprobs" => {
                Ok(OutputKind::LogProbabilities)
            }
            _ => Err(OnnxError::option(
                "output",
                s,
                "`logits`, `probabilities` or `log-probabilities`",
            )),
        }
    }
}

impl FromStr for Backend {
    type Err = OnnxError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "import" => Ok(Backend::Import),
            "graph" => Ok(Backend::Graph),
            "tract" => Ok(Backend::Tract),
            _ => Err(OnnxError::option(
                "backend",
                s,
                "`auto`, `import`, `graph` or `tract`",
            )),
        }
    }
}

/// ImageNet's per-channel mean of RGB pixels in [0, 1] (torchvision's `Normalize` constants).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation of RGB pixels in [0, 1].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// An affine input transform per channel (axis 1 of a batch `[n, c, ...]`): `x * scale[c] +
/// offset[c]`; a single entry applies to every value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChannelAffine {
    pub(crate) scale: Vec<f32>,
    pub(crate) offset: Vec<f32>,
}

impl ChannelAffine {
    /// Whether the transform leaves every value as it is.
    pub(crate) fn is_identity(&self) -> bool {
        self.scale.iter().all(|s| *s == 1.0) && self.offset.iter().all(|o| *o == 0.0)
    }

    /// `(scale, offset)` when every channel has the same map.
    pub(crate) fn uniform(&self) -> Option<(f32, f32)> {
        let (s, o) = (*self.scale.first()?, *self.offset.first()?);
        (self.scale.iter().all(|v| *v == s) && self.offset.iter().all(|v| *v == o))
            .then_some((s, o))
    }

    /// `self` followed by `y -> y * scale + offset`: `(x * a + b) * scale + offset`.
    pub(crate) fn then(&self, scale: f32, offset: f32) -> ChannelAffine {
        ChannelAffine {
            scale: self.scale.iter().map(|a| a * scale).collect(),
            offset: self.offset.iter().map(|b| b * scale + offset).collect(),
        }
    }

    /// The transformed batch (a copy even for the identity).
    pub(crate) fn apply(&self, x: &ndarray::ArrayViewD<'_, f32>) -> ndarray::ArrayD<f32> {
        let mut y = x.to_owned();
        self.for_each_channel(&mut y, |v, s, o| *v = *v * s + o);
        y
    }

    /// Multiplies a gradient with respect to the transformed batch by the scales: the gradient
    /// with respect to the caller's batch.
    pub(crate) fn pull_back(&self, g: &mut ndarray::ArrayD<f32>) {
        if self.scale.iter().all(|s| *s == 1.0) {
            return;
        }
        self.for_each_channel(g, |v, s, _| *v *= s);
    }

    fn for_each_channel(&self, y: &mut ndarray::ArrayD<f32>, f: impl Fn(&mut f32, f32, f32)) {
        match self.uniform() {
            Some((s, o)) => y.iter_mut().for_each(|v| f(v, s, o)),
            None => {
                if y.ndim() < 2 {
                    return;
                }
                for mut sample in y.axis_iter_mut(ndarray::Axis(0)) {
                    for (c, mut plane) in sample.axis_iter_mut(ndarray::Axis(0)).enumerate() {
                        let (s, o) = (
                            self.scale[c % self.scale.len()],
                            self.offset[c % self.offset.len()],
                        );
                        plane.iter_mut().for_each(|v| f(v, s, o));
                    }
                }
            }
        }
    }
}

/// How to feed an ONNX classifier or regressor and read its outputs.
///
/// Samples are images `[channels, height, width]` ([`OnnxOptions::input_shape`]) or rows of
/// features `[n_features]` ([`OnnxOptions::input_features`]: a tabular model whose ONNX input is
/// `[N, n_features]`, as sklearn-onnx, PyTorch and Keras export an MLP).
///
/// Defaults: samples `[1, 28, 28]` (MNIST), NCHW, no input scaling, output kind read from the
/// graph (a final `Softmax` means probabilities, `LogSoftmax` log-probabilities, anything else
/// logits), outputs returned as the model gives them, [`Backend::Auto`], tract on every core.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxOptions {
    input_shape: SampleShape,
    layout: Layout,
    input_scale: f32,
    input_offset: f32,
    normalization: Option<(Vec<f32>, Vec<f32>)>,
    output_kind: Option<OutputKind>,
    probabilities: bool,
    backend: Backend,
    tract_threads: Option<usize>,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        Self {
            input_shape: SampleShape::Image([1, 28, 28]),
            layout: Layout::Nchw,
            input_scale: 1.0,
            input_offset: 0.0,
            normalization: None,
            output_kind: None,
            probabilities: false,
            backend: Backend::Auto,
            tract_threads: None,
        }
    }
}

impl OnnxOptions {
    /// The defaults (see the type docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Shape of one image sample at the [`xai_core::Predictor`] API, `[channels, height, width]`
    /// (the model's input is `[N, c, h, w]`, or `[N, h, w, c]` with [`Layout::Nhwc`]).
    pub fn input_shape(mut self, shape: [usize; 3]) -> Self {
        self.input_shape = SampleShape::Image(shape);
        self
    }

    /// A tabular model: each sample is a row of `n_features` values, the model's input is
    /// `[N, n_features]` and the predictor takes batches `[n, n_features]` (replaces
    /// [`OnnxOptions::input_shape`]; the layout does not apply).
    pub fn input_features(mut self, n_features: usize) -> Self {
        self.input_shape = SampleShape::Features(n_features);
        self
    }

    /// The layout the ONNX model's input has.
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Multiplies every input value by `scale` before the model (e.g. `255.0` for a model that
    /// expects raw 0..255 pixels while callers pass [0, 1]).
    pub fn input_scale(mut self, scale: f32) -> Self {
        self.input_scale = scale;
        self
    }

    /// Adds `offset` to every input value after scaling: the model sees `x * scale + offset`.
    pub fn input_offset(mut self, offset: f32) -> Self {
        self.input_offset = offset;
        self
    }

    /// Per-channel normalization after the scaling: channel `c` of the model's input is
    /// `(x * scale + offset - mean[c]) / std[c]`, as torchvision's `Normalize(mean, std)` after
    /// `ToTensor()` (callers pass pixels in [0, 1]; see [`OnnxOptions::imagenet_normalization`]).
    /// One value per channel of the sample shape; gradients and attributions stay in the
    /// caller's (pixel) space.
    pub fn normalize(mut self, mean: impl Into<Vec<f32>>, std: impl Into<Vec<f32>>) -> Self {
        self.normalization = Some((mean.into(), std.into()));
        self
    }

    /// [`OnnxOptions::normalize`] with ImageNet's channel statistics (RGB, pixels in [0, 1]):
    /// mean [`IMAGENET_MEAN`], std [`IMAGENET_STD`], what torchvision's and timm's classifiers
    /// expect.
    pub fn imagenet_normalization(self) -> Self {
        self.normalize(IMAGENET_MEAN, IMAGENET_STD)
    }

    /// States what the model outputs, overriding what the graph's last node suggests.
    pub fn output_kind(mut self, kind: OutputKind) -> Self {
        self.output_kind = Some(kind);
        self
    }

    /// Whether the predictor converts the model's outputs to probabilities (softmax of logits,
    /// exp of log-probabilities), as KernelSHAP on class probabilities wants. Off by default.
    pub fn probabilities(mut self, yes: bool) -> Self {
        self.probabilities = yes;
        self
    }

    /// Which engine runs the model.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Threads tract uses for matrix products (default: every available core; 1 runs on the
    /// calling thread). The imported back end uses the global rayon pool as `xai-models` does.
    pub fn tract_threads(mut self, threads: usize) -> Self {
        self.tract_threads = Some(threads);
        self
    }

    /// Validates the options.
    pub fn check(&self) -> Result<ValidOnnxOptions> {
        match self.input_shape {
            SampleShape::Image(shape) if shape.contains(&0) => {
                return Err(OnnxError::option(
                    "input_shape",
                    format!("{shape:?}"),
                    "[channels, height, width], all at least 1",
                ));
            }
            SampleShape::Features(0) => {
                return Err(OnnxError::option("input_features", 0, "at least 1"));
            }
            SampleShape::Features(_) if self.layout == Layout::Nhwc => {
                return Err(OnnxError::option(
                    "layout",
                    self.layout,
                    "`nchw` (the default) for a model on rows of features: a layout is the \
                     order of an image's axes",
                ));
            }
            _ => {}
        }
        if !self.input_scale.is_finite() || self.input_scale == 0.0 {
            return Err(OnnxError::option(
                "input_scale",
                self.input_scale,
                "a finite, non-zero number",
            ));
        }
        if !self.input_offset.is_finite() {
            return Err(OnnxError::option(
                "input_offset",
                self.input_offset,
                "a finite number",
            ));
        }
        if let Some((mean, std)) = &self.normalization {
            let channels = match self.input_shape {
                SampleShape::Image([c, _, _]) => c,
                SampleShape::Features(_) => {
                    return Err(OnnxError::option(
                        "normalize",
                        "per-channel mean and std",
                        "image samples: a model on rows of features has no channels",
                    ))
                }
            };
            for (what, v) in [("normalize (mean)", mean), ("normalize (std)", std)] {
                if v.len() != channels {
                    return Err(OnnxError::option(
                        what,
                        format!("{} values", v.len()),
                        format!("one value per channel of the [{channels}, h, w] samples"),
                    ));
                }
            }
            if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
                return Err(OnnxError::option("normalize (mean)", m, "finite numbers"));
            }
            if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(OnnxError::option(
                    "normalize (std)",
                    s,
                    "finite numbers greater than 0",
                ));
            }
        }
        if self.tract_threads == Some(0) {
            return Err(OnnxError::option("tract_threads", 0, "at least 1"));
        }
        let threads = self.tract_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        Ok(ValidOnnxOptions {
            input_shape: self.input_shape,
            layout: self.layout,
            input_scale: self.input_scale,
            input_offset: self.input_offset,
            normalization: self.normalization.clone(),
            output_kind: self.output_kind,
            probabilities: self.probabilities,
            backend: self.backend,
            tract_threads: threads,
        })
    }
}

/// Validated [`OnnxOptions`]; load a model with [`ValidOnnxOptions::load`] or
/// [`ValidOnnxOptions::load_bytes`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidOnnxOptions {
    pub(crate) input_shape: SampleShape,
    pub(crate) layout: Layout,
    pub(crate) input_scale: f32,
    pub(crate) input_offset: f32,
    pub(crate) normalization: Option<(Vec<f32>, Vec<f32>)>,
    pub(crate) output_kind: Option<OutputKind>,
    pub(crate) probabilities: bool,
    pub(crate) backend: Backend,
    pub(crate) tract_threads: usize,
}

impl ValidOnnxOptions {
    /// Per-sample shape at the API: `[c, h, w]` for images, `[n_features]` for rows.
    pub fn input_shape(&self) -> Vec<usize> {
        self.input_shape.dims()
    }
    /// The number of features of a tabular model ([`OnnxOptions::input_features`]), `None` for
    /// images.
    pub fn input_features(&self) -> Option<usize> {
        match self.input_shape {
            SampleShape::Features(n) => Some(n),
            SampleShape::Image(_) => None,
        }
    }
    /// The model's input layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// Input scale (`x * scale + offset` reaches the model).
    pub fn input_scale(&self) -> f32 {
        self.input_scale
    }
    /// Input offset.
    pub fn input_offset(&self) -> f32 {
        self.input_offset
    }
    /// The per-channel normalization `(mean, std)`, if any ([`OnnxOptions::normalize`]).
    pub fn normalization(&self) -> Option<(&[f32], &[f32])> {
        self.normalization
            .as_ref()
            .map(|(m, s)| (m.as_slice(), s.as_slice()))
    }

    /// The whole input transform as one affine map per channel: the model sees
    /// `x * scale[c] + offset[c]` in channel `c` (one entry for rows of features or when every
    /// channel is treated alike).
    pub(crate) fn channel_affine(&self) -> ChannelAffine {
        match &self.normalization {
            None => ChannelAffine {
                scale: vec![self.input_scale],
                offset: vec![self.input_offset],
            },
            Some((mean, std)) => ChannelAffine {
                scale: std.iter().map(|s| self.input_scale / s).collect(),
                offset: mean
                    .iter()
                    .zip(std)
                    .map(|(m, s)| (self.input_offset - m) / s)
                    .collect(),
            },
        }
    }

    /// The stated output kind, if any.
    pub fn output_kind(&self) -> Option<OutputKind> {
        self.output_kind
    }
    /// Whether outputs are converted to probabilities.
    pub fn probabilities(&self) -> bool {
        self.probabilities
    }
    /// The requested back end.
    pub fn backend(&self) -> Backend {
        self.backend
    }
    /// Threads for tract.
    pub fn tract_threads(&self) -> usize {
        self.tract_threads
    }

    /// One sample's dimensions in the model's layout (NCHW or NHWC, or `[n_features]`).
    pub(crate) fn model_input_dims(&self) -> Vec<usize> {
        match (self.input_shape, self.layout) {
            (SampleShape::Features(n), _) => vec![n],
            (SampleShape::Image([c, h, w]), Layout::Nchw) => vec![c, h, w],
            (SampleShape::Image([c, h, w]), Layout::Nhwc) => vec![h, w, c],
        }
    }

    /// The `[c, h, w]` input of the imported network: the image's, or `[n_features, 1, 1]` for
    /// rows of features (the same memory as `[n, n_features]`).
    pub(crate) fn network_input_shape(&self) -> [usize; 3] {
        match self.input_shape {
            SampleShape::Image(shape) => shape,
            SampleShape::Features(n) => [n, 1, 1],
        }
    }

    /// What the input layout is, for messages: `nchw`, `nhwc` or `features`.
    pub(crate) fn layout_name(&self) -> String {
        match self.input_shape {
            SampleShape::Features(_) => "features".into(),
            SampleShape::Image(_) => self.layout.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        assert_eq!("NHWC".parse::<Layout>().unwrap(), Layout::Nhwc);
        assert_eq!(
            "log-probabilities".parse::<OutputKind>().unwrap(),
            OutputKind::LogProbabilities
        );
        assert_eq!("tract".parse::<Backend>().unwrap(), Backend::Tract);
        let e = "nwhc".parse::<Layout>().unwrap_err();
        assert!(e.to_string().contains("`nchw` or `nhwc`"), "{e}");
        assert!("softmax".parse::<OutputKind>().is_err());
        assert!("onnxruntime".parse::<Backend>().is_err());
        assert!(OnnxOptions::new().input_scale(0.0).check().is_err());
        assert!(OnnxOptions::new().input_scale(f32::NAN).check().is_err());
        assert!(OnnxOptions::new()
            .input_offset(f32::INFINITY)
            .check()
            .is_err());
        assert!(OnnxOptions::new().input_shape([1, 0, 28]).check().is_err());
        assert!(OnnxOptions::new().tract_threads(0).check().is_err());
        let v = OnnxOptions::new()
            .layout(Layout::Nhwc)
            .input_shape([3, 4, 5])
            .check()
            .unwrap();
        assert_eq!(v.model_input_dims(), [4, 5, 3]);
        let f = OnnxOptions::new().input_features(7).check().unwrap();
        assert_eq!(
            (
                f.input_shape(),
                f.model_input_dims(),
                f.network_input_shape()
            ),
            (vec![7], vec![7], [7, 1, 1])
        );
        assert_eq!(f.input_features(), Some(7));
        let e = OnnxOptions::new().input_features(0).check().unwrap_err();
        assert!(e.to_string().contains("input_features"), "{e}");
        let e = OnnxOptions::new()
            .input_features(3)
            .layout(Layout::Nhwc)
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("layout"), "{e}");
        assert_eq!((v.input_scale(), v.input_offset()), (1.0, 0.0));
        assert!(v.tract_threads() >= 1);
    }
}
