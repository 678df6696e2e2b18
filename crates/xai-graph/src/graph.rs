//! [`Graph`]: nodes in topological order over value slots; constant folding when built; a
//! forward pass that keeps what the backward pass needs ([`Tape`]) or frees each value after
//! its last reader; a backward pass that sends gradients only where they are asked for.

use std::collections::HashMap;

use ndarray::ArrayD;

use crate::error::{GraphError, Result};
use crate::op::{Attrs, NodeSpec, Operator};
use crate::ops;
use crate::value::Value;

/// A node as the graph's source describes it, before its operator is built.
#[derive(Debug, Clone)]
pub struct NodeDef {
    /// Operator type (`"Conv"`, `"Relu"`, ...).
    pub op_type: String,
    /// Node name; an empty name is replaced by the first output's.
    pub name: String,
    /// Attributes.
    pub attrs: Attrs,
    /// Names of the values it reads; an empty name is an absent optional input.
    pub inputs: Vec<String>,
    /// Names of the values it writes.
    pub outputs: Vec<String>,
}

/// Collects a graph's inputs, constants, nodes and outputs; [`GraphBuilder::build`] checks
/// them, builds each node's operator and folds everything that depends on constants only.
#[derive(Debug, Clone, Default)]
pub struct GraphBuilder {
    inputs: Vec<String>,
    initializers: Vec<(String, Value, bool)>,
    nodes: Vec<NodeDef>,
    outputs: Vec<String>,
    opset: Option<i64>,
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The default-domain opset of the model (the newest the engine knows by default).
    pub fn opset(mut self, opset: i64) -> Self {
        self.opset = Some(opset);
        self
    }

    /// Adds a run-time input (the data fed to the graph).
    pub fn input(mut self, name: &str) -> Self {
        self.inputs.push(name.to_string());
        self
    }

    /// Adds a constant; float initializers are the graph's parameters (unless every operator
    /// reading them says otherwise, see [`Operator::is_parameter_input`]).
    pub fn initializer(mut self, name: &str, value: Value) -> Self {
        self.initializers.push((name.to_string(), value, true));
        self
    }

    /// Adds a constant that is never a parameter (an ONNX `Constant` node's value).
    pub fn constant(mut self, name: &str, value: Value) -> Self {
        self.initializers.push((name.to_string(), value, false));
        self
    }

    /// Adds a node (nodes may come in any order that has no cycle).
    pub fn node(mut self, node: NodeDef) -> Self {
        self.nodes.push(node);
        self
    }

    /// Names an output of the graph.
    pub fn output(mut self, name: &str) -> Self {
        self.outputs.push(name.to_string());
        self
    }

