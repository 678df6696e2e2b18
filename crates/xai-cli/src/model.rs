//! The model to explain: an ONNX file (through `xai-onnx`, with the `--layout`, `--input-scale`,
//! `--input-offset`, `--output`, `--backend` and `--input-shape` options) or a shipped network
//! by name (`xai_models::zoo`).

use std::path::{Path, PathBuf};

use clap::Args;
use xai_core::{DifferentiableModel, Loss, OutputKind as CoreOutputKind, Predictor};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_models::{Layer, NamedLayer, Network};
use xai_onnx::{Backend, Engine, Layout, OnnxModel, OnnxOptions, OutputKind};

use crate::error::{failed_in, usage, usage_in, Result};

/// How the model is chosen and fed (shared by every subcommand).
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// The model: an ONNX file (`.onnx`) or a shipped network by name (alibi_cnn, cem_cnn,
    /// cem_autoencoder, mnist_net, binary_cnn, resnet_bn; weights from $XAI_MODELS_DIR or
    /// ./models).
    #[arg(long, value_name = "FILE.onnx|NAME")]
    pub model: String,
    /// ONNX only: one sample's shape at the API as `C,H,W` (default: read from the graph's
    /// declared input).
    #[arg(long, value_name = "C,H,W", value_parser = parse_shape)]
    pub input_shape: Option<[usize; 3]>,
    /// ONNX only: the model's input layout, nchw or nhwc (images are always given to xai as
    /// [c, h, w]; nhwc transposes them for the model).
    #[arg(long)]
    pub layout: Option<Layout>,
    /// ONNX only: the model sees `x * scale + offset` for the pixel values `x` in [0, 1] that xai
    /// reads from images (e.g. 255 for a model trained on raw 0..255 pixels).
    #[arg(long, allow_negative_numbers = true, value_name = "SCALE")]
    pub input_scale: Option<f32>,
    /// ONNX only: see `--input-scale` (e.g. -0.5 for pixels centred on 0).
    #[arg(long, allow_negative_numbers = true, value_name = "OFFSET")]
    pub input_offset: Option<f32>,
    /// ONNX only: what the model outputs, logits, probabilities or log-probabilities (default:
    /// read from the graph's last node).
    #[arg(long, value_name = "KIND")]
    pub output: Option<OutputKind>,
    /// ONNX only: per-channel mean subtracted after the scaling, comma-separated, one per
    /// channel (torchvision's `Normalize`; e.g. ImageNet's 0.485,0.456,0.406 for pixels in
    /// [0, 1]). Attributions stay on the image's pixels.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "M,...",
        allow_negative_numbers = true
    )]
    pub mean: Option<Vec<f32>>,
    /// ONNX only: per-channel standard deviation the centred values are divided by (see --mean;
    /// ImageNet's 0.229,0.224,0.225).
    #[arg(long, value_delimiter = ',', value_name = "S,...")]
    pub std: Option<Vec<f32>>,
    /// The `[h, w]` of the images, for a model whose height and width are dynamic (set from
    /// --crop or the first image, not a flag).
    #[arg(skip)]
    pub image_hw: Option<[usize; 2]>,
    /// ONNX only: auto (the importer, else the graph engine, else tract), import (our layers:
    /// fast, differentiable), graph (the general graph engine: any operator it reads,
    /// differentiable), or tract (any graph tract runs; outputs only, no gradients).
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<Backend>,
}

fn parse_shape(s: &str) -> std::result::Result<[usize; 3], String> {
    let parts: Vec<&str> = s.split([',', 'x']).map(str::trim).collect();
    let dims: Vec<usize> = parts
        .iter()
        .map(|p| p.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("`{s}` is not a shape: expected C,H,W, e.g. 1,28,28"))?;
    match dims.as_slice() {
        [c, h, w] if *c > 0 && *h > 0 && *w > 0 => Ok([*c, *h, *w]),
        _ => Err(format!(
            "`{s}` is not a shape: expected three numbers >= 1, C,H,W, e.g. 3,224,224"
        )),
    }
}

/// How 8-bit image pixels `p` become the values the model is given: `p / 255 * scale +
/// offset`. For a shipped network this is its training scaling; for an ONNX model it is [0, 1]
/// (the model's own `--input-scale`/`--input-offset` map that further).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelScaling {
    /// Multiplies `p / 255`.
    pub scale: f32,
    /// Added after scaling.
    pub offset: f32,
}

impl PixelScaling {
    /// `p / 255`: pixels in [0, 1].
    pub const UNIT: PixelScaling = PixelScaling {
        scale: 1.0,
        offset: 0.0,
    };

    /// The value of a pixel intensity in [0, 1].
    pub fn apply(self, unit: f32) -> f32 {
        unit * self.scale + self.offset
    }

