//! The importer: an ONNX graph of common image-classifier operators becomes an
//! [`xai_models::Network`] of our own layers (fast, and differentiable for the white-box
//! methods), a chain or a graph with residual connections.
//!
//! Handled (opsets 9-21; attributes that later opsets turned into inputs are read from either):
//! `Conv` (strides, pads or `auto_pad`, dilations, groups, depthwise), `MaxPool` / `AveragePool`
//! (`ceil_mode` only where it changes nothing), `GlobalAveragePool`, `BatchNormalization`
//! (inference; folded into the convolution or dense layer before it when that layer feeds it
//! alone, else a batch-norm layer), `Gemm` (`transA = 0`), `MatMul` by a constant (+ bias
//! `Add`), `Relu`, `Clip` (min/max as attributes or inputs; ReLU6), `Sigmoid`, `Tanh`,
//! `LeakyRelu`, `HardSigmoid`, `HardSwish`, `Softmax`, `LogSoftmax`, `Add` / `Sub` / `Mul` /
//! `Div` between two tensors of the same shape (residual connections) or of a tensor and a
//! per-channel or scalar constant, `Concat` along channels, `Flatten`, `Reshape` / `Squeeze` to
//! `[batch, features]`, `Transpose` where it only switches between NCHW and NHWC (tf2onnx),
//! `Dropout` / `Identity`, and scalar `Mul` / `Div` / `Add` / `Sub` on the input (folded into the
//! predictor's input transform). Shape subgraphs — `Shape`, `Gather`, `Unsqueeze`, `Squeeze`,
//! `Concat`, `Constant`, `ConstantOfShape`, `Cast`, `Slice` and integer `Add`/`Sub`/`Mul`/`Div`
//! — are folded into constants, so PyTorch's runtime flatten
//! (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`) becomes a static flatten. Weights must
//! be initializers or `Constant` nodes. Every attribute read from the file is range-checked.
//!
//! Layouts: ONNX convolutions are OIHW over NCHW tensors; `xai-models` keeps HWIO weights and
//! NHWC activations, so conv weights are transposed, and the rows of the first dense layer after
//! an NCHW flatten are permuted from `(c, h, w)` to our `(h, w, c)` order.
//!
//! Batch norm folded into a convolution (`W' = W γ/√(σ²+ε)`, `b' = (b − μ) γ/√(σ²+ε) + β`) gives
//! the same function and input gradients; per-sample parameter gradients (gradient similarity)
//! are then those of the folded weights `W'`, `b'`.

use std::collections::HashMap;

use tract_onnx::pb::{ModelProto, NodeProto, TensorProto};
use xai_models::layers::{Conv2d, Dense, Dims, Layer, MaxPool2d, Padding};
use xai_models::ops::{AvgPool2d, BatchNorm, BinaryOp, GroupConv2d};
use xai_models::{NamedLayer, Network};

use crate::error::{OnnxError, Result};
use crate::options::ValidOnnxOptions;
use crate::proto::{
    attr, attr_f, attr_i, attr_ints, attr_s, graph, node_label, opset, tensor_f32, tensor_i64,
};

/// Largest kernel, stride, dilation or pad the importer accepts from a file.
pub(crate) const MAX_EXTENT: i64 = 1 << 16;
/// Largest number of elements of a tensor the importer builds itself (`ConstantOfShape`) or of
/// one sample's activation of an imported layer.
const MAX_ELEMENTS: usize = 1 << 26;

/// What the imported network's output goes through before it is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// Nothing.
    Identity,
    /// `z - logsumexp(z)` (a final ONNX `LogSoftmax`).
    LogSoftmax,
    /// `exp(z)` (log-probabilities stated by the user, converted to probabilities).
    Exp,
}

/// An imported graph.
#[derive(Debug, Clone)]
pub(crate) struct Imported {
    /// Our layers, up to (and including) a final `Softmax`, or up to the logits under a final
    /// `LogSoftmax`.
    pub net: Network,
    /// [`Head::LogSoftmax`] for a graph that ends in `LogSoftmax`, else [`Head::Identity`].
    pub head: Head,
    /// Scalar affine map the graph applies to its input before the first layer
    /// (`x * scale + offset`).
    pub pre_scale: f32,
    /// See `pre_scale`.
    pub pre_offset: f32,
    /// The ONNX tensor each network layer's output holds: `(value name, node name, layer
    /// index)`, for the layers whose output is one of the graph's values (the last value the
    /// import mapped onto it: after a batch norm folded into a convolution, the batch norm's
    /// output), in layer order.
    pub onnx_layers: Vec<(String, String, usize)>,
}

/// An ONNX data tensor: a 4-D image batch (`nchw` tells its ONNX layout; our network holds it
/// as NHWC anyway) or `[batch, len]` (`chw` is set when ONNX flattened an NCHW map of these
/// dimensions, whose order differs from ours until a dense layer has mixed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Image { nchw: bool, dims: Dims },
    Flat { len: usize, chw: Option<Dims> },
}

impl Value {
    fn dims(&self) -> Dims {
        match *self {
            Value::Image { dims, .. } => dims,
            Value::Flat { len, .. } => Dims::flat(len),
        }
    }

    fn channels(&self) -> usize {
        match *self {
            Value::Image { dims, .. } => dims.c,
            Value::Flat { len, .. } => len,
        }
    }
}

/// One entry of a folded integer tensor: a known value or the (symbolic) batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    Known(i64),
    Batch,
}

/// A constant-folded integer tensor (shape arithmetic).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ints {
    dims: Vec<usize>,
    vals: Vec<Sym>,
}

const SUPPORTED: &str = "the importer handles Conv (groups, dilations), MaxPool, AveragePool, \
     GlobalAveragePool (and ReduceMean over H and W), BatchNormalization, Gemm, \
     MatMul (+ Add), Relu, Clip, Sigmoid, Tanh, \
     LeakyRelu, HardSigmoid, HardSwish, Add/Sub/Mul/Div, Concat, Flatten, Reshape, Squeeze, \
     Transpose between NCHW and NHWC, Softmax, LogSoftmax, Dropout, Identity and shape \
     subgraphs (Shape, Gather, Unsqueeze, Squeeze, Concat, Cast, Slice, ConstantOfShape)";

struct Importer<'a> {
    consts: HashMap<String, TensorProto>,
    ints: HashMap<String, Ints>,
    /// Data tensors: the network node holding them and their ONNX shape.
    values: HashMap<String, (usize, Value)>,
    /// How many nodes (and graph outputs) read each tensor.
    readers: HashMap<String, usize>,
    opset: i64,
    fixed_batch: Option<usize>,
    layers: Vec<NamedLayer>,
    inputs: Vec<Vec<usize>>,
    /// Dimensions of each network node (0: the input).
    dims: Vec<Dims>,
    counters: HashMap<&'static str, usize>,
    pre_scale: f32,
    pre_offset: f32,
    head: Head,
    graph_output: String,
    node: Option<&'a NodeProto>,
    /// Every ONNX value mapped onto a network node, in import order: `(value name, node name,
    /// network node)`.
    assigned: Vec<(String, String, usize)>,
}

