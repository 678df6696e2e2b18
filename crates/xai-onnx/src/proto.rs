//! Reading ONNX `ModelProto`s: decoding with validation, the graph's image input, tensors and
//! node attributes.

use std::collections::HashSet;
use std::path::Path;

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::pb::type_proto::Value as TypeValue;
use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

use crate::error::{OnnxError, Result};
use crate::options::ValidOnnxOptions;

/// Decodes and sanity-checks a `ModelProto`; `what` names the source in errors.
pub(crate) fn decode_model(bytes: &[u8], what: &str) -> Result<ModelProto> {
    use prost::Message;
    let not_onnx = |reason: String| OnnxError::NotOnnx {
        what: what.to_string(),
        reason,
    };
    if bytes.is_empty() {
        return Err(not_onnx("the file is empty".into()));
    }
    let model = ModelProto::decode(bytes)
        .map_err(|e| not_onnx(format!("protobuf decoding failed: {e}")))?;
    // Random bytes can decode as a protobuf message of unknown fields; a model needs a graph
    // with nodes, inputs and outputs, and an IR version.
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| not_onnx("it has no graph".into()))?;
    if model.ir_version <= 0 {
        return Err(not_onnx(format!(
            "its IR version is {} (ONNX models have 3 or more)",
            model.ir_version
        )));
    }
    if graph.node.is_empty() || graph.input.is_empty() || graph.output.is_empty() {
        return Err(not_onnx(format!(
            "its graph has {} nodes, {} inputs and {} outputs",
            graph.node.len(),
            graph.input.len(),
            graph.output.len()
        )));
    }
    Ok(model)
}

/// Reads and decodes an ONNX file, with typed errors for a missing file and for bytes that are
/// not ONNX.
pub(crate) fn read_model(path: &Path) -> Result<ModelProto> {
    if !path.exists() {
        return Err(OnnxError::FileNotFound {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_model(&bytes, &path.display().to_string())
}

/// The graph, which [`decode_model`] has checked is there.
pub(crate) fn graph(model: &ModelProto) -> Result<&GraphProto> {
    model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Unsupported("the model has no graph".into()))
}

/// The default-domain opset the model imports (`None` when it names none).
pub(crate) fn opset(model: &ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
}

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Dim {
    Fixed(i64),
    Symbolic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Symbolic(s) if s.is_empty() => f.write_str("?"),
            Dim::Symbolic(s) => f.write_str(s),
        }
    }
}

/// The graph's single data input (inputs that are initializers are weights, not data).
#[derive(Debug, Clone)]
pub(crate) struct GraphInput {
    pub name: String,
    /// `None` when the model declares no shape.
    pub dims: Option<Vec<Dim>>,
}

