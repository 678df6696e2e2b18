//! Per-sample gradients of dense networks from one batched pass: [`Factored`].
//!
//! A dense layer `y = x Wᵀ + b` (dfdx's `Linear`, weight `[out, in]`) has the per-sample weight
//! gradient `δ_s ⊗ x_s`, where `δ_s = ∂L_s/∂y_s`. The losses of different samples are
//! independent, so the tape's summed gradient with respect to `y` holds every `δ_s` as a row:
//! one forward pass that records each dense layer's input and output, and one backward pass,
//! give every sample's gradient, stored factored ([`xai_core::GradBlock::Outer`]).

use dfdx::nn::modules::{Linear, ReLU, Sigmoid, Softmax, Tanh};
use dfdx::nn::Module;
use dfdx::prelude::{Const, Cpu, Dim, HasShape, NoneTape, OwnedTape, Shape, Tensor};
use dfdx::tensor::{CpuError, Gradients};
use ndarray::{Array2, ArrayView2, ArrayViewD};
use xai_core::adapter::{linear_weight_block, WeightLayout};
use xai_core::{check_batch, GradBlock, Loss, ParamSelection, PerSampleGrads, Targets};

use crate::model::{check_targets, run_backward, DfdxForward, DfdxModel, SampleShape};
use crate::DfdxError;

type Taped = OwnedTape<f32, Cpu>;

#[allow(clippy::type_complexity)]
/// What one dense layer recorded in a forward pass: its name, its inputs and (once the tape has
/// run) a way to read the gradient with respect to its outputs.
pub struct LinearTap {
    name: String,
    inputs: Array2<f32>,
    output_grad: Box<dyn Fn(&mut Gradients<f32, Cpu>) -> Result<Vec<f32>, CpuError>>,
    out: usize,
}

/// A dfdx module whose per-sample parameter gradients factor: made of `Linear` layers and
/// parameter-free activations (`ReLU`, `Tanh`, `Sigmoid`, `Softmax`) and
/// [`crate::conv::FlattenTo`], in tuples (nested tuples too).
///
/// `forward_recorded` is the module's forward pass that also records every dense layer's input
/// and output under its dfdx name (`path` is the module's own name, `""` at the top).
pub trait Factored<Input> {
    /// The module's output.
    type Output;