/// Imports `model` for inputs described by `opts` (`input_name` is the graph's data input).
pub(crate) fn import(
    model: &ModelProto,
    opts: &ValidOnnxOptions,
    input_name: &str,
    fixed_batch: Option<usize>,
) -> Result<Imported> {
    let g = graph(model)?;
    let [c, h, w] = opts.network_input_shape();
    let mut consts: HashMap<String, TensorProto> = HashMap::new();
    for t in &g.initializer {
        consts.insert(t.name.clone(), t.clone());
    }
    if !g.sparse_initializer.is_empty() {
        return Err(OnnxError::Unsupported(
            "the graph has sparse initializers, which the importer does not read".into(),
        ));
    }
    let out_names: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    let [graph_output] = out_names.as_slice() else {
        return Err(OnnxError::Unsupported(format!(
            "the graph's outputs are {out_names:?}; the importer needs exactly one"
        )));
    };
    let mut readers: HashMap<String, usize> = HashMap::new();
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *readers.entry(i.clone()).or_default() += 1;
        }
    }
    *readers.entry(graph_output.to_string()).or_default() += 1;
    let mut values = HashMap::new();
    let input_value = match opts.input_features() {
        // A row of features: what a dense layer reads directly.
        Some(len) => Value::Flat { len, chw: None },
        None => Value::Image {
            nchw: opts.layout() == crate::Layout::Nchw,
            dims: Dims::new(h, w, c),
        },
    };
    values.insert(input_name.to_string(), (0, input_value));
    let mut im = Importer {
        consts,
        ints: HashMap::new(),
        values,
        readers,
        opset: opset(model).unwrap_or(13),
        fixed_batch,
        layers: Vec::new(),
        inputs: Vec::new(),
        dims: vec![Dims::new(h, w, c)],
        counters: HashMap::new(),
        pre_scale: 1.0,
        pre_offset: 0.0,
        head: Head::Identity,
        graph_output: graph_output.to_string(),
        node: None,
        assigned: Vec::new(),
    };
    for node in &g.node {
        im.node = Some(node);
        im.step(node)?;
    }
    im.node = None;
    let Some(&(out_node, value)) = im.values.get(*graph_output) else {
        return Err(OnnxError::Unsupported(format!(
            "the graph's output `{graph_output}` is not a data tensor the importer computed"
        )));
    };
    if out_node == 0 || out_node != im.layers.len() {
        return Err(OnnxError::Unsupported(format!(
            "the graph's output `{graph_output}` is not the result of its last layer (it has {} \
             layers)",
            im.layers.len()
        )));
    }
    match value {
        Value::Image { .. } => {
            return Err(OnnxError::Unsupported(
                "the graph's output is a 4-D feature map, not a [batch, classes] matrix".into(),
            ))
        }
        Value::Flat { chw: Some(d), .. } if d.c > 1 && d.h * d.w > 1 => {
            return Err(OnnxError::Unsupported(
                "the graph outputs a flattened NCHW feature map without a dense layer after it; \
                 its order differs from the layers' NHWC order"
                    .into(),
            ))
        }
        Value::Flat { .. } => {}
    }
    let name = if g.name.is_empty() {
        "onnx".to_string()
    } else {
        g.name.clone()
    };
    // Each layer's output under the last ONNX value mapped onto it (node 0 is the input).
    let mut live: Vec<Option<(String, String)>> = vec![None; im.layers.len() + 1];
    for (value, node, j) in im.assigned {
        if let Some(slot) = live.get_mut(j) {
            *slot = Some((value, node));
        }
    }
    let onnx_layers = live
        .into_iter()
        .enumerate()
        .skip(1)
        .filter_map(|(j, l)| l.map(|(value, node)| (value, node, j - 1)))
        .collect();
    let net = Network::graph(name, opts.network_input_shape(), im.layers, im.inputs)?;
    Ok(Imported {
        net,
        head: im.head,
        pre_scale: im.pre_scale,
        pre_offset: im.pre_offset,
        onnx_layers,
    })
}

fn unsupported(node: &NodeProto, reason: impl Into<String>) -> OnnxError {
    OnnxError::UnsupportedOp {
        op: node.op_type.clone(),
        node: node_label(node),
        reason: reason.into(),
    }
}

/// Output size and padding before/after along one axis for ONNX `auto_pad` SAME_*.
fn same_pads(input: usize, kernel: usize, stride: usize, upper: bool) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(input);
    let small = total / 2;
    if upper {
        (small, total - small)
    } else {
        (total - small, small)
    }
}

/// Reads an attribute value as a size in `lo..=MAX_EXTENT`.
fn extent(v: i64, lo: i64, what: &str) -> std::result::Result<usize, String> {
    if (lo..=MAX_EXTENT).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!("{what} {v} (expected {lo} to {MAX_EXTENT})"))
    }
}

impl<'a> Importer<'a> {
    fn err(&self, reason: impl Into<String>) -> OnnxError {
        match self.node {
            Some(n) => unsupported(n, reason),
            None => OnnxError::Unsupported(reason.into()),
        }
    }

    fn next_name(&mut self, base: &'static str) -> String {
        let n = self.counters.entry(base).or_insert(0);
        *n += 1;
        format!("{base}{n}")
    }

    /// Appends `layer` reading the network nodes `ins`; returns its node and output dims.
    fn push(&mut self, base: &'static str, layer: Layer, ins: Vec<usize>) -> Result<(usize, Dims)> {
        let in_dims: Vec<Dims> = ins
            .iter()
            .map(|&j| self.node_dims(j))
            .collect::<Result<_>>()?;
        let out = layer
            .output_dims_multi(&in_dims)
            .map_err(|e| self.err(format!("the layer does not fit its input: {e}")))?;
        let per_sample = out
            .h
            .checked_mul(out.w)
            .and_then(|p| p.checked_mul(out.c))
            .filter(|&v| v <= MAX_ELEMENTS);
        if per_sample.is_none() {
            return Err(self.err(format!(
                "an output of {}x{}x{} per sample (more than {MAX_ELEMENTS} values)",
                out.h, out.w, out.c
            )));
        }
        let name = self.next_name(base);
        self.layers.push(NamedLayer { name, layer });
        self.inputs.push(ins);
        self.dims.push(out);
        Ok((self.layers.len(), out))
    }

    fn node_dims(&self, j: usize) -> Result<Dims> {
        self.dims
            .get(j)
            .copied()
            .ok_or_else(|| self.err(format!("internal: network node {j} has no dimensions")))
    }

    /// Pushes a single-input layer on `input`, with the same kind of value as the input.
    fn push_same(
        &mut self,
        base: &'static str,
        layer: Layer,
        input: &str,
    ) -> Result<(usize, Value)> {
        let (j, v) = self.data(input)?;
        let (k, d) = self.push(base, layer, vec![j])?;
        let out = match v {
            Value::Image { nchw, .. } => Value::Image { nchw, dims: d },
            Value::Flat { chw, .. } => Value::Flat { len: d.len(), chw },
        };
        Ok((k, out))
    }

    fn set_output(&mut self, node: &NodeProto, value: (usize, Value)) {
        if let Some(o) = node.output.first() {
            self.values.insert(o.clone(), value);
            self.assigned.push((o.clone(), node.name.clone(), value.0));
        }
    }

    fn data(&self, name: &str) -> Result<(usize, Value)> {
        self.values.get(name).copied().ok_or_else(|| {
            self.err(format!(
                "its input `{name}` is neither a data tensor the importer computed nor a constant"
            ))
        })
    }

    fn constant(&self, name: &str) -> Result<&TensorProto> {
        self.consts.get(name).ok_or_else(|| {
            self.err(format!(
                "its input `{name}` must be a constant (an initializer or a Constant node)"
            ))
        })
    }