pub(crate) fn format_dims(dims: &[Dim]) -> String {
    format!(
        "[{}]",
        dims.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub(crate) fn graph_input(graph: &GraphProto) -> Result<GraphInput> {
    let weights: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !weights.contains(i.name.as_str()))
        .collect();
    let input = match inputs.as_slice() {
        [one] => *one,
        _ => {
            return Err(OnnxError::Unsupported(format!(
                "the graph has {} data inputs ({}); an image classifier has exactly one",
                inputs.len(),
                inputs
                    .iter()
                    .map(|i| format!("`{}`", i.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let tensor = input
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .map(|TypeValue::TensorType(t)| t);
    if let Some(t) = tensor {
        if t.elem_type != DataType::Float as i32 && t.elem_type != DataType::Undefined as i32 {
            return Err(OnnxError::Unsupported(format!(
                "the input `{}` has element type {}, only float32 inputs are supported",
                input.name,
                data_type_name(t.elem_type)
            )));
        }
    }
    let dims = tensor.and_then(|t| t.shape.as_ref()).map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(DimValue::DimValue(v)) => Dim::Fixed(*v),
                Some(DimValue::DimParam(p)) => Dim::Symbolic(p.clone()),
                None => Dim::Symbolic(String::new()),
            })
            .collect()
    });
    Ok(GraphInput {
        name: input.name.clone(),
        dims,
    })
}

/// The largest fixed batch size a model's input may declare (a symbolic batch has no limit).
pub const MAX_FIXED_BATCH: usize = 1 << 16;
/// The largest number of values in one fixed batch (`batch × c × h × w`, 2^26: 256 MiB of
/// `f32`), which tract allocates for every call.
pub const MAX_FIXED_BATCH_VALUES: usize = 1 << 26;

/// Checks the declared input against the options; returns the fixed batch size, if the model
/// declares one.
pub(crate) fn check_input(input: &GraphInput, opts: &ValidOnnxOptions) -> Result<Option<usize>> {
    let Some(dims) = &input.dims else {
        return Ok(None);
    };
    let expected = opts.model_input_dims();
    let mismatch = || OnnxError::InputShapeMismatch {
        input: input.name.clone(),
        declared: format_dims(dims),
        expected: format!(
            "[N, {}]",
            expected
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        layout: opts.layout_name(),
        shape: opts.input_shape(),
    };
    if dims.len() != 1 + expected.len() {
        return Err(mismatch());
    }
    // Only a positive fixed size must match: a `dim_param` (any name), an unset dimension or a
    // `dim_value <= 0` (paddle2onnx writes -1) is dynamic and takes the options' size.
    for (d, &e) in dims[1..].iter().zip(&expected) {
        if let Dim::Fixed(v) = d {
            if *v > 0 && *v != e as i64 {
                return Err(mismatch());
            }
        }
    }
    match dims[0] {
        Dim::Fixed(b) if b >= 1 => {
            // tract runs whole batches of a fixed size (the last one padded): bound the batch
            // before anything is allocated for it.
            let per_sample: usize = expected.iter().product();
            let values = usize::try_from(b)
                .ok()
                .and_then(|b| b.checked_mul(per_sample));
            match values {
                Some(v) if b as u64 <= MAX_FIXED_BATCH as u64 && v <= MAX_FIXED_BATCH_VALUES => {
                    Ok(Some(b as usize))
                }
                _ => Err(OnnxError::Unsupported(format!(
                    "the input `{}` declares a fixed batch of {b} samples of {per_sample} values; expected at most {MAX_FIXED_BATCH} samples and \
                     {MAX_FIXED_BATCH_VALUES} values per batch (a larger batch dimension must be symbolic)",
                    input.name
                ))),
            }
        }
        // A batch of -1 or 0 (paddle2onnx, some converters) or a `dim_param`: any batch.
        Dim::Fixed(_) | Dim::Symbolic(_) => Ok(None),
    }
}

pub(crate) fn data_type_name(t: i32) -> String {
    DataType::try_from(t)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| format!("type {t}"))
}

fn element_count(t: &TensorProto) -> Result<usize> {
    let mut n: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| {
            OnnxError::Unsupported(format!("tensor `{}` has a negative dimension", t.name))
        })?;
        n = n
            .checked_mul(d)
            .ok_or_else(|| OnnxError::Unsupported(format!("tensor `{}` is too large", t.name)))?;
    }
    Ok(n)
}

fn wrong_length(t: &TensorProto, got: usize, expected: usize) -> OnnxError {
    OnnxError::Unsupported(format!(
        "tensor `{}` of shape {:?} holds {got} values, expected {expected}",
        t.name, t.dims
    ))
}

/// A tensor's values as `f32` (from FLOAT or DOUBLE data).
pub(crate) fn tensor_f32(t: &TensorProto) -> Result<Vec<f32>> {
    let n = element_count(t)?;
    let values: Vec<f32> = if t.data_type == DataType::Float as i32 {
        if !t.raw_data.is_empty() {
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        } else {
            t.float_data.clone()
        }
    } else if t.data_type == DataType::Double as i32 {
        if !t.raw_data.is_empty() {
            t.raw_data
                .chunks_exact(8)
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect()
        } else {
            t.double_data.iter().map(|&v| v as f32).collect()
        }
    } else {
        return Err(OnnxError::Unsupported(format!(
            "tensor `{}` has element type {}, expected FLOAT",
            t.name,
            data_type_name(t.data_type)
        )));
    };
    if values.len() != n {
        return Err(wrong_length(t, values.len(), n));
    }
    Ok(values)
}

/// A tensor's values as `i64` (from INT64 or INT32 data).
pub(crate) fn tensor_i64(t: &TensorProto) -> Result<Vec<i64>> {
    let n = element_count(t)?;
    let values: Vec<i64> = if t.data_type == DataType::Int64 as i32 {
        if !t.raw_data.is_empty() {
            t.raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect()
        } else {
            t.int64_data.clone()
        }
    } else if t.data_type == DataType::Int32 as i32 {
        if !t.raw_data.is_empty() {
            t.raw_data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect()
        } else {
            t.int32_data.iter().map(|&v| v as i64).collect()
        }
    } else {
        return Err(OnnxError::Unsupported(format!(
            "tensor `{}` has element type {}, expected INT64",
            t.name,
            data_type_name(t.data_type)
        )));
    };
    if values.len() != n {
        return Err(wrong_length(t, values.len(), n));
    }
    Ok(values)
}

/// A node's attribute by name.
pub(crate) fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub(crate) fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}

pub(crate) fn attr_f(node: &NodeProto, name: &str) -> Option<f32> {
    attr(node, name).map(|a| a.f)
}

pub(crate) fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

pub(crate) fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// The name used for a node in messages: its name, or its first output.
pub(crate) fn node_label(node: &NodeProto) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else {
        node.output.first().cloned().unwrap_or_default()
    }
}

/// The one data input an ONNX model declares (see [`declared_input`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredInput {
    /// The input's name.
    pub name: String,
    /// Its dimensions, batch first: `Some(size)` for a fixed positive size, `None` for a
    /// symbolic or unset one; `None` as a whole when the file declares no shape.
    pub dims: Option<Vec<Option<usize>>>,
}

impl DeclaredInput {
    /// The per-sample `[c, h, w]` shape of a rank-4 input whose sample dimensions are fixed,
    /// read in `layout` (`[N, c, h, w]` or `[N, h, w, c]`); `None` otherwise.
    pub fn image_shape(&self, layout: crate::Layout) -> Option<[usize; 3]> {
        let dims = self.dims.as_ref()?;
        let [_, a, b, c] = dims.as_slice() else {
            return None;
        };
        let (a, b, c) = ((*a)?, (*b)?, (*c)?);
        Some(match layout {
            crate::Layout::Nchw => [a, b, c],
            crate::Layout::Nhwc => [c, a, b],
        })
    }
}

/// Reads the data input an ONNX model declares (its one graph input that is not a weight),
/// without building anything: for tools that choose the options (`input_shape`, `layout`)
/// from the file. Errors: [`OnnxError::NotOnnx`] for bytes that are not an ONNX model,
/// [`OnnxError::Unsupported`] for a graph without exactly one float data input.
pub fn declared_input(bytes: &[u8]) -> Result<DeclaredInput> {
    let proto = decode_model(bytes, "the given bytes")?;
    let input = graph_input(graph(&proto)?)?;
    Ok(DeclaredInput {
        name: input.name,
        dims: input.dims.map(|dims| {
            dims.iter()
                .map(|d| match d {
                    Dim::Fixed(v) if *v > 0 => usize::try_from(*v).ok(),
                    _ => None,
                })
                .collect()
        }),
    })
}
