//! Replacements for tract-onnx operators that a malformed file can drive into undefined
//! behaviour, registered in place of tract's own before a model is parsed.
//!
//! tract-onnx 0.23.9's `BatchNormalization` reads its input's channel dimension with
//! `get_unchecked(1)` (tract-core `ops/nn/data_formats.rs`, `BaseDataShape::c`) both in its shape
//! inference rules and when it is wired into the typed model, without checking the input's rank:
//! an input of rank 0 or 1 reads out of bounds (a non-unwinding abort in debug builds, undefined
//! behaviour in release builds), which no `catch_unwind` can contain. [`CheckedBatchNorm`] is
//! the same operator (same rules, same lowering to `x * slope + intercept`) with the rank and
//! the statistics' shapes checked first.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::math;

/// Registers the checked operators in `register`, replacing tract's.
pub(crate) fn register(register: &mut OnnxOpRegister) {
    register.insert("BatchNormalization", batch_normalization);
}

/// Parses a `BatchNormalization` node as tract does (`epsilon`, default 1e-5; the deprecated
/// `spatial = 0` refused) into a [`CheckedBatchNorm`].
fn batch_normalization(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let epsilon = node.get_attr_opt("epsilon")?.unwrap_or(1e-5);
    let spatial = node.get_attr_opt("spatial")?.unwrap_or(1i64);
    if spatial != 1 {
        bail!(
            "BatchNormalization: attribute 'spatial' is not supported (deprecated by ONNX \
             operator set 9)"
        )
    }
    let name = if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    };
    Ok((expand(CheckedBatchNorm { name, epsilon }), vec![]))
}

/// The error for an input of rank below 2.
fn bad_rank(name: &str, rank: usize) -> TractError {
    format_err!(
        "node `{name}` (BatchNormalization) has an input of rank {rank}, expected rank >= 2 \
         ([N, C, ...]: batch, channels, then any spatial dimensions)"
    )
}

/// Inference-mode batch normalisation over axis 1 (NCHW and its lower- and higher-rank
/// relatives), checking the input's rank and the statistics' shapes before reading them.
#[derive(Debug, Clone)]
pub(crate) struct CheckedBatchNorm {
    /// The node's name, for errors.
    name: String,
    /// Added to the variance.
    epsilon: f32,
}

impl CheckedBatchNorm {
    /// `(slope, intercept)` of `x * slope + intercept`, each of shape `const_shape`, in `T`.
    fn slope_and_intercept<T>(
        &self,
        c: usize,
        params: [&Tensor; 4],
        const_shape: &[usize],
    ) -> TractResult<(Tensor, Tensor)>
    where
        T: Datum + Copy + tract_num_traits::Float,
        f32: tract_num_traits::AsPrimitive<T>,
    {
        use tract_num_traits::AsPrimitive;
        let what = ["scale", "B", "input_mean", "input_var"];
        let mut views = Vec::with_capacity(4);
        for (t, what) in params.into_iter().zip(what) {
            // tract (and the importer) also read `[C, 1, ...]`: C values, in order.
            if t.rank() == 0 || t.len() != c || t.shape()[0] != c {
                bail!(
                    "node `{}` (BatchNormalization) has {what} of shape {:?}, expected a 1-D \
                     tensor of length C = {c} (the input's dimension 1)",
                    self.name,
                    t.shape()
                );
            }
            let t = t.cast_to::<T>()?.into_owned();
            views.push(
                t.to_plain_array_view::<T>()?
                    .iter()
                    .copied()
                    .collect::<Vec<T>>(),
            );
        }
        let eps: T = self.epsilon.as_();
        let (scale, beta, mean, var) = (&views[0], &views[1], &views[2], &views[3]);
        let mut slope = Vec::with_capacity(c);
        let mut inter = Vec::with_capacity(c);
        for i in 0..c {
            let denominator = (var[i] + eps).sqrt();
            slope.push(scale[i] / denominator);
            inter.push(beta[i] - (mean[i] * scale[i]) / denominator);
        }
        Ok((
            Tensor::from_shape(const_shape, &slope)?,
            Tensor::from_shape(const_shape, &inter)?,
        ))
    }
}

impl Expansion for CheckedBatchNorm {
    fn name(&self) -> StaticName {
        "CheckedBatchNorm".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 5)?;
        check_output_arity(outputs, 1)?;
        s.equals_all(tract_onnx::tract_hir::wrap!(
            &outputs[0].datum_type,
            &inputs[0].datum_type,
            &inputs[1].datum_type,
            &inputs[2].datum_type,
            &inputs[3].datum_type,
            &inputs[4].datum_type
        ))?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        s.equals_all(tract_onnx::tract_hir::wrap!(
            &inputs[1].shape,
            &inputs[2].shape,
            &inputs[3].shape,
            &inputs[4].shape
        ))?;
        s.given(&inputs[1].rank, move |_, rank| {
            if rank == 0 {
                bail!(
                    "node `{}` (BatchNormalization) has scalar statistics, expected 1-D tensors \
                     of length C (the input's dimension 1)",
                    self.name
                );
            }
            Ok(())
        })?;
        s.given(&inputs[0].shape, move |s, shape| {
            if shape.len() < 2 {
                return Err(bad_rank(&self.name, shape.len()));
            }
            s.equals(&inputs[1].shape[0], shape[1].clone())
        })?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        if inputs.len() != 5 {
            bail!(
                "node `{}` (BatchNormalization) has {} inputs, expected 5 (X, scale, B, \
                 input_mean, input_var)",
                self.name,
                inputs.len()
            );
        }
        let x = target.outlet_fact(inputs[0])?.clone();
        let rank = x.shape.len();
        if rank < 2 {
            return Err(bad_rank(&self.name, rank));
        }
        let params = (1..5)
            .map(|i| Ok(target.outlet_fact(inputs[i])?.konst.clone()))
            .collect::<TractResult<TVec<Option<Arc<Tensor>>>>>()?;
        let (Some(scale), Some(beta), Some(mean), Some(var)) =
            (&params[0], &params[1], &params[2], &params[3])
        else {
            bail!(
                "node `{}` (BatchNormalization): its statistics are not constants (only \
                 inference with stored statistics is supported)",
                self.name
            )
        };
        let c = x.shape[1].to_usize()?;
        let mut const_shape = tvec!(1; rank);
        const_shape[1] = c;
        let params = [&**scale, &**beta, &**mean, &**var];
        let (slope, inter) = match x.datum_type {
            DatumType::F64 => self.slope_and_intercept::<f64>(c, params, &const_shape)?,
            DatumType::F32 => self.slope_and_intercept::<f32>(c, params, &const_shape)?,
            DatumType::F16 => self.slope_and_intercept::<f16>(c, params, &const_shape)?,
            dt => bail!(
                "node `{}` (BatchNormalization) has an input of type {dt:?}, expected a float type",
                self.name
            ),
        };
        let slope = target.add_const(prefix.to_string() + ".slope", slope)?;
        let inter = target.add_const(prefix.to_string() + ".inter", inter)?;
        let wire = target.wire_node(format!("{prefix}.mul"), math::mul(), &[slope, inputs[0]])?;
        target.wire_node(prefix, math::add(), &[inter, wire[0]])
    }
}
