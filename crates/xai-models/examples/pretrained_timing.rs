//! Wall-clock timing of the shipped `alibi_cnn` and `cem_cnn` networks: a batched `predict` of
//! 1,000 MNIST-shaped images (KernelSHAP, L2X) and the batch-1 pullback (outputs and input
//! gradient in one pass, CEM's call per iteration). Medians of repeated runs.
//!
//! The same file is the binary of `benches/outside`, a crate outside the workspace built with
//! default flags, so that both builds time the same code (see docs/BENCHMARKS.md, "Runtime CPU
//! dispatch"):
//!
//! `cargo run --release -p xai-models --example pretrained_timing`
//!
//! Weights come from `$XAI_MODELS_DIR` or the workspace's `models/`.

use std::time::Instant;

use ndarray::{Array2, Array4};
use rand::{Rng, SeedableRng};
use xai_core::{DifferentiableModel, Predictor};
use xai_models::zoo::{load_pretrained, ModelKind};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// FNV-1a over the bits of `values`: equal checksums mean bit-identical results.
fn checksum<'a>(values: impl IntoIterator<Item = &'a f32>) -> u64 {
    values.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, v| {
        (h ^ u64::from(v.to_bits())).wrapping_mul(0x0100_0000_01b3)
    })
}

/// CPU time of all this process's threads so far in seconds (Linux: the first field of each
/// `/proc/self/task/*/schedstat`, nanoseconds on a CPU), or `None` elsewhere. On a shared
/// machine it varies far less than wall-clock time.
fn cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 * 1e-9)
}

/// Median and 10th percentile of `reps` timed runs of `f` (after one warm-up run), and the
/// mean CPU time per run over all threads.
fn timed(reps: usize, mut f: impl FnMut()) -> (f64, f64, Option<f64>) {
    f();
    let cpu0 = cpu_seconds();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    let cpu = cpu0.zip(cpu_seconds()).map(|(a, b)| (b - a) / reps as f64);
    t.sort_by(|a, b| a.total_cmp(b));
    (t[reps / 2], t[reps / 10], cpu)
}

/// Milliseconds with `digits` decimals, or "n/a".
fn ms(v: Option<f64>, digits: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{:.digits$}", v * 1e3))
}

fn main() {
    let x86_avx2_build = cfg!(all(target_feature = "avx2", target_feature = "fma"));
    #[cfg(target_arch = "x86_64")]
    let x86_avx2_cpu = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let x86_avx2_cpu = false;
    println!(
        "threads: {}   build targets AVX2+FMA: {x86_avx2_build}   CPU has AVX2+FMA: {x86_avx2_cpu}",
        rayon::current_num_threads()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x1000 = Array4::from_shape_fn((1000, 1, 28, 28), |_| rng.gen_range(0.0f32..1.0));
    let x1 = x1000.slice(ndarray::s![0..1, .., .., ..]).to_owned();
    for kind in [ModelKind::AlibiCnn, ModelKind::CemCnn] {
        let net = match load_pretrained(kind) {
            Ok(net) => net,
            Err(e) => {
                eprintln!("{}: {e}", kind.name());
                std::process::exit(1);
            }
        };
        let probs = net.predict(x1000.view().into_dyn()).expect("predict");
        // Unequal weights per class: equal ones would make the softmax's gradient vanish.
        let mut weights = |o: ndarray::ArrayView2<'_, f32>| {
            Ok(Array2::from_shape_fn(o.dim(), |(_, j)| {
                (j + 1) as f32 / 10.0
            }))
        };
        let (out1, grad1) = net
            .predict_and_input_gradient(x1.view().into_dyn(), &mut weights)
            .expect("pullback");
        println!(
            "{:10} checksums: predict 1000 {:016x}   pullback 1 {:016x} {:016x}",
            kind.name(),
            checksum(&probs),
            checksum(&out1),
            checksum(&grad1)
        );
        let (predict_1000, predict_1000_p10, predict_1000_cpu) = timed(7, || {
            std::hint::black_box(net.predict(x1000.view().into_dyn()).expect("predict"));
        });
        let (pullback_1, pullback_1_p10, pullback_1_cpu) = timed(1001, || {
            let r = net
                .predict_and_input_gradient(x1.view().into_dyn(), &mut weights)
                .expect("pullback");
            std::hint::black_box(r);
        });
        println!(
            "{:10} predict 1000: median {:7.2} ms (p10 {:7.2}, CPU {:>7} ms)   pullback 1: median {:6.3} ms (p10 {:6.3}, CPU {:>6} ms)",
            kind.name(),
            predict_1000 * 1e3,
            predict_1000_p10 * 1e3,
            ms(predict_1000_cpu, 2),
            pullback_1 * 1e3,
            pullback_1_p10 * 1e3,
            ms(pullback_1_cpu, 3)
        );
    }
}
