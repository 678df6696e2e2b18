//! [`GraphModel`]: a graph with one data input and one output as an `xai-core` model.

use ndarray::{s, Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn};
use rayon::prelude::*;
use xai_core::{
    check_batch, CoreError, DifferentiableModel, GradBlock, Loss, ParamGroup, ParamSelection,
    PerSampleGrads, Predictor, Targets,
};

use crate::error::{GraphError, Result};
use crate::graph::{Graph, Tape, Wanted};
use crate::value::Value;

/// Samples per chunk of a batch: chunks run on rayon's threads, and a chunk's activations are
/// freed before the next one on the same thread starts (bounded memory for large batches).
pub const CHUNK: usize = 8;

/// A [`Graph`] with one data input of per-sample shape `input_shape` and (the first of) its
/// outputs read as `[n, n_outputs]`: a [`Predictor`] and a [`DifferentiableModel`].
///
/// Batches run in chunks of [`CHUNK`] samples (or of the graph's fixed batch size, the last
/// chunk padded with zeros) on rayon's threads; every chunk is evaluated independently, so a
/// sample's outputs and gradients do not depend on the rest of its batch. Per-sample parameter
/// gradients are one backward pass per sample, every parameter group a
/// [`GradBlock::Full`] block.
#[derive(Debug)]
pub struct GraphModel {
    graph: Graph,
    input_shape: Vec<usize>,
    n_outputs: usize,
    fixed_batch: Option<usize>,
}