    /// Builds the graph: resolves names, orders the nodes, builds every operator (errors name
    /// the node), folds constant subgraphs, drops nodes no output needs, and finds the
    /// parameters.
    pub fn build(self) -> Result<Graph> {
        let opset = self.opset.unwrap_or(crate::LATEST_OPSET);
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut slot_names: Vec<String> = Vec::new();
        let mut new_slot = |name: &str, slots: &mut HashMap<String, usize>| -> Result<usize> {
            if slots.contains_key(name) {
                return Err(GraphError::Invalid(format!(
                    "the value `{name}` is defined twice"
                )));
            }
            let id = slot_names.len();
            slots.insert(name.to_string(), id);
            slot_names.push(name.to_string());
            Ok(id)
        };
        let mut input_slots = Vec::new();
        for name in &self.inputs {
            input_slots.push(new_slot(name, &mut slots)?);
        }
        let mut constants: HashMap<usize, Value> = HashMap::new();
        let mut initializer_slots: Vec<(usize, bool)> = Vec::new();
        for (name, value, is_init) in self.initializers {
            if slots.contains_key(&name) {
                // ONNX lets an initializer share a name with a graph input (a default value):
                // the input wins, so the initializer is not a constant.
                continue;
            }
            let id = new_slot(&name, &mut slots)?;
            constants.insert(id, value);
            initializer_slots.push((id, is_init));
        }
        // Order nodes so that every input is defined before it is read (Kahn's algorithm over
        // the given order, which is already topological for valid ONNX files).
        let producers: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
            .collect();
        let order = topological_order(&self.nodes, &producers, &slots)?;
        let mut nodes: Vec<GraphNode> = Vec::new();
        for &i in &order {
            let def = &self.nodes[i];
            let name = if def.name.is_empty() {
                def.outputs.first().cloned().unwrap_or_default()
            } else {
                def.name.clone()
            };
            let mut in_slots = Vec::with_capacity(def.inputs.len());
            for input in &def.inputs {
                if input.is_empty() {
                    in_slots.push(None);
                    continue;
                }
                let id = *slots.get(input).ok_or_else(|| {
                    GraphError::Invalid(format!(
                        "node `{name}` ({}) reads `{input}`, which no input, initializer or node defines",
                        def.op_type
                    ))
                })?;
                in_slots.push(Some(id));
            }
            let mut out_slots = Vec::with_capacity(def.outputs.len());
            for output in &def.outputs {
                if output.is_empty() {
                    // An unused optional output still gets a slot of its own.
                    let id = new_slot(&format!("{name}:unused:{}", out_slots.len()), &mut slots)?;
                    out_slots.push(id);
                } else {
                    out_slots.push(new_slot(output, &mut slots)?);
                }
            }
            let spec = NodeSpec {
                op_type: def.op_type.clone(),
                name: name.clone(),
                attrs: def.attrs.clone(),
                opset,
                constant_inputs: in_slots
                    .iter()
                    .map(|s| s.and_then(|s| constants.get(&s).cloned()))
                    .collect(),
                present_inputs: in_slots.iter().map(|s| s.is_some()).collect(),
                n_outputs: def.outputs.len(),
            };
            let op = ops::build(&spec).map_err(|e| match e {
                ops::BuildError::Unknown => GraphError::UnknownOp {
                    op_type: def.op_type.clone(),
                    node: name.clone(),
                    known: ops::known_ops().join(", "),
                },
                ops::BuildError::Op(e) => GraphError::Node {
                    node: name.clone(),
                    op_type: def.op_type.clone(),
                    reason: e.0,
                },
            })?;
            let node = GraphNode {
                name,
                op_type: def.op_type.clone(),
                op,
                inputs: in_slots,
                outputs: out_slots,
            };
            // Fold: a node whose inputs are all constants runs now.
            let all_constant = node
                .inputs
                .iter()
                .all(|s| s.is_none_or(|s| constants.contains_key(&s)));
            if all_constant {
                let ins: Vec<Option<&Value>> = node
                    .inputs
                    .iter()
                    .map(|s| s.and_then(|s| constants.get(&s)))
                    .collect();
                let outs = node.op.forward(&ins).map_err(|e| node.error(e.0))?;
                check_output_count(&node, outs.len())?;
                for (slot, v) in node.outputs.iter().zip(outs) {
                    constants.insert(*slot, v);
                }
                continue;
            }
            nodes.push(node);
        }
        let mut output_slots = Vec::new();
        for name in &self.outputs {
            output_slots.push(*slots.get(name).ok_or_else(|| {
                GraphError::Invalid(format!("the graph output `{name}` is never computed"))
            })?);
        }
        if output_slots.is_empty() {
            return Err(GraphError::Invalid("the graph has no output".into()));
        }
        // Drop nodes whose outputs nothing needs.
        let mut needed = vec![false; slot_names.len()];
        for &s in &output_slots {
            needed[s] = true;
        }
        let mut keep = vec![false; nodes.len()];
        for (k, node) in nodes.iter().enumerate().rev() {
            if node.outputs.iter().any(|&o| needed[o]) {
                keep[k] = true;
                for s in node.inputs.iter().flatten() {
                    needed[*s] = true;
                }
            }
        }
        let nodes: Vec<GraphNode> = nodes
            .into_iter()
            .zip(keep)
            .filter_map(|(n, k)| k.then_some(n))
            .collect();
        // Parameters: float initializers (not Constant nodes) that a remaining node reads at an
        // input its operator counts as a parameter; rank-0 scalars are settings, not weights.
        let mut params = Vec::new();
        for (slot, is_init) in initializer_slots {
            let Some(Value::F32(a)) = constants.get(&slot) else {
                continue;
            };
            if !is_init || a.ndim() == 0 || a.is_empty() {
                continue;
            }
            let read_as_param = nodes.iter().any(|n| {
                n.inputs.iter().enumerate().any(|(i, s)| {
                    *s == Some(slot) && n.op.is_differentiable() && n.op.is_parameter_input(i)
                })
            });
            if read_as_param {
                params.push(Param {
                    name: slot_names[slot].clone(),
                    slot,
                    shape: a.shape().to_vec(),
                });
            }
        }
        // Last reader of every slot, for freeing values during evaluation.
        let mut last_use = vec![usize::MAX; slot_names.len()];
        for (k, node) in nodes.iter().enumerate() {
            for s in node.inputs.iter().flatten() {
                last_use[*s] = k;
            }
        }
        let n_slots = slot_names.len();
        let mut constant_values: Vec<Option<Value>> = vec![None; n_slots];
        for (slot, v) in constants {
            constant_values[slot] = Some(v);
        }
        Ok(Graph {
            slot_names,
            inputs: input_slots,
            outputs: output_slots,
            nodes,
            constants: constant_values,
            params,
            last_use,
        })
    }
}

