//! The operators, one file per family, each with its forward and backward passes side by
//! side. Every family exports `OPS`, a table of `(operator type, builder)`; [`build`] looks an
//! operator up in the union of the tables. A new operator is one entry in its family's table
//! (plus its tests); a new family is one file and one line in [`FAMILIES`].

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::error::OpError;
use crate::op::{Builder, NodeSpec, Operator};

pub mod binary;
pub mod conv;
pub mod matmul;
pub mod norm;
pub mod pad;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod scatter;
pub mod shape;
pub mod softmax;
pub mod unary;

/// Every family's table.
const FAMILIES: &[&[(&str, Builder)]] = &[
    unary::OPS,
    binary::OPS,
    reduce::OPS,
    softmax::OPS,
    matmul::OPS,
    shape::OPS,
    pad::OPS,
    resize::OPS,
    conv::OPS,
    pool::OPS,
    norm::OPS,
    scatter::OPS,
];

fn table() -> &'static HashMap<&'static str, Builder> {
    static TABLE: OnceLock<HashMap<&'static str, Builder>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = HashMap::new();
        for family in FAMILIES {
            for (name, builder) in family.iter() {
                t.insert(*name, *builder);
            }
        }
        t
    })
}

/// Why an operator could not be built.
#[derive(Debug)]
pub(crate) enum BuildError {
    /// No operator of that type is registered.
    Unknown,
    /// The builder refused the node.
    Op(OpError),
}

/// Builds the operator of `spec`.
pub(crate) fn build(spec: &NodeSpec) -> Result<Box<dyn Operator>, BuildError> {
    let builder = table()
        .get(spec.op_type.as_str())
        .ok_or(BuildError::Unknown)?;
    builder(spec).map_err(BuildError::Op)
}

/// The operator types the engine reads, sorted.
pub fn known_ops() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = table().keys().copied().collect();
    v.sort_unstable();
    v
}

/// Whether the engine reads operator type `op_type`.
pub fn is_known(op_type: &str) -> bool {
    table().contains_key(op_type)
}
