//! The tract back end: any graph tract-onnx can run, outputs only.

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use crate::error::{OnnxError, Result};

/// Runs `f`, turning a panic inside tract (which some malformed graphs still cause, e.g. an
/// index out of bounds in its padding arithmetic for a `pads` attribute of the wrong length)
/// into [`OnnxError::Tract`]: a file must not be able to abort the caller.
fn guard<T>(action: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        Err(OnnxError::Tract {
            action: action.into(),
            message: format!("tract panicked ({message}); the model is malformed"),
        })
    })
}

/// Refuses what tract 0.23 cannot survive (it neither panics nor errors, but loops and
/// allocates until the process aborts, or runs for minutes): a `Transpose` whose `perm` is not
/// a permutation of `0..n` (duplicates or out-of-range axes), and pads, strides, dilations,
/// kernel sizes or groups outside `0..=2^16` (the importer's range). (A `BatchNormalization`
/// whose input has too low a rank, which tract reads out of bounds, needs the input's shape: it
/// is refused during tract's analysis by [`crate::tract_ops`], which replaces tract's operator.)
fn check_for_tract(model: &ModelProto) -> Result<()> {
    let Some(graph) = model.graph.as_ref() else {
        return Ok(());
    };
    // Window geometry in the range the importer accepts (tract runs the plan of a 2^40-wide
    // kernel or stride for minutes or loops, instead of refusing it).
    for node in &graph.node {
        for a in &node.attribute {
            let geometry = matches!(
                a.name.as_str(),
                "pads" | "strides" | "dilations" | "kernel_shape" | "group" | "output_padding"
            );
            let bad = a
                .ints
                .iter()
                .chain((a.i != 0).then_some(&a.i))
                .find(|&&v| !(0..=crate::import::MAX_EXTENT).contains(&v));
            if let (true, Some(v)) = (geometry, bad) {
                return Err(OnnxError::Tract {
                    action: "load the model".into(),
                    message: format!(
                        "node `{}` ({}) has {} = {v}, expected a value in 0..={}",
                        node.name,
                        node.op_type,
                        a.name,
                        crate::import::MAX_EXTENT
                    ),
                });
            }
        }
    }
    for node in graph.node.iter().filter(|n| n.op_type == "Transpose") {
        let Some(perm) = node.attribute.iter().find(|a| a.name == "perm") else {
            continue;
        };
        let n = perm.ints.len();
        let mut seen = vec![false; n];
        let ok = perm.ints.iter().all(|&p| {
            usize::try_from(p)
                .ok()
                .filter(|&p| p < n)
                .is_some_and(|p| !std::mem::replace(&mut seen[p], true))
        });
        if !ok {
            return Err(OnnxError::Tract {
                action: "load the model".into(),
                message: format!(
                    "node `{}` (Transpose) has perm {:?}, expected a permutation of 0..{n}",
                    node.name, perm.ints
                ),
            });
        }
    }
    Ok(())
}

/// The name of the graph input's batch `dim_param` when it is a plain identifier (`batch`,
/// `s77`, `batch_size`), else `N`.
pub(crate) fn batch_symbol(model: &ModelProto) -> String {
    let declared = model
        .graph
        .as_ref()
        .and_then(|g| crate::proto::graph_input(g).ok())
        .and_then(|i| i.dims)
        .and_then(|d| match d.first() {
            Some(crate::proto::Dim::Symbolic(s)) => Some(s.clone()),
            _ => None,
        });
    match declared {
        Some(s)
            if s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            s
        }
        _ => "N".into(),
    }
}

/// A tract plan for batches of samples (images in the model's own layout, or feature rows).
pub(crate) struct TractRunner {
    plan: Arc<TypedRunnableModel>,
    /// The batch size the model declares, if fixed: batches are run in chunks of it.
    fixed_batch: Option<usize>,
    /// Per-sample input dimensions in the model's layout (`[n_features]` or three image dims).
    dims: Vec<usize>,
}

