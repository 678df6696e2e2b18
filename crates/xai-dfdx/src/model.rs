//! [`DfdxModel`]: a dfdx module as a [`Predictor`] and [`DifferentiableModel`].

use std::collections::HashMap;
use std::marker::PhantomData;

use dfdx::nn::modules::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorName,
    ViewTensorRef,
};
use dfdx::nn::Module;
use dfdx::prelude::{
    Backward, Const, Cpu, Dim, HasShape, OwnedTape, SumTo, Tensor, TensorFromVec, Trace, TryMul,
};
use dfdx::shapes::Shape;
use dfdx::tensor::Gradients;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn};
use xai_core::adapter::per_sample_from_rows;
use xai_core::{
    check_batch, CoreError, DifferentiableModel, Loss, ParamGroup, ParamSelection, PerSampleGrads,
    Predictor, Targets,
};

use crate::factored::{factored_per_sample, Factored};
use crate::DfdxError;

type Taped = OwnedTape<f32, Cpu>;

/// Name, shape and values (row-major; empty unless asked for) of each parameter tensor.
pub type NamedValues = Vec<(String, Vec<usize>, Vec<f32>)>;

/// The compile-time shape of one input sample, e.g. `Rank1<784>` or `Rank3<1, 28, 28>`, and the
/// batched shape `(usize, ...)` a dfdx module receives.
pub trait SampleShape: Shape + Default {
    /// The batch shape: a dynamic batch axis in front of the sample's axes.
    type Batch: Shape;
    /// The batch shape for `n` samples.
    fn batch(n: usize) -> Self::Batch;
    /// The sample's dimensions.
    fn dims() -> Vec<usize>;
}

impl<const A: usize> SampleShape for (Const<A>,) {
    type Batch = (usize, Const<A>);
    fn batch(n: usize) -> Self::Batch {
        (n, Const)
    }
    fn dims() -> Vec<usize> {
        vec![A]
    }
}

impl<const A: usize, const B: usize> SampleShape for (Const<A>, Const<B>) {
    type Batch = (usize, Const<A>, Const<B>);
    fn batch(n: usize) -> Self::Batch {
        (n, Const, Const)
    }
    fn dims() -> Vec<usize> {
        vec![A, B]
    }
}

impl<const A: usize, const B: usize, const C: usize> SampleShape
    for (Const<A>, Const<B>, Const<C>)
{
    type Batch = (usize, Const<A>, Const<B>, Const<C>);
    fn batch(n: usize) -> Self::Batch {
        (n, Const, Const, Const)
    }
    fn dims() -> Vec<usize> {
        vec![A, B, C]
    }
}

/// What [`DfdxModel`] needs from a module: a forward pass on batches of `X` without and with a
/// tape, ending in `[n, outputs]`. Implemented for every dfdx [`Module`] with those input and
/// output types (any output width, static or dynamic).
pub trait DfdxForward<X: SampleShape>: Send + Sync {
    /// Evaluates a batch: the outputs, row-major, and their number per sample.
    fn eval(&self, x: Tensor<X::Batch, f32, Cpu>) -> Result<(Vec<f32>, usize), DfdxError>;

    /// Evaluates a batch on a tape and runs it backward from `Σ w ∘ f(x)`, where `w` is computed
    /// from the outputs by `weights`. Returns the outputs, their number per sample and the
    /// gradients (`None` when `w` is all zeros: nothing to run backward).
    #[allow(clippy::type_complexity)]
    fn pullback(
        &self,
        x: Tensor<X::Batch, f32, Cpu, Taped>,
        weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> xai_core::Result<Array2<f32>>,
    ) -> Result<(Array2<f32>, Option<Gradients<f32, Cpu>>), DfdxError>;
}