impl GraphModel {
    /// Wraps `graph`, whose one input takes batches `[n, ..input_shape]` (exactly
    /// `fixed_batch` samples per call when the graph fixes its batch size). Runs one sample of
    /// zeros to learn the number of outputs and to check that the graph runs.
    ///
    /// Errors: a graph without exactly one input, an input shape with a zero dimension, or
    /// any error of the probe run.
    pub fn new(graph: Graph, input_shape: Vec<usize>, fixed_batch: Option<usize>) -> Result<Self> {
        if graph.n_inputs() != 1 {
            return Err(GraphError::Invalid(format!(
                "a model graph has one data input, this one has {}",
                graph.n_inputs()
            )));
        }
        if input_shape.contains(&0) || fixed_batch == Some(0) {
            return Err(GraphError::Invalid(format!(
                "the input shape {input_shape:?} (batch {fixed_batch:?}) has a zero dimension"
            )));
        }
        let mut model = GraphModel {
            graph,
            input_shape,
            n_outputs: 0,
            fixed_batch,
        };
        let b = fixed_batch.unwrap_or(1);
        let mut shape = vec![b];
        shape.extend_from_slice(&model.input_shape);
        let probe = ArrayD::<f32>::zeros(IxDyn(&shape));
        let out = model.run_chunk(probe.view())?;
        model.n_outputs = out.ncols();
        Ok(model)
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Samples per evaluated chunk.
    fn chunk(&self) -> usize {
        self.fixed_batch.unwrap_or(CHUNK)
    }

    /// The input of one chunk, padded with zero samples to the fixed batch size.
    fn chunk_input(&self, x: ArrayViewD<'_, f32>) -> Value {
        let n = x.shape()[0];
        match self.fixed_batch {
            Some(b) if b != n => {
                let mut shape = x.shape().to_vec();
                shape[0] = b;
                let mut padded = ArrayD::<f32>::zeros(IxDyn(&shape));
                padded.slice_axis_mut(Axis(0), (0..n).into()).assign(&x);
                Value::F32(padded)
            }
            _ => Value::F32(x.as_standard_layout().into_owned()),
        }
    }

    /// The output of a pass as `[n, k]` (the first `n` rows).
    fn output_rows(&self, out: &Value, n: usize) -> Result<Array2<f32>> {
        let a = out
            .f32("the graph's output")
            .map_err(|e| GraphError::Invalid(e.0))?;
        let rows = a.shape().first().copied().unwrap_or(0);
        if a.ndim() == 0 || rows < n {
            return Err(GraphError::Invalid(format!(
                "the graph's output has shape {:?} for a batch of {n}, expected [n, ...]",
                a.shape()
            )));
        }
        let k = a.len() / rows.max(1);
        let flat = a.as_standard_layout();
        let flat = flat
            .to_shape((rows, k))
            .map_err(|e| GraphError::Invalid(format!("the graph's output: {e}")))?;
        Ok(flat.slice(s![..n, ..]).to_owned())
    }

    fn run_chunk(&self, x: ArrayViewD<'_, f32>) -> Result<Array2<f32>> {
        let n = x.shape()[0];
        let outs = self.graph.run(vec![self.chunk_input(x)])?;
        let first = outs
            .first()
            .ok_or_else(|| GraphError::Invalid("the graph returned no output".into()))?;
        self.output_rows(first, n)
    }

    pub(crate) fn forward_chunk(&self, x: ArrayViewD<'_, f32>) -> Result<(Tape, Array2<f32>)> {
        let n = x.shape()[0];
        let tape = self.graph.forward(vec![self.chunk_input(x)], true)?;
        let out = tape
            .output(&self.graph, 0)
            .ok_or_else(|| GraphError::Invalid("the graph returned no output".into()))?;
        let rows = self.output_rows(out, n)?;
        Ok((tape, rows))
    }

    /// The output gradient of a chunk, shaped like the graph's output (padding rows zero).
    pub(crate) fn output_grad(&self, tape: &Tape, w: ArrayView2<'_, f32>) -> Result<ArrayD<f32>> {
        let out = tape
            .output(&self.graph, 0)
            .ok_or_else(|| GraphError::Invalid("the graph returned no output".into()))?;
        let shape = out.shape().to_vec();
        let rows = shape[0];
        let k = out.len() / rows.max(1);
        let mut g = Array2::<f32>::zeros((rows, k));
        g.slice_mut(s![..w.nrows(), ..]).assign(&w);
        g.into_shape_with_order(IxDyn(&shape))
            .map_err(|e| GraphError::Invalid(e.to_string()))
    }

    fn chunk_input_gradient(
        &self,
        tape: &Tape,
        w: ArrayView2<'_, f32>,
        x_shape: &[usize],
    ) -> Result<ArrayD<f32>> {
        let n = x_shape[0];
        let g = self.output_grad(tape, w)?;
        let grads = self.graph.backward(
            tape,
            self.first_output_grads(g),
            &Wanted {
                inputs: vec![0],
                params: vec![],
            },
        )?;
        Ok(match grads.inputs.into_iter().next().flatten() {
            Some(g) => g.slice_axis(Axis(0), (0..n).into()).to_owned(),
            None => ArrayD::zeros(IxDyn(x_shape)),
        })
    }

    pub(crate) fn first_output_grads(&self, g: ArrayD<f32>) -> Vec<Option<ArrayD<f32>>> {
        let mut v = vec![None; self.graph.n_outputs()];
        v[0] = Some(g);
        v
    }

    pub(crate) fn chunks(&self, n: usize) -> Vec<(usize, usize)> {
        let c = self.chunk();
        (0..n.div_ceil(c))
            .map(|k| (k * c, ((k + 1) * c).min(n)))
            .collect()
    }
}

fn concat_rows(parts: Vec<Array2<f32>>, n_outputs: usize) -> Array2<f32> {
    if parts.is_empty() {
        return Array2::zeros((0, n_outputs));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).expect("chunks of equal width")
}

fn concat_dyn(parts: Vec<ArrayD<f32>>, shape: &[usize]) -> ArrayD<f32> {
    if parts.is_empty() {
        return ArrayD::zeros(IxDyn(shape));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).expect("chunks of equal sample shape")
}

impl Predictor for GraphModel {
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let n = check_batch("input", &x, &self.input_shape)?;
        let parts: Vec<Array2<f32>> = self
            .chunks(n)
            .into_par_iter()
            .map(|(a, b)| self.run_chunk(x.slice_axis(Axis(0), (a..b).into())))
            .collect::<Result<_>>()?;
        Ok(concat_rows(parts, self.n_outputs))
    }
}

