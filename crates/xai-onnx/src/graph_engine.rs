//! The general tier: an ONNX graph as an `xai-graph` [`GraphModel`] (every operator the engine
//! reads, N-D tensors, differentiable), for the graphs the importer declines.
//!
//! The options' input transform goes into the graph itself, in front of the model's input:
//! `x · input_scale + input_offset`, then a transpose to NHWC for an NHWC model; a conversion to
//! probabilities (softmax of logits, `exp` of log-probabilities) goes after its output. So the
//! model's gradients include both, with nothing to undo by hand.

use ndarray::{ArrayD, IxDyn};
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};
use xai_graph::{Attr, Attrs, GraphBuilder, GraphError, GraphModel, NodeDef, Value};

use crate::error::{OnnxError, Result};
use crate::options::{Layout, ValidOnnxOptions};
use crate::proto::{data_type_name, graph, node_label, opset};

/// How the graph's output is turned into what the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputMap {
    /// As the graph computes it.
    AsIs,
    /// Softmax over the outputs (logits to probabilities).
    Softmax,
    /// `exp` (log-probabilities to probabilities).
    Exp,
}

/// The element count of a tensor, checked for overflow.
fn element_count(t: &TensorProto) -> Result<usize> {
    let mut n: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| {
            OnnxError::Unsupported(format!("tensor `{}` has a negative dimension {d}", t.name))
        })?;
        n = n.checked_mul(d).ok_or_else(|| {
            OnnxError::Unsupported(format!(
                "tensor `{}` of shape {:?} is too large",
                t.name, t.dims
            ))
        })?;
    }
    Ok(n)
}

/// IEEE half precision to `f32`.
fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((bits >> 10) & 0x1f) as i32;
    let frac = (bits & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// A tensor as a graph [`Value`]: float types as `f32`, integer and boolean types as `i64`.
/// Its data must be inline (external data is resolved before).
pub(crate) fn tensor_value(t: &TensorProto) -> Result<Value> {
    let n = element_count(t)?;
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let wrong = |got: usize| {
        OnnxError::Unsupported(format!(
            "tensor `{}` of shape {:?} holds {got} values, expected {n}",
            t.name, t.dims
        ))
    };
    let raw = &t.raw_data;
    let dt = DataType::try_from(t.data_type).unwrap_or(DataType::Undefined);
    // Raw bytes must hold exactly n elements of the type's size: checked before converting.
    let from_raw = |size: usize| -> Result<bool> {
        if raw.is_empty() {
            return Ok(false);
        }
        if raw.len() != n.checked_mul(size).ok_or_else(|| wrong(usize::MAX))? {
            return Err(wrong(raw.len() / size.max(1)));
        }
        Ok(true)
    };
    let float = |v: Vec<f32>| -> Result<Value> {
        if v.len() != n {
            return Err(wrong(v.len()));
        }
        Ok(Value::F32(
            ArrayD::from_shape_vec(IxDyn(&shape), v)
                .map_err(|e| OnnxError::Unsupported(e.to_string()))?,
        ))
    };
    let int = |v: Vec<i64>| -> Result<Value> {
        if v.len() != n {
            return Err(wrong(v.len()));
        }
        Ok(Value::I64(
            ArrayD::from_shape_vec(IxDyn(&shape), v)
                .map_err(|e| OnnxError::Unsupported(e.to_string()))?,
        ))
    };
    match dt {
        DataType::Float => float(if from_raw(4)? {
            raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        } else {
            t.float_data.clone()
        }),
        DataType::Double => float(if from_raw(8)? {
            raw.chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect()
        } else {
            t.double_data.iter().map(|&v| v as f32).collect()
        }),
        DataType::Float16 => float(if from_raw(2)? {
            raw.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect()
        } else {
            t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect()
        }),
        DataType::Bfloat16 => float(if from_raw(2)? {
            raw.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect()
        } else {
            t.int32_data.iter().map(|&v| f32::from_bits((v as u32 & 0xffff) << 16)).collect()
        }),
        DataType::Int64 => int(if from_raw(8)? {
            raw.chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect()
        } else {
            t.int64_data.clone()
        }),
        DataType::Uint64 => int(if from_raw(8)? {
            raw.chunks_exact(8)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as i64)
                .collect()
        } else {
            t.uint64_data.iter().map(|&v| v as i64).collect()
        }),
        DataType::Int32 => int(if from_raw(4)? {
            raw.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect()
        } else {
            t.int32_data.iter().map(|&v| v as i64).collect()
        }),
        DataType::Uint32 => int(if from_raw(4)? {
            raw.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect()
        } else {
            t.uint64_data.iter().map(|&v| v as i64).collect()
        }),
        DataType::Int16 | DataType::Uint16 => int(if from_raw(2)? {
            raw.chunks_exact(2)
                .map(|b| if dt == DataType::Int16 { i16::from_le_bytes([b[0], b[1]]) as i64 } else { u16::from_le_bytes([b[0], b[1]]) as i64 })
                .collect()
        } else {
            t.int32_data.iter().map(|&v| v as i64).collect()
        }),
        DataType::Int8 | DataType::Uint8 | DataType::Bool => int(if from_raw(1)? {
            raw.iter().map(|&b| if dt == DataType::Int8 { b as i8 as i64 } else { b as i64 }).collect()
        } else {
            t.int32_data.iter().map(|&v| v as i64).collect()
        }),
        _ => Err(OnnxError::Unsupported(format!(
            "tensor `{}` has element type {}; the graph engine reads float, integer and boolean tensors",
            t.name,
            data_type_name(t.data_type)
        ))),
    }
}

