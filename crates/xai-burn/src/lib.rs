//! # xai-burn
//!
//! Explain [burn](https://burn.dev) models directly: [`BurnModel`] wraps any burn
//! [`Module`] with its forward function as an [`xai_core::Predictor`] and
//! [`xai_core::DifferentiableModel`], on any burn device with autodiff — the CPU (`ndarray` or
//! `flex`), or a GPU through this crate's `cuda` and `wgpu` features — so that every method of
//! the workspace (gradient similarity, CEM, KernelSHAP, L2X) runs on it:
//!
//! * the module as it predicts in inference, whatever mode it comes in: a module straight out
//!   of training (BatchNorm using each batch's statistics, Dropout dropping) is explained as
//!   `module.valid()` predicts, and the caller's module and its running statistics are never
//!   changed (see [`BurnModel::new`]);
//! * predictions without gradient tracking; input gradients and pullbacks through burn's
//!   autodiff;
//! * per-sample gradients for gradient similarity, one backward pass per sample
//!   ([`xai_core::adapter::per_sample_from_rows_sequential`]; burn has no `vmap`, and its
//!   autodiff lock forbids running rows on rayon's threads: see [`BurnModel::per_sample_grads_by_rows`]),
//!   or, for `Linear` layers recorded with [`LinearTaps`], from one batched pass, factored
//!   ([`BurnModel::with_factored_linear`]);
//! * parameter groups named after the module's fields (`"hidden.weight"`, `"output.bias"`): its
//!   `Param`s only; buffers such as BatchNorm's running statistics are listed apart
//!   ([`BurnModel::buffers`]);
//! * ndarray batches converted with shape checks that return errors, never panics.
//!
//! burn 0.22 puts the backend in the [`Device`], not in the types, so one
//! [`BurnModel`] type serves every backend; the device given to [`BurnModel::new`] gets autodiff
//! switched on (`device.autodiff()`).
//!
//! On the CPU, use burn's `flex` backend (this crate's `flex` feature, `Device::flex()`): in
//! release builds it gave per-sample gradients 4.3x, CEM 3.8x and KernelSHAP 1.7x faster than
//! burn's `ndarray` backend on a small CNN (docs/BENCHMARKS.md); `ndarray` works the same way.
//!
//! The five lines that wrap a model (here a bare `Linear` layer on burn's flex backend):
//!
//! ```
//! use burn::nn::{Linear, LinearConfig};
//! use burn::prelude::*;
//! use xai_burn::BurnModel;
//! use xai_core::Predictor;
//!
//! let device = Device::flex();
//! let module: Linear = LinearConfig::new(4, 3).init(&device);
//! let forward = |m: &Linear, x: Tensor<2>| m.forward(x);
//! let model = BurnModel::new(module, &device, &[4], forward).unwrap();
//! // `model` now goes to any explainer, e.g. GradientSimilarity::new(&model, params).
//! let out = model.predict(ndarray::Array2::<f32>::zeros((2, 4)).view().into_dyn()).unwrap();
//! assert_eq!(out.shape(), &[2, 3]);
//! ```
//!
//! Weights move between frameworks through safetensors ([`read_safetensors`],
//! [`load_named`]): `xai_models::save_weights` writes dense weights `[in, out]`, burn's
//! `Linear` layout, so they load without a transpose.

use std::collections::HashMap;

use burn::module::{Flag, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn};
use xai_core::adapter::{linear_weight_block, per_sample_from_rows_sequential, WeightLayout};
use xai_core::{
    check_batch, CoreError, DifferentiableModel, GradBlock, Loss, ParamGroup, ParamSelection,
    PerSampleGrads, Predictor, Targets,
};

/// Errors of the burn adapter.
#[derive(Debug, thiserror::Error)]
pub enum BurnError {
    /// A batch, weight or target had the wrong shape (or another core error).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// burn returned something unexpected (a tensor of another dtype, an untracked output).
    #[error("burn: {0}")]
    Framework(String),
    /// A weight file lacks a tensor the module needs.
    #[error("no tensor named `{0}` in the weights (the module needs it)")]
    MissingTensor(String),
    /// A safetensors file could not be read.
    #[error("safetensors: {0}")]
    Safetensors(String),
    /// The forward function given to [`BurnModel::with_factored_linear`] does not record its
    /// dense layers as the module holds them.
    #[error("factored per-sample gradients: {0}")]
    Factored(String),
}