    /// The values of black and white.
    pub fn range(self) -> (f32, f32) {
        let (a, b) = (self.apply(0.0), self.apply(1.0));
        (a.min(b), a.max(b))
    }
}

/// The engine behind a loaded model.
pub enum Inner {
    /// A shipped network; `true` when a softmax was appended to a logits network because the
    /// method needs class probabilities (as `OnnxOptions::probabilities` does for ONNX files).
    Shipped(ModelKind, Network, bool),
    /// An ONNX model.
    Onnx(Box<OnnxModel>),
}

/// A loaded model and how to feed it.
pub struct LoadedModel {
    /// The model.
    pub inner: Inner,
    /// How image pixels are scaled for it.
    pub pixels: PixelScaling,
}

/// What a method needs of the model's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outputs {
    /// Class probabilities (KernelSHAP, CEM, L2X): logits are turned into probabilities.
    Probabilities,
    /// Outputs a cross-entropy loss can take (gradient similarity): logits or probabilities.
    ForLoss,
}

impl ModelArgs {
    fn onnx_flags_given(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.input_shape.is_some() {
            v.push("--input-shape");
        }
        if self.layout.is_some() {
            v.push("--layout");
        }
        if self.input_scale.is_some() {
            v.push("--input-scale");
        }
        if self.input_offset.is_some() {
            v.push("--input-offset");
        }
        if self.output.is_some() {
            v.push("--output");
        }
        if self.backend.is_some() {
            v.push("--backend");
        }
        if self.mean.is_some() {
            v.push("--mean");
        }
        if self.std.is_some() {
            v.push("--std");
        }
        v
    }

    /// Loads the model.
    pub fn load(&self, outputs: Outputs) -> Result<LoadedModel> {
        let path = Path::new(&self.model);
        if let Some(kind) = ModelKind::from_name(&self.model).filter(|_| !path.exists()) {
            let flags = self.onnx_flags_given();
            if !flags.is_empty() {
                return Err(usage(format!(
                    "{} only apply to ONNX models; `{}` is a shipped network",
                    flags.join(", "),
                    self.model
                )));
            }
            let net = load_pretrained(kind)
                .map_err(|e| usage_in(format!("loading the shipped model `{}`", kind.name()), e))?;
            let logits = kind.loss() == Loss::CrossEntropy(CoreOutputKind::Logits);
            let softmax = logits && outputs == Outputs::Probabilities;
            let net = if softmax {
                with_softmax(net).map_err(|e| {
                    failed_in(
                        format!("appending a softmax to the shipped model `{}`", kind.name()),
                        e,
                    )
                })?
            } else {
                net
            };
            let (lo, hi) = kind.scaling().range();
            let pixels = PixelScaling {
                scale: hi - lo,
                offset: lo,
            };
            return Ok(LoadedModel {
                inner: Inner::Shipped(kind, net, softmax),
                pixels,
            });
        }
        if !path.exists() {
            let names: Vec<&str> = ModelKind::ALL.iter().map(|k| k.name()).collect();
            return Err(usage(format!(
                "model `{}`: no such file, and not a shipped model ({})",
                self.model,
                names.join(", ")
            )));
        }
        self.load_onnx(path.to_path_buf(), outputs)
    }

    fn load_onnx(&self, path: PathBuf, outputs: Outputs) -> Result<LoadedModel> {
        let layout = self.layout.unwrap_or_default();
        let shape = match self.input_shape {
            Some(s) => Some(s),
            None => declared_input_shape(&path, layout, self.image_hw)?,
        };
        let load = |probabilities: bool| -> Result<OnnxModel> {
            let mut o = OnnxOptions::new()
                .layout(layout)
                .probabilities(probabilities);
            if let Some(s) = shape {
                o = o.input_shape(s);
            }
            if let Some(s) = self.input_scale {
                o = o.input_scale(s);
            }
            if let Some(s) = self.input_offset {
                o = o.input_offset(s);
            }
            if let Some(k) = self.output {
                o = o.output_kind(k);
            }
            if let Some(b) = self.backend {
                o = o.backend(b);
            }
            match (&self.mean, &self.std) {
                (Some(m), Some(s)) => o = o.normalize(m.clone(), s.clone()),
                (Some(m), None) => o = o.normalize(m.clone(), vec![1.0; m.len()]),
                (None, Some(s)) => o = o.normalize(vec![0.0; s.len()], s.clone()),
                (None, None) => {}
            }
            let valid = o.check().map_err(usage)?;
            valid
                .load(&path)
                .map_err(|e| usage_in(format!("loading {}", path.display()), e))
        };
        let mut model = load(outputs == Outputs::Probabilities)?;
        if outputs == Outputs::ForLoss && model.output_kind() == OutputKind::LogProbabilities {
            // A cross-entropy takes logits or probabilities: exp of the log-probabilities.
            model = load(true)?;
        }
        Ok(LoadedModel {
            inner: Inner::Onnx(Box::new(model)),
            pixels: PixelScaling::UNIT,
        })
    }
}

