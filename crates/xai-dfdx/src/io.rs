//! Weights in and out of dfdx modules through safetensors, under dfdx's names (`"0.weight"`).
//!
//! [`read_safetensors`] reads any f32 safetensors file (e.g. one written by
//! `xai_models::save_weights`) into named tensors; a caller renames them (and transposes dense
//! weights between `[in, out]` and dfdx's `[out, in]` with [`transpose`]) and loads them with
//! [`crate::load_named`]. [`save_safetensors`] writes a module's tensors under its dfdx names.

use std::collections::HashMap;
use std::path::Path;

use dfdx::nn::modules::TensorCollection;
use dfdx::prelude::Cpu;
use safetensors::tensor::{Dtype, TensorView};

use crate::{named_tensors, DfdxError};

pub use xai_core::adapter::NamedTensor;

/// Reads every tensor of an f32 safetensors file.
pub fn read_safetensors(bytes: &[u8]) -> Result<HashMap<String, NamedTensor>, DfdxError> {
    xai_core::adapter::read_f32_safetensors(bytes).map_err(DfdxError::Safetensors)
}

/// The transpose of a row-major `[rows, cols]` matrix.
pub fn transpose(rows: usize, cols: usize, values: &[f32]) -> Result<Vec<f32>, DfdxError> {
    if values.len() != rows * cols {
        return Err(DfdxError::Shape(xai_core::CoreError::shape(
            "matrix",
            &[values.len()],
            format!("[{rows} * {cols}] values"),
        )));
    }
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    Ok(out)
}

/// Writes the module's trainable tensors to `path` under their dfdx names.
pub fn save_safetensors<M: TensorCollection<f32, Cpu>>(
    module: &M,
    path: &Path,
) -> Result<(), DfdxError> {
    let tensors = named_tensors(module, true)?;
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|f| f.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| DfdxError::Safetensors(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize_to_file(views, &None, path)
        .map_err(|e| DfdxError::Safetensors(e.to_string()))
}