impl From<BurnError> for CoreError {
    fn from(e: BurnError) -> Self {
        match e {
            BurnError::Core(c) => c,
            other => CoreError::Model(other.to_string()),
        }
    }
}

pub use xai_core::adapter::NamedTensor;

/// Name, shape and values (row-major; empty unless asked for) of each parameter tensor.
pub type NamedValues = Vec<(String, Vec<usize>, Vec<f32>)>;

fn to_vec<const D: usize>(t: &Tensor<D>) -> Result<Vec<f32>, BurnError> {
    t.to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| BurnError::Framework(format!("reading a tensor: {e:?}")))
}

/// Collects name, shape and (optionally) values of every float parameter.
struct Names {
    path: Vec<String>,
    values: bool,
    out: Vec<(String, Vec<usize>, Vec<f32>)>,
    error: Option<BurnError>,
}

impl ModuleVisitor for Names {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let values = if self.values {
            match to_vec(&t) {
                Ok(v) => v,
                Err(e) => {
                    self.error.get_or_insert(e);
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        self.out
            .push((self.path.join("."), t.dims().to_vec(), values));
    }
}

/// Names (`"hidden.weight"`), shapes and (with `values`) values of every float tensor a module
/// holds, in burn's visiting order: its parameters and its buffers (running statistics such as
/// `"bn.running_mean"`), as a weight file holds them. [`BurnModel`]'s parameter groups list the
/// parameters alone, [`BurnModel::buffers`] the buffers.
pub fn named_tensors<M: Module>(module: &M, values: bool) -> Result<NamedValues, BurnError> {
    let mut v = Names {
        path: Vec::new(),
        values,
        out: Vec::new(),
        error: None,
    };
    module.visit(&mut v);
    match v.error {
        Some(e) => Err(e),
        None => Ok(v.out),
    }
}

/// Whether a float value visited in a [`BurnModel`]'s module is a buffer rather than a parameter.
///
/// [`BurnModel::new`] makes every [`Param`] a leaf that requires its gradient; burn's running
/// statistics ([`RunningState`](burn::module::RunningState), e.g. `BatchNorm::running_mean`) are
/// visited as float values too, but burn keeps them from requiring gradients whatever a mapper
/// does, so they are the float values that do not.
fn is_buffer<const D: usize>(param: &Param<Tensor<D>>) -> bool {
    !param.val().is_require_grad()
}

/// Sorts the float values of a tracked module into parameters and buffers (names and shapes),
/// with the parameters' ids.
#[derive(Default)]
struct Split {
    path: Vec<String>,
    params: Vec<ParamGroup>,
    ids: Vec<ParamId>,
    buffers: Vec<ParamGroup>,
}

impl ModuleVisitor for Split {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let group = ParamGroup {
            name: self.path.join("."),
            shape: param.val().dims().to_vec(),
        };
        if is_buffer(param) {
            self.buffers.push(group);
        } else {
            self.params.push(group);
            self.ids.push(param.id);
        }
    }
}

/// Counts the training flags (`Dropout::training`, `BatchNorm::training`) that are switched on.
struct TrainingFlags(usize);

impl ModuleVisitor for TrainingFlags {
    fn visit_flag(&mut self, flag: &Param<Flag>) {
        if flag.val().is_enabled() {
            self.0 += 1;
        }
    }
}

/// Collects the gradient of every parameter, buffers left out (zeros where the output does not
/// depend on it).
struct Grads<'a> {
    grads: &'a burn::tensor::Gradients,
    out: Vec<Vec<f32>>,
    error: Option<BurnError>,
}

impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if is_buffer(param) {
            return;
        }
        let t = param.val();
        let g = match t.grad(self.grads) {
            Some(g) => to_vec(&g),
            None => Ok(vec![0.0; t.dims().iter().product()]),
        };
        match g {
            Ok(g) => self.out.push(g),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }
}

