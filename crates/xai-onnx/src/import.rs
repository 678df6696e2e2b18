//! The importer: an ONNX graph that is a chain of common image-classifier operators becomes an
//! [`xai_models::Network`] of our own layers (fast, and differentiable for the white-box methods).
//!
//! Handled: `Conv` (any kernel, strides, pads or `auto_pad`, group 1, no dilation), `MaxPool`
//! (no dilation; `ceil_mode` only where it changes nothing), `Gemm` (`transA = 0`, any `transB`,
//! `alpha`/`beta` folded into the weights), `MatMul` by a constant followed by an optional `Add`
//! of a bias, `Relu`, `Flatten` / `Reshape` to `[batch, features]`, `Transpose` where it only
//! switches between NCHW and NHWC, `Softmax`, a final `LogSoftmax`, `Dropout` / `Identity`, and
//! scalar `Mul` / `Div` / `Add` / `Sub` before the first layer (input scaling, folded into the
//! predictor's input transform). Weights must be initializers or `Constant` nodes.
//!
//! Layouts: ONNX convolutions are OIHW over NCHW tensors; `xai-models` keeps HWIO weights and
//! NHWC activations, so conv weights are transposed, and the rows of the first dense layer after
//! an NCHW flatten are permuted from `(c, h, w)` to our `(h, w, c)` order.

use std::collections::HashMap;

use tract_onnx::pb::{ModelProto, NodeProto, TensorProto};
use xai_models::layers::{Conv2d, Dense, Dims, Layer, MaxPool2d, Padding};
use xai_models::{NamedLayer, Network};

use crate::error::{OnnxError, Result};
use crate::options::ValidOnnxOptions;
use crate::proto::{
    attr, attr_f, attr_i, attr_ints, attr_s, graph, node_label, opset, tensor_f32, tensor_i64,
};

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
}

/// The ONNX tensor currently flowing down the chain.
#[derive(Debug, Clone, Copy)]
enum Value {
    /// A 4-D image batch; `nchw` tells its ONNX layout (our network holds it as NHWC anyway).
    Image { nchw: bool, dims: Dims },
    /// `[batch, len]`; `chw` is set when ONNX flattened an NCHW map of these dimensions, whose
    /// order differs from ours (NHWC) until a dense layer has mixed it.
    Flat { len: usize, chw: Option<Dims> },
}

const SUPPORTED: &str = "the importer handles Conv, MaxPool, Gemm, MatMul (+ Add), Relu, \
     Flatten, Reshape to [batch, features], Transpose between NCHW and NHWC, Softmax, a final \
     LogSoftmax, Dropout, Identity and scalar Mul/Div/Add/Sub on the input";

struct Importer<'a> {
    consts: HashMap<String, TensorProto>,
    opset: i64,
    fixed_batch: Option<usize>,
    layers: Vec<NamedLayer>,
    counters: HashMap<&'static str, usize>,
    current: String,
    value: Value,
    /// Index into `layers` of a dense layer that produced `current` directly (for a bias `Add`).
    last_dense: Option<usize>,
    pre_scale: f32,
    pre_offset: f32,
    head: Head,
    node: Option<&'a NodeProto>,
}