/// Loads a second, differentiable model (CEM's autoencoder): a shipped network by name, or an
/// ONNX file read by the importer with the classifier's sample shape and layout.
pub fn load_autoencoder(
    spec: &str,
    shape: [usize; 3],
    layout: Option<Layout>,
) -> Result<Box<dyn DifferentiableModel>> {
    let path = Path::new(spec);
    if let Some(kind) = ModelKind::from_name(spec).filter(|_| !path.exists()) {
        let net = load_pretrained(kind)
            .map_err(|e| usage_in(format!("loading the shipped model `{}`", kind.name()), e))?;
        return Ok(Box::new(net));
    }
    if !path.exists() {
        return Err(usage(format!(
            "--autoencoder `{spec}`: no such file, and not a shipped model"
        )));
    }
    let model = OnnxOptions::new()
        .input_shape(shape)
        .layout(layout.unwrap_or_default())
        .backend(Backend::Import)
        .check()
        .map_err(usage)?
        .load(path)
        .map_err(|e| usage_in(format!("loading the autoencoder {}", path.display()), e))?;
    Ok(Box::new(model))
}

/// The per-sample `[c, h, w]` shape an ONNX file declares for its input, when every dimension
/// after the batch is fixed, or with dynamic height and width the images' `image_hw`; `None`
/// when the file cannot be read as ONNX here (the loader then reports why) or declares no
/// shape.
fn declared_input_shape(
    path: &Path,
    layout: Layout,
    image_hw: Option<[usize; 2]>,
) -> Result<Option<[usize; 3]>> {
    // Unreadable or non-ONNX files are reported by the loader.
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    let Ok(input) = xai_onnx::declared_input(&bytes) else {
        return Ok(None);
    };
    let Some(dims) = &input.dims else {
        return Ok(None);
    };
    let fixed = |d: &[Option<usize>]| -> Option<Vec<usize>> { d.iter().copied().collect() };
    match (dims.len(), fixed(dims.get(1..).unwrap_or(&[]))) {
        (4, Some(d)) => Ok(Some(match layout {
            Layout::Nchw => [d[0], d[1], d[2]],
            Layout::Nhwc => [d[2], d[0], d[1]],
        })),
        (4, None) => {
            // Dynamic height and width, fixed channels: the images' size.
            let channels = match layout {
                Layout::Nchw => dims[1],
                Layout::Nhwc => dims[3],
            };
            match (channels, image_hw) {
                (Some(c), Some([h, w])) => Ok(Some([c, h, w])),
                _ => Err(usage(format!(
                    "{}: the input `{}` has symbolic sample dimensions; give its shape with \
                     --input-shape C,H,W (or, for dynamic height and width, --crop HxW)",
                    path.display(),
                    input.name
                ))),
            }
        }
        (n, _) => Err(usage(format!(
            "{}: the input `{}` has {n} dimensions; xai explains image classifiers with a \
             [batch, c, h, w] (or --layout nhwc: [batch, h, w, c]) input",
            path.display(),
            input.name
        ))),
    }
}

impl LoadedModel {
    /// The model as a black box.
    pub fn predictor(&self) -> &dyn Predictor {
        match &self.inner {
            Inner::Shipped(_, net, _) => net,
            Inner::Onnx(m) => m.as_ref(),
        }
    }

    /// The model with gradients, or a usage error naming `method` when tract runs it.
    pub fn differentiable(&self, method: &str, hint: &str) -> Result<&dyn DifferentiableModel> {
        match &self.inner {
            Inner::Shipped(_, net, _) => Ok(net),
            Inner::Onnx(m) if m.engine() != Engine::Tract => Ok(m.as_ref()),
            Inner::Onnx(m) => Err(usage(format!(
                "`xai {method}` needs the model's gradients, but `{}` runs on tract, which gives \
                 outputs only{}; --backend graph shows why the graph engine declines it{hint}",
                m.name(),
                m.fallback_reason()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ))),
        }
    }