/// Makes every float parameter an autodiff leaf that requires its gradient (burn keeps running
/// statistics from requiring one).
struct Track;

impl ModuleMapper for Track {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let t = if t.is_autodiff() { t } else { t.autodiff() };
            t.detach().require_grad()
        })
    }
}

/// Replaces every float parameter by the named value.
struct Loader<'a> {
    path: Vec<String>,
    values: &'a HashMap<String, NamedTensor>,
    device: Device,
    error: Option<BurnError>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let dims = param.val().dims();
        let Some((shape, values)) = self.values.get(&name) else {
            self.error.get_or_insert(BurnError::MissingTensor(name));
            return param;
        };
        if shape.as_slice() != dims.as_slice() || values.len() != dims.iter().product::<usize>() {
            self.error.get_or_insert(BurnError::Core(CoreError::shape(
                format!("tensor `{name}`"),
                shape,
                format!("{dims:?}"),
            )));
            return param;
        }
        let t = Tensor::<D>::from_data(TensorData::new(values.clone(), dims), &self.device);
        if self.device.is_autodiff() {
            param.map(|_| t.require_grad())
        } else {
            param.map(|_| t)
        }
    }
}

/// Sets every float parameter of `module` from `values` (full names such as `"hidden.weight"`),
/// checking that each is present with the module's shape; the new tensors live on `device`.
pub fn load_named<M: Module>(
    module: M,
    values: &HashMap<String, NamedTensor>,
    device: &Device,
) -> Result<M, BurnError> {
    let mut l = Loader {
        path: Vec::new(),
        values,
        device: device.clone(),
        error: None,
    };
    let m = module.map(&mut l);
    match l.error {
        Some(e) => Err(e),
        None => Ok(m),
    }
}

/// Reads every tensor of an f32 safetensors file (e.g. one written by
/// `xai_models::save_weights`).
pub fn read_safetensors(bytes: &[u8]) -> Result<HashMap<String, NamedTensor>, BurnError> {
    xai_core::adapter::read_f32_safetensors(bytes).map_err(BurnError::Safetensors)
}

/// Records the dense layers of a forward pass, for per-sample gradients from one batched pass
/// ([`BurnModel::with_factored_linear`]).
///
/// A forward function written against it calls [`LinearTaps::linear`] where it would call
/// `Linear::forward`, naming the layer as the module does (`"output"` for a field `output`,
/// `"head.fc"` for a nested one). Outside a recording pass (`LinearTaps::off()`, and every
/// prediction or input gradient) `linear` is exactly `layer.forward(x)`.
pub struct LinearTaps {
    recording: bool,
    taps: Vec<LinearTap>,
}

/// One dense layer seen by a recording pass: its inputs, and a zero leaf added to its outputs
/// whose gradient is every sample's gradient with respect to those outputs.
struct LinearTap {
    name: String,
    weight_id: ParamId,
    has_bias: bool,
    inputs: Tensor<2>,
    probe: Tensor<2>,
}

impl LinearTaps {
    /// A recorder that records nothing: `linear` is `layer.forward(x)`. Use it to call a taps
    /// forward function as a plain one (the `forward` given to [`BurnModel::new`]).
    pub fn off() -> Self {
        Self {
            recording: false,
            taps: Vec::new(),
        }
    }

    fn recording() -> Self {
        Self {
            recording: true,
            taps: Vec::new(),
        }
    }

    /// Whether this pass records its dense layers.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// `layer.forward(x)` for `x` of shape `[n, in]`; in a recording pass on an autodiff device,
    /// also records `x` and the gradient with respect to the output under `name`, the layer's
    /// path in the module (its parameters are `"{name}.weight"` and `"{name}.bias"`).
    pub fn linear(&mut self, name: &str, layer: &Linear, x: Tensor<2>) -> Tensor<2> {
        let y = layer.forward(x.clone());
        if !self.recording || !y.is_autodiff() {
            return y;
        }
        // A zero leaf: adding it changes no value, and its gradient is ∂L/∂y, one row per
        // sample (burn keeps gradients of leaves only).
        let probe = y.zeros_like().detach().require_grad();
        self.taps.push(LinearTap {
            name: name.to_string(),
            weight_id: layer.weight.id,
            has_bias: layer.bias.is_some(),
            inputs: x.detach(),
            probe: probe.clone(),
        });
        y + probe
    }
}