#[allow(clippy::type_complexity)]
pub(crate) fn run_backward<O: Dim>(
    y: Tensor<(usize, O), f32, Cpu, Taped>,
    weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> xai_core::Result<Array2<f32>>,
) -> Result<(Array2<f32>, Option<Gradients<f32, Cpu>>), DfdxError> {
    let (n, o) = (y.shape().0, y.shape().1.size());
    let outputs = Array2::from_shape_vec((n, o), y.as_vec())
        .map_err(|e| DfdxError::Shape(CoreError::Model(format!("module output: {e}"))))?;
    let w = weights(outputs.view())?;
    if w.dim() != (n, o) {
        return Err(DfdxError::Shape(CoreError::shape(
            "output weights",
            w.shape(),
            format!("[{n}, {o}]"),
        )));
    }
    if w.iter().all(|v| *v == 0.0) {
        return Ok((outputs, None));
    }
    let wt = y
        .device()
        .try_tensor_from_vec(w.iter().copied().collect(), *y.shape())?;
    let grads = y.try_mul(wt)?.try_sum()?.try_backward()?;
    Ok((outputs, Some(grads)))
}

impl<X, M, O> DfdxForward<X> for M
where
    X: SampleShape,
    O: Dim,
    M: Send
        + Sync
        + Module<Tensor<X::Batch, f32, Cpu>, Output = Tensor<(usize, O), f32, Cpu>>
        + Module<Tensor<X::Batch, f32, Cpu, Taped>, Output = Tensor<(usize, O), f32, Cpu, Taped>>,
{
    fn eval(&self, x: Tensor<X::Batch, f32, Cpu>) -> Result<(Vec<f32>, usize), DfdxError> {
        let y = Module::<Tensor<X::Batch, f32, Cpu>>::try_forward(self, x)
            .map_err(|e| DfdxError::Framework(format!("{e:?}")))?;
        Ok((y.as_vec(), y.shape().1.size()))
    }

    fn pullback(
        &self,
        x: Tensor<X::Batch, f32, Cpu, Taped>,
        weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> xai_core::Result<Array2<f32>>,
    ) -> Result<(Array2<f32>, Option<Gradients<f32, Cpu>>), DfdxError> {
        let y = Module::<Tensor<X::Batch, f32, Cpu, Taped>>::try_forward(self, x)
            .map_err(|e| DfdxError::Framework(format!("{e:?}")))?;
        run_backward(y, weights)
    }
}

/// Visits every trainable tensor with its full name (`"0.weight"`).
struct Named<'a, F: FnMut(&str, Vec<usize>, Vec<f32>)>(&'a mut F, bool);

impl<F: FnMut(&str, Vec<usize>, Vec<f32>)> TensorVisitor<f32, Cpu> for Named<'_, F> {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = DfdxError;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        (t, name): (&Tensor<S, f32, Cpu>, String),
    ) -> Result<Option<Tensor<S, f32, Cpu>>, DfdxError> {
        if opts.do_gradient_update {
            let shape: Vec<usize> = t.shape().concrete().into_iter().collect();
            let values = if self.1 { t.as_vec() } else { Vec::new() };
            (self.0)(&name, shape, values);
        }
        Ok(None)
    }
}

/// Collects the gradient of every trainable tensor, in visiting order.
struct GradCollector<'a> {
    grads: &'a mut Gradients<f32, Cpu>,
    out: Vec<Vec<f32>>,
}

impl TensorVisitor<f32, Cpu> for GradCollector<'_> {
    type Viewer = ViewTensorRef;
    type Err = DfdxError;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        t: &Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, DfdxError> {
        if opts.do_gradient_update {
            // A parameter the output does not depend on has no gradient yet: zeros.
            self.grads.try_alloc_for(t)?;
            self.out.push(self.grads.get(t).as_vec());
        }
        Ok(None)
    }
}

/// Writes named values into the module's tensors.
struct Loader<'a> {
    values: &'a HashMap<String, Vec<f32>>,
    loaded: usize,
}

impl TensorVisitor<f32, Cpu> for Loader<'_> {
    type Viewer = (ViewTensorMut, ViewTensorName);
    type Err = DfdxError;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        _opts: TensorOptions<S, f32, Cpu>,
        (t, name): (&mut Tensor<S, f32, Cpu>, String),
    ) -> Result<Option<Tensor<S, f32, Cpu>>, DfdxError> {
        let Some(v) = self.values.get(&name) else {
            return Err(DfdxError::MissingTensor(name));
        };
        let shape: Vec<usize> = t.shape().concrete().into_iter().collect();
        if v.len() != t.shape().num_elements() {
            return Err(DfdxError::Shape(CoreError::shape(
                format!("tensor `{name}`"),
                &[v.len()],
                format!("{shape:?} ({} values)", t.shape().num_elements()),
            )));
        }
        t.copy_from(v);
        self.loaded += 1;
        Ok(None)
    }
}

