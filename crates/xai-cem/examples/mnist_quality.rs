//! Speed and quality of CEM on MNIST with the shipped `cem_cnn` (and `cem_autoencoder`): the
//! seed's settings (`CemParams::alibi_mnist_example`), on the first `N` test digits, reporting per
//! mode how often a PN / PP was found, the mean L1 / L2 of the perturbation and the time.
//!
//! ```text
//! cargo run --release -p xai-cem --example mnist_quality -- [--n N] [--batch B] [--no-ae]
//!     [--early-stop PATIENCE[,MIN_RELATIVE_IMPROVEMENT]] [--mode pn|pp|both] [--json FILE]
//! ```
//!
//! `--batch 1` explains one digit at a time (the latency of one explanation); a larger batch
//! explains that many digits in lock-step, one model call for all of them per iteration.

use xai_cem::{Cem, CemParams, EarlyStop, Mode};
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_testkit::cem_quality::{evaluate_quality, QualityReport};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut n = 100usize;
    let mut batch = 1usize;
    let mut use_ae = true;
    let mut early_stop = None;
    let mut modes = vec![Mode::PertinentNegative, Mode::PertinentPositive];
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--n" => n = value()?.parse()?,
            "--batch" => batch = value()?.parse()?,
            "--no-ae" => use_ae = false,
            "--early-stop" => {
                let v = value()?;
                let mut parts = v.split(',');
                let patience = parts.next().unwrap_or("50").parse()?;
                let min_relative_improvement = match parts.next() {
                    Some(m) => m.parse()?,
                    None => EarlyStop::default().min_relative_improvement,
                };
                early_stop = Some(EarlyStop {
                    patience,
                    min_relative_improvement,
                });
            }
            "--mode" => {
                modes = match value()?.as_str() {
                    "pn" => vec![Mode::PertinentNegative],
                    "pp" => vec![Mode::PertinentPositive],
                    "both" => modes,
                    other => return Err(format!("unknown mode {other}").into()),
                }
            }
            "--json" => json = Some(value()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let mnist = Mnist::load_default()?;
    let indices: Vec<usize> = (0..n).collect();
    let xs = mnist
        .test
        .subset(&indices)?
        .images_f32(ModelKind::CemCnn.scaling());
    let cnn = load_pretrained(ModelKind::CemCnn)?;
    let ae = load_pretrained(ModelKind::CemAutoencoder)?;
    let mut reports: Vec<QualityReport> = Vec::new();
    for mode in modes {
        let params = CemParams::alibi_mnist_example(mode)
            .early_stop(early_stop)
            .check()?;
        let mut cem = Cem::white_box(params, &cnn)?;
        if use_ae {
            cem = cem.with_autoencoder(&ae)?;
        }
        let report = evaluate_quality(&cem, xs.view().into_dyn(), batch)?;
        println!(
            "{} digits, batch {batch}, autoencoder {use_ae}, early stop {early_stop:?}: {report}",
            n
        );
        reports.push(report);
    }
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&reports)?)?;
    }
    Ok(())
}
