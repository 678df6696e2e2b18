//! [`OnnxModel`]: a loaded ONNX classifier behind the `xai-core` traits.

use std::path::Path;

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, Ix4, IxDyn};
use tract_onnx::pb::ModelProto;
use xai_core::{
    check_batch, CoreError, DifferentiableModel, Loss, ParamGroup, ParamSelection, PerSampleGrads,
    Predictor, Targets,
};
use xai_models::layers::Layer;
use xai_models::{NamedLayer, Network};

use crate::error::{OnnxError, Result};
use crate::graph_engine::{graph_model, OutputMap};
use crate::import::{import, Head, Imported};
use crate::options::{Backend, ChannelAffine, Engine, Layout, OutputKind, ValidOnnxOptions};
use crate::proto::{check_input, decode_model, graph, graph_input, read_model};
use crate::tract_backend::TractRunner;
use xai_graph::GraphModel;

/// A loaded ONNX model: a [`Predictor`] on NCHW image batches `[n, c, h, w]` (or on rows of
/// features `[n, n_features]`, see [`crate::OnnxOptions::input_features`]), and a
/// [`DifferentiableModel`] when the importer could read it ([`Engine::Imported`]).
///
/// Inputs go through `x * input_scale + input_offset`, the per-channel normalization
/// `(· - mean[c]) / std[c]` when one is set ([`crate::OnnxOptions::normalize`]) and, for an NHWC
/// model, a transpose; the
/// outputs are the model's, or probabilities when [`crate::OnnxOptions::probabilities`] was
/// set ([`OnnxModel::output_kind`] says which).
#[derive(Debug)]
pub struct OnnxModel {
    name: String,
    input_shape: Vec<usize>,
    n_outputs: usize,
    model_output_kind: OutputKind,
    output_kind: OutputKind,
    options: ValidOnnxOptions,
    fallback_reason: Option<String>,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Imported {
        net: Network,
        head: Head,
        /// Input transform, the options' and the graph's own scaling combined.
        affine: ChannelAffine,
        /// The ONNX value (and node) each layer's output holds: `(value, node, layer index)`.
        onnx_layers: Vec<(String, String, usize)>,
    },
    /// The general graph engine; the input transform and the conversion to probabilities are
    /// nodes of its graph.
    Graph(Box<GraphModel>),
    Tract {
        runner: TractRunner,
        /// Output conversion to probabilities: none, softmax or exp.
        post: Post,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Post {
    None,
    Softmax,
    Exp,
}

/// The kind the graph's last real operation suggests.
fn detected_output_kind(model: &ModelProto) -> Option<OutputKind> {
    let g = model.graph.as_ref()?;
    let last = g
        .node
        .iter()
        .rev()
        .find(|n| !matches!(n.op_type.as_str(), "Identity" | "Dropout" | "Constant"))?;
    Some(match last.op_type.as_str() {
        "Softmax" => OutputKind::Probabilities,
        "LogSoftmax" => OutputKind::LogProbabilities,
        _ => OutputKind::Logits,
    })
}

fn softmax_rows(z: &mut Array2<f32>) {
    for mut row in z.axis_iter_mut(Axis(0)) {
        let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - max).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
}

fn log_softmax_rows(z: &mut Array2<f32>) {
    for mut row in z.axis_iter_mut(Axis(0)) {
        let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
        row.mapv_inplace(|v| v - lse);
    }
}

impl Head {
    fn forward(self, mut z: Array2<f32>) -> Array2<f32> {
        match self {
            Head::Identity => {}
            Head::LogSoftmax => log_softmax_rows(&mut z),
            Head::Exp => z.mapv_inplace(f32::exp),
        }
        z
    }

    /// Vector-Jacobian product: the gradient with respect to `z` of `Σ g ∘ head(z)`, given
    /// `y = head(z)`.
    fn vjp(self, y: &Array2<f32>, g: ArrayView2<'_, f32>) -> Array2<f32> {
        match self {
            Head::Identity => g.to_owned(),
            Head::LogSoftmax => {
                // d/dz_j Σ_i g_i (z_i - lse) = g_j - softmax_j Σ_i g_i, softmax = exp(y).
                let mut out = g.to_owned();
                for (mut row, yr) in out.axis_iter_mut(Axis(0)).zip(y.axis_iter(Axis(0))) {
                    let s = row.sum();
                    row.zip_mut_with(&yr, |o, &yv| *o -= yv.exp() * s);
                }
                out
            }
            Head::Exp => &g * y,
        }
    }
}

impl ValidOnnxOptions {
    /// Loads the ONNX model at `path` with these options.
    ///
    /// Tensors kept in external data files (the ONNX spec's `location`, `offset`, `length`,
    /// relative to the model's folder) are read in.
    ///
    /// Errors: [`OnnxError::FileNotFound`], [`OnnxError::NotOnnx`] for bytes that are not an
    /// ONNX model, [`OnnxError::ExternalData`] for external data outside the model's folder or
    /// of the wrong size, [`OnnxError::InputShapeMismatch`] when the model's declared input does not
    /// fit the input shape and layout, [`OnnxError::UnsupportedOp`] (with [`Backend::Import`])
    /// naming the first operator the importer cannot read, [`OnnxError::Tract`] when tract
    /// cannot run the graph.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<OnnxModel> {
        let path = path.as_ref();
        let mut proto = read_model(path)?;
        // Weights in external files (`<model>.onnx.data`) are read into the proto here, so that
        // every engine sees inline data.
        crate::external::resolve_external_data(&mut proto, path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "onnx".into());
        self.load_proto(&proto, name)
    }

    /// Loads an ONNX model from its serialised bytes (see [`ValidOnnxOptions::load`]). A model
    /// whose weights are in external files gives [`OnnxError::ExternalData`]: load it from its
    /// path instead.
    pub fn load_bytes(&self, bytes: &[u8]) -> Result<OnnxModel> {
        let proto = decode_model(bytes, "the given bytes")?;
        if crate::external::has_external_data(&proto) {
            return Err(crate::external::external_data_in_bytes(&proto));
        }
        let name = proto
            .graph
            .as_ref()
            .map(|g| g.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "onnx".into());
        self.load_proto(&proto, name)
    }

    fn load_proto(&self, proto: &ModelProto, name: String) -> Result<OnnxModel> {
        let input = graph_input(graph(proto)?)?;
        let fixed_batch = check_input(&input, self)?;
        let detected = detected_output_kind(proto).unwrap_or(OutputKind::Logits);
        let model_output_kind = match (self.output_kind, detected) {
            (None, d) => d,
            (Some(stated), OutputKind::Logits) => stated,
            (Some(stated), d) if stated == d => stated,
            (Some(stated), d) => {
                return Err(OnnxError::option(
                    "output_kind",
                    stated,
                    format!(
                        "{d}: the graph ends in {}",
                        if d == OutputKind::Probabilities {
                            "Softmax"
                        } else {
                            "LogSoftmax"
                        }
                    ),
                ))
            }
        };
        let output_kind = if self.probabilities {
            OutputKind::Probabilities
        } else {
            model_output_kind
        };
        let post = match (self.probabilities, model_output_kind) {
            (false, _) | (true, OutputKind::Probabilities) => Post::None,
            (true, OutputKind::Logits) => Post::Softmax,
            (true, OutputKind::LogProbabilities) => Post::Exp,
        };
        let graph_engine = || {
            let map = match post {
                Post::None => OutputMap::AsIs,
                Post::Softmax => OutputMap::Softmax,
                Post::Exp => OutputMap::Exp,
            };
            graph_model(proto, self, &input.name, fixed_batch, map, &name)
        };
        let mut reasons: Vec<String> = Vec::new();
        let declined = |e: &OnnxError| {
            matches!(
                e,
                OnnxError::UnsupportedOp { .. } | OnnxError::Unsupported(_) | OnnxError::Model(_)
            )
        };
        let mut inner = None;
        match self.backend {
            Backend::Tract => {}
            Backend::Import => {
                let imp = import(proto, self, &input.name, fixed_batch)?;
                inner = Some(self.imported_inner(imp, model_output_kind)?);
            }
            Backend::Graph => inner = Some(Inner::Graph(Box::new(graph_engine()?))),
            Backend::Auto => {
                match import(proto, self, &input.name, fixed_batch) {
                    Ok(imp) => inner = Some(self.imported_inner(imp, model_output_kind)?),
                    Err(e) if declined(&e) => reasons.push(format!("the importer: {e}")),
                    Err(e) => return Err(e),
                }
                if inner.is_none() {
                    match graph_engine() {
                        Ok(m) => inner = Some(Inner::Graph(Box::new(m))),
                        Err(e) if declined(&e) => reasons.push(format!("the graph engine: {e}")),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        // With Auto, the reason the importer declined stays on record when the graph engine
        // runs the model; both reasons when tract does.
        let fallback_reason = (!reasons.is_empty()).then(|| reasons.join("; "));
        let (inner, n_outputs) = match inner {
            Some(inner) => {
                let n = match &inner {
                    Inner::Imported { net, .. } => net.n_outputs(),
                    Inner::Graph(m) => m.n_outputs(),
                    Inner::Tract { .. } => 0,
                };
                (inner, n)
            }
            None => {
                let runner = TractRunner::load(
                    proto,
                    self.model_input_dims(),
                    fixed_batch,
                    self.tract_threads,
                )
                .map_err(|e| match &fallback_reason {
                    // Neither engine can run it: one line with every reason.
                    Some(r) => OnnxError::Unsupported(format!(
                        "{name}: no engine runs this model ({r}; tract: {e})"
                    )),
                    None => e,
                })?;
                // One zero sample tells the number of outputs (and that the plan runs).
                let probe = vec![0.0f32; self.model_input_dims().iter().product()];
                let (_, k) = runner.run(&probe, 1)?;
                (Inner::Tract { runner, post }, k)
            }
        };
        Ok(OnnxModel {
            name,
            input_shape: self.input_shape(),
            n_outputs,
            model_output_kind,
            output_kind,
            options: self.clone(),
            fallback_reason,
            inner,
        })
    }

    fn imported_inner(&self, imp: Imported, model_output_kind: OutputKind) -> Result<Inner> {
        let Imported {
            net,
            mut head,
            pre_scale,
            pre_offset,
            onnx_layers,
        } = imp;
        let mut net = net;
        if self.probabilities {
            let append_softmax = match (model_output_kind, head) {
                (OutputKind::Probabilities, _) => false,
                // softmax(z) = exp(log_softmax(z)): drop the head, append a softmax layer.
                (_, Head::LogSoftmax) => {
                    head = Head::Identity;
                    true
                }
                (OutputKind::Logits, _) => true,
                (OutputKind::LogProbabilities, _) => {
                    head = Head::Exp;
                    false
                }
            };
            if append_softmax {
                net = net.with_layer(NamedLayer {
                    name: "to_probabilities".into(),
                    layer: Layer::Softmax,
                })?;
            }
        }
        Ok(Inner::Imported {
            net,
            head,
            affine: self.channel_affine().then(pre_scale, pre_offset),
            onnx_layers,
        })
    }
}

impl OnnxModel {
    /// Loads `path` with the default options ([`crate::OnnxOptions::new`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        crate::OnnxOptions::new().check()?.load(path)
    }

    /// The model's name (the file stem, or the graph's name for bytes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which engine runs the model.
    pub fn engine(&self) -> Engine {
        match self.inner {
            Inner::Imported { .. } => Engine::Imported,
            Inner::Graph(_) => Engine::Graph,
            Inner::Tract { .. } => Engine::Tract,
        }
    }

    /// With [`Backend::Auto`]: why the importer declined the graph, when tract runs it.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// One line for logs: the engine and, after a fallback, why.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "ONNX model `{}`: {} back end, input {:?} ({}, x * {} + {}), {} outputs ({})",
            self.name,
            self.engine(),
            self.input_shape,
            match self.options.input_features() {
                Some(_) => "rows of features".to_string(),
                None => format!("{} layout", self.options.layout()),
            },
            self.options.input_scale(),
            self.options.input_offset(),
            self.n_outputs,
            self.output_kind
        );
        if let Some((mean, std)) = self.options.normalization() {
            s.push_str(&format!(", normalized by mean {mean:?} and std {std:?}"));
        }
        if let Some(r) = &self.fallback_reason {
            s.push_str(&format!("; the importer declined it: {r}"));
        }
        s
    }

    /// What the predictor's outputs are (probabilities when conversion was asked for).
    pub fn output_kind(&self) -> OutputKind {
        self.output_kind
    }

    /// What the ONNX graph itself outputs (stated in the options or read from its last node).
    pub fn model_output_kind(&self) -> OutputKind {
        self.model_output_kind
    }

    /// The options the model was loaded with.
    pub fn options(&self) -> &ValidOnnxOptions {
        &self.options
    }

    /// The imported network (its input is the model input after the input transform), if the
    /// importer runs the model.
    pub fn network(&self) -> Option<&Network> {
        match &self.inner {
            Inner::Imported { net, .. } => Some(net),
            Inner::Graph(_) | Inner::Tract { .. } => None,
        }
    }

    /// The graph engine's model, when it runs this one.
    pub fn graph_model(&self) -> Option<&GraphModel> {
        match &self.inner {
            Inner::Graph(m) => Some(m),
            _ => None,
        }
    }

    fn not_differentiable(&self) -> CoreError {
        OnnxError::NotDifferentiable {
            reason: self
                .fallback_reason
                .as_ref()
                .map(|r| format!("; the importer declined it: {r}"))
                .unwrap_or_default(),
        }
        .into()
    }

    /// The ONNX value names of the imported network's layers, in layer order (the layers whose
    /// output is one of the graph's values); `None` for a model another engine runs.
    pub(crate) fn imported_layer_names(&self) -> Option<Vec<String>> {
        match &self.inner {
            Inner::Imported { onnx_layers, .. } => {
                Some(onnx_layers.iter().map(|(v, _, _)| v.clone()).collect())
            }
            _ => None,
        }
    }

    /// [`xai_core::LayerModel::layer_activation_and_gradient`] on the imported network: `layer`
    /// is an ONNX value name or the name of the node computing it; the weights on the model's
    /// outputs are pulled back through its head (`LogSoftmax`, `Exp`) onto the network's.
    pub(crate) fn imported_layer(
        &self,
        x: &ArrayViewD<'_, f32>,
        layer: &str,
        output_weights: ArrayView2<'_, f32>,
    ) -> xai_core::Result<(ArrayD<f32>, ArrayD<f32>)> {
        let Inner::Imported { onnx_layers, .. } = &self.inner else {
            return Err(self.not_differentiable());
        };
        let (net, head, _, n, xt) = self.imported_input(x)?;
        if output_weights.dim() != (n, self.n_outputs) {
            return Err(CoreError::shape(
                "output weights",
                output_weights.shape(),
                format!("[{n}, {}]", self.n_outputs),
            ));
        }
        let index = onnx_layers
            .iter()
            .find(|(value, node, _)| value == layer || (!node.is_empty() && node == layer))
            .map(|l| l.2)
            .ok_or_else(|| {
                let names: Vec<String> = onnx_layers.iter().map(|(v, _, _)| v.clone()).collect();
                xai_core::unknown_layer(layer, &names)
            })?;
        let net_name = xai_core::LayerModel::layer_names(net)
            .get(index)
            .cloned()
            .ok_or_else(|| {
                CoreError::Model(format!("the imported network has no layer {index}"))
            })?;
        let g = match head {
            Head::Identity => output_weights.to_owned(),
            _ => {
                let y = head.forward(net.predict(xt.view())?);
                head.vjp(&y, output_weights)
            }
        };
        xai_core::LayerModel::layer_activation_and_gradient(net, xt.view(), &net_name, g.view())
    }

    /// The imported network, its head and input scale, the batch size and the batch scaled as the
    /// network expects, or an error for a tract-run model or a batch of the wrong shape.
    fn imported_input(
        &self,
        x: &ArrayViewD<'_, f32>,
    ) -> xai_core::Result<(&Network, &Head, &ChannelAffine, usize, ArrayD<f32>)> {
        let Inner::Imported {
            net, head, affine, ..
        } = &self.inner
        else {
            return Err(self.not_differentiable());
        };
        let n = check_batch("input", x, &self.input_shape)?;
        let xt = self.network_shape_batch(affine.apply(x), n)?;
        Ok((net, head, affine, n, xt))
    }

    /// A batch in the network's `[n, c, h, w]` shape: rows of features `[n, f]` become
    /// `[n, f, 1, 1]` (the same values in the same order); images are unchanged.
    fn network_shape_batch(&self, x: ArrayD<f32>, n: usize) -> xai_core::Result<ArrayD<f32>> {
        match self.options.input_features() {
            None => Ok(x),
            Some(f) => x
                .into_shape_with_order(IxDyn(&[n, f, 1, 1]))
                .map_err(|e| CoreError::Model(e.to_string())),
        }
    }

    /// An input gradient of the network, `[n, c, h, w]`, in the API's shape (`[n, f]` for rows
    /// of features).
    fn api_shape_gradient(&self, g: ArrayD<f32>) -> xai_core::Result<ArrayD<f32>> {
        match self.options.input_features() {
            None => Ok(g),
            Some(f) => {
                let n = g.shape().first().copied().unwrap_or(0);
                g.into_shape_with_order(IxDyn(&[n, f]))
                    .map_err(|e| CoreError::Model(e.to_string()))
            }
        }
    }

    fn run_tract(
        &self,
        runner: &TractRunner,
        x: &ArrayViewD<'_, f32>,
        n: usize,
    ) -> Result<Array2<f32>> {
        let xt = self.options.channel_affine().apply(x);
        let data: Vec<f32> = match (self.options.input_features(), self.options.layout()) {
            (Some(_), _) | (None, Layout::Nchw) => xt.iter().copied().collect(),
            (None, Layout::Nhwc) => xt
                .view()
                .into_dimensionality::<Ix4>()
                .map_err(|e| CoreError::Model(e.to_string()))?
                .permuted_axes([0, 2, 3, 1])
                .iter()
                .copied()
                .collect(),
        };
        if n == 0 {
            return Ok(Array2::zeros((0, self.n_outputs)));
        }
        let (out, k) = runner.run(&data, n)?;
        if k != self.n_outputs {
            return Err(OnnxError::Tract {
                action: "run the model".into(),
                message: format!("{k} outputs per sample, {} at load time", self.n_outputs),
            });
        }
        Array2::from_shape_vec((n, k), out).map_err(|e| CoreError::Model(e.to_string()).into())
    }
}

impl Predictor for OnnxModel {
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let n = check_batch("input", &x, &self.input_shape)?;
        match &self.inner {
            Inner::Imported {
                net, head, affine, ..
            } => {
                let z = if affine.is_identity() && self.options.input_features().is_none() {
                    net.predict(x)?
                } else {
                    let xt = self.network_shape_batch(affine.apply(&x), n)?;
                    net.predict(xt.view())?
                };
                Ok(head.forward(z))
            }
            Inner::Graph(m) => m.predict(x),
            Inner::Tract { runner, post } => {
                let mut out = self.run_tract(runner, &x, n)?;
                match post {
                    Post::None => {}
                    Post::Softmax => softmax_rows(&mut out),
                    Post::Exp => out.mapv_inplace(f32::exp),
                }
                Ok(out)
            }
        }
    }
}

impl DifferentiableModel for OnnxModel {
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: ArrayView2<'_, f32>,
    ) -> xai_core::Result<ArrayD<f32>> {
        if let Inner::Graph(m) = &self.inner {
            return m.input_gradient(x, output_weights);
        }
        let (net, head, affine, n, xt) = self.imported_input(&x)?;
        if output_weights.dim() != (n, self.n_outputs) {
            return Err(CoreError::shape(
                "output weights",
                output_weights.shape(),
                format!("[{n}, {}]", self.n_outputs),
            ));
        }
        let g = match head {
            Head::Identity => output_weights.to_owned(),
            _ => {
                let y = head.forward(net.predict(xt.view())?);
                head.vjp(&y, output_weights)
            }
        };
        let mut grad = self.api_shape_gradient(net.input_gradient(xt.view(), g.view())?)?;
        affine.pull_back(&mut grad);
        Ok(grad)
    }

