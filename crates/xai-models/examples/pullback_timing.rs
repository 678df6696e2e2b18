//! Times the batch-1 pullback (outputs and input gradient in one pass) that CEM calls once per
//! FISTA iteration, for the CEM classifier and autoencoder. Medians of repeated runs.
//!
//! `cargo run --release -p xai-models --example pullback_timing -- [iterations [model ...]]`
//! (default: 2000 iterations of cem_cnn and cem_autoencoder), or `-- joined` for one CEM
//! iteration's model calls as CEM makes them for one instance: the classifier's pullback of
//! `[y; x]` (zero weights on the x row) on one thread and the autoencoder's pullback on the
//! other (`rayon::join`), each timed inside.

use std::time::Instant;

use ndarray::{Array2, Array4};
use rand::{Rng, SeedableRng};
use xai_core::{DifferentiableModel, Predictor};
use xai_models::zoo::ModelKind;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("joined") {
        joined();
        return;
    }
    let reps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("iterations"))
        .unwrap_or(2000);
    let mut kinds: Vec<ModelKind> = std::env::args()
        .skip(2)
        .map(|n| ModelKind::from_name(&n).unwrap_or_else(|| panic!("unknown model {n}")))
        .collect();
    if kinds.is_empty() {
        kinds = vec![ModelKind::CemCnn, ModelKind::CemAutoencoder];
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for kind in kinds {
        let net = kind.build(0);
        let x = Array4::from_shape_fn((1, 1, 28, 28), |_| rng.gen_range(-0.5f32..0.5));
        let k = net.n_outputs();
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let start = Instant::now();
            let (out, g) = net
                .predict_and_input_gradient(x.view().into_dyn(), &mut |o| {
                    Ok(Array2::from_elem(o.dim(), 0.5f32))
                })
                .unwrap();
            std::hint::black_box((out, g));
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{:16} pullback batch 1 ({k} outputs): median {:.3} ms, p10 {:.3} ms",
            kind.name(),
            times[reps / 2] * 1e3,
            times[reps / 10] * 1e3
        );
    }
}

fn joined() {
    let cnn = ModelKind::CemCnn.build(0);
    let ae = ModelKind::CemAutoencoder.build(0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = Array4::from_shape_fn((1, 1, 28, 28), |_| rng.gen_range(-0.5f32..0.5));
    // CEM's classifier call for one instance: y and the previous x in one pass, weights on
    // the y row only (the backward pass skips the x row).
    let yx = ndarray::concatenate(ndarray::Axis(0), &[x.view(), x.view()]).expect("stack");
    let reps = 3000;
    let mut times = Vec::with_capacity(reps);
    let mut ta = Vec::with_capacity(reps);
    let mut tb = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        let (a, b) = rayon::join(
            || {
                let s = Instant::now();
                let r = cnn
                    .predict_and_input_gradient(yx.view().into_dyn(), &mut |o| {
                        let mut w = Array2::from_elem(o.dim(), 0.5f32);
                        w.row_mut(1).fill(0.0);
                        Ok(w)
                    })
                    .unwrap();
                (r, s.elapsed().as_secs_f64())
            },
            || {
                let s = Instant::now();
                let r = ae
                    .predict_and_input_gradient(x.view().into_dyn(), &mut |o| {
                        Ok(Array2::from_elem(o.dim(), 0.5f32))
                    })
                    .unwrap();
                (r, s.elapsed().as_secs_f64())
            },
        );
        times.push(start.elapsed().as_secs_f64());
        ta.push(a.1);
        tb.push(b.1);
        std::hint::black_box((a, b));
    }
    for (name, t) in [("join", &mut times), ("cnn", &mut ta), ("ae", &mut tb)] {
        t.sort_by(|a, b| a.total_cmp(b));
        println!("{name}: median {:.3} ms", t[reps / 2] * 1e3);
    }
}
