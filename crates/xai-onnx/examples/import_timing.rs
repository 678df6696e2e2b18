//! The importer against tract on the committed fixtures (`fixtures/*.onnx`: PyTorch-style CNN
//! with the runtime flatten, ResNet and MobileNetV2 blocks, a tf2onnx NHWC chain): `predict` on
//! 1,000 random images, batch-1 `predict`, and (importer only) the batch-1 input gradient.
//! Medians of repeated calls after one warm-up.
//!
//! `cargo run --release -p xai-onnx --example import_timing -- [repeats]`

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let fixtures = [
        ("pytorch_cnn", [1, 12, 12], Layout::Nchw),
        ("resnet_block", [3, 12, 12], Layout::Nchw),
        ("mobilenet_block", [3, 11, 13], Layout::Nchw),
        ("keras_nhwc", [1, 8, 8], Layout::Nhwc),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for (name, shape, layout) in fixtures {
        let x = Array4::from_shape_fn((1000, shape[0], shape[1], shape[2]), |_| {
            rng.gen_range(0.0f32..1.0)
        });
        let x1 = x.slice(ndarray::s![0..1, .., .., ..]).to_owned();
        for backend in [Backend::Import, Backend::Tract] {
            let model = OnnxOptions::new()
                .input_shape(shape)
                .layout(layout)
                .backend(backend)
                .check()?
                .load(dir.join(format!("{name}.onnx")))?;
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
                "{name:16} {backend:7}  predict 1000: {p1000:8.2} ms  predict 1: {p1:7.3} ms  input grad 1: {g1}"
            );
        }
    }
    Ok(())
}