    /// The forward pass, recording every dense layer in `taps`.
    fn forward_recorded(
        &self,
        x: Input,
        path: &str,
        taps: &mut Vec<LinearTap>,
    ) -> Result<Self::Output, CpuError>;
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

impl<const I: usize, const O: usize> Factored<Tensor<(usize, Const<I>), f32, Cpu, Taped>>
    for Linear<I, O, f32, Cpu>
{
    type Output = Tensor<(usize, Const<O>), f32, Cpu, Taped>;

    fn forward_recorded(
        &self,
        x: Tensor<(usize, Const<I>), f32, Cpu, Taped>,
        path: &str,
        taps: &mut Vec<LinearTap>,
    ) -> Result<Self::Output, CpuError> {
        let n = x.shape().0;
        let inputs =
            Array2::from_shape_vec((n, I), x.as_vec()).map_err(|_| CpuError::WrongNumElements)?;
        let y = self.try_forward(x)?;
        let ghost: Tensor<(usize, Const<O>), f32, Cpu, NoneTape> = y.retaped();
        taps.push(LinearTap {
            name: path.to_string(),
            inputs,
            output_grad: Box::new(move |g: &mut Gradients<f32, Cpu>| {
                g.try_alloc_for(&ghost)?;
                Ok(g.get(&ghost).as_vec())
            }),
            out: O,
        });
        Ok(y)
    }
}

macro_rules! activation {
    ($($t:ident),*) => {$(
        impl<S: Shape> Factored<Tensor<S, f32, Cpu, Taped>> for $t {
            type Output = Tensor<S, f32, Cpu, Taped>;

            fn forward_recorded(
                &self,
                x: Tensor<S, f32, Cpu, Taped>,
                _path: &str,
                _taps: &mut Vec<LinearTap>,
            ) -> Result<Self::Output, CpuError> {
                self.try_forward(x)
            }
        }
    )*};
}
activation!(ReLU, Tanh, Sigmoid, Softmax);

impl<S: Shape<Concrete = [usize; 4]>, const N: usize> Factored<Tensor<S, f32, Cpu, Taped>>
    for crate::conv::FlattenTo<N>
{
    type Output = Tensor<(usize, Const<N>), f32, Cpu, Taped>;

    fn forward_recorded(
        &self,
        x: Tensor<S, f32, Cpu, Taped>,
        _path: &str,
        _taps: &mut Vec<LinearTap>,
    ) -> Result<Self::Output, CpuError> {
        self.try_forward(x)
    }
}

macro_rules! tuple {
    ($(($idx:tt, $name:ident, $prev:ty)),+ ; $last:ident) => {
        impl<Input, $($name),+> Factored<Input> for ($($name,)+)
        where
            A: Factored<Input>,
            $($name: Factored<$prev>,)+
        {
            type Output = $last::Output;

            #[allow(non_snake_case)]
            fn forward_recorded(
                &self,
                x: Input,
                path: &str,
                taps: &mut Vec<LinearTap>,
            ) -> Result<Self::Output, CpuError> {
                $(let x = self.$idx.forward_recorded(x, &join(path, stringify!($idx)), taps)?;)+
                Ok(x)
            }
        }
    };
}
tuple!((0, A, Input); A);
tuple!((0, A, Input), (1, B, A::Output); B);
tuple!((0, A, Input), (1, B, A::Output), (2, C, B::Output); C);
tuple!((0, A, Input), (1, B, A::Output), (2, C, B::Output), (3, D, C::Output); D);
tuple!((0, A, Input), (1, B, A::Output), (2, C, B::Output), (3, D, C::Output), (4, E, D::Output); E);
tuple!((0, A, Input), (1, B, A::Output), (2, C, B::Output), (3, D, C::Output), (4, E, D::Output), (5, F, E::Output); F);

/// [`DfdxModel`]'s factored per-sample gradients: one recorded forward pass, the loss gradient
/// with respect to the outputs, one backward pass.
pub(crate) fn factored_per_sample<M, X, O>(
    model: &DfdxModel<M, X>,
    x: ArrayViewD<'_, f32>,
    targets: &Targets,
    loss: &Loss,
    selection: &ParamSelection,
) -> Result<PerSampleGrads, DfdxError>
where
    X: SampleShape,
    O: Dim,
    M: DfdxForward<X>
        + dfdx::nn::modules::TensorCollection<f32, Cpu>
        + Factored<Tensor<X::Batch, f32, Cpu, Taped>, Output = Tensor<(usize, O), f32, Cpu, Taped>>,
{
    use xai_core::DifferentiableModel;
    let n = check_batch("input", &x, xai_core::Predictor::input_shape(model))?;
    check_targets(targets, n)?;
    selection.validate(&model.parameter_groups())?;
    let xt = model.to_tensor(&x)?;
    let mut taps = Vec::new();
    let y =
        model
            .module()
            .forward_recorded(dfdx::prelude::Trace::leaky_trace(&xt), "", &mut taps)?;
    let mut w = |out: ArrayView2<'_, f32>| Ok(loss.value_and_grad(out, targets)?.1);
    let (_, grads) = run_backward(y, &mut w)?;
    let mut grads = grads.unwrap_or_else(Gradients::leaky);
    let mut blocks = Vec::new();
    for tap in taps {
        let deltas = Array2::from_shape_vec((n, tap.out), (tap.output_grad)(&mut grads)?)
            .map_err(|_| CpuError::WrongNumElements)?;
        let (wname, bname) = (join(&tap.name, "weight"), join(&tap.name, "bias"));
        if selection.contains(&wname) {
            blocks.push(linear_weight_block(
                wname,
                tap.inputs,
                deltas.clone(),
                WeightLayout::OutIn,
            )?);
        }
        if selection.contains(&bname) {
            blocks.push(GradBlock::Full {
                name: bname,
                values: deltas,
            });
        }
    }
    Ok(PerSampleGrads::new(blocks)?)
}