/// A forward function that records its dense layers ([`BurnModel::with_factored_linear`]).
type TapsForward<M, const D: usize> =
    Box<dyn Fn(&M, Tensor<D>, &mut LinearTaps) -> Tensor<2> + Send + Sync>;

/// A burn module and its forward function as a [`Predictor`] and [`DifferentiableModel`].
///
/// `D` is the rank of an input batch (2 for `[n, features]`, 4 for `[n, c, h, w]`); the forward
/// function maps a batch to `[n, outputs]`. See the crate docs for an example.
///
/// The model is explained as it predicts in inference: [`BurnModel::new`] takes burn's
/// validation snapshot of the module ([`Module::valid`]), so a module straight out of training
/// (BatchNorm normalising with each batch's statistics and updating its running statistics,
/// Dropout dropping) behaves as `module.valid()` does: one image's outputs do not depend on the
/// batch it comes in, and the caller's module, its running statistics included, is never
/// changed.
pub struct BurnModel<M, F, const D: usize> {
    /// Inference mode, every parameter a tracked leaf, on the autodiff device.
    module: M,
    /// Inference mode, on the device without autodiff: predictions.
    plain: M,
    /// Inference mode, on the autodiff device, no parameter tracked: the factored pass, whose
    /// backward pass then stops at the recorded layers' probes.
    frozen: M,
    forward: F,
    taps_forward: Option<TapsForward<M, D>>,
    /// Parameter groups whose per-sample gradients come from the recorded dense layers.
    factored: Vec<String>,
    device: Device,
    plain_device: Device,
    input_shape: Vec<usize>,
    n_outputs: usize,
    groups: Vec<ParamGroup>,
    ids: Vec<ParamId>,
    buffers: Vec<ParamGroup>,
    training_flags: usize,
}