/// Names, shapes and (with `values`) the values of a module's trainable tensors, in dfdx's
/// visiting order (the order of [`DfdxModel::parameter_groups`]).
pub fn named_tensors<M: TensorCollection<f32, Cpu>>(
    module: &M,
    values: bool,
) -> Result<NamedValues, DfdxError> {
    let mut out = Vec::new();
    let mut f = |name: &str, shape: Vec<usize>, v: Vec<f32>| out.push((name.to_string(), shape, v));
    let mut visitor = Named(&mut f, values);
    M::iter_tensors(&mut RecursiveWalker {
        m: (module, String::new()),
        f: &mut visitor,
    })?;
    Ok(out)
}

/// Sets every tensor of `module` from `values` (full dfdx names such as `"0.weight"`), checking
/// that each is present with the right number of elements.
pub fn load_named<M: TensorCollection<f32, Cpu>>(
    module: &mut M,
    values: &HashMap<String, Vec<f32>>,
) -> Result<(), DfdxError> {
    let mut visitor = Loader { values, loaded: 0 };
    M::iter_tensors(&mut RecursiveWalker {
        m: (module, String::new()),
        f: &mut visitor,
    })?;
    Ok(())
}

pub(crate) fn param_grads<M: TensorCollection<f32, Cpu>>(
    module: &M,
    grads: &mut Gradients<f32, Cpu>,
) -> Result<Vec<Vec<f32>>, DfdxError> {
    let mut visitor = GradCollector {
        grads,
        out: Vec::new(),
    };
    M::iter_tensors(&mut RecursiveWalker {
        m: module,
        f: &mut visitor,
    })?;
    Ok(visitor.out)
}

type FactoredFn<M, X> = fn(
    &DfdxModel<M, X>,
    ArrayViewD<'_, f32>,
    &Targets,
    &Loss,
    &ParamSelection,
) -> Result<PerSampleGrads, DfdxError>;

/// A dfdx module as a [`Predictor`] and [`DifferentiableModel`] on inputs of the compile-time
/// sample shape `X` (e.g. `Rank1<784>`, `Rank3<1, 28, 28>`).
///
/// * predictions: one forward pass without a tape;
/// * input gradients and pullbacks: one forward pass on a tape and one backward pass (the outputs
///   the pullback's weights depend on come from the same pass);
/// * per-sample gradients: row by row through the tape in parallel
///   ([`xai_core::adapter::per_sample_from_rows`]), or — for modules made of dense layers and
///   activations, built with [`DfdxModel::with_factored_linear`] — from one batched pass, each
///   dense layer's weight gradient factored as input ⊗ output gradient;
/// * parameter groups: dfdx's own names for the module's trainable tensors (`"0.weight"`,
///   `"0.bias"`, `"2.weight"`, ... for a tuple).
///
/// Batches are checked against `X` and returned as errors, never panics.
pub struct DfdxModel<M, X: SampleShape> {
    module: M,
    dev: Cpu,
    input_shape: Vec<usize>,
    n_outputs: usize,
    groups: Vec<ParamGroup>,
    factored: Option<FactoredFn<M, X>>,
    _x: PhantomData<fn() -> X>,
}