    /// The model with its layers' activations (Grad-CAM): a shipped network (its layers by
    /// name, e.g. `conv2`; with `probabilities` last when a softmax was appended) or an ONNX
    /// model on the graph engine (its node outputs); a usage error naming `method` for an ONNX
    /// model on another engine.
    pub fn layer_model(&self, method: &str) -> Result<&dyn xai_core::LayerModel> {
        match &self.inner {
            Inner::Shipped(_, net, _) => Ok(net),
            Inner::Onnx(m) if m.engine() != Engine::Tract => Ok(m.as_ref()),
            Inner::Onnx(m) => Err(usage(format!(
                "`xai {method}` needs a layer's activations, which the importer and the graph \
                 engine give; `{}` runs on tract{}",
                m.name(),
                m.fallback_reason()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ))),
        }
    }

    /// One sample's shape, `[c, h, w]`.
    pub fn input_shape(&self) -> [usize; 3] {
        let s = self.predictor().input_shape();
        match s {
            [c, h, w] => [*c, *h, *w],
            [h, w] => [1, *h, *w],
            _ => [1, 1, s.iter().product()],
        }
    }

    /// The number of outputs.
    pub fn n_outputs(&self) -> usize {
        self.predictor().n_outputs()
    }

    /// The kind of outputs the predictor returns.
    pub fn core_output_kind(&self) -> CoreOutputKind {
        match &self.inner {
            Inner::Shipped(_, _, true) => CoreOutputKind::Probabilities,
            Inner::Shipped(kind, _, false) => match kind.loss() {
                Loss::CrossEntropy(k) => k,
                Loss::MeanSquaredError => CoreOutputKind::Logits,
            },
            Inner::Onnx(m) => match m.output_kind() {
                OutputKind::Logits => CoreOutputKind::Logits,
                _ => CoreOutputKind::Probabilities,
            },
        }
    }

    /// The cross-entropy loss of a classifier's outputs (gradient similarity).
    pub fn loss(&self) -> Loss {
        match &self.inner {
            Inner::Shipped(_, _, true) => Loss::CrossEntropy(CoreOutputKind::Probabilities),
            Inner::Shipped(kind, _, false) => kind.loss(),
            Inner::Onnx(_) => Loss::CrossEntropy(self.core_output_kind()),
        }
    }

    /// The model's outputs for one sample `[c, h, w]`.
    pub fn predict_one(&self, x: ndarray::ArrayView3<'_, f32>) -> Result<Vec<f32>> {
        let batch = x.insert_axis(ndarray::Axis(0)).into_dyn();
        let out = self
            .predictor()
            .predict(batch)
            .map_err(|e| crate::error::failed_in("running the model", e))?;
        Ok(out.row(0).to_vec())
    }

    /// The class the model predicts for one sample `[c, h, w]`, and its output for it.
    pub fn prediction(&self, x: ndarray::ArrayView3<'_, f32>) -> Result<(usize, f32)> {
        let outputs = self.predict_one(x)?;
        Ok(crate::output::top(ndarray::ArrayView1::from(&outputs)))
    }

    /// One line: what was loaded.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Shipped(kind, _, softmax) => format!(
                "shipped model `{}`: input {:?}, {} outputs{}, pixels scaled to [{}, {}]",
                kind.name(),
                self.input_shape(),
                self.n_outputs(),
                if *softmax {
                    " (logits turned into probabilities)"
                } else {
                    ""
                },
                self.pixels.range().0,
                self.pixels.range().1
            ),
            Inner::Onnx(m) => m.describe(),
        }
    }
}

/// `net` followed by a softmax: the class probabilities of a network that outputs logits.
fn with_softmax(net: Network) -> std::result::Result<Network, xai_models::ModelError> {
    if net.is_graph() {
        // Only chains are shipped with logits; a graph would need its node inputs.
        return Err(xai_models::ModelError::Architecture(format!(
            "`{}` is a graph network; a softmax can be appended to a chain only",
            net.name()
        )));
    }
    let shape = match *Predictor::input_shape(&net) {
        [c, h, w] => [c, h, w],
        [h, w] => [1, h, w],
        ref s => [1, 1, s.iter().product()],
    };
    let mut layers = net.layers().to_vec();
    layers.push(NamedLayer {
        name: "probabilities".into(),
        layer: Layer::Softmax,
    });
    Network::new(net.name(), shape, layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("1,28,28").unwrap(), [1, 28, 28]);
        assert_eq!(parse_shape("3x224x224").unwrap(), [3, 224, 224]);
        assert!(parse_shape("1,28").is_err());
        assert!(parse_shape("0,28,28").is_err());
        assert!(parse_shape("a,b,c").is_err());
    }

    #[test]
    fn pixel_ranges() {
        assert_eq!(PixelScaling::UNIT.range(), (0.0, 1.0));
        let centred = PixelScaling {
            scale: 1.0,
            offset: -0.5,
        };
        assert_eq!(centred.range(), (-0.5, 0.5));
        assert_eq!(centred.apply(1.0), 0.5);
    }
}
