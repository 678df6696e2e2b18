//! Fuzz target: every parameters type read from JSON with serde, the checked types that can be
//! deserialised (`GradSimValidParams`, `ValidKernelShapParams`, `ValidSlicParams`,
//! `Segmentation`, `Network`), and the explanations, each from a valid JSON seed mutated
//! structure-aware (numbers nudged or set to edge values, values of another type, keys removed
//! or added, arrays shortened, lengthened or swapped) or byte-wise.
//!
//! What is accepted is used: unchecked parameters go through their `check()`, checked
//! parameters run their method on a tiny problem (KernelSHAP on a 4-player game, SLIC on an
//! 8x8 image, gradient similarity on a small dense network), a segmentation is queried, a
//! network predicts. A batch size of 0 read from JSON used to hang KernelSHAP; such a case now
//! fails this target by its time limit.

use ndarray::{Array2, Array3, Array4};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use xai_core::{Loss, OutputKind, Predictor, Targets};
use xai_fuzz::{fuzz, mutate_json_text, Outcome};
use xai_grad_sim::{GradSimParams, GradSimValidParams, GradientSimilarity};
use xai_models::layers::{Dense, Layer};
use xai_models::{NamedLayer, Network};
use xai_shap::game::FnGame;
use xai_shap::hyperparams::{KernelShapParams, ValidKernelShapParams};
use xai_shap::slic::{Segmentation, SlicParams, ValidSlicParams};

#[global_allocator]
static ALLOC: xai_fuzz::LimitAlloc = xai_fuzz::LimitAlloc;

/// Largest work a deserialised parameter set may ask for before the target runs it (a valid
/// but huge `nsamples` is slow, not a hang).
const MAX_RUN: usize = 1 << 12;

/// One JSON type under test: its name, a valid seed, and what to do with an accepted value.
struct Case {
    name: &'static str,
    seed: String,
    run: fn(&[u8]) -> Result<Outcome, String>,
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

fn net() -> Network {
    let mut r = StdRng::seed_from_u64(3);
    Network::new(
        "mlp",
        [1, 2, 2],
        vec![
            NamedLayer {
                name: "flatten".into(),
                layer: Layer::Flatten,
            },
            NamedLayer {
                name: "dense".into(),
                layer: Layer::Dense(Dense::new(4, 3, &mut r)),
            },
        ],
    )
    .unwrap()
}

fn run_grad_sim(b: &[u8]) -> Result<Outcome, String> {
    let Some(p) = parse::<GradSimValidParams>(b) else {
        return Ok(Outcome::Rejected);
    };
    if p.batch_size() > MAX_RUN || p.n_similar() > MAX_RUN {
        return Ok(Outcome::Accepted);
    }
    let model = net();
    let x = Array4::<f32>::from_shape_fn((5, 1, 2, 2), |(n, _, i, j)| (n + i + 2 * j) as f32);
    let y = Targets::Classes(vec![0, 1, 2, 0, 1]);
    // Any outcome but a panic or a hang: parameters that do not suit this model are errors.
    if let Ok(gs) = GradientSimilarity::new(&model, p) {
        if let Ok(fitted) = gs.fit(x.clone(), y.clone()) {
            if let Ok(e) = fitted.explain(x.view().into_dyn(), Some(&y)) {
                if e.data.scores.iter().flatten().any(|s| s.is_nan()) {
                    return Err("NaN similarity scores".into());
                }
            }
        }
    }
    Ok(Outcome::Accepted)
}

fn run_kernel_shap(b: &[u8]) -> Result<Outcome, String> {
    let Some(p) = parse::<ValidKernelShapParams>(b) else {
        return Ok(Outcome::Rejected);
    };
    let json = serde_json::to_value(&p).map_err(|e| e.to_string())?;
    let big = ["nsamples", "batch_size"]
        .iter()
        .any(|k| json[k].as_u64().is_some_and(|v| v as usize > MAX_RUN));
    if big {
        return Ok(Outcome::Accepted);
    }
    let game = FnGame::new(4, 2, |z: ndarray::ArrayView2<'_, bool>| {
        Ok(Array2::from_shape_fn((z.nrows(), 2), |(r, o)| {
            z.row(r).iter().filter(|&&b| b).count() as f64 * (o + 1) as f64
        }))
    });
    if let Ok(v) = p.estimate(&game) {
        let json = serde_json::to_string(&v).map_err(|e| e.to_string())?;
        if json.contains("NaN") {
            return Err("NaN SHAP values".into());
        }
    }
    Ok(Outcome::Accepted)
}