impl<M, X> DfdxModel<M, X>
where
    X: SampleShape,
    M: DfdxForward<X> + TensorCollection<f32, Cpu>,
{
    /// Wraps `module` (built on `dev`); evaluates it once on a zero sample to learn its number
    /// of outputs, which also checks that it runs on inputs of shape `X`.
    pub fn new(module: M, dev: &Cpu) -> Result<Self, DfdxError> {
        let dims = X::dims();
        let len: usize = dims.iter().product();
        let x = dev.try_tensor_from_vec(vec![0.0f32; len], X::batch(1))?;
        let (_, n_outputs) = module.eval(x)?;
        let groups = named_tensors(&module, false)?
            .into_iter()
            .map(|(name, shape, _)| ParamGroup { name, shape })
            .collect();
        Ok(Self {
            module,
            dev: dev.clone(),
            input_shape: dims,
            n_outputs,
            groups,
            factored: None,
            _x: PhantomData,
        })
    }

    /// Like [`DfdxModel::new`], but per-sample gradients come from one batched forward and
    /// backward pass, with dense-layer weight gradients factored as input ⊗ output gradient
    /// ([`xai_core::GradBlock::Outer`]): for modules made of `Linear` layers and activations.
    pub fn with_factored_linear<O: Dim>(module: M, dev: &Cpu) -> Result<Self, DfdxError>
    where
        M: Factored<
            Tensor<X::Batch, f32, Cpu, Taped>,
            Output = Tensor<(usize, O), f32, Cpu, Taped>,
        >,
    {
        let mut model = Self::new(module, dev)?;
        model.factored = Some(factored_per_sample::<M, X, O>);
        Ok(model)
    }

    /// The wrapped module.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The wrapped module, mutably (e.g. to train it).
    pub fn module_mut(&mut self) -> &mut M {
        &mut self.module
    }

    /// The device the module lives on.
    pub fn device(&self) -> &Cpu {
        &self.dev
    }

    /// The batch `x` as a dfdx tensor, after checking its shape.
    pub fn to_tensor(
        &self,
        x: &ArrayViewD<'_, f32>,
    ) -> Result<Tensor<X::Batch, f32, Cpu>, DfdxError> {
        let n = check_batch("input", x, &self.input_shape)?;
        let data: Vec<f32> = x.iter().copied().collect();
        Ok(self.dev.try_tensor_from_vec(data, X::batch(n))?)
    }

    fn pullback_impl(
        &self,
        x: ArrayViewD<'_, f32>,
        weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> xai_core::Result<Array2<f32>>,
    ) -> Result<(Array2<f32>, ArrayD<f32>), DfdxError> {
        let xt = self.to_tensor(&x)?;
        let (outputs, grads) = self.module.pullback(xt.leaky_trace(), weights)?;
        let grad = match grads {
            Some(mut g) => {
                g.try_alloc_for(&xt)?;
                ArrayD::from_shape_vec(IxDyn(x.shape()), g.get(&xt).as_vec()).map_err(|e| {
                    DfdxError::Shape(CoreError::Model(format!("input gradient: {e}")))
                })?
            }
            None => ArrayD::zeros(x.shape()),
        };
        Ok((outputs, grad))
    }

    /// Per-sample gradients row by row (the generic path, for any module).
    pub fn per_sample_grads_by_rows(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> Result<PerSampleGrads, DfdxError> {
        let n = check_batch("input", &x, &self.input_shape)?;
        check_targets(targets, n)?;
        Ok(per_sample_from_rows(&self.groups, selection, n, |i| {
            let row = x.index_axis(Axis(0), i).insert_axis(Axis(0));
            let t = targets.select(&[i])?;
            let xt = self.to_tensor(&row)?;
            let mut w = |out: ArrayView2<'_, f32>| Ok(loss.value_and_grad(out, &t)?.1);
            let (_, grads) = self.module.pullback(xt.leaky_trace(), &mut w)?;
            match grads {
                Some(mut g) => Ok(param_grads(&self.module, &mut g)?),
                None => Ok(self.groups.iter().map(|g| vec![0.0; g.len()]).collect()),
            }
        })?)
    }
}

pub(crate) fn check_targets(targets: &Targets, n: usize) -> Result<(), DfdxError> {
    if targets.len() != n {
        return Err(DfdxError::Shape(CoreError::InvalidTargets(format!(
            "{} targets for a batch of {n} samples",
            targets.len()
        ))));
    }
    Ok(())
}

impl<M, X> Predictor for DfdxModel<M, X>
where
    X: SampleShape,
    M: DfdxForward<X> + TensorCollection<f32, Cpu>,
{
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let n = check_batch("input", &x, &self.input_shape)?;
        let (y, o) = self.module.eval(self.to_tensor(&x)?)?;
        Array2::from_shape_vec((n, o), y).map_err(|e| CoreError::Model(e.to_string()))
    }
}

impl<M, X> DifferentiableModel for DfdxModel<M, X>
where
    X: SampleShape,
    M: DfdxForward<X> + TensorCollection<f32, Cpu>,
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
        Ok(self.pullback_impl(x, output_weights)?)
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
        Ok(match self.factored {
            Some(f) => f(self, x, targets, loss, selection)?,
            None => self.per_sample_grads_by_rows(x, targets, loss, selection)?,
        })
    }
}