impl std::fmt::Debug for TractRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractRunner")
            .field("fixed_batch", &self.fixed_batch)
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl TractRunner {
    /// Loads `model` (whose external data, if any, has been read in: see [`crate::external`]),
    /// with input facts `[batch, dims..]` (a symbolic batch unless the model fixes one), and
    /// optimises it.
    ///
    /// The symbolic batch is named after the graph input's own batch `dim_param` (`batch`,
    /// `s77`, ...; `N` when it has none), and the graph's output shapes and `value_info` are
    /// not read: they may use other symbols (an exporter's names for the batch, height or
    /// width), which tract would otherwise fail to unify with the input's concrete sizes.
    pub(crate) fn load(
        model: &ModelProto,
        dims: Vec<usize>,
        fixed_batch: Option<usize>,
        threads: usize,
    ) -> Result<Self> {
        guard("load the model", || {
            Self::load_unguarded(model, dims, fixed_batch, threads)
        })
    }

    fn load_unguarded(
        model: &ModelProto,
        dims: Vec<usize>,
        fixed_batch: Option<usize>,
        threads: usize,
    ) -> Result<Self> {
        check_for_tract(model)?;
        let mut onnx = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true);
        crate::tract_ops::register(&mut onnx.op_register);
        let mut inference = onnx
            .model_for_proto_model(model)
            .map_err(|e| OnnxError::tract("load the model", e))?;
        let batch: TDim = match fixed_batch {
            Some(b) => b.to_dim(),
            None => inference.sym(&batch_symbol(model)).to_dim(),
        };
        let shape: TVec<TDim> = std::iter::once(batch)
            .chain(dims.iter().map(|&d| d.to_dim()))
            .collect();
        inference = inference
            .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))
            .map_err(|e| OnnxError::tract("set the input shape", e))?;
        let typed = inference
            .into_optimized()
            .map_err(|e| OnnxError::tract("analyse and optimise the model", e))?;
        let executor = if threads > 1 {
            tract_linalg::multithread::Executor::multithread(threads)
        } else {
            tract_linalg::multithread::Executor::SingleThread
        };
        let options = RunOptions {
            executor: Some(executor),
            ..Default::default()
        };
        let plan = typed
            .into_runnable_with_options(&options)
            .map_err(|e| OnnxError::tract("plan the model", e))?;
        Ok(Self {
            plan,
            fixed_batch,
            dims,
        })
    }

    /// Runs `n` samples (`data` in the model's layout, `n * dims` values); returns the outputs
    /// flattened and the number of outputs per sample.
    pub(crate) fn run(&self, data: &[f32], n: usize) -> Result<(Vec<f32>, usize)> {
        let per_sample: usize = self.dims.iter().product();
        let chunk = self.fixed_batch.unwrap_or(n.max(1));
        let mut out = Vec::new();
        let mut k = None;
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            let rows = end - start;
            // A model with a fixed batch gets full batches: the last one is padded with zeros.
            let mut buf = data[start * per_sample..end * per_sample].to_vec();
            buf.resize(chunk * per_sample, 0.0);
            let shape: Vec<usize> = std::iter::once(chunk)
                .chain(self.dims.iter().copied())
                .collect();
            let input = Tensor::from_shape(&shape, &buf)
                .map_err(|e| OnnxError::tract("build the input tensor", e))?;
            let result = guard("run the model", || {
                self.plan
                    .run(tvec!(input.into_tvalue()))
                    .map_err(|e| OnnxError::tract("run the model", e))
            })?;
            let first = result.first().ok_or_else(|| OnnxError::Tract {
                action: "run the model".into(),
                message: "it returned no output".into(),
            })?;
            let view = first
                .to_plain_array_view::<f32>()
                .map_err(|e| OnnxError::tract("read the output as float32", e))?;
            let total = view.len();
            if total % chunk != 0 || view.shape().first() != Some(&chunk) {
                return Err(OnnxError::Tract {
                    action: "run the model".into(),
                    message: format!(
                        "the output has shape {:?} for a batch of {chunk}",
                        view.shape()
                    ),
                });
            }
            let per = total / chunk;
            if *k.get_or_insert(per) != per {
                return Err(OnnxError::Tract {
                    action: "run the model".into(),
                    message: "the number of outputs changed between batches".into(),
                });
            }
            out.extend(view.iter().take(rows * per).copied());
            start = end;
        }
        Ok((out, k.unwrap_or(0)))
    }
}
