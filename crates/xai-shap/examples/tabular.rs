//! KernelSHAP of a tabular ONNX model (input `[N, n_features]`) against a background CSV:
//!
//! ```text
//! cargo run --release -p xai-shap --example tabular -- --model <file.onnx> \
//!     --background <file.csv> --explain <file.csv> [--nsamples N] [--kmeans K] [--seed S] \
//!     [--estimator default|shap] [--l1-reg none|aic|bic|num_features(k)|<alpha>|auto] \
//!     [--batch-size B] [--backend auto|import|graph|tract] --out <file.json>
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
//! The ONNX model is loaded by `xai-onnx` with `OnnxOptions::input_features`: imported into
//! `xai-models` layers when the importer reads every node (an MLP: Gemm/MatMul, activations,
//! Softmax), otherwise run by tract; `--backend import|tract|auto` chooses (default auto).

use std::path::PathBuf;
use std::time::Instant;

use xai_onnx::{Backend, OnnxOptions};
use xai_shap::{
    read_csv, BackgroundData, FeatureSelection, KMeansParams, KernelShapParams, NSamples,
};

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

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut model, mut background, mut explain, mut out) = (None, None, None, None);
    let mut nsamples = NSamples::Auto;
    let mut kmeans = None;
    let mut seed = 0u64;
    let mut shap = false;
    let mut l1 = FeatureSelection::None;
    let mut batch = 512usize;
    let mut backend = Backend::Auto;
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
            "--backend" => backend = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let usage = "usage: tabular --model <file.onnx> --background <file.csv> --explain <file.csv> \
                 [--nsamples N] [--kmeans K] [--seed S] [--estimator default|shap] \
                 [--l1-reg none|aic|bic|auto|num_features(k)|<alpha>] [--batch-size B] \
                 [--backend auto|import|graph|tract] --out <file.json>";
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
    let model = OnnxOptions::new()
        .input_features(names.len())
        .backend(backend)
        .check()?
        .load(&model_path)?;
    eprintln!("{}", model.describe());
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
