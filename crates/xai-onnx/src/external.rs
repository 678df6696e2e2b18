//! ONNX external data: tensors whose bytes live in a file beside the model (the ONNX spec's
//! `data_location = EXTERNAL` with `external_data` keys `location`, `offset`, `length`,
//! `checksum`), as `torch.onnx.export` writes by default (`<model>.onnx.data`).
//!
//! [`resolve_external_data`] reads every such tensor (initializers, `Constant` node values and
//! any tensor attribute, in subgraphs too) into its `raw_data`, so that the importer and tract
//! see a model whose data is inline. Each data file is opened once and each tensor's byte range
//! read from it after its size has been checked against the file and the tensor's shape.
//!
//! A `location` must name a file inside the model's folder: an absolute path, a `..` component,
//! or a path that leaves the folder once symbolic links are followed is refused, as are an
//! offset or length past the end of the file and a length that is not the tensor's size. The
//! `checksum` key (SHA-1) is not verified.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::pb::{GraphProto, ModelProto, TensorProto};

use crate::error::{OnnxError, Result};
use crate::proto::data_type_name;

/// Whether the tensor keeps its data in an external file.
fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32) || !t.external_data.is_empty()
}

/// Every tensor of a graph, its nodes' tensor attributes and its subgraphs, mutably.
fn for_each_tensor(
    g: &mut GraphProto,
    f: &mut dyn FnMut(&mut TensorProto) -> Result<()>,
) -> Result<()> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for s in &mut g.sparse_initializer {
        for t in s.values.iter_mut().chain(s.indices.iter_mut()) {
            f(t)?;
        }
    }
    for node in &mut g.node {
        for a in &mut node.attribute {
            for t in a.t.iter_mut().chain(a.tensors.iter_mut()) {
                f(t)?;
            }
            if let Some(s) = a.sparse_tensor.as_mut() {
                for t in s.values.iter_mut().chain(s.indices.iter_mut()) {
                    f(t)?;
                }
            }
            for sub in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                for_each_tensor(sub, f)?;
            }
        }
    }
    Ok(())
}

/// Whether any tensor of the model keeps its data in an external file.
pub(crate) fn has_external_data(model: &ModelProto) -> bool {
    fn graph_has(g: &GraphProto) -> bool {
        g.initializer.iter().any(is_external)
            || g.sparse_initializer
                .iter()
                .any(|s| s.values.iter().chain(s.indices.iter()).any(is_external))
            || g.node.iter().any(|n| {
                n.attribute.iter().any(|a| {
                    a.t.iter().chain(a.tensors.iter()).any(is_external)
                        || a.sparse_tensor
                            .iter()
                            .any(|s| s.values.iter().chain(s.indices.iter()).any(is_external))
                        || a.g.iter().chain(a.graphs.iter()).any(graph_has)
                })
            })
    }
    model.graph.as_ref().is_some_and(graph_has)
}

/// The error for a model with external data given as bytes.
pub(crate) fn external_data_in_bytes(model: &ModelProto) -> OnnxError {
    let mut first = None;
    if let Some(mut g) = model.graph.clone() {
        // The walk only reads; errors cannot occur.
        let _ = for_each_tensor(&mut g, &mut |t| {
            if first.is_none() && is_external(t) {
                first = Some((t.name.clone(), location_of(t).unwrap_or_default()));
            }
            Ok(())
        });
    }
    let (tensor, location) = first.unwrap_or_default();
    OnnxError::ExternalData {
        tensor,
        location,
        reason: "the model keeps its data in an external file, which bytes alone cannot locate; \
                 load it from its path (ValidOnnxOptions::load) so that the data file beside it \
                 is found"
            .into(),
    }
}

fn location_of(t: &TensorProto) -> Option<String> {
    t.external_data
        .iter()
        .find(|e| e.key == "location")
        .map(|e| e.value.clone())
}

/// Bytes of `n` elements of ONNX type `data_type` (`None` for strings, unknown types or an
/// overflow).
fn byte_size(data_type: i32, n: u64) -> Option<u64> {
    let bits: u64 = match DataType::try_from(data_type).ok()? {
        DataType::Float | DataType::Int32 | DataType::Uint32 => 32,
        DataType::Uint8
        | DataType::Int8
        | DataType::Bool
        | DataType::Float8e4m3fn
        | DataType::Float8e4m3fnuz
        | DataType::Float8e5m2
        | DataType::Float8e5m2fnuz => 8,
        DataType::Uint16 | DataType::Int16 | DataType::Float16 | DataType::Bfloat16 => 16,
        DataType::Int64 | DataType::Uint64 | DataType::Double | DataType::Complex64 => 64,
        DataType::Complex128 => 128,
        DataType::Uint4 | DataType::Int4 | DataType::Float4e2m1 => 4,
        DataType::Undefined | DataType::String => return None,
    };
    Some(n.checked_mul(bits)?.div_ceil(8))
}

