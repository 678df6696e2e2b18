//! ONNX export of an [`xai_models::Network`]: a `ModelProto` (opset 13) whose input is
//! `[N, c, h, w]` (or `[N, h, w, c]`) with a dynamic batch dimension `N`.
//!
//! Convolutions become `Conv` (HWIO weights transposed to OIHW), pooling `MaxPool`, dense layers
//! `Gemm` with `transB = 1` (the rows of a dense layer after a flatten are permuted from our
//! NHWC order to ONNX's NCHW order), `Relu`, `Flatten` and `Softmax` map one to one and dropout is
//! left out (inference). Grouped/dilated convolutions become `Conv` with `group` / `dilations`,
//! average pooling `AveragePool` / `GlobalAveragePool`, batch norm `BatchNormalization`, the
//! activations their ONNX operators (`Clip` with min/max inputs; hard swish as
//! `x * HardSigmoid(x)`, since `HardSwish` needs opset 14), and a graph's `Add`/`Sub`/`Mul`/`Div`
//! and `Concat` nodes read the tensors of the layers they join. A network that ends in an image gets a final `Flatten`, so the output is
//! `[N, c * h * w]` in `[c, h, w]` order, as its [`xai_core::Predictor`] output.

use std::path::Path;

use prost::Message;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::type_proto::{self, Tensor as TensorType};
use tract_onnx::pb::{
    attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use xai_core::Predictor;
use xai_models::layers::{Dims, Layer, Padding};
use xai_models::ops::BinaryOp;
use xai_models::Network;

use crate::error::{OnnxError, Result};
use crate::options::{Layout, OutputKind};

/// The ONNX opset the exporter writes.
pub const EXPORT_OPSET: i64 = 13;

/// How to export: the input layout and scaling the ONNX model should expect, and what it should
/// output. Defaults: NCHW, no scaling, the network's own output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportOptions {
    layout: Layout,
    input_scale: Option<f32>,
    output: Option<OutputKind>,
}

