//! The [`Operator`] trait every operator implements, the node description its [`Builder`]
//! reads ([`NodeSpec`], [`Attrs`]), and small helpers for reading inputs.

use std::collections::BTreeMap;
use std::fmt::Debug;

use ndarray::ArrayD;

use crate::error::{OpError, OpResult};
use crate::value::Value;

/// One attribute of a node (ONNX `AttributeProto`'s kinds that operators use).
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// `i`.
    Int(i64),
    /// `f`.
    Float(f32),
    /// `ints`.
    Ints(Vec<i64>),
    /// `floats`.
    Floats(Vec<f32>),
    /// `s`.
    String(String),
    /// `t` (a tensor, e.g. `Constant`'s value).
    Tensor(Value),
}

/// A node's attributes by name, with typed getters whose errors name the attribute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attrs(pub BTreeMap<String, Attr>);

impl Attrs {
    /// No attributes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an attribute; returns `self` for chaining.
    pub fn with(mut self, name: &str, value: Attr) -> Self {
        self.0.insert(name.to_string(), value);
        self
    }

    /// The attribute called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Attr> {
        self.0.get(name)
    }

    /// An integer attribute, or `default` when absent.
    pub fn int_or(&self, name: &str, default: i64) -> OpResult<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(*v),
            Some(other) => Err(wrong_kind(name, "an integer", other)),
        }
    }

    /// An optional integer attribute.
    pub fn int(&self, name: &str) -> OpResult<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong_kind(name, "an integer", other)),
        }
    }

    /// A float attribute, or `default` when absent (an integer is accepted too).
    pub fn float_or(&self, name: &str, default: f32) -> OpResult<f32> {
        match self.get(name) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(*v),
            Some(Attr::Int(v)) => Ok(*v as f32),
            Some(other) => Err(wrong_kind(name, "a float", other)),
        }
    }

    /// An optional list of integers.
    pub fn ints(&self, name: &str) -> OpResult<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(Attr::Int(v)) => Ok(Some(vec![*v])),
            Some(other) => Err(wrong_kind(name, "a list of integers", other)),
        }
    }

    /// An optional list of floats.
    pub fn floats(&self, name: &str) -> OpResult<Option<Vec<f32>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v.clone())),
            Some(Attr::Float(v)) => Ok(Some(vec![*v])),
            Some(other) => Err(wrong_kind(name, "a list of floats", other)),
        }
    }

    /// A string attribute, or `default` when absent.
    pub fn string_or(&self, name: &str, default: &str) -> OpResult<String> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(Attr::String(s)) => Ok(s.clone()),
            Some(other) => Err(wrong_kind(name, "a string", other)),
        }
    }

    /// An optional tensor attribute.
    pub fn tensor(&self, name: &str) -> OpResult<Option<&Value>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Tensor(v)) => Ok(Some(v)),
            Some(other) => Err(wrong_kind(name, "a tensor", other)),
        }
    }
}

fn wrong_kind(name: &str, expected: &str, got: &Attr) -> OpError {
    OpError(format!(
        "attribute `{name}` is {got:?}, expected {expected}"
    ))
}

/// What a [`Builder`] knows about a node when the graph is built.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The operator type, e.g. `"Conv"`.
    pub op_type: String,
    /// The node's name (for messages).
    pub name: String,
    /// Its attributes.
    pub attrs: Attrs,
    /// The default-domain opset the model imports (operators whose attributes moved to inputs
    /// read both forms).
    pub opset: i64,
    /// For each input: its value when it is a constant (an initializer or a folded value),
    /// `None` when it is computed at run time or absent.
    pub constant_inputs: Vec<Option<Value>>,
    /// Which inputs are present (ONNX leaves optional inputs empty).
    pub present_inputs: Vec<bool>,
    /// Number of outputs the node declares.
    pub n_outputs: usize,
}

impl NodeSpec {
    /// A spec with these attributes, `n_inputs` present run-time inputs and one output, at the
    /// newest opset (for tests and hand-built graphs).
    pub fn new(op_type: &str, attrs: Attrs, n_inputs: usize) -> Self {
        NodeSpec {
            op_type: op_type.to_string(),
            name: op_type.to_lowercase(),
            attrs,
            opset: crate::LATEST_OPSET,
            constant_inputs: vec![None; n_inputs],
            present_inputs: vec![true; n_inputs],
            n_outputs: 1,
        }
    }