fn check_output_count(node: &GraphNode, got: usize) -> Result<()> {
    if got != node.outputs.len() {
        return Err(node.error(format!(
            "the operator returned {got} outputs, the node declares {}",
            node.outputs.len()
        )));
    }
    Ok(())
}

fn topological_order(
    nodes: &[NodeDef],
    producers: &HashMap<&str, usize>,
    defined: &HashMap<String, usize>,
) -> Result<Vec<usize>> {
    // Dependencies of each node on other nodes.
    let deps: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            n.inputs
                .iter()
                .filter(|i| !i.is_empty() && !defined.contains_key(i.as_str()))
                .filter_map(|i| producers.get(i.as_str()).copied())
                .collect()
        })
        .collect();
    let mut state = vec![0u8; nodes.len()]; // 0 new, 1 in progress, 2 done
    let mut order = Vec::with_capacity(nodes.len());
    for start in 0..nodes.len() {
        if state[start] != 0 {
            continue;
        }
        // Iterative depth-first search (a deep graph must not overflow the stack).
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some((v, k)) = stack.pop() {
            if k < deps[v].len() {
                stack.push((v, k + 1));
                let d = deps[v][k];
                match state[d] {
                    0 => {
                        state[d] = 1;
                        stack.push((d, 0));
                    }
                    1 => {
                        return Err(GraphError::Invalid(format!(
                            "the nodes form a cycle through `{}` ({})",
                            nodes[d].name, nodes[d].op_type
                        )))
                    }
                    _ => {}
                }
            } else {
                state[v] = 2;
                order.push(v);
            }
        }
    }
    Ok(order)
}

/// A node of a built graph.
#[derive(Debug)]
pub(crate) struct GraphNode {
    pub name: String,
    pub op_type: String,
    pub op: Box<dyn Operator>,
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
}

impl GraphNode {
    fn error(&self, reason: String) -> GraphError {
        GraphError::Node {
            node: self.name.clone(),
            op_type: self.op_type.clone(),
            reason,
        }
    }
}

/// A trainable parameter of a graph: a float initializer read as a weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The initializer's name (e.g. `conv1.weight`).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    slot: usize,
}

/// A built graph (see [`GraphBuilder`]). Immutable and shareable across threads.
#[derive(Debug)]
pub struct Graph {
    slot_names: Vec<String>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    nodes: Vec<GraphNode>,
    constants: Vec<Option<Value>>,
    params: Vec<Param>,
    last_use: Vec<usize>,
}

/// The values of one forward pass, kept for a backward pass.
#[derive(Debug)]
pub struct Tape {
    values: Vec<Option<Value>>,
}

impl Tape {
    /// The graph's output `k` of this pass.
    pub fn output<'a>(&'a self, graph: &'a Graph, k: usize) -> Option<&'a Value> {
        graph.outputs.get(k).and_then(|&s| graph.value(self, s))
    }
}

/// Which gradients a backward pass returns.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// Gradients with respect to the graph's inputs (by position).
    pub inputs: Vec<usize>,
    /// Gradients with respect to these parameters (indices into [`Graph::params`]).
    pub params: Vec<usize>,
}

/// The gradients a backward pass returns, in the order asked for; `None` where no gradient
/// reaches a value (it is then zero).
#[derive(Debug, Default)]
pub struct Gradients {
    /// Input gradients, in [`Wanted::inputs`] order.
    pub inputs: Vec<Option<ArrayD<f32>>>,
    /// Parameter gradients, in [`Wanted::params`] order.
    pub params: Vec<Option<ArrayD<f32>>>,
}

impl Graph {
    /// The trainable parameters (float initializers read as weights), in initializer order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// A parameter's current value.
    pub fn param_value(&self, k: usize) -> Option<&ArrayD<f32>> {
        let p = self.params.get(k)?;
        match self.constants[p.slot].as_ref()? {
            Value::F32(a) => Some(a),
            Value::I64(_) => None,
        }
    }

