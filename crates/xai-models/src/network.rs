//! A sequential network of [`Layer`]s with batched forward/backward passes, implementing the
//! `xai-core` traits.

use ndarray::{Array2, Array4, ArrayD, ArrayView2, ArrayView4, ArrayViewD, Ix4};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xai_core::{
    check_batch, CoreError, DifferentiableModel, GradBlock, Loss, OutputKind, ParamGroup,
    ParamSelection, PerSampleGrads, Predictor, Targets,
};

use crate::gemm::{matmul, Op};
use crate::layers::{Cache, ConvKernels, Dims, KernelCache, Layer, LayerGrads, Mode};
use crate::ops;
use crate::ModelError;

/// A layer with the name its parameters are known by (`"<name>.weight"`, `"<name>.bias"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedLayer {
    /// Layer name, unique within the network.
    pub name: String,
    /// The layer.
    pub layer: Layer,
}

/// A sequential network over images `[n, c, h, w]` (NCHW at the API; NHWC inside), or a graph
/// of layers (residual `Add`s, channel `Concat`s; built with [`Network::graph`]) evaluated in
/// topological order.
///
/// It is a [`Predictor`] (outputs `[n, n_outputs]`; a network that ends in an image, such as an
/// autoencoder, outputs it flattened in `[c, h, w]` order) and a [`DifferentiableModel`] with
/// batched per-sample gradients: a dense layer's per-sample weight gradient is returned factored
/// ([`GradBlock::Outer`]: its input and its output delta), a convolution's as one small matrix
/// product per sample over the im2col patches (`colsₙᵀ · δₙ`). It is a
/// [`xai_core::LayerModel`] too: each layer's output and its gradient, by the layer's name
/// (Grad-CAM).
///
/// Deserialising rebuilds the network through [`Network::new`] / [`Network::graph`], so its
/// layer sizes are derived and checked again: a file cannot hand over a network that skipped
/// those checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Network {
    name: String,
    input_shape: [usize; 3],
    layers: Vec<NamedLayer>,
    /// For a graph: the nodes each layer reads (node 0 is the network's input, node `j + 1` the
    /// output of layer `j`). `None` for a sequential chain, which runs through the chain path
    /// (in-place activations, no bookkeeping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inputs: Option<Vec<Vec<usize>>>,
    #[serde(skip)]
    dims: Vec<Dims>,
    /// Packed kernels of the stride-1 convolutions, built on first use; replaced by empty
    /// slots whenever the layers can change (`compute_dims`, `layers_mut`,
    /// `param_slices_mut`, `set_params`, `buffers_mut`).
    #[serde(skip)]
    kernels: KernelCache,
}