/// The external data files the ONNX model at `path` names (each once, in the order its tensors
/// first name them), resolved in the model's folder with the checks of loading: a location must
/// be a relative path of plain components that stays inside the folder once symbolic links are
/// followed. Empty for a model whose data is inline. For a fingerprint of everything a model's
/// outputs depend on (the `xai` command's manifests hash the model and these files).
///
/// Errors: [`OnnxError::FileNotFound`], [`OnnxError::NotOnnx`], [`OnnxError::ExternalData`]
/// for a location that is missing, outside the folder or not a readable file.
pub fn external_data_files(path: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let path = path.as_ref();
    let mut model = crate::proto::read_model(path)?;
    if !has_external_data(&model) {
        return Ok(Vec::new());
    }
    let canonical_dir = model_folder(path)?;
    let mut files: Vec<PathBuf> = Vec::new();
    let Some(graph) = model.graph.as_mut() else {
        return Ok(files);
    };
    for_each_tensor(graph, &mut |t| {
        if !is_external(t) {
            return Ok(());
        }
        let location = location_of(t).unwrap_or_default();
        let real = if location.is_empty() {
            Err(
                "it has no `location` key; expected the name of a data file in the model's \
                 folder"
                    .to_string(),
            )
        } else {
            resolve_location(&location, &canonical_dir)
        }
        .map_err(|reason| OnnxError::ExternalData {
            tensor: t.name.clone(),
            location: location.clone(),
            reason,
        })?;
        if !files.contains(&real) {
            files.push(real);
        }
        Ok(())
    })?;
    Ok(files)
}

/// The data file `location` names, resolved in the canonical model folder `dir`: a relative
/// path of plain components that stays inside `dir` once symbolic links are followed; or why not.
fn resolve_location(location: &str, dir: &Path) -> std::result::Result<PathBuf, String> {
    let rel = Path::new(location);
    if let Some(c) = rel
        .components()
        .find(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        let what = match c {
            Component::ParentDir => "a `..` component",
            _ => "an absolute path",
        };
        return Err(format!(
            "the location is {what}; expected a file name relative to the model's folder, \
             inside it"
        ));
    }
    let joined = dir.join(rel);
    let real = joined.canonicalize().map_err(|e| {
        format!(
            "the data file {} cannot be opened ({e}); expected it beside the model",
            joined.display()
        )
    })?;
    if !real.starts_with(dir) {
        return Err(format!(
            "the location resolves to {}, outside the model's folder {}; expected a file \
             inside it",
            real.display(),
            dir.display()
        ));
    }
    if !real.is_file() {
        return Err(format!(
            "the location resolves to {}, which is not a file; expected a data file",
            real.display()
        ));
    }
    Ok(real)
}

/// The model file's folder, canonical (symbolic links followed): external data locations are
/// relative to it and must stay inside it.
fn model_folder(model_path: &Path) -> Result<PathBuf> {
    let dir = match model_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.canonicalize()
        .map_err(|source| OnnxError::Io { path: dir, source })
}

/// An opened data file and its length.
struct DataFile {
    file: File,
    len: u64,
}

/// Reads the external data of every tensor of `model` into its `raw_data` (see the module
/// documentation); `model_path` is the model file, whose folder the locations are relative to.
///
/// Errors: [`OnnxError::ExternalData`] naming the tensor, its location and what was wrong;
/// [`OnnxError::Io`] when a data file cannot be read.
pub(crate) fn resolve_external_data(model: &mut ModelProto, model_path: &Path) -> Result<()> {
    if !has_external_data(model) {
        return Ok(());
    }
    let canonical_dir = model_folder(model_path)?;
    let mut files: HashMap<PathBuf, DataFile> = HashMap::new();
    let Some(graph) = model.graph.as_mut() else {
        return Ok(());
    };
    for_each_tensor(graph, &mut |t| {
        if is_external(t) {
            resolve_tensor(t, &canonical_dir, &mut files)
        } else {
            Ok(())
        }
    })
}

