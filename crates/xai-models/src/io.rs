//! Saving and loading weights as safetensors.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use xai_core::DifferentiableModel;

use crate::{ModelError, Network};

/// Writes the network's parameters to `path` as safetensors (one tensor per parameter group,
/// named as in [`DifferentiableModel::parameter_groups`]), with `metadata` stored in the header.
pub fn save_weights(
    net: &Network,
    path: impl AsRef<Path>,
    metadata: HashMap<String, String>,
) -> Result<(), ModelError> {
    let path = path.as_ref();
    let groups = net.parameter_groups();
    let bytes: Vec<Vec<u8>> = net
        .param_slices()
        .iter()
        .map(|s| s.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(groups.len());
    for (g, b) in groups.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, g.shape.clone(), b)
            .map_err(|e| ModelError::Weights(format!("{}: {e}", g.name)))?;
        views.push((g.name.clone(), view));
    }
    let mut meta = metadata;
    meta.insert("network".into(), net.name().to_string());
    let data = safetensors::serialize(views, &Some(meta))
        .map_err(|e| ModelError::Weights(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, data).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads parameters saved by [`save_weights`] into `net`, checking every name, shape and dtype.
/// Returns the file's metadata.
pub fn load_weights(
    net: &mut Network,
    path: impl AsRef<Path>,
) -> Result<HashMap<String, String>, ModelError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_weights_from_bytes(net, &bytes)
        .map_err(|e| ModelError::Weights(format!("{}: {e}", path.display())))
}

/// Like [`load_weights`], from the bytes of a safetensors file.
pub fn load_weights_from_bytes(
    net: &mut Network,
    bytes: &[u8],
) -> Result<HashMap<String, String>, ModelError> {
    let tensors = SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::Weights(format!("not a safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| ModelError::Weights(format!("unreadable header ({e})")))?;
    let mut values = Vec::new();
    for g in net.parameter_groups() {
        let t = tensors
            .tensor(&g.name)
            .map_err(|_| ModelError::Weights(format!("tensor `{}` is missing", g.name)))?;
        if t.dtype() != Dtype::F32 {
            return Err(ModelError::Weights(format!(
                "tensor `{}` has dtype {:?}, expected F32",
                g.name,
                t.dtype()
            )));
        }
        if t.shape() != g.shape.as_slice() {
            return Err(ModelError::Weights(format!(
                "tensor `{}` has shape {:?}, expected {:?}",
                g.name,
                t.shape(),
                g.shape
            )));
        }
        let v: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(ModelError::Weights(format!(
                "tensor `{}` holds a non-finite value ({x}) at flat index {i}; weights must be \
                 finite",
                g.name
            )));
        }
        values.push(v);
    }
    if tensors.len() != values.len() {
        return Err(ModelError::Weights(format!(
            "file holds {} tensors, the network {} has {}",
            tensors.len(),
            net.name(),
            values.len()
        )));
    }
    net.set_params(&values)?;
    Ok(header.metadata().clone().unwrap_or_default())
}