    fn predict_and_input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> xai_core::Result<Array2<f32>>,
    ) -> xai_core::Result<(Array2<f32>, ArrayD<f32>)> {
        if let Inner::Graph(m) = &self.inner {
            return m.predict_and_input_gradient(x, output_weights);
        }
        let (net, head, affine, _, xt) = self.imported_input(&x)?;
        // One forward pass of the network: the pullback maps its outputs z through the head,
        // asks the caller for weights on the head's outputs and pulls them back to z.
        let mut outputs = None;
        let (_, grad) = net.predict_and_input_gradient(xt.view(), &mut |z| {
            let y = head.forward(z.to_owned());
            let w = output_weights(y.view())?;
            if w.dim() != y.dim() {
                return Err(CoreError::shape(
                    "output weights",
                    w.shape(),
                    format!("{:?}", y.shape()),
                ));
            }
            let g = head.vjp(&y, w.view());
            outputs = Some(y);
            Ok(g)
        })?;
        let outputs =
            outputs.ok_or_else(|| CoreError::Model("the network returned no outputs".into()))?;
        let mut grad = self.api_shape_gradient(grad)?;
        affine.pull_back(&mut grad);
        Ok((outputs, grad))
    }

    fn parameter_groups(&self) -> Vec<ParamGroup> {
        match &self.inner {
            Inner::Imported { net, .. } => net.parameter_groups(),
            Inner::Graph(m) => m.parameter_groups(),
            Inner::Tract { .. } => Vec::new(),
        }
    }

    fn per_sample_grads(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> xai_core::Result<PerSampleGrads> {
        if let Inner::Graph(m) = &self.inner {
            return m.per_sample_grads(x, targets, loss, selection);
        }
        let (net, head, _, _, xt) = self.imported_input(&x)?;
        if *head == Head::Identity {
            return net.per_sample_grads(xt.view(), targets, loss, selection);
        }
        // The network ends below the head: turn the loss gradient with respect to the outputs
        // into one with respect to the network's outputs z, and hand the network a mean squared
        // error whose gradient is exactly that: for k outputs, d/dz (1/k)|z - t|^2 = 2 (z - t) / k,
        // so t = z - (k / 2) g_z.
        let z = net.predict(xt.view())?;
        let y = head.forward(z.clone());
        let (_, g_y) = loss.value_and_grad(y.view(), targets)?;
        let g_z = head.vjp(&y, g_y.view());
        let half_k = z.ncols() as f32 / 2.0;
        let t = &z - &(g_z * half_k);
        net.per_sample_grads(
            xt.view(),
            &Targets::Values(t),
            &Loss::MeanSquaredError,
            selection,
        )
    }
}