fn resolve_tensor(
    t: &mut TensorProto,
    dir: &Path,
    files: &mut HashMap<PathBuf, DataFile>,
) -> Result<()> {
    let location = location_of(t).unwrap_or_default();
    let err = |reason: String| OnnxError::ExternalData {
        tensor: t.name.clone(),
        location: location.clone(),
        reason,
    };
    if location.is_empty() {
        return Err(err(
            "it has no `location` key; expected the name of a data file in the model's folder"
                .into(),
        ));
    }
    let number = |key: &str| -> Result<Option<u64>> {
        match t.external_data.iter().find(|e| e.key == key) {
            None => Ok(None),
            Some(e) => e.value.trim().parse::<u64>().map(Some).map_err(|_| {
                err(format!(
                    "its `{key}` is `{}`; expected a non-negative byte count",
                    e.value
                ))
            }),
        }
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?;
    let real = resolve_location(&location, dir).map_err(err)?;
    // The expected size, from the shape and the element type, before anything is allocated.
    let mut count: u64 = 1;
    for &d in &t.dims {
        let d = u64::try_from(d).map_err(|_| {
            err(format!(
                "the tensor has a negative dimension in {:?}",
                t.dims
            ))
        })?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| err(format!("the tensor's shape {:?} overflows", t.dims)))?;
    }
    let expected = byte_size(t.data_type, count).ok_or_else(|| {
        err(format!(
            "its element type {} cannot be stored externally (expected a numeric type)",
            data_type_name(t.data_type)
        ))
    })?;
    if !files.contains_key(&real) {
        let io = |source| OnnxError::Io {
            path: real.clone(),
            source,
        };
        let file = File::open(&real).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(err(format!(
                "{} is not a regular file; expected a data file",
                real.display()
            )));
        }
        files.insert(
            real.clone(),
            DataFile {
                file,
                len: meta.len(),
            },
        );
    }
    let Some(data) = files.get_mut(&real) else {
        return Err(err("the data file was not opened".into()));
    };
    if offset > data.len {
        return Err(err(format!(
            "its offset {offset} is past the end of the {}-byte file; expected at most {}",
            data.len, data.len
        )));
    }
    let length = length.unwrap_or(data.len - offset);
    if offset.checked_add(length).is_none_or(|end| end > data.len) {
        return Err(err(format!(
            "its {length} bytes at offset {offset} run past the end of the {}-byte file",
            data.len
        )));
    }
    if length != expected {
        return Err(err(format!(
            "its length is {length} bytes; expected {expected} for {count} values of type {} \
             (shape {:?})",
            data_type_name(t.data_type),
            t.dims
        )));
    }
    let len = usize::try_from(length)
        .map_err(|_| err(format!("its {length} bytes do not fit in memory")))?;
    let mut buf = vec![0u8; len];
    let io = |source| OnnxError::Io {
        path: real.clone(),
        source,
    };
    data.file.seek(SeekFrom::Start(offset)).map_err(io)?;
    data.file.read_exact(&mut buf).map_err(io)?;
    t.raw_data = buf;
    t.external_data.clear();
    t.data_location = Some(DataLocation::Default as i32);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use prost::Message;
    use tract_onnx::pb::{ModelProto, StringStringEntryProto, TensorProto};

    use super::{has_external_data, resolve_external_data};
    use crate::{OnnxError, OnnxOptions};

    const FIXTURE: &str = "torch_dynamo_cnn";

    fn fixture(ext: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(format!("{FIXTURE}.{ext}"))
    }

    /// A fresh folder under the system's temporary folder.
    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xai-onnx-ext-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn proto() -> ModelProto {
        ModelProto::decode(std::fs::read(fixture("onnx")).unwrap().as_slice()).unwrap()
    }

    /// The first external tensor's entries.
    fn first_external(m: &mut ModelProto) -> &mut TensorProto {
        m.graph
            .as_mut()
            .unwrap()
            .initializer
            .iter_mut()
            .find(|t| !t.external_data.is_empty())
            .unwrap()
    }

    fn set(t: &mut TensorProto, key: &str, value: &str) {
        t.external_data.retain(|e| e.key != key);
        t.external_data.push(StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        });
    }

    /// Writes `m` as `dir/m.onnx` beside a copy of the fixture's data file; loads it.
    fn load_in(dir: &Path, m: &ModelProto) -> crate::Result<crate::OnnxModel> {
        std::fs::copy(
            fixture("onnx.data"),
            dir.join(format!("{FIXTURE}.onnx.data")),
        )
        .unwrap();
        let path = dir.join("m.onnx");
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        OnnxOptions::new()
            .input_shape([3, 24, 24])
            .check()
            .unwrap()
            .load(&path)
    }

    fn external_error(r: crate::Result<crate::OnnxModel>, needle: &str) -> String {
        match r {
            Err(e @ OnnxError::ExternalData { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "`{needle}` not in: {msg}");
                msg
            }
            Err(e) => panic!("expected ExternalData, got {e:?}"),
            Ok(_) => panic!("expected ExternalData, the model loaded"),
        }
    }

    #[test]
    fn lists_the_data_files_once_and_checks_them() {
        let files = super::external_data_files(fixture("onnx")).unwrap();
        let want = fixture("onnx.data").canonicalize().unwrap();
        assert_eq!(files, [want]);
        // Inline data: no file.
        let mut inline = proto();
        resolve_external_data(&mut inline, &fixture("onnx")).unwrap();
        let dir = temp_dir("list");
        std::fs::write(dir.join("inline.onnx"), inline.encode_to_vec()).unwrap();
        assert!(super::external_data_files(dir.join("inline.onnx"))
            .unwrap()
            .is_empty());
        // A location outside the folder, or a missing file, is an error.
        let mut m = proto();
        set(first_external(&mut m), "location", "../elsewhere.data");
        std::fs::write(dir.join("outside.onnx"), m.encode_to_vec()).unwrap();
        assert!(matches!(
            super::external_data_files(dir.join("outside.onnx")),
            Err(OnnxError::ExternalData { .. })
        ));
        std::fs::write(dir.join("missing.onnx"), proto().encode_to_vec()).unwrap();
        assert!(matches!(
            super::external_data_files(dir.join("missing.onnx")),
            Err(OnnxError::ExternalData { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resolves_every_tensor_inline() {
        let mut m = proto();
        assert!(has_external_data(&m));
        let n_external = m
            .graph
            .as_ref()
            .unwrap()
            .initializer
            .iter()
            .filter(|t| !t.external_data.is_empty())
            .count();
        assert!(n_external >= 2, "the fixture shares one data file");
        resolve_external_data(&mut m, &fixture("onnx")).unwrap();
        assert!(!has_external_data(&m));
        for t in &m.graph.as_ref().unwrap().initializer {
            assert!(t.external_data.is_empty() && t.data_location != Some(1));
        }
        // A model in another folder with its data file beside it loads too.
        let dir = temp_dir("ok");
        load_in(&dir, &proto()).unwrap();
    }

    #[test]
    fn refuses_locations_outside_the_folder() {
        let dir = temp_dir("outside");
        let mut m = proto();
        set(first_external(&mut m), "location", "../x.data");
        external_error(load_in(&dir, &m), "`..`");

        let abs = dir.join(format!("{FIXTURE}.onnx.data"));
        let mut m = proto();
        set(first_external(&mut m), "location", abs.to_str().unwrap());
        external_error(load_in(&dir, &m), "absolute");

        let mut m = proto();
        set(first_external(&mut m), "location", "missing.data");
        external_error(load_in(&dir, &m), "cannot be opened");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_symlink_out_of_the_folder() {
        let outer = temp_dir("symlink");
        let dir = outer.join("model");
        std::fs::create_dir_all(&dir).unwrap();
        let secret = outer.join("secret.data");
        std::fs::copy(fixture("onnx.data"), &secret).unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("link.data")).unwrap();
        let mut m = proto();
        set(first_external(&mut m), "location", "link.data");
        external_error(load_in(&dir, &m), "outside the model's folder");
    }

    #[test]
    fn refuses_byte_ranges_past_the_file_or_of_the_wrong_size() {
        let len = std::fs::metadata(fixture("onnx.data")).unwrap().len();
        let dir = temp_dir("ranges");
        let mut m = proto();
        set(first_external(&mut m), "offset", &(len + 1).to_string());
        external_error(load_in(&dir, &m), "past the end");

        let mut m = proto();
        let t = first_external(&mut m);
        set(t, "offset", &(len - 4).to_string());
        external_error(load_in(&dir, &m), "run past the end");

        let mut m = proto();
        let t = first_external(&mut m);
        let right: u64 = t
            .external_data
            .iter()
            .find(|e| e.key == "length")
            .unwrap()
            .value
            .parse()
            .unwrap();
        set(t, "length", &(right - 4).to_string());
        external_error(load_in(&dir, &m), &format!("expected {right}"));

        // Without a length the data runs to the end of the file: the wrong size here.
        let mut m = proto();
        first_external(&mut m)
            .external_data
            .retain(|e| e.key != "length");
        external_error(load_in(&dir, &m), "expected");

        let mut m = proto();
        set(first_external(&mut m), "offset", "-8");
        external_error(load_in(&dir, &m), "non-negative");
    }

    #[test]
    fn bytes_with_external_data_say_to_load_the_path() {
        let bytes = std::fs::read(fixture("onnx")).unwrap();
        let r = OnnxOptions::new()
            .input_shape([3, 24, 24])
            .check()
            .unwrap()
            .load_bytes(&bytes);
        external_error(r, "load it from its path");
    }
}
