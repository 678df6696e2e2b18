//! The importer against tract on the committed fixtures (`fixtures/*.onnx`: PyTorch-style CNN
//! with the runtime flatten, ResNet and MobileNetV2 blocks, a tf2onnx NHWC chain): `predict` on
//! 1,000 random images, batch-1 `predict`, and (importer only) the batch-1 input gradient.
//! Medians of repeated calls after one warm-up (`repeats` calls on 1,000 images, 20 x `repeats` + 1
//! at batch 1).
//!
//! ```text
//! cargo run --release -p xai-onnx --example import_timing -- [repeats]
//! cargo run --release -p xai-onnx --example import_timing -- <repeats> <file.onnx> <c>x<h>x<w> ...
//! ```
//! With files on the command line (each followed by its per-sample NCHW shape, e.g.
//! `target/onnx-exports/resnet18w.onnx 3x32x32`) those are timed instead of the fixtures, named by
//! their file stem; `benches/onnx_side_by_side.sh` uses this for PyTorch exports.
//! `IMPORT_TIMING_ENGINES=import` (or `tract`) times one engine only.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array2, Array4};
use rand::{Rng, SeedableRng};
use xai_core::{DifferentiableModel, Predictor};
use xai_onnx::{Backend, Layout, OnnxOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[reps / 2]
}

/// `c`x`h`x`w` as three positive numbers.
fn parse_shape(s: &str) -> Result<[usize; 3], String> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| d.parse::<usize>().ok().filter(|&d| d > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("shape {s:?}: expected <c>x<h>x<w> with positive numbers"))?;
    dims.try_into()
        .map_err(|d: Vec<usize>| format!("shape {s:?}: expected 3 dimensions, got {}", d.len()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args
        .first()
        .map(|s| s.parse())
        .transpose()
        .map_err(|e| format!("repeats {:?}: {e}", args[0]))?
        .unwrap_or(5);
    if reps == 0 {
        return Err("repeats must be at least 1".into());
    }
    let files = &args[args.len().min(1)..];
    if !files.len().is_multiple_of(2) {
        return Err(
            "usage: import_timing [repeats] [<file.onnx> <c>x<h>x<w>]... (each file needs a shape)"
                .into(),
        );
    }
    let models: Vec<(String, PathBuf, [usize; 3], Layout)> = if files.is_empty() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        [
            ("pytorch_cnn", [1, 12, 12], Layout::Nchw),
            ("resnet_block", [3, 12, 12], Layout::Nchw),
            ("mobilenet_block", [3, 11, 13], Layout::Nchw),
            ("keras_nhwc", [1, 8, 8], Layout::Nhwc),
        ]
        .into_iter()
        .map(|(name, shape, layout)| {
            (
                name.to_string(),
                dir.join(format!("{name}.onnx")),
                shape,
                layout,
            )
        })
        .collect()
    } else {
        files
            .chunks(2)
            .map(|pair| {
                let path = PathBuf::from(&pair[0]);
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| pair[0].clone());
                Ok((name, path, parse_shape(&pair[1])?, Layout::Nchw))
            })
            .collect::<Result<_, String>>()?
    };
    // `IMPORT_TIMING_ENGINES=import` skips tract (a ResNet-18 on tract takes ~20 s per 1,000).
    let engines: Vec<String> = std::env::var("IMPORT_TIMING_ENGINES")
        .unwrap_or_else(|_| "import,tract".into())
        .split(',')
        .map(|e| e.trim().to_string())
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for (name, path, shape, layout) in models {
        let x = Array4::from_shape_fn((1000, shape[0], shape[1], shape[2]), |_| {
            rng.gen_range(0.0f32..1.0)
        });
        let x1 = x.slice(ndarray::s![0..1, .., .., ..]).to_owned();
        for backend in [Backend::Import, Backend::Tract] {
            if !engines.iter().any(|e| e == &backend.to_string()) {
                continue;
            }
            let model = OnnxOptions::new()
                .input_shape(shape)
                .layout(layout)
                .backend(backend)
                .check()?
                .load(&path)?;
            let p1000 = median_ms(reps, || {
                model.predict(x.view().into_dyn()).unwrap();
            });
            let p1 = median_ms(20 * reps + 1, || {
                model.predict(x1.view().into_dyn()).unwrap();
            });
            let g1 = if backend == Backend::Import {
                let w = Array2::ones((1, model.n_outputs()));
                format!(
                    "{:8.3} ms",
                    median_ms(20 * reps + 1, || {
                        model
                            .input_gradient(x1.view().into_dyn(), w.view())
                            .unwrap();
                    })
                )
            } else {
                "       -   ".into()
            };
            println!(
                "{name:16} {:11}  predict 1000: {p1000:8.2} ms  predict 1: {p1:7.3} ms  input grad 1: {g1}",
                backend.to_string()
            );
        }
    }
    Ok(())
}
