//! A training step (forward pass with dropout, loss, summed parameter gradients, Adam) against
//! the per-sample-gradient pass on the same batch, for alibi's CNN: wall-clock and CPU seconds
//! of this process (user + system, from `/proc/self/stat`, so that other jobs on a shared
//! machine count less), medians and totals over `--reps` runs, on rayon's global pool (set
//! `RAYON_NUM_THREADS`).
//!
//! `cargo run --release -p xai-models --example train_timing -- [--batch 256] [--reps 10]`

use std::time::Instant;

use ndarray::Array4;
use rand::{Rng, SeedableRng};
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Targets};
use xai_models::zoo::ModelKind;
use xai_models::Adam;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds (user + system) used by this process so far; 0 where `/proc` is missing.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name: utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// (median wall seconds, CPU seconds per run) over `reps` runs after one warm-up.
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let cpu0 = cpu_seconds();
    let mut wall: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    let cpu = (cpu_seconds() - cpu0) / reps as f64;
    wall.sort_by(|a, b| a.total_cmp(b));
    (wall[reps / 2], cpu)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let (batch, reps) = (arg("--batch", 256), arg("--reps", 10));
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let x = Array4::from_shape_fn((batch, 1, 28, 28), |_| rng.gen_range(0.0f32..1.0));
    let targets = Targets::Classes((0..batch).map(|i| i % 10).collect());
    let loss = Loss::CrossEntropy(OutputKind::Probabilities);
    let mut net = ModelKind::AlibiCnn.build(0);
    let per_sample = time(reps, || {
        net.per_sample_grads(x.view().into_dyn(), &targets, &loss, &ParamSelection::All)
            .unwrap();
    });
    let mut adam = Adam::new(1e-3);
    let mut drop_rng = rand::rngs::StdRng::seed_from_u64(2);
    let train = time(reps, || {
        let step = net
            .train_gradients(x.view(), &targets, &loss, &mut drop_rng)
            .unwrap();
        adam.step(net.param_slices_mut(), &step.params).unwrap();
    });
    println!(
        "alibi_cnn batch {batch}, {} threads, {reps} runs: train step {:.1} ms wall / {:.1} ms CPU; \
         per-sample grads {:.1} ms wall / {:.1} ms CPU; ratio {:.2} wall, {:.2} CPU",
        rayon::current_num_threads(),
        train.0 * 1e3,
        train.1 * 1e3,
        per_sample.0 * 1e3,
        per_sample.1 * 1e3,
        train.0 / per_sample.0,
        train.1 / per_sample.1
    );
}