impl DifferentiableModel for GraphModel {
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: ArrayView2<'_, f32>,
    ) -> xai_core::Result<ArrayD<f32>> {
        let n = check_batch("input", &x, &self.input_shape)?;
        if output_weights.dim() != (n, self.n_outputs) {
            return Err(CoreError::shape(
                "output weights",
                output_weights.shape(),
                format!("[{n}, {}]", self.n_outputs),
            ));
        }
        let parts: Vec<ArrayD<f32>> = self
            .chunks(n)
            .into_par_iter()
            .map(|(a, b)| {
                let xc = x.slice_axis(Axis(0), (a..b).into());
                let (tape, _) = self.forward_chunk(xc.view())?;
                self.chunk_input_gradient(&tape, output_weights.slice(s![a..b, ..]), xc.shape())
            })
            .collect::<Result<_>>()?;
        Ok(concat_dyn(parts, x.shape()))
    }

    fn predict_and_input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> xai_core::Result<Array2<f32>>,
    ) -> xai_core::Result<(Array2<f32>, ArrayD<f32>)> {
        let n = check_batch("input", &x, &self.input_shape)?;
        let chunks = self.chunks(n);
        let passes: Vec<(Tape, Array2<f32>)> = chunks
            .par_iter()
            .map(|&(a, b)| self.forward_chunk(x.slice_axis(Axis(0), (a..b).into())))
            .collect::<Result<_>>()?;
        let outputs = concat_rows(
            passes.iter().map(|(_, o)| o.clone()).collect(),
            self.n_outputs,
        );
        let w = output_weights(outputs.view())?;
        if w.dim() != (n, self.n_outputs) {
            return Err(CoreError::shape(
                "output weights",
                w.shape(),
                format!("[{n}, {}]", self.n_outputs),
            ));
        }
        if w.iter().all(|v| *v == 0.0) {
            return Ok((outputs, ArrayD::zeros(x.raw_dim())));
        }
        let parts: Vec<ArrayD<f32>> = passes
            .par_iter()
            .zip(chunks.par_iter())
            .map(|((tape, _), &(a, b))| {
                let shape: Vec<usize> = std::iter::once(b - a)
                    .chain(self.input_shape.iter().copied())
                    .collect();
                self.chunk_input_gradient(tape, w.slice(s![a..b, ..]), &shape)
            })
            .collect::<Result<_>>()?;
        Ok((outputs, concat_dyn(parts, x.shape())))
    }

    fn parameter_groups(&self) -> Vec<ParamGroup> {
        self.graph
            .params()
            .iter()
            .map(|p| ParamGroup {
                name: p.name.clone(),
                shape: p.shape.clone(),
            })
            .collect()
    }

    fn per_sample_grads(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> xai_core::Result<PerSampleGrads> {
        let n = check_batch("input", &x, &self.input_shape)?;
        if targets.len() != n {
            return Err(CoreError::InvalidTargets(format!(
                "{} targets for {n} samples",
                targets.len()
            )));
        }
        let groups = self.parameter_groups();
        selection.validate(&groups)?;
        let chosen: Vec<usize> = (0..groups.len())
            .filter(|&k| selection.contains(&groups[k].name))
            .collect();
        let rows: Vec<Vec<ArrayD<f32>>> = (0..n)
            .into_par_iter()
            .map(|i| -> xai_core::Result<Vec<ArrayD<f32>>> {
                let xi = x.slice_axis(Axis(0), (i..i + 1).into());
                let (tape, out) = self.forward_chunk(xi)?;
                let (_, g) = loss.value_and_grad(out.view(), &targets.select(&[i])?)?;
                let grads = self.graph.backward(
                    &tape,
                    self.first_output_grads(self.output_grad(&tape, g.view())?),
                    &Wanted {
                        inputs: vec![],
                        params: chosen.clone(),
                    },
                )?;
                Ok(grads
                    .params
                    .into_iter()
                    .zip(&chosen)
                    .map(|(g, &k)| g.unwrap_or_else(|| ArrayD::zeros(IxDyn(&groups[k].shape))))
                    .collect())
            })
            .collect::<xai_core::Result<_>>()?;
        let blocks = chosen
            .iter()
            .enumerate()
            .map(|(j, &k)| {
                let len = groups[k].len();
                let mut values = Array2::<f32>::zeros((n, len));
                for (i, row) in rows.iter().enumerate() {
                    let flat = row[j].as_standard_layout();
                    values
                        .row_mut(i)
                        .iter_mut()
                        .zip(flat.iter())
                        .for_each(|(d, s)| *d = *s);
                }
                GradBlock::Full {
                    name: groups[k].name.clone(),
                    values,
                }
            })
            .collect();
        PerSampleGrads::new(blocks)
    }
}
