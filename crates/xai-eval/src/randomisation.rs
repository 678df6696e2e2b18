//! The model-parameter randomisation test (Adebayo et al. 2018; Quantus' `MPRT`): layers are
//! re-initialised one more at a time from the output layer down (cascading), the explanation is
//! recomputed on each randomised model, and its similarity to the original map is measured. A
//! method whose maps stay similar does not depend on what the model learnt.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::DifferentiableModel;
use xai_models::Network;

use crate::curves::{Curve, CurveScore, Direction};
use crate::error::{EvalError, Result};
use crate::hyperparams::MprtValidParams;
use crate::perturb::similarity;
use crate::road::stream_seed;

/// A model whose parameter groups can be re-initialised layer by layer, from the output down.
pub trait Randomizable: Send + Sync {
    /// The names of the randomisable layers (parameter groups), from the output layer to the
    /// input layer (Quantus' `top_down` order).
    fn randomizable_layers(&self) -> Vec<String>;

    /// A copy of the model whose first `layers_from_top` layers of
    /// [`Randomizable::randomizable_layers`] are re-initialised. Layer `i` draws from its own
    /// stream of `seed`, so the cascade is consistent: the model with `k + 1` layers randomised
    /// has the same random weights in its first `k` as the model with `k`.
    fn with_randomized(
        &self,
        layers_from_top: usize,
        seed: u64,
    ) -> Result<Box<dyn DifferentiableModel>>;
}

/// `xai-models`' networks (and so ONNX models the importer reads, through
/// `OnnxModel::network`): each layer with parameters is re-initialised as torch's
/// `reset_parameters` does, which Quantus calls — convolution and dense weights and biases
/// `U(−1/√fan_in, 1/√fan_in)` (`fan_in` = weights per output), batch-norm scale 1 and shift 0
/// (its running statistics are kept; torch resets those too).
impl Randomizable for Network {
    fn randomizable_layers(&self) -> Vec<String> {
        self.layers()
            .iter()
            .rev()
            .filter(|l| l.layer.params().is_some())
            .map(|l| l.name.clone())
            .collect()
    }

    fn with_randomized(
        &self,
        layers_from_top: usize,
        seed: u64,
    ) -> Result<Box<dyn DifferentiableModel>> {
        let names = self.randomizable_layers();
        if layers_from_top > names.len() {
            return Err(EvalError::Randomize(format!(
                "{layers_from_top} layers asked, the network has {} with parameters",
                names.len()
            )));
        }
        let mut net = self.clone();
        let chosen = &names[..layers_from_top];
        for l in net.layers_mut() {
            let Some(i) = chosen.iter().position(|n| *n == l.name) else {
                continue;
            };
            let is_bn = matches!(l.layer, xai_models::Layer::BatchNorm(_));
            let (w, b) = l.layer.params_mut().expect("layers with parameters");
            if is_bn {
                w.iter_mut().for_each(|v| *v = 1.0);
                b.iter_mut().for_each(|v| *v = 0.0);
                continue;
            }
            let fan_in = (w.len() / b.len().max(1)).max(1);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut rng = StdRng::seed_from_u64(stream_seed(seed, i as u64));
            w.iter_mut().for_each(|v| *v = rng.gen_range(-bound..bound));
            b.iter_mut().for_each(|v| *v = rng.gen_range(-bound..bound));
        }
        Ok(Box::new(net))
    }
}

/// An explanation method that can be run on another model (MPRT re-runs it on each randomised
/// model): a batch and one target per input in, one map per input out. Closures
/// `Fn(&dyn DifferentiableModel, ArrayViewD<f32>, &[usize]) -> Result<ArrayD<f32>>` are model
/// explainers.
pub trait ModelExplainer: Send + Sync {
    /// Explains every input of the batch for its target on `model`.
    fn explain(
        &self,
        model: &dyn DifferentiableModel,
        x: ArrayViewD<'_, f32>,
        targets: &[usize],
    ) -> Result<ArrayD<f32>>;
}

impl<F> ModelExplainer for F
where
    F: Fn(&dyn DifferentiableModel, ArrayViewD<'_, f32>, &[usize]) -> Result<ArrayD<f32>>
        + Send
        + Sync,
{
    fn explain(
        &self,
        model: &dyn DifferentiableModel,
        x: ArrayViewD<'_, f32>,
        targets: &[usize],
    ) -> Result<ArrayD<f32>> {
        self(model, x, targets)
    }
}

/// The gradient of the target output with respect to the input (saliency without absolute
/// value), a [`ModelExplainer`] for MPRT and the tests.
pub fn gradient_explainer(
    model: &dyn DifferentiableModel,
    x: ArrayViewD<'_, f32>,
    targets: &[usize],
) -> Result<ArrayD<f32>> {
    let n = x.shape().first().copied().unwrap_or(0);
    let mut w = ndarray::Array2::<f32>::zeros((n, model.n_outputs()));
    for (i, t) in targets.iter().enumerate().take(n) {
        if *t >= model.n_outputs() {
            return Err(EvalError::Target {
                target: *t,
                n_outputs: model.n_outputs(),
            });
        }
        w[[i, *t]] = 1.0;
    }
    Ok(model.input_gradient(x, w.view())?)
}

/// MPRT, lower is better: for `k = 1..=L` layers randomised from the output down, the
/// similarity (Spearman by default, of absolute maps) between `map` and the explanation of `x`
/// on the randomised model. The curve's `x` is `k`, its value the mean over the layers (Quantus'
/// `return_average_correlation`, whose mean also takes in the `"original"` entry, a similarity of
/// 1 when the map is the model's own explanation; here only the randomised layers count).
pub fn mprt(
    model: &dyn Randomizable,
    explainer: &dyn ModelExplainer,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    params: &MprtValidParams,
) -> Result<CurveScore> {
    xai_core::check_finite("attribution map", &map)?;
    let layers = model.randomizable_layers();
    if layers.is_empty() {
        return Err(EvalError::Randomize(
            "the model has no layers with parameters".into(),
        ));
    }
    let prep = |v: f32| -> f64 {
        if params.abs {
            f64::from(v).abs()
        } else {
            f64::from(v)
        }
    };
    let a: Vec<f64> = map.iter().copied().map(prep).collect();
    let mut shape = vec![1];
    shape.extend_from_slice(x.shape());
    let xb = x
        .to_owned()
        .into_shape_with_order(IxDyn(&shape))
        .expect("one more axis");
    let mut y = Vec::with_capacity(layers.len());
    for k in 1..=layers.len() {
        let randomized = model.with_randomized(k, params.seed)?;
        let e = explainer.explain(randomized.as_ref(), xb.view(), &[target])?;
        if e.len() != a.len() {
            return Err(EvalError::Shape {
                what: "the explainer's output",
                got: e.shape().to_vec(),
                expected: format!("[1, ..], {} values like the map", a.len()),
            });
        }
        let b: Vec<f64> = e.iter().copied().map(prep).collect();
        y.push(similarity(params.similarity, &a, &b));
    }
    let value = y.iter().sum::<f64>() / y.len() as f64;
    Ok(CurveScore {
        curve: Curve {
            x: (1..=layers.len()).map(|k| k as f64).collect(),
            y,
        },
        value,
        direction: Direction::LowerIsBetter,
    })
}
