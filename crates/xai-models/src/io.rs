//! Saving and loading weights as safetensors.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use xai_core::DifferentiableModel;

use crate::{ModelError, Network};

/// Writes the network's parameters to `path` as safetensors (one tensor per parameter group,
/// named as in [`DifferentiableModel::parameter_groups`]), then its buffers (batch norm running
/// statistics, [`Network::buffers`]), with `metadata` stored in the header.
pub fn save_weights(
    net: &Network,
    path: impl AsRef<Path>,
    metadata: HashMap<String, String>,
) -> Result<(), ModelError> {
    let path = path.as_ref();
    let groups = net.parameter_groups();
    let buffers = net.buffers();
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = groups
        .iter()
        .zip(net.param_slices())
        .map(|(g, s)| (g.name.clone(), g.shape.clone(), s))
        .collect();
    tensors.extend(
        buffers
            .iter()
            .map(|(name, v)| (name.clone(), vec![v.len()], *v)),
    );
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, s)| s.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, shape.clone(), b)
            .map_err(|e| ModelError::Weights(format!("{name}: {e}")))?;
        views.push((name.clone(), view));
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
    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ModelError> {
        let t = tensors
            .tensor(name)
            .map_err(|_| ModelError::Weights(format!("tensor `{name}` is missing")))?;
        if t.dtype() != Dtype::F32 {
            return Err(ModelError::Weights(format!(
                "tensor `{name}` has dtype {:?}, expected F32",
                t.dtype()
            )));
        }
        if t.shape() != shape {
            return Err(ModelError::Weights(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                t.shape(),
            )));
        }
        let v: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(ModelError::Weights(format!(
                "tensor `{name}` holds a non-finite value ({x}) at flat index {i}; weights must \
                 be finite"
            )));
        }
        Ok(v)
    };
    let mut values = Vec::new();
    for g in net.parameter_groups() {
        values.push(read(&g.name, &g.shape)?);
    }
    let mut buffers = Vec::new();
    for (name, v) in net.buffers() {
        let b = read(&name, &[v.len()])?;
        if name.ends_with(".running_var") {
            if let Some((i, x)) = b.iter().enumerate().find(|(_, x)| **x < 0.0) {
                return Err(ModelError::Weights(format!(
                    "tensor `{name}` holds a negative variance ({x}) at index {i}"
                )));
            }
        }
        buffers.push(b);
    }
    if tensors.len() != values.len() + buffers.len() {
        return Err(ModelError::Weights(format!(
            "file holds {} tensors, the network {} has {} ({} parameter groups, {} buffers)",
            tensors.len(),
            net.name(),
            values.len() + buffers.len(),
            values.len(),
            buffers.len()
        )));
    }
    net.set_params(&values)?;
    for ((_, slot), b) in net.buffers_mut().into_iter().zip(buffers) {
        *slot = b;
    }
    Ok(header.metadata().clone().unwrap_or_default())
}