    /// Number of run-time inputs.
    pub fn n_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Number of outputs.
    pub fn n_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// Number of nodes left after folding and pruning.
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The operator types of the remaining nodes, with how often each occurs.
    pub fn op_counts(&self) -> Vec<(String, usize)> {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for n in &self.nodes {
            *counts.entry(n.op_type.as_str()).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn value<'a>(&'a self, tape: &'a Tape, slot: usize) -> Option<&'a Value> {
        self.constants[slot]
            .as_ref()
            .or_else(|| tape.values[slot].as_ref())
    }

    /// Evaluates the graph on `inputs` (one value per run-time input) and returns its outputs.
    /// Each value is freed after its last reader.
    pub fn run(&self, inputs: Vec<Value>) -> Result<Vec<Value>> {
        let tape = self.forward(inputs, false)?;
        self.outputs
            .iter()
            .map(|&s| {
                self.value(&tape, s).cloned().ok_or_else(|| {
                    GraphError::Invalid(format!("output `{}` was not computed", self.slot_names[s]))
                })
            })
            .collect()
    }

    /// Evaluates the graph; with `keep`, every value stays on the returned [`Tape`] for a
    /// backward pass, otherwise only the outputs do.
    pub fn forward(&self, inputs: Vec<Value>, keep: bool) -> Result<Tape> {
        if inputs.len() != self.inputs.len() {
            return Err(GraphError::Invalid(format!(
                "the graph takes {} inputs, {} were given",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let mut values: Vec<Option<Value>> = vec![None; self.slot_names.len()];
        for (&s, v) in self.inputs.iter().zip(inputs) {
            values[s] = Some(v);
        }
        let mut is_output = vec![false; self.slot_names.len()];
        for &s in &self.outputs {
            is_output[s] = true;
        }
        for (k, node) in self.nodes.iter().enumerate() {
            let outs = {
                let mut ins: Vec<Option<&Value>> = Vec::with_capacity(node.inputs.len());
                for s in &node.inputs {
                    ins.push(match s {
                        None => None,
                        Some(s) => Some(
                            self.constants[*s]
                                .as_ref()
                                .or(values[*s].as_ref())
                                .ok_or_else(|| {
                                    node.error(format!(
                                        "its input `{}` has no value",
                                        self.slot_names[*s]
                                    ))
                                })?,
                        ),
                    });
                }
                node.op.forward(&ins).map_err(|e| node.error(e.0))?
            };
            check_output_count(node, outs.len())?;
            for (&s, v) in node.outputs.iter().zip(outs) {
                values[s] = Some(v);
            }
            if !keep {
                for s in node.inputs.iter().flatten() {
                    if self.last_use[*s] == k && !is_output[*s] {
                        values[*s] = None;
                    }
                }
            }
        }
        Ok(Tape { values })
    }

    /// The backward pass: from gradients of a scalar loss with respect to the outputs
    /// (`output_grads[k]` for output `k`, `None` for zero), the gradients `wanted` asks for.
    /// Only nodes between a wanted value and an output run their backward pass.
    pub fn backward(
        &self,
        tape: &Tape,
        output_grads: Vec<Option<ArrayD<f32>>>,
        wanted: &Wanted,
    ) -> Result<Gradients> {
        let n_slots = self.slot_names.len();
        // Which values a gradient must reach.
        let mut target = vec![false; n_slots];
        for &i in &wanted.inputs {
            let s = *self.inputs.get(i).ok_or_else(|| {
                GraphError::Invalid(format!(
                    "input {i} asked for, the graph has {}",
                    self.inputs.len()
                ))
            })?;
            target[s] = true;
        }
        for &p in &wanted.params {
            let s = self
                .params
                .get(p)
                .ok_or_else(|| {
                    GraphError::Invalid(format!(
                        "parameter {p} asked for, the graph has {}",
                        self.params.len()
                    ))
                })?
                .slot;
            target[s] = true;
        }
        let mut grads = self.backward_to(tape, output_grads, target)?;
        Ok(Gradients {
            inputs: wanted
                .inputs
                .iter()
                .map(|&i| grads[self.inputs[i]].take())
                .collect(),
            params: wanted
                .params
                .iter()
                .map(|&p| grads[self.params[p].slot].take())
                .collect(),
        })
    }

    /// The backward pass to the slots flagged in `target`: every slot's gradient (`None` where
    /// none reaches it; complete for the targets).
    pub(crate) fn backward_to(
        &self,
        tape: &Tape,
        output_grads: Vec<Option<ArrayD<f32>>>,
        target: Vec<bool>,
    ) -> Result<Vec<Option<ArrayD<f32>>>> {
        let n_slots = self.slot_names.len();
        // Forward: a value depends on a target if a differentiable node computed it from one.
        let mut depends = target;
        for node in &self.nodes {
            if node.op.is_differentiable() && node.inputs.iter().flatten().any(|&s| depends[s]) {
                for &o in &node.outputs {
                    depends[o] = true;
                }
            }
        }
        let mut grads: Vec<Option<ArrayD<f32>>> = vec![None; n_slots];
        if output_grads.len() != self.outputs.len() {
            return Err(GraphError::Invalid(format!(
                "{} output gradients given, the graph has {} outputs",
                output_grads.len(),
                self.outputs.len()
            )));
        }
        for (&s, g) in self.outputs.iter().zip(output_grads) {
            if let Some(g) = g {
                let v = self.value(tape, s).ok_or_else(|| {
                    GraphError::Invalid("the tape does not hold the outputs".into())
                })?;
                if g.shape() != v.shape() {
                    return Err(GraphError::Core(xai_core::CoreError::shape(
                        format!("gradient of output `{}`", self.slot_names[s]),
                        g.shape(),
                        format!("{:?} (the output's shape)", v.shape()),
                    )));
                }
                accumulate(&mut grads[s], g);
            }
        }
        for node in self.nodes.iter().rev() {
            if !node.op.is_differentiable()
                || !node.inputs.iter().flatten().any(|&s| depends[s])
                || node.outputs.iter().all(|&o| grads[o].is_none())
            {
                continue;
            }
            let mut ins: Vec<Option<&Value>> = Vec::with_capacity(node.inputs.len());
            for s in &node.inputs {
                ins.push(match s {
                    None => None,
                    Some(s) => Some(self.value(tape, *s).ok_or_else(|| {
                        node.error(format!(
                            "the tape does not hold its input `{}` (run forward with keep)",
                            self.slot_names[*s]
                        ))
                    })?),
                });
            }
            let mut outs: Vec<&Value> = Vec::with_capacity(node.outputs.len());
            for &s in &node.outputs {
                outs.push(self.value(tape, s).ok_or_else(|| {
                    node.error("the tape does not hold its outputs (run forward with keep)".into())
                })?);
            }
            let out_grads: Vec<Option<ArrayD<f32>>> =
                node.outputs.iter().map(|&o| grads[o].take()).collect();
            let refs: Vec<Option<&ArrayD<f32>>> = out_grads.iter().map(|g| g.as_ref()).collect();
            let wanted_inputs: Vec<bool> = node
                .inputs
                .iter()
                .map(|s| s.is_some_and(|s| depends[s]))
                .collect();
            let in_grads = node
                .op
                .backward_wanted(&ins, &outs, &refs, &wanted_inputs)
                .map_err(|e| node.error(e.0))?;
            if in_grads.len() != node.inputs.len() {
                return Err(node.error(format!(
                    "the backward pass returned {} gradients for {} inputs",
                    in_grads.len(),
                    node.inputs.len()
                )));
            }
            for ((s, g), v) in node.inputs.iter().zip(in_grads).zip(&ins) {
                let (Some(s), Some(g), Some(v)) = (s, g, v) else {
                    continue;
                };
                if !depends[*s] {
                    continue;
                }
                if g.shape() != v.shape() {
                    return Err(node.error(format!(
                        "the backward pass returned a gradient of shape {:?} for input `{}` of shape {:?}",
                        g.shape(),
                        self.slot_names[*s],
                        v.shape()
                    )));
                }
                accumulate(&mut grads[*s], g);
            }
        }
        Ok(grads)
    }

    /// The names of the values the graph's nodes compute (each node's outputs), in evaluation
    /// order; constant-folded nodes are not listed.
    pub fn node_output_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| n.outputs.iter().map(|&s| self.slot_names[s].clone()))
            .collect()
    }

    /// The slot of a value computed by a node, found by the value's name or by the name of the
    /// node (its first output).
    pub(crate) fn computed_slot(&self, name: &str) -> Option<usize> {
        let by_value = self
            .nodes
            .iter()
            .flat_map(|n| n.outputs.iter().copied())
            .find(|&s| self.slot_names[s] == name);
        by_value.or_else(|| {
            self.nodes
                .iter()
                .find(|n| n.name == name)
                .and_then(|n| n.outputs.first().copied())
        })
    }

    /// Number of value slots.
    pub(crate) fn n_slots(&self) -> usize {
        self.slot_names.len()
    }

    /// The value of slot `slot` on a tape.
    pub(crate) fn tape_value<'a>(&'a self, tape: &'a Tape, slot: usize) -> Option<&'a Value> {
        self.value(tape, slot)
    }
}

fn accumulate(slot: &mut Option<ArrayD<f32>>, g: ArrayD<f32>) {
    match slot {
        Some(acc) => *acc += &g,
        None => *slot = Some(g),
    }
}
