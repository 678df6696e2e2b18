//! # xai-burn
//!
//! Explain [burn](https://burn.dev) models directly: [`BurnModel`] wraps any burn
//! [`Module`](burn::module::Module) with its forward function as an [`xai_core::Predictor`] and
//! [`xai_core::DifferentiableModel`], on any burn device with autodiff — the CPU (`ndarray` or
//! `flex`), or a GPU through this crate's `cuda` and `wgpu` features — so that every method of
//! the workspace (gradient similarity, CEM, KernelSHAP, L2X) runs on it:
//!
//! * predictions, input gradients and pullbacks through burn's autodiff;
//! * per-sample gradients for gradient similarity, one backward pass per sample
//!   ([`xai_core::adapter::per_sample_from_rows_sequential`]; burn has no `vmap`, and its
//!   autodiff lock forbids running rows on rayon's threads: see [`BurnModel::per_sample_grads_by_rows`]);
//! * parameter groups named after the module's fields (`"hidden.weight"`, `"output.bias"`);
//! * ndarray batches converted with shape checks that return errors, never panics.
//!
//! burn 0.22 puts the backend in the [`Device`](burn::tensor::Device), not in the types, so one
//! [`BurnModel`] type serves every backend; the device given to [`BurnModel::new`] gets autodiff
//! switched on (`device.autodiff()`).
//!
//! The five lines that wrap a model (here a bare `Linear` layer on burn's ndarray backend):
//!
//! ```
//! # #![allow(deprecated)]
//! use burn::nn::{Linear, LinearConfig};
//! use burn::prelude::*;
//! use xai_burn::BurnModel;
//! use xai_core::Predictor;
//!
//! let device = Device::ndarray();
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

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn};
use xai_core::adapter::per_sample_from_rows_sequential;
use xai_core::{
    check_batch, CoreError, DifferentiableModel, Loss, ParamGroup, ParamSelection, PerSampleGrads,
    Predictor, Targets,
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

/// Names (`"hidden.weight"`), shapes and (with `values`) values of a module's float parameters,
/// in burn's visiting order (the order of [`BurnModel::parameter_groups`]).
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

/// Collects the gradient of every float parameter (zeros where the output does not depend on it).
struct Grads<'a> {
    grads: &'a burn::tensor::Gradients,
    out: Vec<Vec<f32>>,
    error: Option<BurnError>,
}

impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
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

/// Makes every float parameter an autodiff leaf that requires its gradient.
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

/// A burn module and its forward function as a [`Predictor`] and [`DifferentiableModel`].
///
/// `D` is the rank of an input batch (2 for `[n, features]`, 4 for `[n, c, h, w]`); the forward
/// function maps a batch to `[n, outputs]`. See the crate docs for an example.
pub struct BurnModel<M, F, const D: usize> {
    module: M,
    forward: F,
    device: Device,
    input_shape: Vec<usize>,
    n_outputs: usize,
    groups: Vec<ParamGroup>,
}

impl<M, F, const D: usize> BurnModel<M, F, D>
where
    M: Module + Sync,
    F: Fn(&M, Tensor<D>) -> Tensor<2> + Send + Sync,
{
    /// Wraps `module` with `forward`, on `device` with autodiff switched on (the module is moved
    /// there), for samples of shape `input_shape` (`D - 1` dimensions). Evaluates the module
    /// once on a zero sample to learn its number of outputs.
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
        let device = device.clone().autodiff();
        // On the autodiff device, with every float parameter a tracked leaf (a module built on
        // a plain device keeps its parameters' values).
        let module = module
            .to_device(&device)
            .map(&mut Track)
            .set_require_grad(true);
        let groups = named_tensors(&module, false)?
            .into_iter()
            .map(|(name, shape, _)| ParamGroup { name, shape })
            .collect();
        let mut model = Self {
            module,
            forward,
            device,
            input_shape: input_shape.to_vec(),
            n_outputs: 0,
            groups,
        };
        let zero = ArrayD::<f32>::zeros(IxDyn(&[&[1], input_shape].concat()));
        let y = model.run(&zero.view(), false)?;
        let dims = y.dims();
        if dims[0] != 1 {
            return Err(BurnError::Framework(format!(
                "the forward function returned shape {dims:?} for one sample, expected [1, outputs]"
            )));
        }
        model.n_outputs = dims[1];
        Ok(model)
    }

    /// The wrapped module.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The device (with autodiff) the module runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The batch `x` as a burn tensor on the model's device, after checking its shape.
    pub fn to_tensor(&self, x: &ArrayViewD<'_, f32>) -> Result<Tensor<D>, BurnError> {
        check_batch("input", x, &self.input_shape)?;
        let data = TensorData::new(x.iter().copied().collect::<Vec<f32>>(), x.shape().to_vec());
        Ok(Tensor::<D>::from_data(data, &self.device))
    }

    fn run(&self, x: &ArrayViewD<'_, f32>, grad: bool) -> Result<Tensor<2>, BurnError> {
        let mut t = self.to_tensor(x)?;
        if grad {
            t = t.require_grad();
        }
        Ok((self.forward)(&self.module, t))
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
                "the output is not tracked by autodiff (is the device an autodiff device?)".into(),
            ));
        }
        let grads = total.backward();
        Ok((outputs, Some((grads, xt))))
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
        if targets.len() != n {
            return Err(BurnError::Core(CoreError::InvalidTargets(format!(
                "{} targets for a batch of {n} samples",
                targets.len()
            ))));
        }
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

    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let n = check_batch("input", &x, &self.input_shape)?;
        let y = self.run(&x, false)?;
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
        Ok(self.per_sample_grads_by_rows(x, targets, loss, selection)?)
    }
}