/// A node's attributes in the engine's form.
fn attributes(node: &NodeProto) -> Result<Attrs> {
    let mut attrs = Attrs::new();
    for a in &node.attribute {
        let value = attribute(node, a)?;
        if let Some(v) = value {
            attrs = attrs.with(&a.name, v);
        }
    }
    Ok(attrs)
}

fn attribute(node: &NodeProto, a: &AttributeProto) -> Result<Option<Attr>> {
    let kind = AttributeType::try_from(a.r#type).unwrap_or(AttributeType::Undefined);
    Ok(Some(match kind {
        AttributeType::Float => Attr::Float(a.f),
        AttributeType::Int => Attr::Int(a.i),
        AttributeType::String => Attr::String(String::from_utf8_lossy(&a.s).into_owned()),
        AttributeType::Tensor => match &a.t {
            Some(t) => Attr::Tensor(tensor_value(t)?),
            None => return Ok(None),
        },
        AttributeType::Floats => Attr::Floats(a.floats.clone()),
        AttributeType::Ints => Attr::Ints(a.ints.clone()),
        AttributeType::Graph | AttributeType::Graphs => {
            return Err(OnnxError::UnsupportedOp {
                op: node.op_type.clone(),
                node: node_label(node),
                reason: format!(
                    "attribute `{}` is a subgraph (control flow); the graph engine runs dataflow graphs",
                    a.name
                ),
            })
        }
        // Older files leave the type unset: read whichever field holds data.
        AttributeType::Undefined => {
            if !a.ints.is_empty() {
                Attr::Ints(a.ints.clone())
            } else if !a.floats.is_empty() {
                Attr::Floats(a.floats.clone())
            } else if !a.s.is_empty() {
                Attr::String(String::from_utf8_lossy(&a.s).into_owned())
            } else if let Some(t) = &a.t {
                Attr::Tensor(tensor_value(t)?)
            } else if a.f != 0.0 {
                Attr::Float(a.f)
            } else {
                Attr::Int(a.i)
            }
        }
        // Strings, sparse tensors and type protos: no operator the engine reads uses them.
        _ => return Ok(None),
    }))
}

fn node_def(node: &NodeProto) -> Result<NodeDef> {
    let op_type = if node.domain.is_empty() || node.domain == "ai.onnx" {
        node.op_type.clone()
    } else {
        // Another domain's operator never matches a default-domain one.
        format!("{}.{}", node.domain, node.op_type)
    };
    Ok(NodeDef {
        op_type,
        name: node_label(node),
        attrs: attributes(node)?,
        inputs: node.input.clone(),
        outputs: node.output.clone(),
    })
}

fn graph_error(e: GraphError, file: &str) -> OnnxError {
    match e {
        GraphError::UnknownOp { op_type, node, .. } => OnnxError::UnsupportedOp {
            op: op_type,
            node,
            reason: format!("the graph engine has no such operator (in {file})"),
        },
        GraphError::Node {
            node,
            op_type,
            reason,
        } => OnnxError::UnsupportedOp {
            op: op_type,
            node,
            reason,
        },
        GraphError::Invalid(m) => OnnxError::Unsupported(format!("{file}: {m}")),
        GraphError::Core(c) => OnnxError::Core(c),
    }
}

fn scalar(v: f32) -> Value {
    Value::F32(ArrayD::from_elem(IxDyn(&[]), v))
}

fn simple_node(op: &str, name: &str, inputs: &[&str], output: &str, attrs: Attrs) -> NodeDef {
    NodeDef {
        op_type: op.into(),
        name: name.into(),
        attrs,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.to_string()],
    }
}

/// The whole graph of `proto` as it is: every graph input that is not an initializer is a
/// run-time input (in order), every graph output an output (the ONNX node tests' form).
#[cfg(test)]
pub(crate) fn raw_graph(proto: &ModelProto, file: &str) -> Result<xai_graph::Graph> {
    let g = graph(proto)?;
    let mut b = GraphBuilder::new().opset(opset(proto).unwrap_or(xai_graph::LATEST_OPSET));
    let weights: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    for i in &g.input {
        if !weights.contains(i.name.as_str()) {
            b = b.input(&i.name);
        }
    }
    for t in &g.initializer {
        b = b.initializer(&t.name, tensor_value(t)?);
    }
    for node in &g.node {
        b = b.node(node_def(node)?);
    }
    for o in &g.output {
        b = b.output(&o.name);
    }
    b.build().map_err(|e| graph_error(e, file))
}

