//! KernelSHAP of a tabular ONNX model (input `[N, n_features]`) against a background CSV:
//!
//! ```text
//! cargo run --release -p xai-shap --example tabular -- --model <file.onnx> \
//!     --background <file.csv> --explain <file.csv> [--nsamples N] [--kmeans K] [--seed S] \
//!     [--estimator default|shap] [--l1-reg none|aic|bic|num_features(k)|<alpha>|auto] \
//!     [--batch-size B] --out <file.json>
//! ```
//!
//! CSV files have a header row of feature names. Writes, per explained row, the SHAP values per
//! output, the base values and the model outputs:
//! `{"feature_names": [..], "rows": [{"shap_values": [[..] per output], "base_values": [..],
//! "outputs": [..]}, ..]}`. Progress goes to stderr; the time per row too.
//!
//! `--estimator shap` is shap's `KernelExplainer(f, data).shap_values(X, nsamples=N,
//! l1_reg=...)` step for step (shap's sampling, plain regression, non-varying features
//! dropped); the default is this crate's variance-reduced estimator. `--kmeans K` summarises the
//! background like `shap.kmeans(data, K)` first.
//!
//! The ONNX model runs through tract (tract-onnx) here, because `xai-onnx`'s predictor takes
//! `[channels, height, width]` samples only.

use std::path::PathBuf;
use std::time::Instant;

use ndarray::{Array2, ArrayViewD};
use tract_onnx::prelude::*;
use xai_core::Predictor;
use xai_shap::{
    read_csv, BackgroundData, FeatureSelection, KMeansParams, KernelShapParams, NSamples,
};

/// A tract-run ONNX model whose input is `[N, n_features]`, as a [`Predictor`].
struct TractTabular {
    plan: Arc<TypedRunnableModel>,
    shape: Vec<usize>,
    n_outputs: usize,
}

impl TractTabular {
    fn load(path: &PathBuf, n_features: usize) -> Result<Self, String> {
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| format!("{}: cannot load the ONNX model: {e}", path.display()))?;
        let batch = model.sym("N").to_dim();
        model = model
            .with_input_fact(
                0,
                InferenceFact::dt_shape(f32::datum_type(), tvec![batch, n_features.to_dim()]),
            )
            .map_err(|e| format!("input [N, {n_features}]: {e}"))?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| format!("cannot plan the model: {e}"))?;
        let mut me = Self {
            plan,
            shape: vec![n_features],
            n_outputs: 0,
        };
        let probe = me
            .run(&vec![0.0; n_features], 1)
            .map_err(|e| format!("probe run failed: {e}"))?;
        me.n_outputs = probe.ncols();
        Ok(me)
    }

    fn run(&self, data: &[f32], n: usize) -> Result<Array2<f32>, String> {
        let input = Tensor::from_shape(&[n, self.shape[0]], data).map_err(|e| e.to_string())?;
        let out = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| e.to_string())?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| e.to_string())?;
        let per = view.len() / n.max(1);
        Array2::from_shape_vec((n, per), view.iter().copied().collect()).map_err(|e| e.to_string())
    }
}

impl Predictor for TractTabular {
    fn input_shape(&self) -> &[usize] {
        &self.shape
    }
    fn n_outputs(&self) -> usize {
        self.n_outputs
    }
    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let n = xai_core::check_batch("input", &x, &self.shape)?;
        let data = x.as_standard_layout();
        self.run(data.as_slice().expect("standard layout"), n)
            .map_err(|e| xai_core::CoreError::Model(format!("tract: {e}")))
    }
}

fn parse_l1(s: &str) -> Result<FeatureSelection, String> {
    Ok(match s {
        "none" => FeatureSelection::None,
        "aic" => FeatureSelection::Aic,
        "bic" => FeatureSelection::Bic,
        "auto" => FeatureSelection::Auto,
        s => match s
            .strip_prefix("num_features(")
            .and_then(|r| r.strip_suffix(')'))
        {
            Some(k) => FeatureSelection::TopK(k.parse().map_err(|_| format!("bad k in {s}"))?),
            None => FeatureSelection::Alpha(s.parse().map_err(|_| {
                format!("--l1-reg {s}: expected none|aic|bic|auto|num_features(k)|<alpha>")
            })?),
        },
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut model, mut background, mut explain, mut out) = (None, None, None, None);
    let mut nsamples = NSamples::Auto;
    let mut kmeans = None;
    let mut seed = 0u64;
    let mut shap = false;
    let mut l1 = FeatureSelection::None;
    let mut batch = 512usize;
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--background" => background = Some(PathBuf::from(value()?)),
            "--explain" => explain = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--nsamples" => nsamples = NSamples::Count(value()?.parse()?),
            "--kmeans" => kmeans = Some(value()?.parse::<usize>()?),
            "--seed" => seed = value()?.parse()?,
            "--batch-size" => batch = value()?.parse()?,
            "--estimator" => {
                shap = match value()?.as_str() {
                    "shap" => true,
                    "default" => false,
                    other => {
                        return Err(format!("--estimator {other}: expected default|shap").into())
                    }
                }
            }
            "--l1-reg" => l1 = parse_l1(&value()?)?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let usage = "usage: tabular --model <file.onnx> --background <file.csv> --explain <file.csv> \
                 [--nsamples N] [--kmeans K] [--seed S] --out <file.json>";
    let (Some(model_path), Some(bg_path), Some(ex_path), Some(out_path)) =
        (model, background, explain, out)
    else {
        return Err(usage.into());
    };
    let (names, bg) = read_csv(&bg_path)?;
    let (names_x, rows) = read_csv(&ex_path)?;
    if names != names_x {
        return Err(format!(
            "{} and {} have different columns",
            bg_path.display(),
            ex_path.display()
        )
        .into());
    }
    let model = TractTabular::load(&model_path, names.len())?;
    let data = match kmeans {
        Some(k) => BackgroundData::kmeans(bg.view(), &KMeansParams::new(k).seed(seed))?,
        None => BackgroundData::new(bg.view().into_dyn())?,
    };
    let base = if shap {
        KernelShapParams::shap_compatible().skip_inert_features(true)
    } else {
        KernelShapParams::new()
    };
    let params = base
        .nsamples(nsamples)
        .seed(seed)
        .l1_reg(l1)
        .batch_size(batch)
        .check()?;
    let start = Instant::now();
    let n_rows = rows.nrows();
    let mut report = |p: &xai_shap::Progress| {
        eprint!(
            "\r{}/{} rows, {} coalitions, {} model calls",
            p.rows_done, p.n_rows, p.coalitions_evaluated, p.calls
        );
    };
    let ex = params.explain_table(&model, &data, rows.view(), Some(names), Some(&mut report))?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "\n{n_rows} rows, background {} rows: {:.2} ms per row",
        data.len(),
        1e3 * secs / n_rows.max(1) as f64
    );
    std::fs::write(&out_path, serde_json::to_string_pretty(&ex.data.to_json())?)?;
    eprintln!("wrote {}", out_path.display());
    Ok(())
}
