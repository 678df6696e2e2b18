use std::path::Path;

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// What produced an explanation: the method, every parameter it used and the crate version,
/// as alibi's `meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Method name, e.g. `"GradientSimilarity"`.
    pub name: String,
    /// Every parameter used, as a JSON object.
    pub params: serde_json::Value,
    /// `name@version` of the crate that produced it.
    pub version: String,
}

impl Meta {
    /// Builds a `Meta` from any serialisable parameter struct.
    pub fn new(
        name: impl Into<String>,
        params: &impl Serialize,
        crate_name: &str,
        crate_version: &str,
    ) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            params: serde_json::to_value(params)
                .map_err(|e| CoreError::Serialize(e.to_string()))?,
            version: format!("{crate_name}@{crate_version}"),
        })
    }
}

/// An explanation: `meta` (how it was made) and `data` (what it says).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation<D> {
    /// How the explanation was made.
    pub meta: Meta,
    /// The method-specific result.
    pub data: D,
}

/// Data that can export its arrays, each under a name, for `.npy` files.
pub trait NpyArrays {
    /// The arrays of this result, each with a file-name-safe name.
    fn npy_arrays(&self) -> Vec<(String, ArrayD<f32>)>;
}

impl<D: Serialize> Explanation<D> {
    /// The explanation as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| CoreError::Serialize(e.to_string()))
    }

    /// Writes the explanation as JSON to `path`.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()?).map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl<D: NpyArrays> Explanation<D> {
    /// Writes each array of `data` as `<dir>/<name>.npy` and returns the paths written.
    pub fn save_npy(&self, dir: impl AsRef<Path>) -> Result<Vec<std::path::PathBuf>> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| CoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut written = Vec::new();
        for (name, array) in self.data.npy_arrays() {
            let path = dir.join(format!("{name}.npy"));
            write_npy(&path, &array)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Writes one `f32` array as a NumPy `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, array: &ArrayD<f32>) -> Result<()> {
    let path = path.as_ref();
    ndarray_npy::write_npy(path, array).map_err(|e| match e {
        ndarray_npy::WriteNpyError::Io(source) => CoreError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => CoreError::Serialize(format!("writing {}: {other}", path.display())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Params {
        k: usize,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Data {
        scores: ArrayD<f32>,
    }

    impl NpyArrays for Data {
        fn npy_arrays(&self) -> Vec<(String, ArrayD<f32>)> {
            vec![("scores".into(), self.scores.clone())]
        }
    }

    #[test]
    fn json_and_npy_round_trip() {
        let e = Explanation {
            meta: Meta::new("Test", &Params { k: 3 }, "xai-core", "0.1.0").unwrap(),
            data: Data {
                scores: ndarray::Array::from_shape_vec(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])
                    .unwrap(),
            },
        };
        let json = e.to_json().unwrap();
        assert!(json.contains("\"k\": 3"), "{json}");
        let back: Explanation<Data> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        let dir = std::env::temp_dir().join(format!("xai-core-npy-{}", std::process::id()));
        let files = e.save_npy(&dir).unwrap();
        let read: ArrayD<f32> = ndarray_npy::read_npy(&files[0]).unwrap();
        assert_eq!(read, e.data.scores);
        std::fs::remove_dir_all(dir).ok();
    }
}
