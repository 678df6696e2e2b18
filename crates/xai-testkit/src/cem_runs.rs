//! Helpers for demos (`cargo xtask demo cem`): explain a few instances, write each explanation as
//! JSON and `.npy` files, and draw images as text.

use std::path::{Path, PathBuf};

use std::time::Instant;

use ndarray::{ArrayD, ArrayViewD};
use xai_core::{CoreError, DifferentiableModel, Explanation};

use crate::cem_quality::QualityReport;
use xai_cem::Cem;
use xai_cem::CemData;
use xai_cem::Result;
use xai_cem::{CemParams, Mode};

/// What [`explain_and_save`] produced.
#[derive(Debug)]
pub struct DemoOutput {
    /// One explanation per instance.
    pub explanations: Vec<Explanation<CemData>>,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// Found rate, perturbation sizes and time of these explanations.
    pub quality: QualityReport,
}

/// alibi's CEM MNIST example: explains each instance of `xs` (`[n, 1, 28, 28]` scaled to
/// `[-0.5, 0.5]`) with [`CemParams::alibi_mnist_example`], first for a pertinent negative, then
/// for a pertinent positive, with the autoencoder term (`gamma = 100`) when an autoencoder is
/// given; writes everything under `out_dir` (see [`explain_and_save`]) and returns both outputs.
/// `configure` can change the parameters (e.g. a smaller budget, or an early stop).
pub fn seed_example(
    classifier: &dyn DifferentiableModel,
    autoencoder: Option<&dyn DifferentiableModel>,
    xs: ArrayViewD<'_, f32>,
    out_dir: impl AsRef<Path>,
    configure: impl Fn(CemParams) -> CemParams,
) -> Result<Vec<DemoOutput>> {
    let mut outputs = Vec::with_capacity(2);
    for mode in [Mode::PertinentNegative, Mode::PertinentPositive] {
        let params = configure(CemParams::alibi_mnist_example(mode)).check()?;
        let mut cem = Cem::white_box(params, classifier)?;
        if let Some(ae) = autoencoder {
            cem = cem.with_autoencoder(ae)?;
        }
        outputs.push(explain_and_save(&cem, xs.view(), out_dir.as_ref())?);
    }
    Ok(outputs)
}

/// Explains each instance of `xs` (`[n, ..input_shape]`) and writes, per instance `i`,
/// `<out_dir>/<PN|PP>_<i>/explanation.json` and the arrays of [`CemData`] as `.npy` files
/// (`X`, `X_proba`, `no_info_val`, and when found `PN`/`PP`, `_proba`, `_delta`), plus
/// `<out_dir>/<PN|PP>_summary.txt` with one line per instance and the quality summary.
pub fn explain_and_save(
    cem: &Cem<'_>,
    xs: ArrayViewD<'_, f32>,
    out_dir: impl AsRef<Path>,
) -> Result<DemoOutput> {
    let out_dir = out_dir.as_ref();
    let start = Instant::now();
    let explanations = cem.explain_batch(xs, None)?;
    let seconds = start.elapsed().as_secs_f64();
    let mode = cem.params().mode().short_name();
    let mut files = Vec::new();
    let mut summary = String::new();
    for (i, e) in explanations.iter().enumerate() {
        let dir = out_dir.join(format!("{mode}_{i}"));
        files.extend(e.save_npy(&dir)?);
        let json = dir.join("explanation.json");
        e.save_json(&json)?;
        files.push(json);
        summary.push_str(&format!("{i}: {}\n", e.data.summary()));
    }
    let summary_path = out_dir.join(format!("{mode}_summary.txt"));
    let quality = QualityReport::from_explanations(cem.params().mode(), &explanations, seconds);
    summary.push_str(&format!("{quality}\n"));
    std::fs::write(&summary_path, summary).map_err(|source| CoreError::Io {
        path: summary_path.clone(),
        source,
    })?;
    files.push(summary_path);
    Ok(DemoOutput {
        explanations,
        files,
        quality,
    })
}

/// Draws a 2-D image (any array whose last two axes are rows and columns; leading axes of size 1
/// are dropped) as text, one character per pixel from dark to bright over `[min, max]`.
pub fn ascii_image(image: &ArrayD<f32>, min: f32, max: f32) -> String {
    const SHADES: &[u8] = b" .:-=+*#%@";
    let shape = image.shape();
    let (rows, cols) = match shape.len() {
        0 => (1, 1),
        1 => (1, shape[0]),
        d => (shape[d - 2], shape[d - 1]),
    };
    let span = if max > min { max - min } else { 1.0 };
    let mut out = String::with_capacity(rows * (cols + 1));
    for (k, v) in image.iter().take(rows * cols).enumerate() {
        let t = ((v - min) / span).clamp(0.0, 1.0);
        let idx = (t * (SHADES.len() - 1) as f32).round() as usize;
        out.push(SHADES[idx] as char);
        if (k + 1) % cols == 0 {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_draws_rows() {
        let img = ndarray::array![[[-0.5f32, 0.5], [0.0, -0.5]]].into_dyn();
        // 0.0 is halfway: shade index round(4.5) = 5.
        assert_eq!(ascii_image(&img, -0.5, 0.5), " @\n+ \n");
    }
}