/// Imports `model` for inputs described by `opts` (`input_name` is the graph's data input).
pub(crate) fn import(
    model: &ModelProto,
    opts: &ValidOnnxOptions,
    input_name: &str,
    fixed_batch: Option<usize>,
) -> Result<Imported> {
    let g = graph(model)?;
    let [c, h, w] = opts.input_shape();
    let mut consts: HashMap<String, TensorProto> = HashMap::new();
    for t in &g.initializer {
        consts.insert(t.name.clone(), t.clone());
    }
    if !g.sparse_initializer.is_empty() {
        return Err(OnnxError::Unsupported(
            "the graph has sparse initializers, which the importer does not read".into(),
        ));
    }
    let mut im = Importer {
        consts,
        opset: opset(model).unwrap_or(13),
        fixed_batch,
        layers: Vec::new(),
        counters: HashMap::new(),
        current: input_name.to_string(),
        value: Value::Image {
            nchw: opts.layout() == crate::Layout::Nchw,
            dims: Dims::new(h, w, c),
        },
        last_dense: None,
        pre_scale: 1.0,
        pre_offset: 0.0,
        head: Head::Identity,
        node: None,
    };
    for node in &g.node {
        im.node = Some(node);
        im.step(node)?;
    }
    im.node = None;
    let out_names: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    if out_names != [im.current.as_str()] {
        return Err(OnnxError::Unsupported(format!(
            "the graph's outputs are {out_names:?}; the importer needs exactly one, the output of \
             its last node (`{}`)",
            im.current
        )));
    }
    match im.value {
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
    let net = Network::new(name, opts.input_shape(), im.layers)?;
    Ok(Imported {
        net,
        head: im.head,
        pre_scale: im.pre_scale,
        pre_offset: im.pre_offset,
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

    fn push(&mut self, base: &'static str, layer: Layer) -> Result<Dims> {
        let input = match self.value {
            Value::Image { dims, .. } => dims,
            Value::Flat { len, .. } => Dims::flat(len),
        };
        let out = layer
            .output_dims(input)
            .map_err(|e| self.err(format!("the layer does not fit its input: {e}")))?;
        let name = self.next_name(base);
        self.layers.push(NamedLayer { name, layer });
        Ok(out)
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

    /// Checks that the node reads the current tensor and constants only, and nothing else.
    fn check_chain(&self, node: &NodeProto) -> Result<()> {
        let data: Vec<&String> = node
            .input
            .iter()
            .filter(|i| !i.is_empty() && !self.consts.contains_key(i.as_str()))
            .collect();
        if data.len() != 1 || *data[0] != self.current {
            return Err(self.err(format!(
                "it reads {:?} but the importer takes a chain of single-input nodes, each \
                 reading the previous one's output (`{}`) and constants",
                data, self.current
            )));
        }
        Ok(())
    }

    fn advance(&mut self, node: &NodeProto, value: Value) {
        self.current = node.output.first().cloned().unwrap_or_default();
        self.value = value;
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

    fn step(&mut self, node: &'a NodeProto) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(self.err(format!(
                "operator domain `{}` (only the default ONNX domain is imported); {SUPPORTED}",
                node.domain
            )));
        }
        if node.op_type == "Constant" {
            return self.constant_node(node);
        }
        if self.head != Head::Identity && !matches!(node.op_type.as_str(), "Identity" | "Dropout") {
            return Err(self.err("LogSoftmax must be the last operation of the graph"));
        }
        self.check_chain(node)?;
        let was_dense = self.last_dense.take();
        match node.op_type.as_str() {
            "Identity" | "Dropout" => {
                // Inference: both pass the data through. A dropout mask output is harmless
                // unless used, and the chain check rejects any later use of it.
                self.last_dense = was_dense;
                let v = self.value;
                self.advance(node, v);
            }
            "Conv" => self.conv(node)?,
            "MaxPool" => self.max_pool(node)?,
            "Relu" => {
                self.push("relu", Layer::Relu)?;
                let v = self.value;
                self.advance(node, v);
            }
            "Flatten" => {
                let axis = attr_i(node, "axis").unwrap_or(1);
                if axis != 1 {
                    return Err(self.err(format!(
                        "Flatten with axis {axis} (only axis 1, [batch, features])"
                    )));
                }
                self.flatten(node)?;
            }
            "Reshape" => self.reshape(node)?,
            "Transpose" => self.transpose(node)?,
            "Gemm" => self.gemm(node)?,
            "MatMul" => self.matmul(node)?,
            "Add" | "Sub" | "Mul" | "Div" => self.arithmetic(node, was_dense)?,
            "Softmax" | "LogSoftmax" => {
                let Value::Flat { .. } = self.value else {
                    return Err(self.err(format!(
                        "{} over a 4-D tensor (only over [batch, classes])",
                        node.op_type
                    )));
                };
                let default_axis = if self.opset >= 13 { -1 } else { 1 };
                let axis = attr_i(node, "axis").unwrap_or(default_axis);
                if axis != 1 && axis != -1 {
                    return Err(self.err(format!(
                        "{} over axis {axis} (only over the classes, axis 1 or -1)",
                        node.op_type
                    )));
                }
                if node.op_type == "Softmax" {
                    self.push("softmax", Layer::Softmax)?;
                } else {
                    self.head = Head::LogSoftmax;
                }
                let v = self.value;
                self.advance(node, v);
            }
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

    fn image(&self, what: &str) -> Result<Dims> {
        match self.value {
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

    /// `pads` / `auto_pad` of a conv or pool node as our padding.
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
                if p.len() != 4 || p.iter().any(|&v| v < 0) {
                    return Err(self.err(format!("pads {p:?} (four non-negative values)")));
                }
                (p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize)
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
            Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => {
                Ok((v[0] as usize, v[1] as usize))
            }
            Some(v) => Err(self.err(format!("{name} {v:?} (two positive values for a 2-D op)"))),
        }
    }

    fn conv(&mut self, node: &NodeProto) -> Result<()> {
        let input = self.image("Conv")?;
        let w = self
            .const_input(node, 1)?
            .ok_or_else(|| self.err("a Conv without weights"))?;
        if w.dims.len() != 4 {
            return Err(self.err(format!(
                "a Conv with weights of shape {:?} (only 2-D convolutions, OIHW)",
                w.dims
            )));
        }
        let dims: Vec<usize> = w.dims.iter().map(|&d| d.max(0) as usize).collect();
        let (o, i, kh, kw) = (dims[0], dims[1], dims[2], dims[3]);
        let group = attr_i(node, "group").unwrap_or(1);
        if group != 1 {
            return Err(self.err(format!("grouped convolution (group = {group})")));
        }
        if i != input.c {
            return Err(self.err(format!(
                "weights for {i} input channels on a tensor with {} channels",
                input.c
            )));
        }
        if let Some(d) = attr_ints(node, "dilations") {
            if d.iter().any(|&v| v != 1) {
                return Err(self.err(format!("dilations {d:?} (only 1)")));
            }
        }
        if let Some(k) = attr_ints(node, "kernel_shape") {
            if k != [kh as i64, kw as i64] {
                return Err(self.err(format!(
                    "kernel_shape {k:?} differs from the weights' {kh}x{kw}"
                )));
            }
        }
        let stride = self.pair(node, "strides", 1)?;
        let padding = self.padding(node, input, (kh, kw), stride)?;
        let wv = tensor_f32(w)?;
        // OIHW -> HWIO
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
        let layer = Layer::Conv2d(Conv2d {
            in_channels: i,
            out_channels: o,
            kernel: (kh, kw),
            stride,
            padding,
            weight,
            bias,
        });
        let out = self.push("conv", layer)?;
        self.advance(
            node,
            Value::Image {
                nchw: true,
                dims: out,
            },
        );
        Ok(())
    }

    fn max_pool(&mut self, node: &NodeProto) -> Result<()> {
        let input = self.image("MaxPool")?;
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(self.err("MaxPool with an Indices output"));
        }
        let kernel = match attr_ints(node, "kernel_shape") {
            Some(k) if k.len() == 2 && k.iter().all(|&v| v >= 1) => (k[0] as usize, k[1] as usize),
            other => {
                return Err(self.err(format!(
                    "kernel_shape {other:?} (a 2-D pool needs two positive values)"
                )))
            }
        };
        if let Some(d) = attr_ints(node, "dilations") {
            if d.iter().any(|&v| v != 1) {
                return Err(self.err(format!("dilations {d:?} (only 1)")));
            }
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
        let out = self.push(
            "pool",
            Layer::MaxPool2d(MaxPool2d {
                size: kernel,
                stride,
                padding,
            }),
        )?;
        self.advance(
            node,
            Value::Image {
                nchw: true,
                dims: out,
            },
        );
        Ok(())
    }

    fn flatten(&mut self, node: &NodeProto) -> Result<()> {
        let value = match self.value {
            Value::Image { nchw, dims } => {
                self.push("flatten", Layer::Flatten)?;
                Value::Flat {
                    len: dims.len(),
                    chw: nchw.then_some(dims),
                }
            }
            flat @ Value::Flat { .. } => flat,
        };
        self.advance(node, value);
        Ok(())
    }

    fn reshape(&mut self, node: &NodeProto) -> Result<()> {
        let shape_t = self
            .const_input(node, 1)?
            .ok_or_else(|| self.err("a Reshape without a target shape"))?;
        let shape = tensor_i64(shape_t)?;
        let len = match self.value {
            Value::Image { dims, .. } => dims.len() as i64,
            Value::Flat { len, .. } => len as i64,
        };
        let batch_ok = |b: i64| b == 0 || self.fixed_batch.is_some_and(|f| f as i64 == b);
        let ok = match shape.as_slice() {
            [b, f] => (*f == len && (*b == -1 || batch_ok(*b))) || (*f == -1 && batch_ok(*b)),
            _ => false,
        };
        if !ok {
            return Err(self.err(format!(
                "Reshape to {shape:?} (only to [batch, features] = [-1, {len}] or [0, {len}])"
            )));
        }
        self.flatten(node)
    }

    fn transpose(&mut self, node: &NodeProto) -> Result<()> {
        let perm = attr_ints(node, "perm").unwrap_or_default();
        let value = match (self.value, perm.as_slice()) {
            (Value::Image { nchw: false, dims }, [0, 3, 1, 2]) => Value::Image { nchw: true, dims },
            (Value::Image { nchw: true, dims }, [0, 2, 3, 1]) => Value::Image { nchw: false, dims },
            (flat @ Value::Flat { .. }, [0, 1]) => flat,
            _ => {
                return Err(self.err(format!(
                    "Transpose with perm {perm:?} on a {} tensor (only NHWC <-> NCHW layout \
                     changes)",
                    match self.value {
                        Value::Image { nchw: true, .. } => "NCHW",
                        Value::Image { nchw: false, .. } => "NHWC",
                        Value::Flat { .. } => "flat",
                    }
                )))
            }
        };
        self.advance(node, value);
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
        let Value::Flat { len, chw } = self.value else {
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
        let index = self.layers.len();
        let out = self.push(
            "dense",
            Layer::Dense(Dense {
                in_features,
                out_features,
                weight,
                bias,
            }),
        )?;
        self.last_dense = Some(index);
        self.advance(
            node,
            Value::Flat {
                len: out.len(),
                chw: None,
            },
        );
        Ok(())
    }

    fn gemm(&mut self, node: &NodeProto) -> Result<()> {
        if node.input.first() != Some(&self.current) {
            return Err(self.err("Gemm whose first input is not the data"));
        }
        if attr_i(node, "transA").unwrap_or(0) != 0 {
            return Err(self.err("Gemm with transA = 1"));
        }
        let trans_b = attr_i(node, "transB").unwrap_or(0) != 0;
        let alpha = attr_f(node, "alpha").unwrap_or(1.0);
        let beta = attr_f(node, "beta").unwrap_or(1.0);
        let bt = self
            .const_input(node, 1)?
            .ok_or_else(|| self.err("a Gemm without weights"))?;
        if bt.dims.len() != 2 || bt.dims.iter().any(|&d| d < 1) {
            return Err(self.err(format!("Gemm weights of shape {:?}", bt.dims)));
        }
        let (r, c) = (bt.dims[0] as usize, bt.dims[1] as usize);
        let bv = tensor_f32(bt)?;
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
                let elems: i64 = t.dims.iter().product();
                let shape_ok = t.dims.iter().filter(|&&d| d != 1).count() <= 1;
                if v.len() == o && shape_ok && elems as usize == o {
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
        if node.input.first() != Some(&self.current) {
            return Err(self.err("MatMul whose first input is a constant (x must be first)"));
        }
        let bt = self
            .const_input(node, 1)?
            .ok_or_else(|| self.err("a MatMul without weights"))?;
        if bt.dims.len() != 2 || bt.dims.iter().any(|&d| d < 1) {
            return Err(self.err(format!(
                "MatMul by a constant of shape {:?} (only 2-D weights)",
                bt.dims
            )));
        }
        let (k, o) = (bt.dims[0] as usize, bt.dims[1] as usize);
        let bv = tensor_f32(bt)?;
        self.dense(node, k, o, |ki, oi| bv[ki * o + oi], vec![0.0; o])
    }

    fn arithmetic(&mut self, node: &NodeProto, was_dense: Option<usize>) -> Result<()> {
        let op = node.op_type.as_str();
        let data_first = node.input.first() == Some(&self.current);
        let other = node
            .input
            .iter()
            .find(|i| **i != self.current)
            .ok_or_else(|| self.err(format!("{op} of the data with itself")))?;
        let t = self.constant(other)?.clone();
        if self.layers.is_empty() {
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
            let v = self.value;
            self.advance(node, v);
            return Ok(());
        }
        let sign = match (op, data_first) {
            ("Add", _) => 1.0,
            ("Sub", true) => -1.0,
            _ => {
                return Err(self.err(format!(
                    "{op} after the first layer (only a bias Add after a dense layer, or scalar \
                     input scaling before the first layer)"
                )))
            }
        };
        let Some(index) = was_dense else {
            return Err(self.err(format!(
                "{op} that does not follow a dense layer (only as its bias)"
            )));
        };
        let out = match &self.layers[index].layer {
            Layer::Dense(d) => d.out_features,
            _ => return Err(self.err("internal: the last dense layer is not dense")),
        };
        let b = self.bias(node, if data_first { 1 } else { 0 }, out, sign)?;
        if let Layer::Dense(d) = &mut self.layers[index].layer {
            for (x, y) in d.bias.iter_mut().zip(&b) {
                *x += y;
            }
        }
        self.last_dense = Some(index);
        let v = self.value;
        self.advance(node, v);
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