fn run_slic(b: &[u8]) -> Result<Outcome, String> {
    let Some(p) = parse::<ValidSlicParams>(b) else {
        return Ok(Outcome::Rejected);
    };
    if p.n_segments() > MAX_RUN || p.max_num_iter() > MAX_RUN {
        return Ok(Outcome::Accepted);
    }
    let image = Array3::<f32>::from_shape_fn((1, 8, 8), |(_, i, j)| ((i * 3 + j) % 5) as f32);
    if let Ok(s) = p.segment(image.view()) {
        if s.labels().dim() != (8, 8) {
            return Err(format!("a segmentation of shape {:?}", s.labels().dim()));
        }
    }
    Ok(Outcome::Accepted)
}

fn run_segmentation(b: &[u8]) -> Result<Outcome, String> {
    let Some(s) = parse::<Segmentation>(b) else {
        return Ok(Outcome::Rejected);
    };
    let n = s.n_segments();
    let max = s.labels().iter().copied().max().unwrap_or(0);
    if n == 0 && !s.labels().is_empty() || max >= s.start_label() + n.max(1) + n {
        return Err(format!("{n} segments with labels up to {max}"));
    }
    Ok(Outcome::Accepted)
}

fn run_network(b: &[u8]) -> Result<Outcome, String> {
    let Some(net) = parse::<Network>(b) else {
        return Ok(Outcome::Rejected);
    };
    let shape = net.input_shape().to_vec();
    let len: usize = shape.iter().product();
    if len > MAX_RUN || net.dims().iter().any(|d| d.len() > MAX_RUN) {
        return Ok(Outcome::Accepted);
    }
    let x = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[2, shape[0], shape[1], shape[2]]));
    let y = net.predict(x.view()).map_err(|e| format!("predict: {e}"))?;
    if y.dim() != (2, net.n_outputs()) {
        return Err(format!("predict gave {:?}", y.dim()));
    }
    Ok(Outcome::Accepted)
}

/// Unchecked parameters: deserialise, then `check()` must answer without panicking.
macro_rules! checked_by {
    ($t:ty) => {
        |b: &[u8]| -> Result<Outcome, String> {
            match parse::<$t>(b) {
                Some(p) => Ok(if p.check().is_ok() {
                    Outcome::Accepted
                } else {
                    Outcome::Rejected
                }),
                None => Ok(Outcome::Rejected),
            }
        }
    };
}

/// Plain data (explanations, configurations): deserialising and serialising again must work.
macro_rules! plain {
    ($t:ty) => {
        |b: &[u8]| -> Result<Outcome, String> {
            match parse::<$t>(b) {
                Some(v) => {
                    serde_json::to_string(&v).map_err(|e| e.to_string())?;
                    Ok(Outcome::Accepted)
                }
                None => Ok(Outcome::Rejected),
            }
        }
    };
}