    fn const_input(&self, node: &NodeProto, index: usize) -> Result<Option<&TensorProto>> {
        match node.input.get(index).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(name) => self.constant(name).map(Some),
        }
    }

    /// The first input, which must be data.
    fn data_input(&self, node: &NodeProto) -> Result<(String, usize, Value)> {
        let name = node
            .input
            .first()
            .ok_or_else(|| self.err("a node without inputs"))?;
        let (j, v) = self.data(name)?;
        Ok((name.clone(), j, v))
    }

    fn is_const(&self, name: &str) -> bool {
        self.consts.contains_key(name) || self.ints.contains_key(name)
    }

    /// An integer tensor (folded or constant).
    fn ints(&self, name: &str) -> Option<Ints> {
        if let Some(i) = self.ints.get(name) {
            return Some(i.clone());
        }
        let t = self.consts.get(name)?;
        let v = tensor_i64(t).ok()?;
        Some(Ints {
            dims: t.dims.iter().map(|&d| d.max(0) as usize).collect(),
            vals: v.into_iter().map(Sym::Known).collect(),
        })
    }

    fn scalar(&self, t: &TensorProto) -> Result<f32> {
        let v = tensor_f32(t)?;
        match v.as_slice() {
            [s] => Ok(*s),
            _ => Err(self.err(format!(
                "only a scalar constant is supported here; `{}` has {} values",
                t.name,
                v.len()
            ))),
        }
    }

    fn int_attr(&self, node: &NodeProto, name: &str, default: i64, lo: i64) -> Result<usize> {
        extent(attr_i(node, name).unwrap_or(default), lo, name).map_err(|e| self.err(e))
    }

    fn step(&mut self, node: &'a NodeProto) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(self.err(format!(
                "operator domain `{}` (only the default ONNX domain is imported); {SUPPORTED}",
                node.domain
            )));
        }
        let op = node.op_type.as_str();
        if op == "Constant" {
            return self.constant_node(node);
        }
        // Shape arithmetic: every input a constant (or a shape of a data tensor).
        let all_const = node
            .input
            .iter()
            .filter(|i| !i.is_empty())
            .all(|i| self.is_const(i));
        if op == "Shape" || (all_const && !node.input.is_empty()) {
            return self.fold(node);
        }
        match op {
            "Identity" | "Dropout" => {
                if node
                    .output
                    .iter()
                    .skip(1)
                    .any(|o| self.readers.contains_key(o))
                {
                    return Err(self.err("a Dropout whose mask output is used"));
                }
                let (_, j, v) = self.data_input(node)?;
                self.set_output(node, (j, v));
            }
            "Conv" => self.conv(node)?,
            "MaxPool" | "AveragePool" => self.pool(node)?,
            "GlobalAveragePool" => {
                let (name, _, _) = self.data_input(node)?;
                self.image("GlobalAveragePool", &name)?;
                let out = self.push_same("gap", Layer::GlobalAvgPool, &name)?;
                self.set_output(node, out);
            }
            "ReduceMean" => self.reduce_mean(node)?,
            "BatchNormalization" => self.batch_norm(node)?,
            "Relu" | "Sigmoid" | "Tanh" | "LeakyRelu" | "HardSigmoid" | "HardSwish" | "Clip" => {
                self.activation(node)?
            }
            "Flatten" => {
                let axis = attr_i(node, "axis").unwrap_or(1);
                if axis != 1 {
                    return Err(self.err(format!(
                        "Flatten with axis {axis} (only axis 1, [batch, features])"
                    )));
                }
                let (name, _, _) = self.data_input(node)?;
                self.flatten(node, &name)?;
            }
            "Reshape" => self.reshape(node)?,
            "Squeeze" => self.squeeze(node)?,
            "Transpose" => self.transpose(node)?,
            "Gemm" => self.gemm(node)?,
            "MatMul" => self.matmul(node)?,
            "Add" | "Sub" | "Mul" | "Div" => self.arithmetic(node)?,
            "Concat" => self.concat(node)?,
            "Softmax" | "LogSoftmax" => self.softmax(node)?,
            other => {
                return Err(self.err(format!("operator {other} is not supported; {SUPPORTED}")))
            }
        }
        Ok(())
    }

    fn constant_node(&mut self, node: &NodeProto) -> Result<()> {
        use tract_onnx::pb::tensor_proto::DataType;
        let out = node
            .output
            .first()
            .ok_or_else(|| self.err("a Constant without an output"))?
            .clone();
        let mut t = if let Some(t) = attr(node, "value").and_then(|a| a.t.clone()) {
            t
        } else if let Some(f) = attr_f(node, "value_float") {
            TensorProto {
                data_type: DataType::Float as i32,
                float_data: vec![f],
                ..Default::default()
            }
        } else if let Some(fs) = attr(node, "value_floats").map(|a| a.floats.clone()) {
            TensorProto {
                dims: vec![fs.len() as i64],
                data_type: DataType::Float as i32,
                float_data: fs,
                ..Default::default()
            }
        } else if let Some(i) = attr_i(node, "value_int") {
            TensorProto {
                data_type: DataType::Int64 as i32,
                int64_data: vec![i],
                ..Default::default()
            }
        } else if let Some(is) = attr_ints(node, "value_ints") {
            TensorProto {
                dims: vec![is.len() as i64],
                data_type: DataType::Int64 as i32,
                int64_data: is,
                ..Default::default()
            }
        } else {
            return Err(self.err(
                "a Constant whose value is not a tensor, float(s) or int(s) (sparse or string)",
            ));
        };
        t.name = out.clone();
        self.consts.insert(out, t);
        Ok(())
    }

    /// Folds a node whose inputs are all constants (or a `Shape` of a data tensor) into an
    /// integer constant.
    fn fold(&mut self, node: &NodeProto) -> Result<()> {
        let op = node.op_type.as_str();
        let out_name = node.output.first().cloned().unwrap_or_default();
        // Identity of a constant (torch's exporter wraps shared weights in one): the same
        // constant under the output's name.
        if op == "Identity" {
            let name = node.input.first().cloned().unwrap_or_default();
            if let Some(i) = self.ints.get(&name).cloned() {
                self.ints.insert(out_name, i);
                return Ok(());
            }
            if let Some(t) = self.consts.get(&name).cloned() {
                self.consts.insert(
                    out_name.clone(),
                    TensorProto {
                        name: out_name,
                        ..t
                    },
                );
                return Ok(());
            }
        }
        let int_in = |k: usize| -> Result<Ints> {
            let name = node.input.get(k).cloned().unwrap_or_default();
            self.ints(&name).ok_or_else(|| {
                self.err(format!("its input `{name}` is not a folded integer tensor"))
            })
        };
        let axes_of = |me: &Self| -> Result<Vec<i64>> {
            if let Some(a) = attr_ints(node, "axes") {
                return Ok(a);
            }
            match node.input.get(1).filter(|s| !s.is_empty()) {
                Some(n) => me
                    .ints(n)
                    .map(|i| {
                        i.vals
                            .iter()
                            .map(|s| match s {
                                Sym::Known(v) => *v,
                                Sym::Batch => i64::MIN,
                            })
                            .collect()
                    })
                    .ok_or_else(|| me.err("axes that are not constant")),
                None => Ok(vec![]),
            }
        };
        let result: Ints = match op {
            "Shape" => {
                let (_, _, v) = self.data_input(node)?;
                let dims: Vec<usize> = match v {
                    Value::Image { nchw: true, dims } => vec![dims.c, dims.h, dims.w],
                    Value::Image { nchw: false, dims } => vec![dims.h, dims.w, dims.c],
                    Value::Flat { len, .. } => vec![len],
                };
                let mut vals = vec![match self.fixed_batch {
                    Some(b) => Sym::Known(b as i64),
                    None => Sym::Batch,
                }];
                vals.extend(dims.iter().map(|&d| Sym::Known(d as i64)));
                let r = vals.len() as i64;
                let norm = |a: i64| if a < 0 { (a + r).clamp(0, r) } else { a.min(r) };
                let start = norm(attr_i(node, "start").unwrap_or(0)) as usize;
                let end = norm(attr_i(node, "end").unwrap_or(r)) as usize;
                let vals = vals[start..end.max(start)].to_vec();
                Ints {
                    dims: vec![vals.len()],
                    vals,
                }
            }
            "Gather" => {
                let data = int_in(0)?;
                let idx = int_in(1)?;
                let axis = attr_i(node, "axis").unwrap_or(0);
                if data.dims.len() != 1 || axis != 0 {
                    return Err(self.err("Gather on shapes: only from a 1-D tensor along axis 0"));
                }
                let len = data.vals.len() as i64;
                let mut vals = Vec::new();
                for s in &idx.vals {
                    let Sym::Known(i) = *s else {
                        return Err(self.err("Gather with a symbolic index"));
                    };
                    let i = if i < 0 { i + len } else { i };
                    if !(0..len).contains(&i) {
                        return Err(self.err(format!("Gather index {i} out of 0..{len}")));
                    }
                    vals.push(data.vals[i as usize]);
                }
                Ints {
                    dims: idx.dims.clone(),
                    vals,
                }
            }
            "Unsqueeze" | "Squeeze" => {
                let data = int_in(0)?;
                let axes = axes_of(self)?;
                let mut dims = data.dims.clone();
                if op == "Unsqueeze" {
                    let r = (dims.len() + axes.len()) as i64;
                    let mut ax: Vec<i64> = axes
                        .iter()
                        .map(|&a| if a < 0 { a + r } else { a })
                        .collect();
                    ax.sort_unstable();
                    for a in ax {
                        if !(0..r).contains(&a) || a as usize > dims.len() {
                            return Err(self.err(format!("Unsqueeze axis {a} of rank {r}")));
                        }
                        dims.insert(a as usize, 1);
                    }
                } else {
                    let r = dims.len() as i64;
                    let ax: Vec<i64> = axes
                        .iter()
                        .map(|&a| if a < 0 { a + r } else { a })
                        .collect();
                    dims = dims
                        .iter()
                        .enumerate()
                        .filter(|(i, d)| {
                            !(**d == 1 && (ax.is_empty() || ax.contains(&(*i as i64))))
                        })
                        .map(|(_, d)| *d)
                        .collect();
                }
                Ints {
                    dims,
                    vals: data.vals,
                }
            }
            "Concat" => {
                let mut vals = Vec::new();
                for k in 0..node.input.len() {
                    let i = int_in(k)?;
                    if i.dims.len() > 1 {
                        return Err(self.err("Concat of shape tensors of rank > 1"));
                    }
                    vals.extend(i.vals);
                }
                Ints {
                    dims: vec![vals.len()],
                    vals,
                }
            }
            "Cast" => int_in(0)?,
            "Slice" => {
                let data = int_in(0)?;
                if data.dims.len() != 1 {
                    return Err(self.err("Slice of a shape tensor of rank > 1"));
                }
                let known = |k: usize, d: i64| -> Result<i64> {
                    match node.input.get(k).filter(|s| !s.is_empty()) {
                        None => Ok(d),
                        Some(_) => match int_in(k)?.vals.as_slice() {
                            [Sym::Known(v)] => Ok(*v),
                            _ => Err(self.err("Slice bounds that are not one known integer")),
                        },
                    }
                };
                let len = data.vals.len() as i64;
                let (starts, ends) = match (attr_ints(node, "starts"), attr_ints(node, "ends")) {
                    (Some(s), Some(e)) if s.len() == 1 && e.len() == 1 => (s[0], e[0]),
                    _ => (known(1, 0)?, known(2, len)?),
                };
                let step = known(4, 1)?;
                if step != 1 {
                    return Err(self.err("Slice with a step other than 1"));
                }
                let norm = |a: i64| {
                    if a < 0 {
                        (a + len).clamp(0, len)
                    } else {
                        a.min(len)
                    }
                };
                let (s, e) = (norm(starts) as usize, norm(ends) as usize);
                let vals = data.vals[s..e.max(s)].to_vec();
                Ints {
                    dims: vec![vals.len()],
                    vals,
                }
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let (a, b) = (int_in(0)?, int_in(1)?);
                let n = a.vals.len().max(b.vals.len());
                if !(a.vals.len() == n || a.vals.len() == 1)
                    || !(b.vals.len() == n || b.vals.len() == 1)
                {
                    return Err(self.err("integer arithmetic on tensors of different lengths"));
                }
                let dims = if a.vals.len() == n {
                    a.dims.clone()
                } else {
                    b.dims.clone()
                };
                let mut vals = Vec::with_capacity(n);
                for k in 0..n {
                    let x = a.vals[k.min(a.vals.len() - 1)];
                    let y = b.vals[k.min(b.vals.len() - 1)];
                    vals.push(match (x, y) {
                        (Sym::Known(x), Sym::Known(y)) => {
                            let r = match op {
                                "Add" => x.checked_add(y),
                                "Sub" => x.checked_sub(y),
                                "Mul" => x.checked_mul(y),
                                _ => (y != 0).then(|| x.div_euclid(y)),
                            };
                            Sym::Known(r.ok_or_else(|| {
                                self.err(format!("integer {op} of {x} and {y} overflows or divides by zero"))
                            })?)
                        }
                        (Sym::Batch, Sym::Known(1)) if op == "Mul" || op == "Div" => Sym::Batch,
                        (Sym::Known(1), Sym::Batch) if op == "Mul" => Sym::Batch,
                        (Sym::Batch, Sym::Known(0)) | (Sym::Known(0), Sym::Batch) if op == "Add" => Sym::Batch,
                        (Sym::Batch, Sym::Known(0)) if op == "Sub" => Sym::Batch,
                        _ => {
                            return Err(self.err(
                                "shape arithmetic on the batch size (the importer folds shapes with a symbolic batch only through copies)",
                            ))
                        }
                    });
                }
                Ints { dims, vals }
            }
            "ConstantOfShape" => {
                let shape = int_in(0)?;
                let mut count: usize = 1;
                let mut dims = Vec::new();
                for s in &shape.vals {
                    let Sym::Known(d) = *s else {
                        return Err(self.err("ConstantOfShape with the batch size in its shape"));
                    };
                    let d = usize::try_from(d)
                        .map_err(|_| self.err(format!("ConstantOfShape dimension {d}")))?;
                    count = count
                        .checked_mul(d)
                        .filter(|&c| c <= MAX_ELEMENTS)
                        .ok_or_else(|| {
                            self.err(format!(
                                "ConstantOfShape of more than {MAX_ELEMENTS} elements"
                            ))
                        })?;
                    dims.push(d);
                }
                let value = attr(node, "value").and_then(|a| a.t.clone());
                match value {
                    Some(t) if tensor_i64(&t).is_ok() => {
                        let v = tensor_i64(&t)?.first().copied().unwrap_or(0);
                        Ints {
                            dims,
                            vals: vec![Sym::Known(v); count],
                        }
                    }
                    other => {
                        let v = match other {
                            Some(t) => tensor_f32(&t)?.first().copied().unwrap_or(0.0),
                            None => 0.0,
                        };
                        use tract_onnx::pb::tensor_proto::DataType;
                        let t = TensorProto {
                            name: out_name.clone(),
                            dims: dims.iter().map(|&d| d as i64).collect(),
                            data_type: DataType::Float as i32,
                            float_data: vec![v; count],
                            ..Default::default()
                        };
                        self.consts.insert(out_name, t);
                        return Ok(());
                    }
                }
            }
            other => {
                return Err(self.err(format!(
                    "{other} on constants (only shape arithmetic is folded); {SUPPORTED}"
                )))
            }
        };
        self.ints.insert(out_name, result);
        Ok(())
    }

    /// `ReduceMean` over the height and width of an NCHW image (torch's dynamo exporter writes
    /// `AdaptiveAvgPool2d(1)` and `x.mean((2, 3))` so): a global average pool, kept as
    /// `[c, 1, 1]` (`keepdims = 1`) or flat (`keepdims = 0`). The axes come from the attribute
    /// (opsets before 18) or the constant second input (opset 18 on).
    fn reduce_mean(&mut self, node: &NodeProto) -> Result<()> {
        let (name, _, _) = self.data_input(node)?;
        self.image("ReduceMean", &name)?;
        let axes: Vec<i64> = match attr_ints(node, "axes") {
            Some(a) => a,
            None => match node.input.get(1).filter(|s| !s.is_empty()) {
                Some(a) => self
                    .ints(a)
                    .ok_or_else(|| self.err("ReduceMean with axes that are not constant"))?
                    .vals
                    .iter()
                    .map(|v| match v {
                        Sym::Known(k) => Ok(*k),
                        Sym::Batch => Err(self.err("ReduceMean axes holding the batch size")),
                    })
                    .collect::<Result<_>>()?,
                None => Vec::new(),
            },
        };
        let mut axes: Vec<i64> = axes
            .iter()
            .map(|&a| if a < 0 { a + 4 } else { a })
            .collect();
        axes.sort_unstable();
        if axes != [2, 3] {
            return Err(self.err(format!(
                "ReduceMean over axes {axes:?} of an NCHW image (only over height and width, \
                 [2, 3]: a global average pool)"
            )));
        }
        let out = self.push_same("gap", Layer::GlobalAvgPool, &name)?;
        let keepdims = attr_i(node, "keepdims").unwrap_or(1);
        self.set_output(node, out);
        if keepdims == 0 {
            let pooled = node.output.first().cloned().unwrap_or_default();
            self.flatten(node, &pooled)?;
        }
        Ok(())
    }

    fn image(&self, what: &str, name: &str) -> Result<Dims> {
        match self.data(name)?.1 {
            Value::Image { nchw: true, dims } => Ok(dims),
            Value::Image { nchw: false, .. } => Err(self.err(format!(
                "{what} on an NHWC tensor (ONNX {what} is NCHW; a Transpose to NCHW must come \
                 first; is the layout option right?)"
            ))),
            Value::Flat { .. } => {
                Err(self.err(format!("{what} on a flat [batch, features] tensor")))
            }
        }
    }

    /// `pads` / `auto_pad` of a conv or pool node as our padding (`kernel` is the dilated
    /// extent).
    fn padding(
        &self,
        node: &NodeProto,
        input: Dims,
        kernel: (usize, usize),
        stride: (usize, usize),
    ) -> Result<Padding> {
        let auto = attr_s(node, "auto_pad").unwrap_or_default();
        let (top, left, bottom, right) = match auto.as_str() {
            "" | "NOTSET" => {
                let p = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
                if p.len() != 4 {
                    return Err(self.err(format!("pads {p:?} (four values for a 2-D op)")));
                }
                let mut q = [0usize; 4];
                for (d, &v) in q.iter_mut().zip(&p) {
                    *d = extent(v, 0, "pad").map_err(|e| self.err(e))?;
                }
                (q[0], q[1], q[2], q[3])
            }
            "VALID" => (0, 0, 0, 0),
            "SAME_UPPER" | "SAME_LOWER" => {
                let upper = auto == "SAME_UPPER";
                let (t, b) = same_pads(input.h, kernel.0, stride.0, upper);
                let (l, r) = same_pads(input.w, kernel.1, stride.1, upper);
                (t, l, b, r)
            }
            other => return Err(self.err(format!("auto_pad `{other}`"))),
        };
        Ok(if top == 0 && left == 0 && bottom == 0 && right == 0 {
            Padding::Valid
        } else {
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            }
        })
    }

    fn pair(&self, node: &NodeProto, name: &str, default: usize) -> Result<(usize, usize)> {
        match attr_ints(node, name) {
            None => Ok((default, default)),
            Some(v) if v.len() == 2 => {
                let a = extent(v[0], 1, name).map_err(|e| self.err(e))?;
                let b = extent(v[1], 1, name).map_err(|e| self.err(e))?;
                Ok((a, b))
            }
            Some(v) => Err(self.err(format!("{name} {v:?} (two positive values for a 2-D op)"))),
        }
    }

    /// The single node reading `name`'s value, when it is read by exactly one node and is not
    /// the graph's output: a layer producing it may then absorb an affine map.
    fn sole_reader(&self, name: &str) -> bool {
        self.readers.get(name).copied() == Some(1) && name != self.graph_output
    }

    fn conv(&mut self, node: &NodeProto) -> Result<()> {
        let (name, j, _) = self.data_input(node)?;
        let input = self.image("Conv", &name)?;
        let w = self
            .const_input(node, 1)?
            .ok_or_else(|| self.err("a Conv without weights"))?;
        if w.dims.len() != 4 {
            return Err(self.err(format!(
                "a Conv with weights of shape {:?} (only 2-D convolutions, OIHW)",
                w.dims
            )));
        }
        let mut dims = [0usize; 4];
        for (d, &v) in dims.iter_mut().zip(&w.dims) {
            *d = extent(v, 1, "weight dimension").map_err(|e| self.err(e))?;
        }
        let (o, i, kh, kw) = (dims[0], dims[1], dims[2], dims[3]);
        let group = self.int_attr(node, "group", 1, 1)?;
        if i * group != input.c || o % group != 0 {
            return Err(self.err(format!(
                "weights for {i} input channels per group x {group} groups ({o} filters) on a \
                 tensor with {} channels",
                input.c
            )));
        }
        let dilation = self.pair(node, "dilations", 1)?;
        if let Some(k) = attr_ints(node, "kernel_shape") {
            if k != [kh as i64, kw as i64] {
                return Err(self.err(format!(
                    "kernel_shape {k:?} differs from the weights' {kh}x{kw}"
                )));
            }
        }
        let stride = self.pair(node, "strides", 1)?;
        let extent_k = ((kh - 1) * dilation.0 + 1, (kw - 1) * dilation.1 + 1);
        let padding = self.padding(node, input, extent_k, stride)?;
        let wv = tensor_f32(w)?;
        // OIHW -> HWIO (I = input channels per group)
        let mut weight = vec![0.0f32; wv.len()];
        for oc in 0..o {
            for ic in 0..i {
                for y in 0..kh {
                    for x in 0..kw {
                        weight[((y * kw + x) * i + ic) * o + oc] =
                            wv[((oc * i + ic) * kh + y) * kw + x];
                    }
                }
            }
        }
        let bias = match self.const_input(node, 2)? {
            Some(b) => {
                let b = tensor_f32(b)?;
                if b.len() != o {
                    return Err(self.err(format!("a bias of {} values for {o} filters", b.len())));
                }
                b
            }
            None => vec![0.0; o],
        };
        let layer = if group == 1 && dilation == (1, 1) {
            Layer::Conv2d(Conv2d {
                in_channels: i,
                out_channels: o,
                kernel: (kh, kw),
                stride,
                padding,
                weight,
                bias,
            })
        } else {
            Layer::GroupConv2d(GroupConv2d {
                in_channels: input.c,
                out_channels: o,
                kernel: (kh, kw),
                stride,
                dilation,
                groups: group,
                padding,
                weight,
                bias,
            })
        };
        let (k, d) = self.push("conv", layer, vec![j])?;
        self.set_output(
            node,
            (
                k,
                Value::Image {
                    nchw: true,
                    dims: d,
                },
            ),
        );
        Ok(())
    }

    fn pool(&mut self, node: &NodeProto) -> Result<()> {
        let (name, j, _) = self.data_input(node)?;
        let op = node.op_type.clone();
        let input = self.image(&op, &name)?;
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(self.err("MaxPool with an Indices output"));
        }
        let kernel = match attr_ints(node, "kernel_shape") {
            Some(k) if k.len() == 2 => (
                extent(k[0], 1, "kernel_shape").map_err(|e| self.err(e))?,
                extent(k[1], 1, "kernel_shape").map_err(|e| self.err(e))?,
            ),
            other => {
                return Err(self.err(format!(
                    "kernel_shape {other:?} (a 2-D pool needs two positive values)"
                )))
            }
        };
        if self.pair(node, "dilations", 1)? != (1, 1) {
            return Err(self.err("pooling with dilations (only 1)"));
        }
        let stride = self.pair(node, "strides", 1)?;
        let padding = self.padding(node, input, kernel, stride)?;
        if attr_i(node, "ceil_mode").unwrap_or(0) != 0 {
            // Ceil mode changes the output only where the window does not tile the input.
            let (t, b, l, r) = match padding {
                Padding::Explicit {
                    top,
                    bottom,
                    left,
                    right,
                } => (top, bottom, left, right),
                _ => (0, 0, 0, 0),
            };
            let fits = |n: usize, k: usize, s: usize| n >= k && (n - k).is_multiple_of(s);
            if !fits(input.h + t + b, kernel.0, stride.0)
                || !fits(input.w + l + r, kernel.1, stride.1)
            {
                return Err(self.err("ceil_mode = 1 where it changes the output size"));
            }
        }
        let layer = if op == "MaxPool" {
            Layer::MaxPool2d(MaxPool2d {
                size: kernel,
                stride,
                padding,
            })
        } else {
            Layer::AvgPool2d(AvgPool2d {
                size: kernel,
                stride,
                padding,
                count_include_pad: attr_i(node, "count_include_pad").unwrap_or(0) != 0,
            })
        };
        let (k, d) = self.push("pool", layer, vec![j])?;
        self.set_output(
            node,
            (
                k,
                Value::Image {
                    nchw: true,
                    dims: d,
                },
            ),
        );
        Ok(())
    }

    /// Per-channel values of a constant broadcast against `value` (scalar, `[c]`, or
    /// `[1, c, 1, 1]` / `[c, 1, 1]` for NCHW, `[1, 1, 1, c]` for NHWC).
    fn per_channel(&self, t: &TensorProto, value: Value) -> Result<Vec<f32>> {
        let v = tensor_f32(t)?;
        let c = value.channels();
        if v.len() == 1 {
            return Ok(vec![v[0]; c]);
        }
        let non_one: Vec<usize> = t
            .dims
            .iter()
            .enumerate()
            .filter(|(_, &d)| d != 1)
            .map(|(i, _)| i)
            .collect();
        let rank = t.dims.len();
        let axis_ok = match (value, non_one.as_slice()) {
            (_, []) => true,
            (Value::Image { nchw: true, .. }, [a]) => rank >= 3 && *a == rank - 3,
            (Value::Image { nchw: false, .. }, [a]) | (Value::Flat { .. }, [a]) => *a == rank - 1,
            _ => false,
        };
        if v.len() != c || !axis_ok {
            return Err(self.err(format!(
                "a constant of shape {:?} against a tensor with {c} channels (only scalars and \
                 per-channel constants broadcast)",
                t.dims
            )));
        }
        Ok(v)
    }

    fn batch_norm(&mut self, node: &NodeProto) -> Result<()> {
        let (name, j, value) = self.data_input(node)?;
        if attr_i(node, "training_mode").unwrap_or(0) != 0
            || node.output.iter().skip(1).any(|o| !o.is_empty())
        {
            return Err(self.err("BatchNormalization in training mode (only inference)"));
        }
        let eps = attr_f(node, "epsilon").unwrap_or(1e-5);
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(self.err(format!("epsilon {eps}")));
        }
        let get = |k: usize| -> Result<Vec<f32>> {
            let t = self
                .const_input(node, k)?
                .ok_or_else(|| self.err("BatchNormalization without its statistics"))?;
            let v = tensor_f32(t)?;
            if v.len() != value.channels() {
                return Err(self.err(format!(
                    "statistics of {} values for {} channels",
                    v.len(),
                    value.channels()
                )));
            }
            Ok(v)
        };
        let bn = BatchNorm {
            gamma: get(1)?,
            beta: get(2)?,
            mean: get(3)?,
            var: get(4)?,
            eps,
        };
        if !bn.var.iter().all(|v| v + eps > 0.0) {
            return Err(self.err("a variance + epsilon that is not positive"));
        }
        // Fold into the layer that produced the input when it feeds only this node.
        if j > 0 && self.sole_reader(&name) {
            let inv = bn.inv_std();
            let scale: Vec<f32> = bn.gamma.iter().zip(&inv).map(|(g, s)| g * s).collect();
            let shift: Vec<f32> = (0..scale.len())
                .map(|c| bn.beta[c] - bn.mean[c] * scale[c])
                .collect();
            if self.fold_affine(j, &scale, &shift) {
                self.set_output(node, (j, value));
                return Ok(());
            }
        }
        let out = self.push_same("bn", Layer::BatchNorm(bn), &name)?;
        self.set_output(node, out);
        Ok(())
    }

    /// Folds `y -> y * scale + shift` (per output channel) into the conv or dense layer that
    /// produces network node `j`; false when that layer is of another kind.
    fn fold_affine(&mut self, j: usize, scale: &[f32], shift: &[f32]) -> bool {
        let (weight, bias, out) = match &mut self.layers[j - 1].layer {
            Layer::Conv2d(c) => (&mut c.weight, &mut c.bias, c.out_channels),
            Layer::GroupConv2d(c) => (&mut c.weight, &mut c.bias, c.out_channels),
            Layer::Dense(d) => (&mut d.weight, &mut d.bias, d.out_features),
            _ => return false,
        };
        if scale.len() != out {
            return false;
        }
        for row in weight.chunks_mut(out) {
            for (w, s) in row.iter_mut().zip(scale) {
                *w *= s;
            }
        }
        for ((b, s), t) in bias.iter_mut().zip(scale).zip(shift) {
            *b = *b * s + t;
        }
        true
    }

    fn activation(&mut self, node: &NodeProto) -> Result<()> {
        let (name, _, _) = self.data_input(node)?;
        let f = |n: &str, d: f32| attr_f(node, n).unwrap_or(d);
        let finite = |v: f32, what: &str| -> Result<f32> {
            if v.is_nan() {
                Err(self.err(format!("{what} is NaN")))
            } else {
                Ok(v)
            }
        };
        let layer = match node.op_type.as_str() {
            "Relu" => Layer::Relu,
            "Sigmoid" => Layer::Sigmoid,
            "Tanh" => Layer::Tanh,
            "LeakyRelu" => Layer::LeakyRelu(finite(f("alpha", 0.01), "alpha")?),
            "HardSigmoid" => Layer::HardSigmoid {
                alpha: finite(f("alpha", 0.2), "alpha")?,
                beta: finite(f("beta", 0.5), "beta")?,
            },
            "HardSwish" => Layer::HardSwish,
            _ => {
                // Clip: attributes before opset 11, optional inputs since.
                let bound = |k: usize, attr_name: &str, d: f32| -> Result<f32> {
                    match self.const_input(node, k)? {
                        Some(t) => self.scalar(t),
                        None => Ok(attr_f(node, attr_name).unwrap_or(d)),
                    }
                };
                let min = finite(bound(1, "min", f32::NEG_INFINITY)?, "min")?;
                let max = finite(bound(2, "max", f32::INFINITY)?, "max")?;
                if min > max {
                    return Err(self.err(format!("Clip with min {min} > max {max}")));
                }
                if min == 0.0 && max == f32::INFINITY {
                    Layer::Relu
                } else {
                    Layer::Clip { min, max }
                }
            }
        };
        let base = match &layer {
            Layer::Relu => "relu",
            Layer::Clip { .. } => "clip",
            _ => "act",
        };
        let out = self.push_same(base, layer, &name)?;
        self.set_output(node, out);
        Ok(())
    }

    fn flatten(&mut self, node: &NodeProto, name: &str) -> Result<()> {
        let (j, v) = self.data(name)?;
        let out = match v {
            Value::Image { nchw, dims } => {
                let (k, _) = self.push("flatten", Layer::Flatten, vec![j])?;
                let chw = (nchw && dims.c > 1 && dims.h * dims.w > 1).then_some(dims);
                (
                    k,
                    Value::Flat {
                        len: dims.len(),
                        chw,
                    },
                )
            }
            flat @ Value::Flat { .. } => (j, flat),
        };
        self.set_output(node, out);
        Ok(())
    }

    fn reshape(&mut self, node: &NodeProto) -> Result<()> {
        let (name, _, v) = self.data_input(node)?;
        let shape_name = node.input.get(1).cloned().unwrap_or_default();
        let shape = self
            .ints(&shape_name)
            .ok_or_else(|| self.err("a Reshape whose target shape is not constant"))?;
        let len = v.dims().len() as i64;
        let batch_ok = |b: Sym| match b {
            Sym::Batch => true,
            Sym::Known(b) => b == 0 || self.fixed_batch.is_some_and(|f| f as i64 == b),
        };
        let known = |s: Sym| match s {
            Sym::Known(v) => Some(v),
            Sym::Batch => None,
        };
        let ok = match shape.vals.as_slice() {
            [b, f] => {
                (known(*f) == Some(len) && (*b == Sym::Known(-1) || batch_ok(*b)))
                    || (known(*f) == Some(-1) && batch_ok(*b))
            }
            _ => false,
        };
        if ok {
            return self.flatten(node, &name);
        }
        // A reshape that keeps the image as it is.
        if let Value::Image { nchw, dims } = v {
            let same: Vec<i64> = if nchw {
                vec![dims.c as i64, dims.h as i64, dims.w as i64]
            } else {
                vec![dims.h as i64, dims.w as i64, dims.c as i64]
            };
            if let [b, rest @ ..] = shape.vals.as_slice() {
                if batch_ok(*b)
                    && rest
                        .iter()
                        .map(|s| known(*s))
                        .eq(same.iter().map(|&d| Some(d)))
                {
                    let j = self.data(&name)?;
                    self.set_output(node, j);
                    return Ok(());
                }
            }
        }
        Err(self.err(format!(
            "Reshape to {:?} (only to [batch, features] = [-1, {len}] or [0, {len}])",
            shape.vals
        )))
    }

    fn squeeze(&mut self, node: &NodeProto) -> Result<()> {
        let (name, _, v) = self.data_input(node)?;
        let axes: Vec<i64> = match attr_ints(node, "axes") {
            Some(a) => a,
            None => match node.input.get(1).filter(|s| !s.is_empty()) {
                Some(n) => self
                    .ints(n)
                    .ok_or_else(|| self.err("Squeeze axes that are not constant"))?
                    .vals
                    .iter()
                    .map(|s| if let Sym::Known(v) = s { *v } else { -99 })
                    .collect(),
                None => vec![],
            },
        };
        let mut axes: Vec<i64> = axes
            .iter()
            .map(|&a| if a < 0 { a + 4 } else { a })
            .collect();
        axes.sort_unstable();
        match v {
            Value::Image { nchw, dims } if dims.h == 1 && dims.w == 1 => {
                let want: &[i64] = if nchw { &[2, 3] } else { &[1, 2] };
                if axes.is_empty() || axes == want {
                    return self.flatten(node, &name);
                }
                Err(self.err(format!(
                    "Squeeze of axes {axes:?} (only the 1x1 spatial axes)"
                )))
            }
            _ => Err(self.err("Squeeze of a tensor other than a 1x1 feature map")),
        }
    }

    fn transpose(&mut self, node: &NodeProto) -> Result<()> {
        let (_, j, v) = self.data_input(node)?;
        let perm = attr_ints(node, "perm").unwrap_or_default();
        let value = match (v, perm.as_slice()) {
            (Value::Image { nchw: false, dims }, [0, 3, 1, 2]) => Value::Image { nchw: true, dims },
            (Value::Image { nchw: true, dims }, [0, 2, 3, 1]) => Value::Image { nchw: false, dims },
            (flat @ Value::Flat { .. }, [0, 1]) => flat,
            _ => {
                return Err(self.err(format!(
                    "Transpose with perm {perm:?} on a {} tensor (only NHWC <-> NCHW layout \
                     changes)",
                    match v {
                        Value::Image { nchw: true, .. } => "NCHW",
                        Value::Image { nchw: false, .. } => "NHWC",
                        Value::Flat { .. } => "flat",
                    }
                )))
            }
        };
        self.set_output(node, (j, value));
        Ok(())
    }

    /// A dense layer from ONNX weights `b(k, o)` = weight from input feature `k` (in ONNX order)
    /// to output `o`, permuting the rows when the input is a flattened NCHW map.
    fn dense(
        &mut self,
        node: &NodeProto,
        in_features: usize,
        out_features: usize,
        b: impl Fn(usize, usize) -> f32,
        bias: Vec<f32>,
    ) -> Result<()> {
        let (_, j, v) = self.data_input(node)?;
        let Value::Flat { len, chw } = v else {
            return Err(self.err(format!(
                "{} on a 4-D tensor (a Flatten or Reshape must come first)",
                node.op_type
            )));
        };
        if in_features != len {
            return Err(self.err(format!(
                "weights for {in_features} input features on a tensor with {len}"
            )));
        }
        let mut weight = vec![0.0f32; in_features * out_features];
        for r in 0..in_features {
            // Our row r is in (h, w, c) order; find the ONNX row.
            let k = match chw {
                Some(d) => {
                    let (pos, ch) = (r / d.c, r % d.c);
                    ch * d.h * d.w + pos
                }
                None => r,
            };
            for o in 0..out_features {
                weight[r * out_features + o] = b(k, o);
            }
        }
        let (k, d) = self.push(
            "dense",
            Layer::Dense(Dense {
                in_features,
                out_features,
                weight,
                bias,
            }),
            vec![j],
        )?;
        self.set_output(
            node,
            (
                k,
                Value::Flat {
                    len: d.len(),
                    chw: None,
                },
            ),
        );
        Ok(())
    }

    fn weights_2d(&self, t: &TensorProto, what: &str) -> Result<(usize, usize)> {
        match t.dims.as_slice() {
            [r, c] if *r >= 1 && *c >= 1 => {
                let (r, c) = (*r as usize, *c as usize);
                match r.checked_mul(c) {
                    Some(_) => Ok((r, c)),
                    None => Err(self.err(format!("{what} weights of shape {:?}", t.dims))),
                }
            }
            _ => Err(self.err(format!("{what} weights of shape {:?} (only 2-D)", t.dims))),
        }
    }

    fn gemm(&mut self, node: &NodeProto) -> Result<()> {
        if attr_i(node, "transA").unwrap_or(0) != 0 {
            return Err(self.err("Gemm with transA = 1"));
        }
        let trans_b = attr_i(node, "transB").unwrap_or(0) != 0;
        let alpha = attr_f(node, "alpha").unwrap_or(1.0);
        let beta = attr_f(node, "beta").unwrap_or(1.0);
        let bt = self
            .const_input(node, 1)?
            .ok_or_else(|| self.err("a Gemm without constant weights"))?
            .clone();
        let (r, c) = self.weights_2d(&bt, "Gemm")?;
        let bv = tensor_f32(&bt)?;
        let (k, o) = if trans_b { (c, r) } else { (r, c) };
        let bias = self.bias(node, 2, o, beta)?;
        self.dense(
            node,
            k,
            o,
            |ki, oi| {
                alpha
                    * if trans_b {
                        bv[oi * c + ki]
                    } else {
                        bv[ki * c + oi]
                    }
            },
            bias,
        )
    }

    fn bias(&self, node: &NodeProto, index: usize, o: usize, beta: f32) -> Result<Vec<f32>> {
        match self.const_input(node, index)? {
            None => Ok(vec![0.0; o]),
            Some(t) => {
                let v = tensor_f32(t)?;
                let shape_ok = t.dims.iter().filter(|&&d| d != 1).count() <= 1;
                if v.len() == o && shape_ok {
                    Ok(v.iter().map(|x| x * beta).collect())
                } else if v.len() == 1 {
                    Ok(vec![v[0] * beta; o])
                } else {
                    Err(self.err(format!("a bias of shape {:?} for {o} outputs", t.dims)))
                }
            }
        }
    }

    fn matmul(&mut self, node: &NodeProto) -> Result<()> {
        if node.input.first().is_some_and(|i| self.is_const(i)) {
            return Err(self.err("MatMul whose first input is a constant (x must be first)"));
        }
        let bt = self
            .const_input(node, 1)?
            .ok_or_else(|| self.err("a MatMul without constant weights"))?
            .clone();
        let (k, o) = self.weights_2d(&bt, "MatMul")?;
        let bv = tensor_f32(&bt)?;
        self.dense(node, k, o, |ki, oi| bv[ki * o + oi], vec![0.0; o])
    }

    fn arithmetic(&mut self, node: &NodeProto) -> Result<()> {
        let op = node.op_type.as_str();
        let [a, b] = node.input.as_slice() else {
            return Err(self.err(format!("{op} with {} inputs", node.input.len())));
        };
        let (a, b) = (a.clone(), b.clone());
        let (a_data, b_data) = (self.values.get(&a).copied(), self.values.get(&b).copied());
        if let (Some((ja, va)), Some((jb, vb))) = (a_data, b_data) {
            if va != vb {
                return Err(self.err(format!(
                    "{op} of tensors of different shapes or layouts ({va:?} and {vb:?}; \
                     broadcasting between data tensors is not supported)"
                )));
            }
            let bop = match op {
                "Add" => BinaryOp::Add,
                "Sub" => BinaryOp::Sub,
                "Mul" => BinaryOp::Mul,
                _ => BinaryOp::Div,
            };
            let (k, _) = self.push("binary", Layer::Binary(bop), vec![ja, jb])?;
            self.set_output(node, (k, va));
            return Ok(());
        }
        let data_first = a_data.is_some();
        let (data_name, other) = if data_first { (a, b) } else { (b, a) };
        let (j, value) = self.data(&data_name)?;
        let t = self.constant(&other)?.clone();
        let node0_read = self.inputs.iter().any(|ins| ins.contains(&0));
        if j == 0 && !node0_read {
            // Input scaling before the first layer: fold into the input transform.
            let s = self.scalar(&t)?;
            match (op, data_first) {
                ("Mul", _) => {
                    self.pre_scale *= s;
                    self.pre_offset *= s;
                }
                ("Add", _) => self.pre_offset += s,
                ("Sub", true) => self.pre_offset -= s,
                ("Div", true) if s != 0.0 => {
                    self.pre_scale /= s;
                    self.pre_offset /= s;
                }
                _ => {
                    return Err(self.err(format!(
                        "{op} with the data as second operand (or a division by zero)"
                    )))
                }
            }
            self.set_output(node, (0, value));
            return Ok(());
        }
        // A per-channel (or scalar) affine map: y = x * scale + shift.
        let c = self.per_channel(&t, value)?;
        let (scale, shift): (Vec<f32>, Vec<f32>) = match (op, data_first) {
            ("Add", _) => (vec![1.0; c.len()], c),
            ("Sub", true) => (vec![1.0; c.len()], c.iter().map(|v| -v).collect()),
            ("Sub", false) => (vec![-1.0; c.len()], c),
            ("Mul", _) => (c, vec![0.0; value.channels()]),
            ("Div", true) if c.iter().all(|v| *v != 0.0) => (
                c.iter().map(|v| 1.0 / v).collect(),
                vec![0.0; value.channels()],
            ),
            _ => {
                return Err(self.err(format!(
                    "{op} of a constant by the data (or a division by zero)"
                )))
            }
        };
        if j > 0 && self.sole_reader(&data_name) && self.fold_affine(j, &scale, &shift) {
            self.set_output(node, (j, value));
            return Ok(());
        }
        let bn = BatchNorm {
            gamma: scale,
            beta: shift,
            mean: vec![0.0; value.channels()],
            var: vec![1.0; value.channels()],
            eps: 0.0,
        };
        let out = self.push_same("affine", Layer::BatchNorm(bn), &data_name)?;
        self.set_output(node, out);
        Ok(())
    }

    fn concat(&mut self, node: &NodeProto) -> Result<()> {
        let mut ins = Vec::new();
        let mut vals = Vec::new();
        for name in node.input.iter().filter(|s| !s.is_empty()) {
            let (j, v) = self.data(name)?;
            ins.push(j);
            vals.push(v);
        }
        let first = *vals
            .first()
            .ok_or_else(|| self.err("Concat without inputs"))?;
        let axis = attr_i(node, "axis").ok_or_else(|| self.err("Concat without an axis"))?;
        let ok = match first {
            Value::Image { nchw: true, .. } => axis == 1 || axis == -3,
            Value::Image { nchw: false, .. } => axis == 3 || axis == -1,
            Value::Flat { .. } => axis == 1 || axis == -1,
        };
        let same_kind = vals.iter().all(|v| match (v, first) {
            (Value::Image { nchw: a, .. }, Value::Image { nchw: b, .. }) => *a == b,
            (Value::Flat { chw: None, .. }, Value::Flat { .. }) => true,
            _ => false,
        });
        if !ok || !same_kind {
            return Err(self.err(format!(
                "Concat along axis {axis} (only along channels of tensors of one layout, or of \
                 flat tensors not straight from an NCHW flatten)"
            )));
        }
        let (k, d) = self.push("concat", Layer::Concat, ins)?;
        let out = match first {
            Value::Image { nchw, .. } => Value::Image { nchw, dims: d },
            Value::Flat { .. } => Value::Flat {
                len: d.len(),
                chw: None,
            },
        };
        self.set_output(node, (k, out));
        Ok(())
    }

    fn softmax(&mut self, node: &NodeProto) -> Result<()> {
        let (name, j, v) = self.data_input(node)?;
        let Value::Flat { chw, .. } = v else {
            return Err(self.err(format!(
                "{} over a 4-D tensor (only over [batch, classes])",
                node.op_type
            )));
        };
        if chw.is_some() {
            return Err(self.err(format!(
                "{} over a flattened NCHW map (its order differs from ours)",
                node.op_type
            )));
        }
        let default_axis = if self.opset >= 13 { -1 } else { 1 };
        let axis = attr_i(node, "axis").unwrap_or(default_axis);
        if axis != 1 && axis != -1 {
            return Err(self.err(format!(
                "{} over axis {axis} (only over the classes, axis 1 or -1)",
                node.op_type
            )));
        }
        let out = node.output.first().cloned().unwrap_or_default();
        if node.op_type == "LogSoftmax"
            && out == self.graph_output
            && self.readers.get(&out) == Some(&1)
        {
            // The graph's final LogSoftmax is the model's head (see `Head`).
            if j == 0 {
                return Err(self.err("LogSoftmax of the input"));
            }
            self.head = Head::LogSoftmax;
            self.set_output(node, (j, v));
            return Ok(());
        }
        let layer = if node.op_type == "Softmax" {
            Layer::Softmax
        } else {
            Layer::LogSoftmax
        };
        let o = self.push_same("softmax", layer, &name)?;
        self.set_output(node, o);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::same_pads;

    #[test]
    fn same_padding_matches_onnx() {
        // 28 -> 28 with a 3x3 kernel: one on each side.
        assert_eq!(same_pads(28, 3, 1, true), (1, 1));
        // 2x2 kernel: the extra one goes after (upper) or before (lower).
        assert_eq!(same_pads(28, 2, 1, true), (0, 1));
        assert_eq!(same_pads(28, 2, 1, false), (1, 0));
        // stride 2 on 7: out 4, total (4-1)*2+3-7 = 2.
        assert_eq!(same_pads(7, 3, 2, true), (1, 1));
    }
}