impl ExportOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The layout of the exported model's input (an NHWC model starts with a `Transpose`).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The exported model expects inputs multiplied by `scale` (e.g. 255 for raw pixels of a
    /// network trained on [0, 1]); it starts by dividing by `scale`.
    pub fn input_scale(mut self, scale: f32) -> Self {
        self.input_scale = Some(scale);
        self
    }

    /// What the exported model outputs. A network ending in `Softmax` outputs probabilities;
    /// [`OutputKind::Logits`] leaves that softmax out and [`OutputKind::LogProbabilities`]
    /// replaces it by `LogSoftmax`. A network without one gets a `Softmax` or `LogSoftmax`
    /// appended when asked.
    pub fn output(mut self, kind: OutputKind) -> Self {
        self.output = Some(kind);
        self
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn float_tensor(name: &str, dims: &[usize], values: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(TensorType {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(v) => dimension::Value::DimValue(*v as i64),
                                None => dimension::Value::DimParam("N".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Explicit ONNX pads `[top, left, bottom, right]` of a window, as `xai-models` computes them.
fn onnx_pads(
    padding: Padding,
    input: Dims,
    kernel: (usize, usize),
    stride: (usize, usize),
) -> [i64; 4] {
    match padding {
        Padding::Valid => [0; 4],
        Padding::Same => {
            let same = |n: usize, k: usize, s: usize| {
                let out = n.div_ceil(s);
                let total = ((out.saturating_sub(1)) * s + k).saturating_sub(n);
                (total / 2, total - total / 2)
            };
            let (t, b) = same(input.h, kernel.0, stride.0);
            let (l, r) = same(input.w, kernel.1, stride.1);
            [t as i64, l as i64, b as i64, r as i64]
        }
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => [top as i64, left as i64, bottom as i64, right as i64],
    }
}

struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    current: String,
}

impl Builder {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        extra_inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        let out = format!("{name}_out");
        let mut input = vec![self.current.clone()];
        input.extend(extra_inputs);
        self.nodes.push(NodeProto {
            input,
            output: vec![out.clone()],
            name: name.into(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        self.current = out;
    }

    fn init(&mut self, name: String, dims: &[usize], values: Vec<f32>) -> String {
        self.initializers.push(float_tensor(&name, dims, values));
        name
    }
}

/// The ONNX model of `net`.
pub fn to_onnx(net: &Network, options: &ExportOptions) -> Result<ModelProto> {
    let fail = |reason: String| OnnxError::Export {
        network: net.name().to_string(),
        reason,
    };
    let shape = net.input_shape();
    let [c, h, w] = [shape[0], shape[1], shape[2]];
    let mut b = Builder {
        nodes: Vec::new(),
        initializers: Vec::new(),
        current: "input".into(),
    };
    let input_dims = match options.layout {
        Layout::Nchw => [None, Some(c), Some(h), Some(w)],
        Layout::Nhwc => [None, Some(h), Some(w), Some(c)],
    };
    if let Some(s) = options.input_scale {
        if !s.is_finite() || s == 0.0 {
            return Err(OnnxError::option(
                "input_scale",
                s,
                "a finite, non-zero number",
            ));
        }
        let k = b.init("input_scale".into(), &[], vec![s]);
        b.node("Div", "scale_input", vec![k], vec![]);
    }
    if options.layout == Layout::Nhwc {
        b.node(
            "Transpose",
            "to_nchw",
            vec![],
            vec![attr_ints("perm", &[0, 3, 1, 2])],
        );
    }
    let layers = net.layers();
    let dims = net.dims();
    let ends_in_softmax = matches!(layers.last().map(|l| &l.layer), Some(Layer::Softmax));
    let wanted = options.output.unwrap_or(if ends_in_softmax {
        OutputKind::Probabilities
    } else {
        OutputKind::Logits
    });
    // `flat_chw`: the current tensor is a flattened NCHW map of these dims (ONNX order), while
    // our layers index it in NHWC order.
    let mut flat_chw: Option<Dims> = None;
    let mut spatial = true;
    // Per network node: its ONNX tensor name and (spatial, flat_chw) state.
    let mut names = vec![b.current.clone()];
    let mut states = vec![(true, None::<Dims>)];
    for (i, l) in layers.iter().enumerate() {
        let ins = net.layer_inputs(i);
        let input = dims[ins[0]];
        b.current = names[ins[0]].clone();
        (spatial, flat_chw) = states[ins[0]];
        let is_last = i + 1 == layers.len();
        match &l.layer {
            Layer::Conv2d(conv) => {
                let (kh, kw) = conv.kernel;
                let (ci, co) = (conv.in_channels, conv.out_channels);
                let mut oihw = vec![0.0f32; conv.weight.len()];
                for o in 0..co {
                    for ic in 0..ci {
                        for y in 0..kh {
                            for x in 0..kw {
                                oihw[((o * ci + ic) * kh + y) * kw + x] =
                                    conv.weight[((y * kw + x) * ci + ic) * co + o];
                            }
                        }
                    }
                }
                let wn = b.init(format!("{}.weight", l.name), &[co, ci, kh, kw], oihw);
                let bn = b.init(format!("{}.bias", l.name), &[co], conv.bias.clone());
                let pads = onnx_pads(conv.padding, input, conv.kernel, conv.stride);
                b.node(
                    "Conv",
                    &l.name,
                    vec![wn, bn],
                    vec![
                        attr_ints("kernel_shape", &[kh as i64, kw as i64]),
                        attr_ints("strides", &[conv.stride.0 as i64, conv.stride.1 as i64]),
                        attr_ints("pads", &pads),
                        attr_ints("dilations", &[1, 1]),
                        attr_int("group", 1),
                    ],
                );
            }
            Layer::MaxPool2d(pool) => {
                let pads = onnx_pads(pool.padding, input, pool.size, pool.stride);
                b.node(
                    "MaxPool",
                    &l.name,
                    vec![],
                    vec![
                        attr_ints("kernel_shape", &[pool.size.0 as i64, pool.size.1 as i64]),
                        attr_ints("strides", &[pool.stride.0 as i64, pool.stride.1 as i64]),
                        attr_ints("pads", &pads),
                    ],
                );
            }
            Layer::Relu => b.node("Relu", &l.name, vec![], vec![]),
            Layer::Dropout(_) => {}
            Layer::Flatten => {
                if spatial {
                    b.node("Flatten", &l.name, vec![], vec![attr_int("axis", 1)]);
                    flat_chw = Some(input);
                    spatial = false;
                }
            }
            Layer::Dense(d) => {
                if spatial {
                    b.node(
                        "Flatten",
                        &format!("{}_flatten", l.name),
                        vec![],
                        vec![attr_int("axis", 1)],
                    );
                    flat_chw = Some(input);
                    spatial = false;
                }
                let (k, o) = (d.in_features, d.out_features);
                // ONNX B[o, k_onnx] (transB = 1); our weight is [k_ours, o].
                let mut bt = vec![0.0f32; k * o];
                for r in 0..k {
                    let ko = match flat_chw {
                        Some(fd) => (r % fd.c) * fd.h * fd.w + r / fd.c,
                        None => r,
                    };
                    for oi in 0..o {
                        bt[oi * k + ko] = d.weight[r * o + oi];
                    }
                }
                flat_chw = None;
                let wn = b.init(format!("{}.weight", l.name), &[o, k], bt);
                let bn = b.init(format!("{}.bias", l.name), &[o], d.bias.clone());
                b.node(
                    "Gemm",
                    &l.name,
                    vec![wn, bn],
                    vec![attr_int("transA", 0), attr_int("transB", 1)],
                );
            }
            Layer::Softmax => {
                if spatial && (input.h * input.w > 1) {
                    return Err(fail(format!(
                        "softmax layer `{}` over a {}x{}x{} feature map",
                        l.name, input.h, input.w, input.c
                    )));
                }
                if flat_chw.is_some_and(|d| d.c > 1 && d.h * d.w > 1) {
                    return Err(fail(format!(
                        "softmax layer `{}` directly over flattened features (no dense layer \
                         between), whose order differs between NHWC and NCHW",
                        l.name
                    )));
                }
                if spatial {
                    b.node(
                        "Flatten",
                        &format!("{}_flatten", l.name),
                        vec![],
                        vec![attr_int("axis", 1)],
                    );
                    spatial = false;
                }
                // A final softmax is written below, according to the wanted output.
                if !is_last {
                    b.node("Softmax", &l.name, vec![], vec![attr_int("axis", 1)]);
                }
            }
            Layer::Upsample2d(_) => {
                return Err(fail(format!(
                    "upsampling layer `{}` (the exporter writes classifiers: conv, pool, dense, \
                     activations, flatten, softmax and graph nodes)",
                    l.name
                )))
            }
            Layer::GroupConv2d(g) => {
                let (kh, kw) = g.kernel;
                let (ig, co) = (g.in_channels / g.groups.max(1), g.out_channels);
                let mut oihw = vec![0.0f32; g.weight.len()];
                for o in 0..co {
                    for ic in 0..ig {
                        for y in 0..kh {
                            for x in 0..kw {
                                oihw[((o * ig + ic) * kh + y) * kw + x] =
                                    g.weight[((y * kw + x) * ig + ic) * co + o];
                            }
                        }
                    }
                }
                let wn = b.init(format!("{}.weight", l.name), &[co, ig, kh, kw], oihw);
                let bn = b.init(format!("{}.bias", l.name), &[co], g.bias.clone());
                let extent = ((kh - 1) * g.dilation.0 + 1, (kw - 1) * g.dilation.1 + 1);
                let pads = onnx_pads(g.padding, input, extent, g.stride);
                b.node(
                    "Conv",
                    &l.name,
                    vec![wn, bn],
                    vec![
                        attr_ints("kernel_shape", &[kh as i64, kw as i64]),
                        attr_ints("strides", &[g.stride.0 as i64, g.stride.1 as i64]),
                        attr_ints("pads", &pads),
                        attr_ints("dilations", &[g.dilation.0 as i64, g.dilation.1 as i64]),
                        attr_int("group", g.groups as i64),
                    ],
                );
            }
            Layer::AvgPool2d(pool) => {
                let pads = onnx_pads(pool.padding, input, pool.size, pool.stride);
                b.node(
                    "AveragePool",
                    &l.name,
                    vec![],
                    vec![
                        attr_ints("kernel_shape", &[pool.size.0 as i64, pool.size.1 as i64]),
                        attr_ints("strides", &[pool.stride.0 as i64, pool.stride.1 as i64]),
                        attr_ints("pads", &pads),
                        attr_int("count_include_pad", i64::from(pool.count_include_pad)),
                    ],
                );
            }
            Layer::GlobalAvgPool => b.node("GlobalAveragePool", &l.name, vec![], vec![]),
            Layer::BatchNorm(bn) => {
                if !spatial && flat_chw.is_some_and(|d| d.c > 1 && d.h * d.w > 1) {
                    return Err(fail(format!(
                        "batch norm `{}` directly over flattened NCHW features",
                        l.name
                    )));
                }
                let c = bn.gamma.len();
                let names4: Vec<String> = [
                    ("weight", &bn.gamma),
                    ("bias", &bn.beta),
                    ("mean", &bn.mean),
                    ("var", &bn.var),
                ]
                .into_iter()
                .map(|(k, v)| b.init(format!("{}.{k}", l.name), &[c], v.clone()))
                .collect();
                b.node(
                    "BatchNormalization",
                    &l.name,
                    names4,
                    vec![attr_float("epsilon", bn.eps)],
                );
            }
            Layer::Sigmoid => b.node("Sigmoid", &l.name, vec![], vec![]),
            Layer::Tanh => b.node("Tanh", &l.name, vec![], vec![]),
            Layer::LeakyRelu(a) => {
                b.node("LeakyRelu", &l.name, vec![], vec![attr_float("alpha", *a)])
            }
            Layer::Clip { min, max } => {
                let lo = b.init(format!("{}.min", l.name), &[], vec![*min]);
                let hi = b.init(format!("{}.max", l.name), &[], vec![*max]);
                b.node("Clip", &l.name, vec![lo, hi], vec![]);
            }
            Layer::HardSigmoid { alpha, beta } => b.node(
                "HardSigmoid",
                &l.name,
                vec![],
                vec![attr_float("alpha", *alpha), attr_float("beta", *beta)],
            ),
            Layer::HardSwish => {
                // HardSwish is opset 14; x * HardSigmoid(x; 1/6, 1/2) is the same function.
                let x = b.current.clone();
                b.node(
                    "HardSigmoid",
                    &format!("{}_gate", l.name),
                    vec![],
                    vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)],
                );
                b.node("Mul", &l.name, vec![x], vec![]);
            }
            Layer::LogSoftmax => {
                if spatial || flat_chw.is_some_and(|d| d.c > 1 && d.h * d.w > 1) {
                    return Err(fail(format!(
                        "log-softmax layer `{}` over a feature map",
                        l.name
                    )));
                }
                b.node("LogSoftmax", &l.name, vec![], vec![attr_int("axis", 1)]);
            }
            Layer::Binary(_) | Layer::Concat => {
                let op = match &l.layer {
                    Layer::Binary(BinaryOp::Add) => "Add",
                    Layer::Binary(BinaryOp::Sub) => "Sub",
                    Layer::Binary(BinaryOp::Mul) => "Mul",
                    Layer::Binary(BinaryOp::Div) => "Div",
                    _ => "Concat",
                };
                if ins.iter().any(|&j| states[j] != states[ins[0]]) {
                    return Err(fail(format!(
                        "`{}` joins tensors of different layouts (image and flat)",
                        l.name
                    )));
                }
                if op == "Concat" && !spatial && flat_chw.is_some_and(|d| d.c > 1 && d.h * d.w > 1)
                {
                    return Err(fail(format!(
                        "`{}` concatenates flattened NCHW features",
                        l.name
                    )));
                }
                let out = format!("{}_out", l.name);
                b.nodes.push(NodeProto {
                    input: ins.iter().map(|&j| names[j].clone()).collect(),
                    output: vec![out.clone()],
                    name: l.name.clone(),
                    op_type: op.into(),
                    attribute: if op == "Concat" {
                        vec![attr_int("axis", 1)]
                    } else {
                        vec![]
                    },
                    ..Default::default()
                });
                b.current = out;
            }
        }
        names.push(b.current.clone());
        states.push((spatial, flat_chw));
    }
    if b.nodes.last().and_then(|n| n.output.first()) != Some(&b.current) && !b.nodes.is_empty() {
        // The network's output is not the last node written (a final dropout in a graph).
        b.node("Identity", "output_identity_top", vec![], vec![]);
    }
    if spatial {
        // An image output: flatten it in [c, h, w] order, as the Predictor does.
        b.node(
            "Flatten",
            "output_flatten",
            vec![],
            vec![attr_int("axis", 1)],
        );
    } else if flat_chw.is_some_and(|d| d.c > 1 && d.h * d.w > 1) {
        return Err(fail(
            "the output is a flattened feature map, whose order differs between NHWC and NCHW"
                .into(),
        ));
    }
    match wanted {
        OutputKind::Probabilities => {
            b.node("Softmax", "softmax", vec![], vec![attr_int("axis", 1)])
        }
        OutputKind::LogProbabilities => b.node(
            "LogSoftmax",
            "log_softmax",
            vec![],
            vec![attr_int("axis", 1)],
        ),
        // A final softmax layer is left out: the layer before it gives the logits.
        OutputKind::Logits => {}
    }
    // The last node writes the graph output.
    let output_name = "output".to_string();
    match b.nodes.last_mut() {
        Some(last) => last.output = vec![output_name.clone()],
        None => {
            b.node("Identity", "output_identity", vec![], vec![]);
            if let Some(last) = b.nodes.last_mut() {
                last.output = vec![output_name.clone()];
            }
        }
    }
    let n_out = net.n_outputs();
    let graph = GraphProto {
        node: b.nodes,
        name: net.name().to_string(),
        initializer: b.initializers,
        input: vec![value_info("input", &input_dims)],
        output: vec![value_info(&output_name, &[None, Some(n_out)])],
        doc_string: format!(
            "{} exported by xai-onnx {}",
            net.name(),
            env!("CARGO_PKG_VERSION")
        ),
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: EXPORT_OPSET,
        }],
        producer_name: "xai-onnx".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    })
}

/// The serialised ONNX model of `net`.
pub fn to_onnx_bytes(net: &Network, options: &ExportOptions) -> Result<Vec<u8>> {
    Ok(to_onnx(net, options)?.encode_to_vec())
}

/// Writes `net` as an ONNX file at `path`.
pub fn save_onnx(net: &Network, path: impl AsRef<Path>, options: &ExportOptions) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_onnx_bytes(net, options)?;
    std::fs::write(path, bytes).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })
}