impl Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Network::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Network {
    /// Reads the fields, then rebuilds the network with [`Network::new`] (a chain) or
    /// [`Network::graph`], which derive every layer's sizes and check that the layers fit.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Network::deserialize(d)?;
        match raw.inputs {
            Some(inputs) => Network::graph(raw.name, raw.input_shape, raw.layers, inputs),
            None => Network::new(raw.name, raw.input_shape, raw.layers),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Everything a backward pass needs from a forward pass over a batch: the activations after
/// every layer and each layer's cache, kept per chunk of samples (see [`crate::parallel`]).
/// Made by [`Network::forward_trace`].
pub struct Trace {
    n: usize,
    /// `(first sample, trace of the chunk)`, in sample order.
    chunks: Vec<(usize, ChunkTrace)>,
    /// The outputs of all chunks one after another, when there is more than one chunk.
    output: Vec<f32>,
}

impl Trace {
    /// Number of samples.
    pub fn n_samples(&self) -> usize {
        self.n
    }

    /// The network's output, `[n, n_outputs]` (internal NHWC order flattened).
    pub fn output_flat(&self) -> &[f32] {
        match self.chunks.as_slice() {
            [(_, one)] => one.output_flat(),
            _ => &self.output,
        }
    }
}

/// The trace of one chunk of samples, run through the layers on one thread.
struct ChunkTrace {
    n: usize,
    acts: Vec<Vec<f32>>,
    caches: Vec<Cache>,
}

impl ChunkTrace {
    fn output_flat(&self) -> &[f32] {
        self.acts.last().map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// Keeps the first `rows` samples (every activation holds its samples one after another).
    /// Only for traces without per-batch caches (evaluation mode, no im2col patches).
    fn truncate(&mut self, rows: usize) {
        if rows >= self.n || self.n == 0 {
            return;
        }
        for act in &mut self.acts {
            let per_sample = act.len() / self.n;
            act.truncate(rows * per_sample);
        }
        self.n = rows;
    }
}

/// Gradients from [`Network::backward`].
#[derive(Debug, Clone)]
pub struct Gradients {
    /// Gradient with respect to the input batch, `[n, c, h, w]`, when it was asked for.
    pub input: Option<Array4<f32>>,
    /// Gradient of the summed loss for each parameter group, in
    /// [`Network::parameter_groups`] order (weight then bias of each layer).
    pub params: Vec<Vec<f32>>,
}

/// The result of [`Network::train_gradients`].
#[derive(Debug, Clone)]
pub struct TrainGradients {
    /// The outputs of the training pass (with dropout), `[n, n_outputs]`.
    pub outputs: Array2<f32>,
    /// Each sample's loss.
    pub losses: Vec<f32>,
    /// Gradients of the mean loss over the batch, in [`Network::parameter_groups`] order.
    pub params: Vec<Vec<f32>>,
}

/// What a backward pass computes for the parameters.
enum ParamMode<'a> {
    None,
    /// Summed over the samples, every layer on its own (the whole-batch pass before chunking;
    /// only tests still ask for it).
    #[cfg_attr(not(test), allow(dead_code))]
    Summed,
    /// Summed, except that dense layers hand back their inputs and output gradients
    /// ([`BackwardOut::dense`]), whose product the caller forms once for all chunks.
    SummedDenseFactored,
    PerSample(&'a ParamSelection),
}

struct BackwardOut {
    /// The gradient with respect to the node the pass was asked for (the network's input for
    /// input gradients), internal order.
    input: Option<Vec<f32>>,
    /// `(layer, inputs [n, in], output gradients [n, out])` of dense layers under
    /// [`ParamMode::SummedDenseFactored`].
    dense: Vec<(usize, Vec<f32>, Vec<f32>)>,
    summed: Vec<(usize, LayerGrads)>,
    per_sample: Vec<(usize, Vec<GradBlock>)>,
}

impl Network {
    /// Builds a network over inputs of shape `[c, h, w]`, checking that every layer fits the
    /// output of the one before and that names are unique.
    pub fn new(
        name: impl Into<String>,
        input_shape: [usize; 3],
        layers: Vec<NamedLayer>,
    ) -> Result<Self, ModelError> {
        let mut net = Self {
            name: name.into(),
            input_shape,
            layers,
            inputs: None,
            dims: Vec::new(),
            kernels: KernelCache::default(),
        };
        net.compute_dims()?;
        Ok(net)
    }

    /// Builds a graph network: layer `i` reads the nodes `inputs[i]`, where node 0 is the
    /// network's input and node `j + 1` is the output of layer `j`. Layers must come in
    /// topological order (layer `i` reads only nodes `0..=i`); the last layer's output is the
    /// network's output. [`Layer::Binary`] reads two nodes, [`Layer::Concat`] one or more, every
    /// other layer one. A graph in which every layer reads the one before is stored as a chain.
    pub fn graph(
        name: impl Into<String>,
        input_shape: [usize; 3],
        layers: Vec<NamedLayer>,
        inputs: Vec<Vec<usize>>,
    ) -> Result<Self, ModelError> {
        let chain = inputs.iter().enumerate().all(|(i, v)| v == &[i]);
        let mut net = Self {
            name: name.into(),
            input_shape,
            layers,
            inputs: (!chain).then_some(inputs),
            dims: Vec::new(),
            kernels: KernelCache::default(),
        };
        net.compute_dims()?;
        Ok(net)
    }

    /// The nodes layer `i` reads (see [`Network::graph`]); `[i]` in a chain.
    pub fn layer_inputs(&self, i: usize) -> Vec<usize> {
        match &self.inputs {
            Some(v) => v.get(i).cloned().unwrap_or_default(),
            None => vec![i],
        }
    }

    /// Whether the network is a graph with branches (not a sequential chain).
    pub fn is_graph(&self) -> bool {
        self.inputs.is_some()
    }

    /// The network with `layer` appended, reading the current output (a graph stays a graph).
    pub fn with_layer(&self, layer: NamedLayer) -> Result<Self, ModelError> {
        let mut layers = self.layers.clone();
        let top = layers.len();
        layers.push(layer);
        match &self.inputs {
            None => Self::new(self.name.clone(), self.input_shape, layers),
            Some(v) => {
                let mut inputs = v.clone();
                inputs.push(vec![top]);
                Self::graph(self.name.clone(), self.input_shape, layers, inputs)
            }
        }
    }

    /// Recomputes the per-layer dimensions (needed after deserialising).
    pub fn compute_dims(&mut self) -> Result<(), ModelError> {
        self.kernels = KernelCache::new(self.layers.len());
        let [c, h, w] = self.input_shape;
        let mut dims = vec![Dims::new(h, w, c)];
        if dims[0].check_len("the network's input")? == 0 {
            return Err(ModelError::Architecture(format!(
                "input shape {:?}: every size must be at least 1",
                self.input_shape
            )));
        }
        if let Some(inputs) = &self.inputs {
            if inputs.len() != self.layers.len() {
                return Err(ModelError::Architecture(format!(
                    "{} input lists for {} layers",
                    inputs.len(),
                    self.layers.len()
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.layers.iter().enumerate() {
            if !names.insert(l.name.as_str()) {
                return Err(ModelError::Architecture(format!(
                    "layer name `{}` is used twice",
                    l.name
                )));
            }
            let d = match &self.inputs {
                None => {
                    if l.layer.arity() != Some(1) {
                        return Err(ModelError::Architecture(format!(
                            "layer `{}` ({:?}) reads several inputs; build the network with \
                             Network::graph",
                            l.name, l.layer
                        )));
                    }
                    l.layer.output_dims(*dims.last().expect("non-empty"))?
                }
                Some(inputs) => {
                    let ins = &inputs[i];
                    if let Some(&bad) = ins.iter().find(|&&j| j > i) {
                        return Err(ModelError::Architecture(format!(
                            "layer {i} (`{}`) reads node {bad}, which is not computed before it \
                             (layers must be in topological order; node j + 1 is layer j's output)",
                            l.name
                        )));
                    }
                    let in_dims: Vec<Dims> = ins.iter().map(|&j| dims[j]).collect();
                    l.layer
                        .output_dims_multi(&in_dims)
                        .map_err(|e| ModelError::Architecture(format!("layer `{}`: {e}", l.name)))?
                }
            };
            if d.check_len(&format!("the output of layer `{}`", l.name))? == 0 {
                return Err(ModelError::Architecture(format!(
                    "layer `{}` outputs {}x{}x{} = no values per sample; expected at least one",
                    l.name, d.h, d.w, d.c
                )));
            }
            dims.push(d);
        }
        self.dims = dims;
        Ok(())
    }

    /// The network's name (e.g. `"alibi_cnn"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The layers.
    pub fn layers(&self) -> &[NamedLayer] {
        &self.layers
    }

    /// Mutable access to the layers (e.g. to load weights). Shapes must not change.
    pub fn layers_mut(&mut self) -> &mut [NamedLayer] {
        self.kernels = KernelCache::new(self.layers.len());
        &mut self.layers
    }

    /// Total number of trainable parameters.
    pub fn n_params(&self) -> usize {
        self.layers.iter().map(|l| l.layer.n_params()).sum()
    }

    /// Output dimensions of each layer (index 0 is the input).
    pub fn dims(&self) -> &[Dims] {
        &self.dims
    }

    /// Parameter slices in [`Network::parameter_groups`] order.
    pub fn param_slices(&self) -> Vec<&[f32]> {
        let mut out = Vec::new();
        for l in &self.layers {
            if let Some((w, b)) = l.layer.params() {
                out.push(w);
                out.push(b);
            }
        }
        out
    }

    /// Mutable parameter vectors in [`Network::parameter_groups`] order.
    pub fn param_slices_mut(&mut self) -> Vec<&mut Vec<f32>> {
        self.kernels = KernelCache::new(self.layers.len());
        let mut out = Vec::new();
        for l in &mut self.layers {
            if let Some((w, b)) = l.layer.params_mut() {
                out.push(w);
                out.push(b);
            }
        }
        out
    }

    fn groups(&self) -> Vec<ParamGroup> {
        let mut out = Vec::new();
        for l in &self.layers {
            if let Some((ws, bs)) = l.layer.param_shapes() {
                out.push(ParamGroup {
                    name: format!("{}.weight", l.name),
                    shape: ws,
                });
                out.push(ParamGroup {
                    name: format!("{}.bias", l.name),
                    shape: bs,
                });
            }
        }
        out
    }

    fn out_len(&self) -> usize {
        self.dims.last().map(|d| d.len()).unwrap_or(0)
    }

    /// Converts an NCHW batch to the internal NHWC layout.
    fn to_internal(&self, x: ArrayView4<'_, f32>) -> Vec<f32> {
        if self.input_shape[0] == 1 {
            x.iter().copied().collect()
        } else {
            x.permuted_axes([0, 2, 3, 1]).iter().copied().collect()
        }
    }

    /// Converts an internal NHWC gradient of the input back to NCHW.
    fn input_from_internal(&self, v: Vec<f32>, n: usize) -> Array4<f32> {
        let [c, h, w] = self.input_shape;
        let nhwc = Array4::from_shape_vec((n, h, w, c), v).expect("sized from dims");
        if c == 1 {
            nhwc.into_shape_with_order((n, c, h, w))
                .expect("same length")
        } else {
            nhwc.permuted_axes([0, 3, 1, 2])
                .as_standard_layout()
                .to_owned()
        }
    }

    /// Converts the internal output (NHWC flattened) to `[c, h, w]`-flattened rows, and back.
    fn output_order(&self, v: &[f32], n: usize, to_chw: bool) -> Vec<f32> {
        let d = *self.dims.last().expect("non-empty");
        if d.c == 1 || (d.h == 1 && d.w == 1) {
            return v.to_vec();
        }
        let mut out = vec![0.0; v.len()];
        let plane = d.h * d.w;
        for s in 0..n {
            for p in 0..plane {
                for ch in 0..d.c {
                    let hwc = s * d.len() + p * d.c + ch;
                    let chw = s * d.len() + ch * plane + p;
                    if to_chw {
                        out[chw] = v[hwc];
                    } else {
                        out[hwc] = v[chw];
                    }
                }
            }
        }
        out
    }

    fn check_input<'a>(
        &self,
        x: &'a ArrayViewD<'_, f32>,
    ) -> Result<ArrayView4<'a, f32>, CoreError> {
        check_batch("input", x, &self.input_shape)?;
        x.view()
            .into_dimensionality::<Ix4>()
            .map_err(|e| CoreError::Model(e.to_string()))
    }

    /// Checks that an NCHW batch has the network's per-sample shape.
    fn check_nchw(&self, x: &ArrayView4<'_, f32>) -> Result<(), ModelError> {
        let [c, h, w] = self.input_shape;
        if x.shape()[1..] != self.input_shape {
            return Err(CoreError::shape("input", x.shape(), format!("[n, {c}, {h}, {w}]")).into());
        }
        Ok(())
    }

    /// Forward pass of an NCHW batch that keeps everything a backward pass needs.
    ///
    /// `rng` switches dropout on (training); `None` evaluates. The batch runs in chunks of
    /// [`crate::parallel::CHUNK`] samples on rayon's threads, each chunk through the layers on
    /// one thread (im2col patches for the weight gradients, direct convolutions where only
    /// outputs and input gradients are needed); chunk boundaries depend only on the batch size,
    /// and each chunk draws its dropout masks from its own generator, seeded from `rng` in chunk
    /// order, so the trace is the same bit for bit whatever the number of threads. A network
    /// with a layer whose training pass mixes samples ([`Layer::mixes_samples_in_training`])
    /// runs a training pass as one whole-batch chunk.
    pub fn forward_trace(
        &self,
        x: ArrayView4<'_, f32>,
        rng: Option<&mut StdRng>,
    ) -> Result<Trace, ModelError> {
        self.check_nchw(&x)?;
        let n = x.shape()[0];
        let whole_batch = rng.is_some()
            && self
                .layers
                .iter()
                .any(|l| l.layer.mixes_samples_in_training());
        let ranges = if whole_batch {
            vec![(0, n)]
        } else {
            crate::parallel::chunk_ranges(n)
        };
        // One dropout seed per chunk, drawn in chunk order.
        let seeds: Option<Vec<u64>> = rng.map(|r| ranges.iter().map(|_| r.gen()).collect());
        let run = |k: usize, (start, end): (usize, usize)| {
            let mut chunk_rng = seeds.as_ref().map(|s| StdRng::seed_from_u64(s[k]));
            let chunk = x.slice(ndarray::s![start..end, .., .., ..]);
            Ok((start, self.chunk_trace(chunk, chunk_rng.as_mut(), true)?))
        };
        let chunks = if whole_batch {
            // The layers may use the threads themselves (the pass before chunking).
            vec![run(0, ranges[0])?]
        } else {
            run_chunks(&ranges, run)?
        };
        let output = if chunks.len() > 1 {
            chunks
                .iter()
                .flat_map(|(_, c)| c.output_flat().iter().copied())
                .collect()
        } else {
            Vec::new()
        };
        Ok(Trace { n, chunks, output })
    }

    /// The forward pass of one chunk of samples, on this thread (its layers may use rayon's
    /// threads unless the caller runs serially); without `for_params` the trace serves input
    /// gradients only (convolutions keep no im2col patches and may run as direct convolutions).
    ///
    /// Every layer's training- and evaluation-mode forward pass is dispatched here (chain) and
    /// in [`Network::graph_layer_forward`] (graph), the backward passes in
    /// [`Network::backward_impl`] / [`Network::backward_graph`].
    fn chunk_trace(
        &self,
        x: ArrayView4<'_, f32>,
        rng: Option<&mut StdRng>,
        for_params: bool,
    ) -> Result<ChunkTrace, ModelError> {
        self.chunk_trace_keeping(x, rng, for_params, None)
    }

    /// [`Network::chunk_trace`] that also keeps node `keep`'s activation in the trace: a
    /// chain's elementwise layer otherwise works in place on its input, leaving that node's slot
    /// empty (a graph keeps every node anyway).
    fn chunk_trace_keeping(
        &self,
        x: ArrayView4<'_, f32>,
        rng: Option<&mut StdRng>,
        for_params: bool,
        keep: Option<usize>,
    ) -> Result<ChunkTrace, ModelError> {
        self.check_nchw(&x)?;
        let shape = x.shape();
        let n = shape[0];
        let mut mode = match rng {
            Some(r) => Mode::Train(r),
            None => Mode::Eval,
        };
        let mut acts = vec![self.to_internal(x)];
        let mut caches = Vec::with_capacity(self.layers.len());
        if let Some(inputs) = &self.inputs {
            for i in 0..self.layers.len() {
                let (out, cache) =
                    self.graph_layer_forward(i, &inputs[i], &acts, n, &mut mode, for_params)?;
                acts.push(out);
                caches.push(cache);
            }
            return Ok(ChunkTrace { n, acts, caches });
        }
        for (i, l) in self.layers.iter().enumerate() {
            // ReLU, dropout and flatten never need their input again, so they work in place,
            // unless that input is the output of a layer whose backward pass reads its output,
            // or the node the caller keeps.
            let in_place = l.layer.is_elementwise()
                && keep != Some(i)
                && (i == 0 || !self.layers[i - 1].layer.backward_reads_output());
            let (out, cache) = if in_place {
                let mut buf = std::mem::take(acts.last_mut().expect("input"));
                let cache = l.layer.forward_in_place(&mut buf, &mut mode);
                (buf, cache)
            } else {
                l.layer.forward(
                    acts.last().expect("input"),
                    n,
                    self.dims[i],
                    &mut mode,
                    for_params,
                    self.kernels.get(i).unwrap_or(&ConvKernels::default()),
                )?
            };
            acts.push(out);
            caches.push(cache);
        }
        Ok(ChunkTrace { n, acts, caches })
    }

    /// Forward pass of a graph's layer `i`, reading the nodes `ins` of `acts`.
    #[allow(clippy::too_many_arguments)]
    fn graph_layer_forward(
        &self,
        i: usize,
        ins: &[usize],
        acts: &[Vec<f32>],
        n: usize,
        mode: &mut Mode<'_>,
        for_params: bool,
    ) -> Result<(Vec<f32>, Cache), ModelError> {
        Ok(match &self.layers[i].layer {
            Layer::Binary(op) => (op.forward(&acts[ins[0]], &acts[ins[1]]), Cache::None),
            Layer::Concat => {
                let xs: Vec<&[f32]> = ins.iter().map(|&j| acts[j].as_slice()).collect();
                let ds: Vec<Dims> = ins.iter().map(|&j| self.dims[j]).collect();
                (ops::concat_forward(&xs, n, &ds), Cache::None)
            }
            layer => layer.forward(
                &acts[ins[0]],
                n,
                self.dims[ins[0]],
                mode,
                for_params,
                self.kernels.get(i).unwrap_or(&ConvKernels::default()),
            )?,
        })
    }

    /// Evaluation of a graph on one chunk: each node's activation is dropped after its last
    /// reader, and elementwise layers work in place on an input nobody reads later.
    fn graph_eval_chunk(
        &self,
        inputs: &[Vec<usize>],
        x: Vec<f32>,
        n: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let n_nodes = self.layers.len() + 1;
        let mut last_use = vec![0usize; n_nodes];
        for (i, ins) in inputs.iter().enumerate() {
            for &j in ins {
                last_use[j] = last_use[j].max(i);
            }
        }
        let mut acts: Vec<Vec<f32>> = Vec::with_capacity(n_nodes);
        acts.push(x);
        let mut i = 0;
        while i < self.layers.len() {
            let ins = &inputs[i];
            // A convolution read only by a ReLU read only by a 2x2 max pooling: one pass.
            if i + 2 < self.layers.len()
                && ins.len() == 1
                && inputs[i + 1] == [i + 1]
                && inputs[i + 2] == [i + 2]
                && last_use[i + 1] == i + 1
                && last_use[i + 2] == i + 2
            {
                if let Some(out) = self.conv_relu_max_pool(i, &acts[ins[0]], n)? {
                    if last_use[ins[0]] == i {
                        crate::buffers::recycle(std::mem::take(&mut acts[ins[0]]));
                    }
                    acts.push(Vec::new());
                    acts.push(Vec::new());
                    acts.push(out);
                    i += 3;
                    continue;
                }
            }
            let l = &self.layers[i];
            let out = if l.layer.is_elementwise() && last_use[ins[0]] == i {
                let mut buf = std::mem::take(&mut acts[ins[0]]);
                l.layer.forward_in_place(&mut buf, &mut Mode::Eval);
                buf
            } else {
                self.graph_layer_forward(i, ins, &acts, n, &mut Mode::Eval, false)?
                    .0
            };
            for &j in ins {
                if last_use[j] == i {
                    crate::buffers::recycle(std::mem::take(&mut acts[j]));
                }
            }
            acts.push(out);
            i += 1;
        }
        Ok(acts.pop().unwrap_or_default())
    }

    /// Layers `i..i + 3` as one `Conv2d -> Relu -> MaxPool2d` pass on `x` when they are such a
    /// run that fuses ([`Layer::forward_conv_relu_max_pool`]), for inference; `None` otherwise.
    fn conv_relu_max_pool(
        &self,
        i: usize,
        x: &[f32],
        n: usize,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        let layers = [
            &self.layers[i].layer,
            &self.layers[i + 1].layer,
            &self.layers[i + 2].layer,
        ];
        match self.kernels.get(i) {
            Some(kernels) => Layer::forward_conv_relu_max_pool(layers, x, n, self.dims[i], kernels),
            None => Layer::forward_conv_relu_max_pool(
                layers,
                x,
                n,
                self.dims[i],
                &ConvKernels::default(),
            ),
        }
    }

    /// Forward pass without keeping intermediate activations, in chunks of samples that run on
    /// rayon's threads (see [`crate::parallel`]).
    fn forward_eval(&self, x: ArrayView4<'_, f32>) -> Result<Vec<f32>, ModelError> {
        let run = |(start, end): (usize, usize)| -> Result<Vec<f32>, ModelError> {
            let chunk = x.slice(ndarray::s![start..end, .., .., ..]);
            if let Some(inputs) = &self.inputs {
                let act = self.graph_eval_chunk(inputs, self.to_internal(chunk), end - start)?;
                let out = self.output_order(&act, end - start, true);
                crate::buffers::recycle(act);
                return Ok(out);
            }
            let mut act = self.to_internal(chunk);
            let mut i = 0;
            while i < self.layers.len() {
                if i + 2 < self.layers.len() {
                    if let Some(out) = self.conv_relu_max_pool(i, &act, end - start)? {
                        crate::buffers::recycle(std::mem::replace(&mut act, out));
                        i += 3;
                        continue;
                    }
                }
                let l = &self.layers[i];
                if l.layer.is_elementwise() {
                    l.layer.forward_in_place(&mut act, &mut Mode::Eval);
                } else {
                    let next = l
                        .layer
                        .forward(
                            &act,
                            end - start,
                            self.dims[i],
                            &mut Mode::Eval,
                            false,
                            self.kernels.get(i).unwrap_or(&ConvKernels::default()),
                        )?
                        .0;
                    crate::buffers::recycle(std::mem::replace(&mut act, next));
                }
                i += 1;
            }
            let out = self.output_order(&act, end - start, true);
            crate::buffers::recycle(act);
            Ok(out)
        };
        map_chunks(x.shape()[0], run)
    }

    /// Evaluates the network on an NCHW batch, `[n, n_outputs]`.
    pub fn forward(&self, x: ArrayView4<'_, f32>) -> Result<Array2<f32>, ModelError> {
        let n = x.shape()[0];
        self.check_nchw(&x)?;
        let out = self.forward_eval(x)?;
        Ok(Array2::from_shape_vec((n, self.out_len()), out).expect("sized from dims"))
    }

    /// Whether layer `i`'s parameter gradients are asked for.
    fn needs_params(&self, i: usize, params: &ParamMode<'_>) -> bool {
        let l = &self.layers[i];
        l.layer.n_params() > 0
            && match params {
                ParamMode::None => false,
                ParamMode::Summed | ParamMode::SummedDenseFactored => true,
                ParamMode::PerSample(sel) => {
                    sel.contains(&format!("{}.weight", l.name))
                        || sel.contains(&format!("{}.bias", l.name))
                }
            }
    }

    /// Parameter gradients of layer `i` (summed or per sample, as `params` says) from its input
    /// `x` (of dimensions `input`), cache and output gradient `dy`, pushed onto `out`.
    #[allow(clippy::too_many_arguments)]
    fn param_grads(
        &self,
        i: usize,
        x: &[f32],
        cache: &Cache,
        dy: &[f32],
        n: usize,
        input: Dims,
        params: &ParamMode<'_>,
        out: &mut BackwardOut,
    ) -> Result<(), ModelError> {
        let l = &self.layers[i];
        match params {
            ParamMode::SummedDenseFactored if matches!(l.layer, Layer::Dense(_)) => {
                out.dense.push((i, x.to_vec(), dy.to_vec()));
            }
            ParamMode::Summed | ParamMode::SummedDenseFactored => {
                if let Some(g) = l.layer.backward_params(x, cache, dy, n, input)? {
                    out.summed.push((i, g));
                }
            }
            ParamMode::PerSample(sel) => {
                let wname = format!("{}.weight", l.name);
                let bname = format!("{}.bias", l.name);
                let mut blocks = Vec::new();
                let full = |name: String, v: Vec<f32>| GradBlock::Full {
                    name,
                    values: Array2::from_shape_vec((n, v.len() / n.max(1)), v).expect("sized"),
                };
                match &l.layer {
                    Layer::Dense(d) => {
                        if sel.contains(&wname) {
                            blocks.push(GradBlock::Outer {
                                name: wname,
                                inputs: Array2::from_shape_vec((n, d.in_features), x.to_vec())
                                    .expect("sized"),
                                deltas: Array2::from_shape_vec((n, d.out_features), dy.to_vec())
                                    .expect("sized"),
                            });
                        }
                        if sel.contains(&bname) {
                            blocks.push(full(bname, dy.to_vec()));
                        }
                    }
                    Layer::Conv2d(c) => {
                        let (dw, db) = Layer::conv_per_sample(c, x, cache, dy, n, input)?;
                        if sel.contains(&wname) {
                            blocks.push(full(wname, dw));
                        }
                        if sel.contains(&bname) {
                            blocks.push(full(bname, db));
                        }
                    }
                    layer => {
                        if let Some((dw, db)) = layer.per_sample_params(x, dy, n, input)? {
                            if sel.contains(&wname) {
                                blocks.push(full(wname, dw));
                            }
                            if sel.contains(&bname) {
                                blocks.push(full(bname, db));
                            }
                        }
                    }
                }
                out.per_sample.push((i, blocks));
            }
            ParamMode::None => {}
        }
        Ok(())
    }

    /// The backward pass of one chunk from `grad_output`, the gradient with respect to node
    /// `top` (internal order). `grad_node` asks for the gradient with respect to a node at or
    /// below `top`, returned in [`BackwardOut::input`]: node 0 is the network's input, node
    /// `j + 1` the output of layer `j` (Grad-CAM's layer gradient). The pass goes down to that
    /// node or to the lowest layer whose parameter gradients `params` asks for, whichever is
    /// lower.
    fn backward_impl(
        &self,
        trace: &ChunkTrace,
        grad_output: Vec<f32>,
        top: usize,
        grad_node: Option<usize>,
        params: ParamMode<'_>,
    ) -> Result<BackwardOut, ModelError> {
        if let Some(b) = grad_node.filter(|&b| b > top) {
            return Err(ModelError::Internal(format!(
                "the gradient of node {b} was asked from a pass that starts at node {top}"
            )));
        }
        if let Some(inputs) = &self.inputs {
            return self.backward_graph(inputs, trace, grad_output, top, grad_node, params);
        }
        let n = trace.n;
        let mut out = BackwardOut {
            input: None,
            dense: Vec::new(),
            summed: Vec::new(),
            per_sample: Vec::new(),
        };
        // The lowest node whose gradient is needed decides how far the pass goes.
        let lowest_params = (0..top).find(|&i| self.needs_params(i, &params));
        let lowest = match (grad_node, lowest_params) {
            (Some(b), Some(p)) => b.min(p),
            (Some(b), None) => b,
            (None, Some(p)) => p,
            (None, None) => return Ok(out),
        };
        let mut dy = grad_output;
        // The node's gradient is kept as a copy when the pass goes on below it.
        if grad_node == Some(top) && top > lowest {
            out.input = Some(dy.clone());
        }
        for i in (lowest..top).rev() {
            let l = &self.layers[i];
            if self.needs_params(i, &params) {
                self.param_grads(
                    i,
                    &trace.acts[i],
                    &trace.caches[i],
                    &dy,
                    n,
                    self.dims[i],
                    &params,
                    &mut out,
                )?;
            }
            if i > lowest || grad_node == Some(lowest) {
                if l.layer.is_elementwise() {
                    l.layer
                        .backward_in_place(&trace.acts[i + 1], &trace.caches[i], &mut dy);
                } else {
                    dy = l.layer.backward_input(
                        &trace.acts[i],
                        &trace.acts[i + 1],
                        &trace.caches[i],
                        &dy,
                        n,
                        self.dims[i],
                        self.kernels.get(i).unwrap_or(&ConvKernels::default()),
                    )?;
                }
                if grad_node == Some(i) && i > lowest {
                    out.input = Some(dy.clone());
                }
            }
        }
        if grad_node == Some(lowest) {
            out.input = Some(dy);
        }
        Ok(out)
    }

    /// [`Network::backward_impl`] for a graph: output gradients flow from each layer to the
    /// nodes it reads (summed where a node has several readers), in reverse topological order,
    /// only into nodes whose gradient something below needs.
    fn backward_graph(
        &self,
        inputs: &[Vec<usize>],
        trace: &ChunkTrace,
        grad_output: Vec<f32>,
        top: usize,
        grad_node: Option<usize>,
        params: ParamMode<'_>,
    ) -> Result<BackwardOut, ModelError> {
        let n = trace.n;
        let mut out = BackwardOut {
            input: None,
            dense: Vec::new(),
            summed: Vec::new(),
            per_sample: Vec::new(),
        };
        // needed[j]: the gradient with respect to node j is needed.
        let mut needed = vec![false; top + 1];
        if let Some(b) = grad_node {
            needed[b] = true;
        }
        for i in 0..top {
            needed[i + 1] = needed[i + 1]
                || self.needs_params(i, &params)
                || inputs[i].iter().any(|&j| needed[j]);
        }
        if !needed[top] {
            return Ok(out);
        }
        let zeros = |j: usize| vec![0.0; n * self.dims[j].len()];
        let mut dys: Vec<Option<Vec<f32>>> = vec![None; top + 1];
        dys[top] = Some(grad_output);
        for i in (0..top).rev() {
            // Every reader of node i + 1 comes after layer i: its gradient is complete here.
            if grad_node == Some(i + 1) {
                let below = self.needs_params(i, &params) || inputs[i].iter().any(|&j| needed[j]);
                let g = if below {
                    dys[i + 1].clone()
                } else {
                    dys[i + 1].take()
                };
                out.input = Some(g.unwrap_or_else(|| zeros(i + 1)));
            }
            if !needed[i + 1] {
                continue;
            }
            let Some(dy) = dys[i + 1].take() else {
                continue;
            };
            let ins = &inputs[i];
            let l = &self.layers[i];
            if self.needs_params(i, &params) {
                self.param_grads(
                    i,
                    &trace.acts[ins[0]],
                    &trace.caches[i],
                    &dy,
                    n,
                    self.dims[ins[0]],
                    &params,
                    &mut out,
                )?;
            }
            let need: Vec<bool> = ins.iter().map(|&j| needed[j]).collect();
            if !need.iter().any(|&b| b) {
                continue;
            }
            let grads: Vec<Option<Vec<f32>>> = match &l.layer {
                Layer::Binary(op) => op
                    .backward(
                        &trace.acts[ins[0]],
                        &trace.acts[ins[1]],
                        &dy,
                        [need[0], need[1]],
                    )
                    .into(),
                Layer::Concat => {
                    let ds: Vec<Dims> = ins.iter().map(|&j| self.dims[j]).collect();
                    ops::concat_backward(&dy, n, &ds, &need)
                }
                layer => vec![Some(layer.backward_input(
                    &trace.acts[ins[0]],
                    &trace.acts[i + 1],
                    &trace.caches[i],
                    &dy,
                    n,
                    self.dims[ins[0]],
                    self.kernels.get(i).unwrap_or(&ConvKernels::default()),
                )?)],
            };
            for (&j, g) in ins.iter().zip(grads) {
                let Some(g) = g else { continue };
                match &mut dys[j] {
                    Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, b)| *a += b),
                    slot @ None => *slot = Some(g),
                }
            }
        }
        if grad_node == Some(0) {
            out.input = Some(dys[0].take().unwrap_or_else(|| zeros(0)));
        }
        Ok(out)
    }

    /// Backward pass from `grad_output` (`[n, n_outputs]`, the gradient of a loss with respect to
    /// the outputs, in [`Predictor`] output order) through a [`Trace`]: summed parameter gradients
    /// and, if `need_input`, the gradient with respect to the input.
    ///
    /// Each chunk of the trace runs its backward pass on one of rayon's threads; the chunks'
    /// parameter gradients are then added in chunk order (see [`sum_in_order`]), so the result
    /// is the same bit for bit whatever the number of threads.
    pub fn backward(
        &self,
        trace: &Trace,
        grad_output: ArrayView2<'_, f32>,
        need_input: bool,
    ) -> Result<Gradients, ModelError> {
        let n = trace.n;
        if grad_output.dim() != (n, self.out_len()) {
            return Err(CoreError::shape(
                "output gradient",
                grad_output.shape(),
                format!("[{n}, {}]", self.out_len()),
            )
            .into());
        }
        let dy = self.output_order(&grad_output.iter().copied().collect::<Vec<_>>(), n, false);
        self.backward_chunks(trace, &dy, self.out_len(), self.layers.len(), need_input)
    }

    /// Like [`Network::backward`], but starting below the last `skip_top` layers: `grad` is the
    /// gradient with respect to the output of layer `len - skip_top - 1` (e.g. the logits under a
    /// final softmax, for a fused softmax cross-entropy), which must be a flat vector per sample.
    pub fn backward_below(
        &self,
        trace: &Trace,
        skip_top: usize,
        grad: ArrayView2<'_, f32>,
        need_input: bool,
    ) -> Result<Gradients, ModelError> {
        let n = trace.n;
        let top = self.layers.len().checked_sub(skip_top).ok_or_else(|| {
            ModelError::Internal(format!(
                "cannot skip {skip_top} of {} layers",
                self.layers.len()
            ))
        })?;
        let len = self.dims[top].len();
        if grad.dim() != (n, len) || (self.dims[top].h, self.dims[top].w) != (1, 1) {
            return Err(
                CoreError::shape("gradient", grad.shape(), format!("[{n}, {len}] (flat)")).into(),
            );
        }
        let dy: Vec<f32> = grad.iter().copied().collect();
        self.backward_chunks(trace, &dy, len, top, need_input)
    }

    /// The backward pass of every chunk of `trace` from `dy` (internal order, `per_sample`
    /// values per sample, the gradient with respect to node `top`), with summed parameter
    /// gradients added over the chunks in chunk order.
    fn backward_chunks(
        &self,
        trace: &Trace,
        dy: &[f32],
        per_sample: usize,
        top: usize,
        need_input: bool,
    ) -> Result<Gradients, ModelError> {
        let n = trace.n;
        let ranges: Vec<(usize, usize)> = trace
            .chunks
            .iter()
            .map(|(start, c)| (*start, start + c.n))
            .collect();
        let run = |k: usize, (start, end): (usize, usize)| {
            let chunk = &trace.chunks[k].1;
            let dy = dy[start * per_sample..end * per_sample].to_vec();
            self.backward_impl(
                chunk,
                dy,
                top,
                need_input.then_some(0),
                ParamMode::SummedDenseFactored,
            )
        };
        let parts = if ranges.len() == 1 && trace.n > crate::parallel::CHUNK {
            // A whole-batch trace (see `forward_trace`): its layers use the threads themselves.
            vec![run(0, ranges[0])?]
        } else {
            run_chunks(&ranges, run)?
        };
        self.reduce_chunks(parts, n, need_input)
    }

    /// The gradients of a batch from its chunks' backward passes (in chunk order): input
    /// gradients concatenated, parameter gradients added in chunk order ([`sum_in_order`]) or,
    /// for dense layers, formed as one product over all chunks ([`dense_grads`]).
    fn reduce_chunks(
        &self,
        parts: Vec<BackwardOut>,
        n: usize,
        need_input: bool,
    ) -> Result<Gradients, ModelError> {
        let mut input = need_input.then(|| Vec::with_capacity(n * self.dims[0].len()));
        let mut per_chunk: Vec<Vec<(usize, LayerPart)>> = Vec::with_capacity(parts.len());
        for part in parts {
            if let Some(acc) = &mut input {
                let g = part.input.ok_or_else(|| {
                    ModelError::Internal("backward pass returned no input gradient".into())
                })?;
                acc.extend_from_slice(&g);
            }
            let mut layers: Vec<(usize, LayerPart)> = part
                .summed
                .into_iter()
                .map(|(i, g)| (i, LayerPart::Summed(g)))
                .chain(
                    part.dense
                        .into_iter()
                        .map(|(i, x, dy)| (i, LayerPart::Dense(x, dy))),
                )
                .collect();
            layers.sort_by_key(|(i, _)| *i);
            per_chunk.push(layers);
        }
        let mut params: Vec<Vec<f32>> = Vec::new();
        let n_layers = per_chunk.first().map_or(0, |c| c.len());
        for p in 0..n_layers {
            let (i, first) = &per_chunk[0][p];
            match (first, &self.layers[*i].layer) {
                (LayerPart::Dense(..), Layer::Dense(d)) => {
                    let mut xs = Vec::with_capacity(per_chunk.len());
                    let mut dys = Vec::with_capacity(per_chunk.len());
                    for c in &per_chunk {
                        let LayerPart::Dense(x, dy) = &c[p].1 else {
                            return Err(ModelError::Internal(
                                "chunks returned different gradient kinds".into(),
                            ));
                        };
                        xs.push(x.as_slice());
                        dys.push(dy.as_slice());
                    }
                    let (w, b) = dense_grads(d.in_features, d.out_features, &xs, &dys);
                    params.push(w);
                    params.push(b);
                }
                _ => {
                    let mut weights = Vec::with_capacity(per_chunk.len());
                    let mut biases = Vec::with_capacity(per_chunk.len());
                    for c in &per_chunk {
                        let LayerPart::Summed(g) = &c[p].1 else {
                            return Err(ModelError::Internal(
                                "chunks returned different gradient kinds".into(),
                            ));
                        };
                        weights.push(g.weight.as_slice());
                        biases.push(g.bias.as_slice());
                    }
                    params.push(sum_in_order(&weights)?);
                    params.push(sum_in_order(&biases)?);
                }
            }
        }
        Ok(Gradients {
            input: input.map(|v| self.input_from_internal(v, n)),
            params,
        })
    }

    /// One training pass over a batch: for each chunk of samples (see [`Network::forward_trace`]),
    /// the forward pass with dropout, the loss, and the backward pass straight away, so that a
    /// chunk's activations are freed (and their memory reused by the next chunk) before the
    /// next one runs; then the chunks' gradients are added in chunk order. Returns the outputs
    /// `[n, n_outputs]`, each sample's loss, and the gradients of the **mean** loss over the
    /// batch in [`Network::parameter_groups`] order (what Adam takes).
    ///
    /// When the network ends in a softmax and `loss` is cross-entropy on probabilities, the
    /// gradient is taken through the fused softmax-cross-entropy (`p·Σt − t` at the logits), as
    /// Keras does. The dropout masks, and so the result, equal those of
    /// [`Network::forward_trace`] with the same `rng` followed by [`Network::backward`] (or
    /// [`Network::backward_below`] for the fused loss); a network with a layer that mixes
    /// samples in training ([`Layer::mixes_samples_in_training`]) takes that path, with the
    /// whole batch as one chunk.
    pub fn train_gradients(
        &self,
        x: ArrayView4<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        rng: &mut StdRng,
    ) -> Result<TrainGradients, ModelError> {
        self.check_nchw(&x)?;
        let n = x.shape()[0];
        if targets.len() != n {
            return Err(CoreError::InvalidTargets(format!(
                "{} targets for a batch of {n} samples",
                targets.len()
            ))
            .into());
        }
        let n_out = self.out_len();
        let fused = matches!(loss, Loss::CrossEntropy(OutputKind::Probabilities))
            && matches!(self.layers.last().map(|l| &l.layer), Some(Layer::Softmax));
        let top = if fused {
            self.layers.len() - 1
        } else {
            self.layers.len()
        };
        let scale = 1.0 / n.max(1) as f32;
        // The output gradient of rows `start..end` with outputs `outputs` (predictor order), in
        // the internal order of node `top`, and the rows' losses.
        let output_grad = |outputs: &Array2<f32>,
                           (start, end): (usize, usize)|
         -> Result<(Vec<f32>, Vec<f32>), ModelError> {
            let rows = end - start;
            let t = if start == 0 && end == n {
                targets.clone()
            } else {
                targets.select(&(start..end).collect::<Vec<_>>())?
            };
            let (values, mut grad) = loss.value_and_grad(outputs.view(), &t)?;
            let dy = if fused {
                // d(CE ∘ softmax)/dz = p·Σt − t at the logits z, taken below the softmax layer
                // (exact even where p underflows to 0); a flat output, so no reordering.
                let t = t.to_dense(n_out)?;
                let mut g = outputs.clone();
                for (mut g, t_row) in g.rows_mut().into_iter().zip(t.rows()) {
                    let t_sum = t_row.sum();
                    g.zip_mut_with(&t_row, |p, tv| *p = (*p * t_sum - tv) * scale);
                }
                g.into_iter().collect()
            } else {
                grad *= scale;
                self.output_order(&grad.iter().copied().collect::<Vec<_>>(), rows, false)
            };
            Ok((dy, values.to_vec()))
        };
        let outputs_of = |flat: &[f32], rows: usize| {
            Array2::from_shape_vec((rows, n_out), self.output_order(flat, rows, true))
                .map_err(|e| ModelError::Internal(e.to_string()))
        };
        if n == 0
            || self
                .layers
                .iter()
                .any(|l| l.layer.mixes_samples_in_training())
        {
            let trace = self.forward_trace(x, Some(rng))?;
            let outputs = outputs_of(trace.output_flat(), n)?;
            let (dy, losses) = output_grad(&outputs, (0, n))?;
            let per_sample = self.dims[top].len();
            let grads = self.backward_chunks(&trace, &dy, per_sample, top, false)?;
            return Ok(TrainGradients {
                outputs,
                losses,
                params: grads.params,
            });
        }
        let ranges = crate::parallel::chunk_ranges(n);
        // One dropout seed per chunk, drawn in chunk order (as `forward_trace` does).
        let seeds: Vec<u64> = ranges.iter().map(|_| rng.gen()).collect();
        let run = |k: usize, (start, end): (usize, usize)| {
            let mut chunk_rng = StdRng::seed_from_u64(seeds[k]);
            let chunk = x.slice(ndarray::s![start..end, .., .., ..]);
            let trace = self.chunk_trace(chunk, Some(&mut chunk_rng), true)?;
            let outputs = outputs_of(trace.output_flat(), end - start)?;
            let (dy, losses) = output_grad(&outputs, (start, end))?;
            let back = self.backward_impl(&trace, dy, top, None, ParamMode::SummedDenseFactored)?;
            Ok((outputs, losses, back))
        };
        let parts = run_chunks(&ranges, run)?;
        let mut outputs = Vec::with_capacity(n * n_out);
        let mut losses = Vec::with_capacity(n);
        let mut backs = Vec::with_capacity(parts.len());
        for (o, l, b) in parts {
            outputs.extend(o.iter().copied());
            losses.extend(l);
            backs.push(b);
        }
        let grads = self.reduce_chunks(backs, n, false)?;
        Ok(TrainGradients {
            outputs: Array2::from_shape_vec((n, n_out), outputs)
                .map_err(|e| ModelError::Internal(e.to_string()))?,
            losses,
            params: grads.params,
        })
    }

    /// Moves every [`ops::BatchNorm`] layer's running mean and variance towards the batch
    /// statistics that a training forward pass ([`Network::forward_trace`] with an rng)
    /// recorded in `trace`, with PyTorch's update `r ← (1 − momentum) r + momentum · b` (the
    /// running variance from the unbiased batch variance). [`crate::train()`] calls it after
    /// every step with [`ops::BatchNorm::DEFAULT_MOMENTUM`]. Returns the number of layers
    /// updated (0 for a trace made in evaluation mode).
    pub fn update_batch_norm_statistics(
        &mut self,
        trace: &Trace,
        momentum: f32,
    ) -> Result<usize, ModelError> {
        let mut updated = 0;
        for (_, chunk) in &trace.chunks {
            if chunk.caches.len() != self.layers.len() {
                return Err(ModelError::Internal(format!(
                    "a trace of {} layers for a network of {}",
                    chunk.caches.len(),
                    self.layers.len()
                )));
            }
            for (l, cache) in self.layers.iter_mut().zip(&chunk.caches) {
                if let (Layer::BatchNorm(bn), Cache::BatchStats(stats)) = (&mut l.layer, cache) {
                    // A training pass over a network with batch norm is one chunk
                    // (`Layer::mixes_samples_in_training`): its statistics are the batch's.
                    if trace.chunks.len() != 1 {
                        return Err(ModelError::Internal(format!(
                            "batch statistics in a trace of {} chunks",
                            trace.chunks.len()
                        )));
                    }
                    bn.update_running(stats, momentum)?;
                    updated += 1;
                }
            }
        }
        Ok(updated)
    }

    /// Whether a training forward pass couples the samples of a batch: batch norm layers
    /// normalise with statistics over the whole batch, so a training step must not split such a
    /// network's batch into chunks that run forward separately (each chunk would see its own
    /// statistics, like PyTorch's per-device `DataParallel` batch norm, not the batch's).
    pub fn couples_samples_in_training(&self) -> bool {
        self.layers
            .iter()
            .any(|l| matches!(l.layer, Layer::BatchNorm(_)))
    }

    /// The network's non-trainable state, saved with its weights: each batch norm layer's
    /// running mean and variance, as `("<name>.running_mean", values)` and
    /// `("<name>.running_var", values)` (PyTorch's buffer names), in layer order.
    pub fn buffers(&self) -> Vec<(String, &[f32])> {
        let mut out = Vec::new();
        for l in &self.layers {
            if let Layer::BatchNorm(bn) = &l.layer {
                out.push((format!("{}.running_mean", l.name), bn.mean.as_slice()));
                out.push((format!("{}.running_var", l.name), bn.var.as_slice()));
            }
        }
        out
    }

    /// Mutable [`Network::buffers`] (lengths must not change).
    pub(crate) fn buffers_mut(&mut self) -> Vec<(String, &mut Vec<f32>)> {
        self.kernels = KernelCache::new(self.layers.len());
        let mut out = Vec::new();
        for l in &mut self.layers {
            if let Layer::BatchNorm(bn) = &mut l.layer {
                out.push((format!("{}.running_mean", l.name), &mut bn.mean));
                out.push((format!("{}.running_var", l.name), &mut bn.var));
            }
        }
        out
    }

    /// Fills every parameter from `values` (in [`Network::parameter_groups`] order), checking
    /// lengths.
    pub fn set_params(&mut self, values: &[Vec<f32>]) -> Result<(), ModelError> {
        let groups = self.groups();
        if values.len() != groups.len() {
            return Err(ModelError::Weights(format!(
                "{} parameter tensors given, the network has {}",
                values.len(),
                groups.len()
            )));
        }
        for (g, v) in groups.iter().zip(values) {
            if v.len() != g.len() {
                return Err(ModelError::Weights(format!(
                    "`{}` has {} values, expected {} (shape {:?})",
                    g.name,
                    v.len(),
                    g.len(),
                    g.shape
                )));
            }
        }
        for (p, v) in self.param_slices_mut().into_iter().zip(values) {
            p.copy_from_slice(v);
        }
        Ok(())
    }
}

#[cfg(test)]
impl Network {
    /// The summed parameter gradients of the pass before chunking (one trace of the whole
    /// batch, one backward pass), for tests of the chunked pass against it.
    pub(crate) fn whole_batch_gradients(
        &self,
        x: ArrayView4<'_, f32>,
        grad_output: ArrayView2<'_, f32>,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let n = x.shape()[0];
        let trace = self.chunk_trace(x, None, true)?;
        let dy = self.output_order(&grad_output.iter().copied().collect::<Vec<_>>(), n, false);
        let mut out = self.backward_impl(&trace, dy, self.layers.len(), None, ParamMode::Summed)?;
        out.summed.sort_by_key(|(i, _)| *i);
        Ok(out
            .summed
            .into_iter()
            .flat_map(|(_, g)| [g.weight, g.bias])
            .collect())
    }
}

impl Predictor for Network {
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn n_outputs(&self) -> usize {
        self.out_len()
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let x4 = self.check_input(&x)?;
        self.forward(x4).map_err(Into::into)
    }
}

impl DifferentiableModel for Network {
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: ArrayView2<'_, f32>,
    ) -> xai_core::Result<ArrayD<f32>> {
        let x4 = self.check_input(&x)?;
        let n = x4.shape()[0];
        if output_weights.dim() != (n, self.out_len()) {
            return Err(CoreError::shape(
                "output weights",
                output_weights.shape(),
                format!("[{n}, {}]", self.out_len()),
            ));
        }
        let grads = map_chunks(n, |(start, end)| {
            let chunk = x4.slice(ndarray::s![start..end, .., .., ..]);
            let trace = self.chunk_trace(chunk, None, false)?;
            let w = output_weights.slice(ndarray::s![start..end, ..]);
            let dy = self.output_order(&w.iter().copied().collect::<Vec<_>>(), end - start, false);
            let out =
                self.backward_impl(&trace, dy, self.layers.len(), Some(0), ParamMode::None)?;
            out.input.ok_or_else(|| {
                ModelError::Internal("backward pass returned no input gradient".into())
            })
        })?;
        Ok(self.input_from_internal(grads, n).into_dyn())
    }

    fn predict_and_input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> xai_core::Result<Array2<f32>>,
    ) -> xai_core::Result<(Array2<f32>, ArrayD<f32>)> {
        let x4 = self.check_input(&x)?;
        let n = x4.shape()[0];
        // One trace for the whole batch, on this thread (only large layers split their work):
        // this is for the small batches of iterative methods (CEM); large batches go through
        // `input_gradient`'s chunks.
        let trace = crate::parallel::large_layers_only(|| self.chunk_trace(x4, None, false))?;
        let outputs = Array2::from_shape_vec(
            (n, self.out_len()),
            self.output_order(trace.output_flat(), n, true),
        )
        .expect("sized from dims");
        let weights = output_weights(outputs.view())?;
        if weights.dim() != (n, self.out_len()) {
            return Err(CoreError::shape(
                "output weights",
                weights.shape(),
                format!("[{n}, {}]", self.out_len()),
            ));
        }
        // Trailing samples whose output weights are all zero get a zero gradient without a
        // backward pass (CEM evaluates x_k in the same pass as it differentiates at y_k).
        let rows = weights
            .outer_iter()
            .rposition(|row| row.iter().any(|w| *w != 0.0))
            .map_or(0, |last| last + 1);
        if rows == 0 {
            return Ok((outputs, ArrayD::zeros(x.raw_dim())));
        }
        let mut trace = trace;
        trace.truncate(rows);
        let weights = weights.slice(ndarray::s![..rows, ..]);
        let dy = self.output_order(&weights.iter().copied().collect::<Vec<_>>(), rows, false);
        let out = crate::parallel::large_layers_only(|| {
            self.backward_impl(&trace, dy, self.layers.len(), Some(0), ParamMode::None)
        })?;
        let mut input = out
            .input
            .ok_or_else(|| CoreError::Model("backward pass returned no input gradient".into()))?;
        input.resize(n * self.dims[0].len(), 0.0);
        Ok((outputs, self.input_from_internal(input, n).into_dyn()))
    }

    fn parameter_groups(&self) -> Vec<ParamGroup> {
        self.groups()
    }

    fn per_sample_grads(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> xai_core::Result<PerSampleGrads> {
        selection.validate(&self.groups())?;
        let x4 = self.check_input(&x)?;
        let n = x4.shape()[0];
        if targets.len() != n {
            return Err(CoreError::InvalidTargets(format!(
                "{} targets for a batch of {n} samples",
                targets.len()
            )));
        }
        let ranges = crate::parallel::chunk_ranges(n);
        let chunk = |(start, end): (usize, usize)| -> xai_core::Result<PerSampleGrads> {
            let indices: Vec<usize> = (start..end).collect();
            let targets = if ranges.len() == 1 {
                targets.clone()
            } else {
                targets.select(&indices)?
            };
            self.per_sample_grads_chunk(
                x4.slice(ndarray::s![start..end, .., .., ..]),
                &targets,
                loss,
                selection,
            )
        };
        if ranges.len() == 1 {
            return crate::parallel::serial(|| chunk(ranges[0]));
        }
        let parts: Vec<xai_core::Result<PerSampleGrads>> = if rayon::current_num_threads() > 1 {
            ranges
                .par_iter()
                .map(|&r| crate::parallel::serial(|| chunk(r)))
                .collect()
        } else {
            ranges.iter().map(|&r| chunk(r)).collect()
        };
        let parts = parts.into_iter().collect::<xai_core::Result<Vec<_>>>()?;
        PerSampleGrads::concat(&parts)
    }
}

impl Network {
    /// Node `node`'s activation (internal NHWC order, `[n, dims[node]]` flattened) and the
    /// gradient of `Σ w ∘ f(x)` with respect to it (same order), for an NCHW batch `x` and
    /// output weights `w` (`[n, n_outputs]`, checked by the caller): per chunk of samples (as
    /// [`DifferentiableModel::input_gradient`]), one forward pass that keeps the node and one
    /// backward pass from `w` that stops at it. Node 0 is the input, node `j + 1` layer `j`'s
    /// output.
    pub(crate) fn node_activation_and_gradient(
        &self,
        x: ArrayView4<'_, f32>,
        node: usize,
        w: ArrayView2<'_, f32>,
    ) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
        if node > self.layers.len() {
            return Err(ModelError::Internal(format!(
                "node {node} of a network with {} layers",
                self.layers.len()
            )));
        }
        let ranges = crate::parallel::chunk_ranges(x.shape()[0]);
        let parts = run_chunks(&ranges, |_, (start, end)| {
            let chunk = x.slice(ndarray::s![start..end, .., .., ..]);
            let mut trace = self.chunk_trace_keeping(chunk, None, false, Some(node))?;
            let wc = w.slice(ndarray::s![start..end, ..]);
            let dy = self.output_order(&wc.iter().copied().collect::<Vec<_>>(), end - start, false);
            let out =
                self.backward_impl(&trace, dy, self.layers.len(), Some(node), ParamMode::None)?;
            let grad = out.input.ok_or_else(|| {
                ModelError::Internal("backward pass returned no gradient for the node".into())
            })?;
            Ok((std::mem::take(&mut trace.acts[node]), grad))
        })?;
        let (acts, grads): (Vec<Vec<f32>>, Vec<Vec<f32>>) = parts.into_iter().unzip();
        Ok((acts.concat(), grads.concat()))
    }

    /// Per-sample gradients of one chunk of a batch (see [`DifferentiableModel::per_sample_grads`]).
    fn per_sample_grads_chunk(
        &self,
        x4: ArrayView4<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> xai_core::Result<PerSampleGrads> {
        let n = x4.shape()[0];
        let trace = self.chunk_trace(x4, None, true)?;
        let outputs = Array2::from_shape_vec(
            (n, self.out_len()),
            self.output_order(trace.output_flat(), n, true),
        )
        .expect("sized");
        let (_, grad_out) = loss.value_and_grad(outputs.view(), targets)?;
        let dy = self.output_order(&grad_out.iter().copied().collect::<Vec<_>>(), n, false);
        let out = self.backward_impl(
            &trace,
            dy,
            self.layers.len(),
            None,
            ParamMode::PerSample(selection),
        )?;
        let mut per_layer = out.per_sample;
        per_layer.sort_by_key(|(i, _)| *i);
        PerSampleGrads::new(per_layer.into_iter().flat_map(|(_, b)| b).collect())
    }
}

/// Runs `run` on the sample ranges of [`crate::parallel::chunk_ranges`] (on rayon's threads, each
/// chunk with serial layers, when there is more than one) and concatenates the results in order.
fn map_chunks<T: Send>(
    n: usize,
    run: impl Fn((usize, usize)) -> Result<Vec<T>, ModelError> + Sync,
) -> Result<Vec<T>, ModelError> {
    let ranges = crate::parallel::chunk_ranges(n);
    if ranges.len() == 1 {
        // One chunk: serial too, except layers of at least `parallel::LARGE_LAYER_MACS`.
        // Splitting the small layers of a tiny batch across threads costs more in
        // synchronisation than it saves (CEM's one-image passes are 1.4x faster serial), and a
        // caller such as CEM runs two models side by side on the threads instead; a ResNet's
        // 3x3 convolutions are large enough to gain.
        return crate::parallel::large_layers_only(|| run(ranges[0]));
    }
    let parts: Vec<Result<Vec<T>, ModelError>> = if rayon::current_num_threads() > 1 {
        ranges
            .par_iter()
            .map(|&r| crate::parallel::serial(|| run(r)))
            .collect()
    } else {
        ranges.iter().map(|&r| run(r)).collect()
    };
    let mut out = Vec::new();
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// Runs `run(k, range)` for each of `ranges` (on rayon's threads, each with serial layers, when
/// there are several and several threads; serially on this thread for one range) and returns
/// the results in range order. Which thread runs a range never changes its result.
fn run_chunks<T: Send>(
    ranges: &[(usize, usize)],
    run: impl Fn(usize, (usize, usize)) -> Result<T, ModelError> + Sync,
) -> Result<Vec<T>, ModelError> {
    if ranges.len() > 1 && rayon::current_num_threads() > 1 {
        ranges
            .par_iter()
            .enumerate()
            .map(|(k, &r)| crate::parallel::serial(|| run(k, r)))
            .collect()
    } else if ranges.len() == 1 {
        // One range: as in `map_chunks`, only large layers split their work.
        crate::parallel::large_layers_only(|| run(0, ranges[0]).map(|r| vec![r]))
    } else {
        crate::parallel::serial(|| ranges.iter().enumerate().map(|(k, &r)| run(k, r)).collect())
    }
}

/// The elementwise sum of `parts` (equal lengths), added in the order given: element `j` is
/// `((parts[0][j] + parts[1][j]) + parts[2][j]) + …` whichever threads run it, so a sum of
/// per-chunk gradients does not depend on the number of threads.
fn sum_in_order(parts: &[&[f32]]) -> Result<Vec<f32>, ModelError> {
    let Some((first, rest)) = parts.split_first() else {
        return Ok(Vec::new());
    };
    if rest.iter().any(|p| p.len() != first.len()) {
        return Err(ModelError::Internal(
            "chunks returned gradients of different lengths".into(),
        ));
    }
    let mut out = first.to_vec();
    const BLOCK: usize = 1 << 14;
    let add = |(b, block): (usize, &mut [f32])| {
        let off = b * BLOCK;
        for p in rest {
            crate::layers::add_assign(block, &p[off..off + block.len()]);
        }
    };
    if out.len() > BLOCK && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(BLOCK).enumerate().for_each(add);
    } else {
        out.chunks_mut(BLOCK).enumerate().for_each(add);
    }
    Ok(out)
}

/// One chunk's share of a layer's summed parameter gradients.
enum LayerPart {
    /// The chunk's summed gradients.
    Summed(LayerGrads),
    /// A dense layer's inputs and output gradients, `[rows, in]` and `[rows, out]`.
    Dense(Vec<f32>, Vec<f32>),
}

/// A dense layer's summed gradients over all chunks, `(Xᵀ·Δ, Σ rows of Δ)`, with `X` and `Δ`
/// the chunks' inputs and output gradients stacked in chunk order: one product with the whole
/// batch as its inner dimension instead of one per chunk plus a sum. The product is split into
/// fixed blocks of weight rows (each a serial matrix product) whatever the number of threads,
/// so the result does not depend on it.
fn dense_grads(
    fan_in: usize,
    fan_out: usize,
    xs: &[&[f32]],
    dys: &[&[f32]],
) -> (Vec<f32>, Vec<f32>) {
    let n: usize = dys.iter().map(|d| d.len() / fan_out.max(1)).sum();
    // Xᵀ, [in, n]: row j holds feature j of every sample.
    let mut xt = vec![0.0f32; fan_in * n];
    let mut row = 0;
    for x in xs {
        for sample in x.chunks_exact(fan_in.max(1)) {
            for (j, v) in sample.iter().enumerate() {
                xt[j * n + row] = *v;
            }
            row += 1;
        }
    }
    let dy: Vec<f32> = dys.concat();
    let mut bias = vec![0.0f32; fan_out];
    for r in dy.chunks_exact(fan_out.max(1)) {
        crate::layers::add_assign(&mut bias, r);
    }
    let mut dw = vec![0.0f32; fan_in * fan_out];
    const ROWS: usize = 64;
    let block = |(b, dw_b): (usize, &mut [f32])| {
        let rows = dw_b.len() / fan_out;
        let r0 = b * ROWS;
        crate::parallel::serial(|| {
            matmul(
                &xt[r0 * n..(r0 + rows) * n],
                (rows, n),
                Op::N,
                &dy,
                (n, fan_out),
                Op::N,
                dw_b,
                false,
            )
        });
    };
    if fan_out == 0 || n == 0 {
        return (dw, bias);
    }
    if rayon::current_num_threads() > 1 {
        dw.par_chunks_mut(ROWS * fan_out)
            .enumerate()
            .for_each(block);
    } else {
        dw.chunks_mut(ROWS * fan_out).enumerate().for_each(block);
    }
    (dw, bias)
}