fn cases() -> Vec<Case> {
    let j = |v: serde_json::Result<String>| v.expect("a valid seed serialises");
    let gs = GradSimParams::new(Loss::CrossEntropy(OutputKind::Logits))
        .check()
        .unwrap();
    let labels = Array2::from_shape_fn((4, 4), |(i, j)| 1 + i / 2 * 2 + j / 2);
    let seg = Segmentation::new(labels, 1).unwrap();
    let similarity = {
        let model = net();
        let x = Array4::<f32>::from_shape_fn((4, 1, 2, 2), |(n, _, i, j)| (n * i + j) as f32);
        let y = Targets::Classes(vec![0, 1, 2, 0]);
        GradientSimilarity::new(&model, gs.clone())
            .unwrap()
            .fit(x.clone(), y.clone())
            .unwrap()
            .explain(x.view().into_dyn(), Some(&y))
            .unwrap()
    };
    let shap = {
        let game = FnGame::new(3, 1, |z: ndarray::ArrayView2<'_, bool>| {
            Ok(Array2::from_shape_fn((z.nrows(), 1), |(r, _)| {
                z.row(r).iter().filter(|&&b| b).count() as f64
            }))
        });
        KernelShapParams::new()
            .check()
            .unwrap()
            .explain_game(&game)
            .unwrap()
    };
    vec![
        Case {
            name: "GradSimValidParams",
            seed: j(serde_json::to_string(&gs)),
            run: run_grad_sim,
        },
        Case {
            name: "ValidKernelShapParams",
            seed: j(serde_json::to_string(
                &KernelShapParams::new().check().unwrap(),
            )),
            run: run_kernel_shap,
        },
        Case {
            name: "KernelShapParams",
            seed: j(serde_json::to_string(&KernelShapParams::new())),
            run: checked_by!(KernelShapParams),
        },
        Case {
            name: "ValidSlicParams",
            seed: j(serde_json::to_string(
                &SlicParams::default().check().unwrap(),
            )),
            run: run_slic,
        },
        Case {
            name: "SlicParams",
            seed: j(serde_json::to_string(&SlicParams::default())),
            run: checked_by!(SlicParams),
        },
        Case {
            name: "Segmentation",
            seed: j(serde_json::to_string(&seg)),
            run: run_segmentation,
        },
        Case {
            name: "CemParams",
            seed: j(serde_json::to_string(&xai_cem::CemParams::new(
                xai_cem::Mode::PertinentNegative,
            ))),
            run: checked_by!(xai_cem::CemParams),
        },
        Case {
            name: "L2xParams",
            seed: j(serde_json::to_string(&xai_l2x::L2xParams::new())),
            run: |b| match parse::<xai_l2x::L2xParams>(b) {
                Some(p) => Ok(if p.check().is_ok() {
                    Outcome::Accepted
                } else {
                    Outcome::Rejected
                }),
                None => Ok(Outcome::Rejected),
            },
        },
        Case {
            name: "Network",
            seed: j(serde_json::to_string(&net())),
            run: run_network,
        },
        Case {
            name: "TrainConfig",
            seed: j(serde_json::to_string(&xai_models::TrainConfig {
                epochs: 2,
                batch_size: 32,
                learning_rate: 1e-3,
                seed: 0,
                loss: Loss::CrossEntropy(OutputKind::Logits),
                progress: false,
            })),
            run: plain!(xai_models::TrainConfig),
        },
        Case {
            name: "Explanation<SimilarityData>",
            seed: j(serde_json::to_string(&similarity)),
            run: plain!(xai_core::Explanation<xai_grad_sim::SimilarityData>),
        },
        Case {
            name: "Explanation<ShapValues>",
            seed: j(serde_json::to_string(&shap)),
            run: plain!(xai_core::Explanation<xai_shap::ShapValues>),
        },
    ]
}

#[test]
fn fuzz_params_and_explanation_json() {
    xai_fuzz::configure_alloc_limit();
    let cases = cases();
    for c in &cases {
        // The seeds themselves are accepted.
        assert_eq!(
            (c.run)(c.seed.as_bytes()),
            Ok(Outcome::Accepted),
            "{}: the valid seed",
            c.name
        );
    }
    fuzz("serde-json", 12_000, |rng| {
        let c = &cases[rng.gen_range(0..cases.len())];
        let bytes = mutate_json_text(rng, &c.seed);
        if std::env::var_os("XAI_FUZZ_PRINT").is_some() {
            eprintln!("{}: {}", c.name, String::from_utf8_lossy(&bytes));
        }
        (c.run)(&bytes).map_err(|e| format!("{}: {e}", c.name))
    });
}