impl<M, F, const D: usize> BurnModel<M, F, D>
where
    M: Module + Sync,
    F: Fn(&M, Tensor<D>) -> Tensor<2> + Send + Sync,
{
    /// Wraps `module` with `forward`, on `device` with autodiff switched on (the module is copied
    /// there), for samples of shape `input_shape` (`D - 1` dimensions). Evaluates the module
    /// once on a zero sample to learn its number of outputs.
    ///
    /// The module is used in inference mode whatever mode it is in: the model holds burn's
    /// validation snapshots of it ([`Module::valid`]: training flags such as
    /// `BatchNorm::training` and `Dropout::training` off, fresh copies of the running
    /// statistics), one on `device` with autodiff for gradients and one without for
    /// predictions. `module` itself is only read: burn's `valid` folds the running statistics'
    /// last pending update into their value, which is the value burn's `value_sync`, training
    /// and `valid` already see; nothing else of it changes.
    /// [`BurnModel::training_flags_switched_off`] says how many training flags were on.
    pub fn new(
        module: M,
        device: &Device,
        input_shape: &[usize],
        forward: F,
    ) -> Result<Self, BurnError> {
        if input_shape.len() + 1 != D {
            return Err(BurnError::Core(CoreError::shape(
                "input shape",
                input_shape,
                format!("{} dimensions (batches of rank {D})", D.saturating_sub(1)),
            )));
        }
        let mut flags = TrainingFlags(0);
        module.visit(&mut flags);
        let plain_device = device.clone().without_autodiff();
        let device = plain_device.clone().autodiff();
        // Two independent snapshots: `valid` gives each its own running statistics (burn's
        // clones share them, and moving or mapping a `RunningState` writes through the share).
        let plain = module.valid().to_device(&plain_device);
        // On the autodiff device, with every parameter a tracked leaf (a module built on a
        // plain device keeps its parameters' values); running statistics stay untracked.
        let tracked = module.valid().to_device(&device).map(&mut Track);
        let frozen = module.valid().to_device(&device).no_grad();
        let mut split = Split::default();
        tracked.visit(&mut split);
        let mut model = Self {
            module: tracked,
            plain,
            frozen,
            forward,
            taps_forward: None,
            factored: Vec::new(),
            device,
            plain_device,
            input_shape: input_shape.to_vec(),
            n_outputs: 0,
            groups: split.params,
            ids: split.ids,
            buffers: split.buffers,
            training_flags: flags.0,
        };
        let zero = ArrayD::<f32>::zeros(IxDyn(&[&[1], input_shape].concat()));
        let y = (model.forward)(&model.plain, model.plain_tensor(&zero.view())?);
        let dims = y.dims();
        if dims[0] != 1 {
            return Err(BurnError::Framework(format!(
                "the forward function returned shape {dims:?} for one sample, expected [1, outputs]"
            )));
        }
        model.n_outputs = dims[1];
        Ok(model)
    }

    /// Per-sample gradients of dense layers from one batched forward and backward pass, stored
    /// factored (`GradBlock::Outer`, input ⊗ output gradient), instead of one pass per sample.
    ///
    /// `taps_forward` is the module's forward function with each `Linear` layer called through
    /// [`LinearTaps::linear`] under its path in the module; it must compute what `forward` does
    /// (`forward` can be `|m, x| taps_forward(m, x, &mut LinearTaps::off())`). Per-sample
    /// gradients of the recorded layers' weights and biases then come from one pass over the
    /// batch; any other selected parameter (a convolution's, a BatchNorm's) still comes from
    /// one pass per sample, so the saving is whole when the selection holds dense layers only
    /// (e.g. the last layer). Checked here on a zero sample: the outputs must equal
    /// `forward`'s, and each recorded layer must be the module's own layer of that name, used
    /// once.
    pub fn with_factored_linear<G>(mut self, taps_forward: G) -> Result<Self, BurnError>
    where
        G: Fn(&M, Tensor<D>, &mut LinearTaps) -> Tensor<2> + Send + Sync + 'static,
    {
        let zero = ArrayD::<f32>::zeros(IxDyn(&[&[1], self.input_shape.as_slice()].concat()));
        let want = (self.forward)(&self.module, self.to_tensor(&zero.view())?);
        let want = self.outputs(&want, 1)?;
        let mut taps = LinearTaps::recording();
        let got = taps_forward(&self.frozen, self.to_tensor(&zero.view())?, &mut taps);
        let got = self.outputs(&got, 1)?;
        if got != want {
            return Err(BurnError::Factored(format!(
                "the forward function with taps returned {:?} for a zero sample, the plain \
                 forward function {:?}; they must compute the same",
                got.as_slice(),
                want.as_slice()
            )));
        }
        let factored = self.check_taps(&taps.taps)?;
        self.taps_forward = Some(Box::new(taps_forward));
        self.factored = factored;
        Ok(self)
    }

    /// The parameter groups the recorded layers cover, after checking that each is the module's
    /// layer of its name and recorded once.
    fn check_taps(&self, taps: &[LinearTap]) -> Result<Vec<String>, BurnError> {
        if taps.is_empty() {
            return Err(BurnError::Factored(
                "the forward function recorded no dense layer: call `taps.linear(\"name\", \
                 &module.name, x)` where it calls `module.name.forward(x)`"
                    .into(),
            ));
        }
        let mut names = Vec::new();
        for tap in taps {
            let weight = format!("{}.weight", tap.name);
            let Some(k) = self.groups.iter().position(|g| g.name == weight) else {
                return Err(BurnError::Factored(format!(
                    "a dense layer was recorded as `{}`, but the module has no parameter `{weight}` \
                     (parameters: {})",
                    tap.name,
                    self.group_names()
                )));
            };
            if self.ids[k] != tap.weight_id {
                return Err(BurnError::Factored(format!(
                    "the dense layer recorded as `{}` is not the module's layer `{}` (another \
                     layer's name?)",
                    tap.name, tap.name
                )));
            }
            if names.contains(&weight) {
                return Err(BurnError::Factored(format!(
                    "the dense layer `{}` was recorded twice; a layer used twice in one pass has \
                     no factored per-sample gradient (record it once, or not at all)",
                    tap.name
                )));
            }
            names.push(weight);
            if tap.has_bias {
                names.push(format!("{}.bias", tap.name));
            }
        }
        Ok(names)
    }

    fn group_names(&self) -> String {
        self.groups
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The wrapped module as the model runs it: in inference mode, on the autodiff device, every
    /// parameter a tracked leaf (a copy: the caller's module is never changed).
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The device (with autodiff) the module runs on for gradients; predictions run on the same
    /// device without autodiff.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The module's buffers (names and shapes): burn's running statistics, such as
    /// `"bn.running_mean"`. They are not parameters: [`DifferentiableModel::parameter_groups`]
    /// leaves them out, and no gradient is taken with respect to them.
    pub fn buffers(&self) -> &[ParamGroup] {
        &self.buffers
    }

    /// How many training flags (`BatchNorm::training`, `Dropout::training`) were on in the module
    /// given to [`BurnModel::new`]: non-zero for a module straight out of training, which the
    /// model nonetheless explains in inference mode, as `module.valid()` predicts.
    pub fn training_flags_switched_off(&self) -> usize {
        self.training_flags
    }

    /// The batch `x` as a burn tensor on the model's device (with autodiff), after checking its
    /// shape.
    pub fn to_tensor(&self, x: &ArrayViewD<'_, f32>) -> Result<Tensor<D>, BurnError> {
        self.tensor_on(x, &self.device)
    }

    fn plain_tensor(&self, x: &ArrayViewD<'_, f32>) -> Result<Tensor<D>, BurnError> {
        self.tensor_on(x, &self.plain_device)
    }

    fn tensor_on(&self, x: &ArrayViewD<'_, f32>, device: &Device) -> Result<Tensor<D>, BurnError> {
        check_batch("input", x, &self.input_shape)?;
        let data = TensorData::new(x.iter().copied().collect::<Vec<f32>>(), x.shape().to_vec());
        Ok(Tensor::<D>::from_data(data, device))
    }

    fn outputs(&self, y: &Tensor<2>, n: usize) -> Result<Array2<f32>, BurnError> {
        let dims = y.dims();
        if dims != [n, self.n_outputs] {
            return Err(BurnError::Framework(format!(
                "the forward function returned shape {dims:?}, expected [{n}, {}]",
                self.n_outputs
            )));
        }
        Array2::from_shape_vec((n, self.n_outputs), to_vec(y)?)
            .map_err(|e| BurnError::Framework(e.to_string()))
    }

    /// The outputs `y` of a taped forward pass over `n` samples, and the gradients of
    /// `Σ weights(outputs) ⊙ y` (`None` when the weights are all zero).
    fn weighted_backward(
        &self,
        y: Tensor<2>,
        n: usize,
        weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> xai_core::Result<Array2<f32>>,
    ) -> Result<(Array2<f32>, Option<burn::tensor::Gradients>), BurnError> {
        let outputs = self.outputs(&y, n)?;
        let w = weights(outputs.view())?;
        if w.dim() != (n, self.n_outputs) {
            return Err(BurnError::Core(CoreError::shape(
                "output weights",
                w.shape(),
                format!("[{n}, {}]", self.n_outputs),
            )));
        }
        if w.iter().all(|v| *v == 0.0) {
            return Ok((outputs, None));
        }
        let wt = Tensor::<2>::from_data(
            TensorData::new(w.iter().copied().collect::<Vec<f32>>(), [n, self.n_outputs]),
            &self.device,
        );
        let total = (y * wt).sum();
        if !total.is_tracked() {
            return Err(BurnError::Framework(
                "the output is not tracked by autodiff (does the forward function detach it?)"
                    .into(),
            ));
        }
        Ok((outputs, Some(total.backward())))
    }

    /// Forward on a tape, weights from the outputs, backward: the outputs, and the gradients
    /// (`None` when the weights are all zero) with the input tensor they belong to.
    #[allow(clippy::type_complexity)]
    fn pullback(
        &self,
        x: &ArrayViewD<'_, f32>,
        weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> xai_core::Result<Array2<f32>>,
    ) -> Result<(Array2<f32>, Option<(burn::tensor::Gradients, Tensor<D>)>), BurnError> {
        let n = check_batch("input", x, &self.input_shape)?;
        let xt = self.to_tensor(x)?.require_grad();
        let y = (self.forward)(&self.module, xt.clone());
        let (outputs, grads) = self.weighted_backward(y, n, weights)?;
        Ok((outputs, grads.map(|g| (g, xt))))
    }

    fn check_targets(&self, targets: &Targets, n: usize) -> Result<(), BurnError> {
        if targets.len() != n {
            return Err(BurnError::Core(CoreError::InvalidTargets(format!(
                "{} targets for a batch of {n} samples",
                targets.len()
            ))));
        }
        Ok(())
    }

    /// Per-sample gradients row by row: each row's own forward and backward pass, one row after
    /// another. burn's kernels parallelise inside a pass; running rows on rayon's threads
    /// deadlocks, because burn holds its autodiff lock during `backward` while its CPU kernels
    /// run on rayon, and a worker that steals another row waits for the lock its thread holds.
    pub fn per_sample_grads_by_rows(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> Result<PerSampleGrads, BurnError> {
        let n = check_batch("input", &x, &self.input_shape)?;
        self.check_targets(targets, n)?;
        Ok(per_sample_from_rows_sequential(
            &self.groups,
            selection,
            n,
            |i| {
                let row = x.index_axis(Axis(0), i).insert_axis(Axis(0));
                let t = targets.select(&[i])?;
                let mut w = |out: ArrayView2<'_, f32>| Ok(loss.value_and_grad(out, &t)?.1);
                let (_, g) = self.pullback(&row, &mut w)?;
                let Some((grads, _)) = g else {
                    return Ok(self.groups.iter().map(|g| vec![0.0; g.len()]).collect());
                };
                let mut v = Grads {
                    grads: &grads,
                    out: Vec::new(),
                    error: None,
                };
                self.module.visit(&mut v);
                match v.error {
                    Some(e) => Err(e.into()),
                    None => Ok(v.out),
                }
            },
        )?)
    }

    /// Per-sample gradients with the recorded dense layers' from one batched pass
    /// ([`BurnModel::with_factored_linear`]) and the rest of the selection row by row; the
    /// blocks come in [`DifferentiableModel::parameter_groups`] order.
    fn per_sample_grads_factored(
        &self,
        taps_forward: &TapsForward<M, D>,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> Result<PerSampleGrads, BurnError> {
        let n = check_batch("input", &x, &self.input_shape)?;
        self.check_targets(targets, n)?;
        selection.validate(&self.groups)?;
        let selected: Vec<&ParamGroup> = self
            .groups
            .iter()
            .filter(|g| selection.contains(&g.name))
            .collect();
        let (batched, rows): (Vec<&ParamGroup>, Vec<&ParamGroup>) = selected
            .iter()
            .partition(|g| self.factored.contains(&g.name));
        let mut blocks: Vec<GradBlock> = Vec::new();
        if !batched.is_empty() {
            let mut taps = LinearTaps::recording();
            // No parameter is tracked in `frozen`: the tape holds the probes and what follows
            // them, so the backward pass computes the deltas and nothing else (no convolution
            // weight gradients that the rows compute anyway).
            let y = taps_forward(&self.frozen, self.to_tensor(&x)?, &mut taps);
            let covered = self.check_taps(&taps.taps)?;
            if covered != self.factored {
                return Err(BurnError::Factored(format!(
                    "this pass recorded the dense layers {covered:?}, the check at construction \
                     {:?}; the forward function must record the same layers every time",
                    self.factored
                )));
            }
            let mut w = |out: ArrayView2<'_, f32>| Ok(loss.value_and_grad(out, targets)?.1);
            let (_, grads) = self.weighted_backward(y, n, &mut w)?;
            for tap in taps.taps {
                let inputs = to_array2(&tap.inputs, n)?;
                let out = tap.probe.dims()[1];
                let deltas = match grads.as_ref().and_then(|g| tap.probe.grad(g)) {
                    Some(d) => to_array2(&d, n)?,
                    None => Array2::zeros((n, out)),
                };
                let (wname, bname) = (format!("{}.weight", tap.name), format!("{}.bias", tap.name));
                if tap.has_bias && selection.contains(&bname) {
                    blocks.push(GradBlock::Full {
                        name: bname,
                        values: deltas.clone(),
                    });
                }
                if selection.contains(&wname) {
                    blocks.push(linear_weight_block(
                        wname,
                        inputs,
                        deltas,
                        WeightLayout::InOut,
                    )?);
                }
            }
        }
        if !rows.is_empty() {
            let names = rows.iter().map(|g| g.name.clone()).collect();
            let by_rows =
                self.per_sample_grads_by_rows(x, targets, loss, &ParamSelection::Groups(names))?;
            blocks.extend(by_rows.blocks().iter().cloned());
        }
        let position = |b: &GradBlock| self.groups.iter().position(|g| g.name == b.name());
        blocks.sort_by_key(position);
        Ok(PerSampleGrads::new(blocks)?)
    }
}

/// A `[n, k]` tensor as an ndarray.
fn to_array2(t: &Tensor<2>, n: usize) -> Result<Array2<f32>, BurnError> {
    let dims = t.dims();
    if dims[0] != n {
        return Err(BurnError::Framework(format!(
            "a recorded dense layer saw {} rows in a batch of {n} (does the forward function \
             mix samples?)",
            dims[0]
        )));
    }
    Array2::from_shape_vec((dims[0], dims[1]), to_vec(t)?)
        .map_err(|e| BurnError::Framework(e.to_string()))
}

impl<M, F, const D: usize> Predictor for BurnModel<M, F, D>
where
    M: Module + Sync,
    F: Fn(&M, Tensor<D>) -> Tensor<2> + Send + Sync,
{
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// The module's outputs, without gradient tracking: the inference copy on the device without
    /// autodiff.
    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let n = check_batch("input", &x, &self.input_shape)?;
        let y = (self.forward)(&self.plain, self.plain_tensor(&x)?);
        Ok(self.outputs(&y, n)?)
    }
}

impl<M, F, const D: usize> DifferentiableModel for BurnModel<M, F, D>
where
    M: Module + Sync,
    F: Fn(&M, Tensor<D>) -> Tensor<2> + Send + Sync,
{
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: ArrayView2<'_, f32>,
    ) -> xai_core::Result<ArrayD<f32>> {
        xai_core::adapter::input_gradient_by_pullback(self, x, output_weights)
    }

    fn predict_and_input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> xai_core::Result<Array2<f32>>,
    ) -> xai_core::Result<(Array2<f32>, ArrayD<f32>)> {
        let (outputs, g) = self.pullback(&x, output_weights)?;
        let grad = match g.and_then(|(grads, xt)| xt.grad(&grads)) {
            Some(gx) => ArrayD::from_shape_vec(IxDyn(x.shape()), to_vec(&gx)?)
                .map_err(|e| CoreError::Model(format!("input gradient: {e}")))?,
            None => ArrayD::zeros(x.shape()),
        };
        Ok((outputs, grad))
    }

    /// The module's parameters (burn's `Param`s), named after its fields; buffers such as
    /// BatchNorm's running statistics are not among them ([`BurnModel::buffers`]).
    fn parameter_groups(&self) -> Vec<ParamGroup> {
        self.groups.clone()
    }

    fn per_sample_grads(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> xai_core::Result<PerSampleGrads> {
        Ok(match &self.taps_forward {
            Some(f) => self.per_sample_grads_factored(f, x, targets, loss, selection)?,
            None => self.per_sample_grads_by_rows(x, targets, loss, selection)?,
        })
    }
}