/// Builds the graph model of `proto` (external data already resolved): the API's batches
/// (`[n, c, h, w]` or `[n, features]`) in, `[n, k]` out.
pub(crate) fn graph_model(
    proto: &ModelProto,
    opts: &ValidOnnxOptions,
    input_name: &str,
    fixed_batch: Option<usize>,
    output: OutputMap,
    file: &str,
) -> Result<GraphModel> {
    let g = graph(proto)?;
    let mut b = GraphBuilder::new().opset(opset(proto).unwrap_or(xai_graph::LATEST_OPSET));
    // The API input, transformed into the model's.
    let api = "xai::input";
    b = b.input(api);
    let mut current = api.to_string();
    let affine = opts.channel_affine();
    // One scale and offset for every value, or one per channel ([1, c, 1, 1] constants).
    let (scale, offset) = match affine.uniform() {
        Some((s, o)) => (scalar(s), scalar(o)),
        None => {
            let c = affine.scale.len();
            let per_channel =
                |v: &[f32]| Value::F32(ArrayD::from_shape_fn(IxDyn(&[1, c, 1, 1]), |i| v[i[1]]));
            (per_channel(&affine.scale), per_channel(&affine.offset))
        }
    };
    if affine.scale.iter().any(|s| *s != 1.0) {
        b = b.constant("xai::scale", scale).node(simple_node(
            "Mul",
            "xai::input_scale",
            &[&current, "xai::scale"],
            "xai::scaled",
            Attrs::new(),
        ));
        current = "xai::scaled".into();
    }
    if affine.offset.iter().any(|o| *o != 0.0) {
        b = b.constant("xai::offset", offset).node(simple_node(
            "Add",
            "xai::input_offset",
            &[&current, "xai::offset"],
            "xai::shifted",
            Attrs::new(),
        ));
        current = "xai::shifted".into();
    }
    if opts.input_features().is_none() && opts.layout() == Layout::Nhwc {
        b = b.node(simple_node(
            "Transpose",
            "xai::to_nhwc",
            &[&current],
            "xai::nhwc",
            Attrs::new().with("perm", Attr::Ints(vec![0, 2, 3, 1])),
        ));
        current = "xai::nhwc".into();
    }
    b = b.node(simple_node(
        "Identity",
        "xai::model_input",
        &[&current],
        input_name,
        Attrs::new(),
    ));
    for t in &g.initializer {
        if t.name == input_name {
            continue;
        }
        b = b.initializer(&t.name, tensor_value(t)?);
    }
    for node in &g.node {
        b = b.node(node_def(node)?);
    }
    let out = g
        .output
        .first()
        .map(|o| o.name.clone())
        .ok_or_else(|| OnnxError::Unsupported("the graph has no output".into()))?;
    let final_output = match output {
        OutputMap::AsIs => out,
        OutputMap::Softmax | OutputMap::Exp => {
            b = b.node(simple_node(
                "Flatten",
                "xai::flatten_output",
                &[&out],
                "xai::flat_output",
                Attrs::new().with("axis", Attr::Int(1)),
            ));
            let (op, attrs) = if output == OutputMap::Softmax {
                ("Softmax", Attrs::new().with("axis", Attr::Int(-1)))
            } else {
                ("Exp", Attrs::new())
            };
            // The appended nodes follow the newest semantics whatever the model's opset: an
            // opset below 13 only changes Softmax's default axis, which is given here.
            b = b.node(simple_node(
                op,
                "xai::to_probabilities",
                &["xai::flat_output"],
                "xai::probabilities",
                attrs,
            ));
            "xai::probabilities".into()
        }
    };
    b = b.output(&final_output);
    let graph = b.build().map_err(|e| graph_error(e, file))?;
    GraphModel::new(graph, opts.input_shape(), fixed_batch).map_err(|e| graph_error(e, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn tensors_of_every_type_are_read_and_checked() {
        let mut t = TensorProto {
            name: "w".into(),
            dims: vec![2],
            data_type: DataType::Int8 as i32,
            raw_data: vec![0xff, 0x02],
            ..Default::default()
        };
        assert_eq!(
            tensor_value(&t).unwrap(),
            Value::I64(ndarray::arr1(&[-1i64, 2]).into_dyn())
        );
        t.raw_data = vec![1, 2, 3];
        assert!(
            tensor_value(&t).is_err(),
            "a length that does not match the shape"
        );
        t.dims = vec![-1];
        assert!(tensor_value(&t).is_err());
        let big = TensorProto {
            name: "big".into(),
            dims: vec![1 << 40, 1 << 40],
            data_type: DataType::Float as i32,
            ..Default::default()
        };
        assert!(tensor_value(&big).is_err(), "an overflowing element count");
    }
}
