//! Tabular KernelSHAP: models whose input is `[n_features]`, explained row by row against a
//! [`BackgroundData`] set, with feature names, as shap's
//! `KernelExplainer(f, data).shap_values(X)`.
//!
//! [`ValidKernelShapParams::explain_table`] explains many rows in one call (batched model
//! evaluation across rows, optional progress callback; see [`crate::rows`]);
//! [`TabularShapValues::to_json`] writes the layout of the `tabular` example:
//! `{"feature_names": [..], "rows": [{"shap_values": [[one value per feature] per output],
//! "base_values": [per output], "outputs": [per output]}, ..]}`. [`read_csv`] reads numeric CSV
//! files with a header row of feature names.

use std::path::Path;

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use xai_core::{Explanation, Meta, Predictor};

use crate::algorithm::{ShapValues, KERNEL_SHAP};
use crate::background::{BackgroundData, BackgroundGames};
use crate::error::{Result, ShapError};
use crate::hyperparams::ValidKernelShapParams;
use crate::rows::Progress;

/// KernelSHAP values of several table rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TabularShapValues {
    /// One name per feature (column).
    pub feature_names: Vec<String>,
    /// Per explained row: values `[n_labels, n_features]`, base and instance values (link units).
    pub rows: Vec<ShapValues>,
    /// Per explained row, the model's outputs for the explained labels (no link applied).
    pub outputs: Vec<Vec<f64>>,
}

/// One row in the JSON layout of [`TabularShapValues::to_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TabularRowJson {
    /// `[per output][per feature]`.
    pub shap_values: Vec<Vec<f64>>,
    /// Per output, the base value (link units).
    pub base_values: Vec<f64>,
    /// Per output, the model's output for the row.
    pub outputs: Vec<f64>,
}

/// The JSON layout of [`TabularShapValues::to_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TabularJson {
    /// One name per feature.
    pub feature_names: Vec<String>,
    /// One entry per explained row.
    pub rows: Vec<TabularRowJson>,
}

impl TabularShapValues {
    /// The values in the example's JSON layout (see the module docs).
    pub fn to_json(&self) -> TabularJson {
        TabularJson {
            feature_names: self.feature_names.clone(),
            rows: self
                .rows
                .iter()
                .zip(&self.outputs)
                .map(|(r, outputs)| TabularRowJson {
                    shap_values: r.values.outer_iter().map(|v| v.to_vec()).collect(),
                    base_values: r.base_values.clone(),
                    outputs: outputs.clone(),
                })
                .collect(),
        }
    }
}

impl ValidKernelShapParams {
    /// KernelSHAP values of the rows of `rows` (`[R, n_features]`) for a model with input
    /// `[n_features]`, against `background`; `feature_names` default to `f0, f1, ..`.
    /// `progress`, if given, is called after the references and after each finished row.
    pub fn explain_table(
        &self,
        model: &dyn Predictor,
        background: &BackgroundData,
        rows: ArrayView2<'_, f32>,
        feature_names: Option<Vec<String>>,
        progress: Option<&mut dyn FnMut(&Progress)>,
    ) -> Result<Explanation<TabularShapValues>> {
        let n_features = rows.ncols();
        let feature_names =
            feature_names.unwrap_or_else(|| (0..n_features).map(|j| format!("f{j}")).collect());
        if feature_names.len() != n_features {
            return Err(ShapError::shape(
                "feature names",
                &[feature_names.len()],
                format!("[{n_features}], one per column"),
            ));
        }
        let games = BackgroundGames::tabular(model, background, rows)?;
        let values = match progress {
            Some(p) => self.estimate_rows_with_progress(&games, p)?,
            None => self.estimate_rows(&games)?,
        };
        let labels = self.resolve_labels(model.n_outputs())?;
        let raw = model.predict(rows.into_dyn())?;
        let outputs = raw
            .outer_iter()
            .map(|r| labels.iter().map(|&l| r[l] as f64).collect())
            .collect();
        Ok(Explanation {
            meta: Meta::new(
                KERNEL_SHAP,
                self.params(),
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            )?,
            data: TabularShapValues {
                feature_names,
                rows: values,
                outputs,
            },
        })
    }
}

/// Reads a numeric CSV file: a header row of feature names, then one row of numbers per sample
/// (comma-separated, all rows as long as the header). Returns the names and `[rows, columns]`.
pub fn read_csv(path: impl AsRef<Path>) -> Result<(Vec<String>, Array2<f32>)> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| ShapError::File {
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    parse_csv(&text).map_err(|message| ShapError::File {
        path: path.to_path_buf(),
        message,
    })
}

/// [`read_csv`] on text; the error says which line was wrong.
pub fn parse_csv(text: &str) -> std::result::Result<(Vec<String>, Array2<f32>), String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err("empty file: expected a header row of feature names".into());
    };
    let names: Vec<String> = header
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    let mut values = Vec::new();
    let mut n = 0;
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != names.len() {
            return Err(format!(
                "line {}: {} fields, expected {} like the header",
                i + 1,
                fields.len(),
                names.len()
            ));
        }
        for f in fields {
            let v: f32 = f.trim().parse().map_err(|_| {
                format!(
                    "line {}: `{}` is not a number, expected numeric data",
                    i + 1,
                    f.trim()
                )
            })?;
            if !v.is_finite() {
                return Err(format!("line {}: `{}` is not finite", i + 1, f.trim()));
            }
            values.push(v);
        }
        n += 1;
    }
    if n == 0 {
        return Err("no data rows after the header".into());
    }
    let data = Array2::from_shape_vec((n, names.len()), values)
        .map_err(|e| format!("inconsistent rows: {e}"))?;
    Ok((names, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_header() {
        let (names, data) = parse_csv("a, b\n1,2\n\n3.5,-4e-1\n").unwrap();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(data, ndarray::array![[1.0f32, 2.0], [3.5, -0.4]]);
        assert!(parse_csv("a,b\n1\n").unwrap_err().contains("line 2"));
        assert!(parse_csv("a,b\n1,x\n")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_csv("a,b\n").is_err());
        assert!(parse_csv("").is_err());
    }
}