    /// The constant value of input `i`, if it is a constant.
    pub fn constant(&self, i: usize) -> Option<&Value> {
        self.constant_inputs.get(i).and_then(|c| c.as_ref())
    }

    /// Whether input `i` is present.
    pub fn has_input(&self, i: usize) -> bool {
        self.present_inputs.get(i).copied().unwrap_or(false)
    }

    /// Number of inputs (present or not).
    pub fn n_inputs(&self) -> usize {
        self.present_inputs.len()
    }
}

/// One operator of a graph, built once per node: its forward pass and its backward pass (the
/// vector-Jacobian product) side by side.
///
/// Inputs are passed as `Option`s: an optional ONNX input that the node leaves empty is `None`.
/// Operators must return errors, never panic, on inputs of the wrong shape or type.
pub trait Operator: Send + Sync + Debug {
    /// Computes the node's outputs.
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>>;

    /// Given the forward pass's inputs and outputs and the gradients of a scalar loss with
    /// respect to the outputs (`None`: zero, or an integer output), returns the gradient with
    /// respect to each input, shaped like it (`None`: zero, or not differentiable, e.g. an
    /// integer input).
    fn backward(
        &self,
        inputs: &[Option<&Value>],
        outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>>;

    /// [`Operator::backward`] when only the inputs with `wanted[i]` need a gradient (the
    /// others may be returned or not): operators whose parameter gradients cost extra work
    /// (convolutions) skip it when only the input gradient is asked for, and vice versa.
    fn backward_wanted(
        &self,
        inputs: &[Option<&Value>],
        outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
        wanted: &[bool],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let _ = wanted;
        self.backward(inputs, outputs, output_grads)
    }

    /// Whether gradients flow through this operator at all (shape computations, comparisons
    /// and casts to integers say no; the backward pass then never calls [`Operator::backward`]).
    fn is_differentiable(&self) -> bool {
        true
    }

    /// Whether a float initializer fed to input `index` is a trainable parameter (the default)
    /// rather than a buffer or a setting (batch norm's running statistics, `Resize`'s scales,
    /// `Clip`'s bounds, `Pow`'s exponent).
    fn is_parameter_input(&self, index: usize) -> bool {
        let _ = index;
        true
    }
}

/// Builds the operator of one node from its description.
pub type Builder = fn(&NodeSpec) -> OpResult<Box<dyn Operator>>;

/// Input `i`, which the operator requires.
pub fn required<'a>(inputs: &[Option<&'a Value>], i: usize, what: &str) -> OpResult<&'a Value> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| OpError(format!("input {i} ({what}) is missing")))
}

/// Input `i` as a float tensor.
pub fn required_f32<'a>(
    inputs: &[Option<&'a Value>],
    i: usize,
    what: &str,
) -> OpResult<&'a ArrayD<f32>> {
    required(inputs, i, what)?.f32(what)
}

/// Optional input `i` (absent or empty name: `None`).
pub fn optional<'a>(inputs: &[Option<&'a Value>], i: usize) -> Option<&'a Value> {
    inputs.get(i).copied().flatten()
}

/// The gradient of output `i`, or zeros shaped like that output when none arrived.
pub fn grad_or_zeros(
    output_grads: &[Option<&ArrayD<f32>>],
    outputs: &[&Value],
    i: usize,
) -> OpResult<ArrayD<f32>> {
    match output_grads.get(i).copied().flatten() {
        Some(g) => Ok(g.clone()),
        None => {
            let shape = outputs
                .get(i)
                .map(|v| v.shape().to_vec())
                .ok_or_else(|| OpError(format!("output {i} is missing")))?;
            Ok(ArrayD::zeros(shape))
        }
    }
}

/// The gradient of the first output, which unary operators need.
pub fn first_grad<'a>(output_grads: &[Option<&'a ArrayD<f32>>]) -> Option<&'a ArrayD<f32>> {
    output_grads.first().copied().flatten()
}
