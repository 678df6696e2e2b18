//! The committed tiny torchvision exports (`fixtures/torchvision/`, written by
//! `benches/python/torchvision_export.py --set tiny`: torchvision's own architecture code at
//! tiny widths, random weights with calibrated batch norm, exported by torch's default dynamo
//! exporter with external data and by the legacy exporter) load as differentiable models,
//! agree with onnxruntime, and have input gradients that match finite differences.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, IxDyn};
use xai_core::{DifferentiableModel, Predictor};

use crate::{Backend, Engine, OnnxModel, OnnxOptions};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/torchvision")
}

/// (file stem, input shape) for every export in the manifest.
fn exports() -> Vec<(String, [usize; 3])> {
    let text = std::fs::read_to_string(dir().join("manifest.tsv")).expect("manifest.tsv");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            if cols.get(4) != Some(&"ok") {
                return None;
            }
            let stem = cols[2].strip_suffix(".onnx")?.to_string();
            let dims: Vec<usize> = cols[3].split('x').filter_map(|d| d.parse().ok()).collect();
            Some((stem, [dims[0], dims[1], dims[2]]))
        })
        .collect()
}

fn io(stem: &str) -> (ArrayD<f32>, Array2<f32>) {
    let text = std::fs::read_to_string(dir().join(format!("{stem}.io.txt"))).unwrap();
    let lines: Vec<Vec<f64>> = text
        .lines()
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    let dims = |l: &[f64]| l.iter().map(|&d| d as usize).collect::<Vec<_>>();
    let x = ArrayD::from_shape_vec(
        IxDyn(&dims(&lines[0])),
        lines[1].iter().map(|&v| v as f32).collect(),
    )
    .unwrap();
    let yd = dims(&lines[2]);
    let y = Array2::from_shape_vec((yd[0], yd[1]), lines[3].iter().map(|&v| v as f32).collect())
        .unwrap();
    (x, y)
}

fn load(stem: &str, shape: [usize; 3], backend: Backend) -> crate::Result<OnnxModel> {
    OnnxOptions::new()
        .input_shape(shape)
        .backend(backend)
        .check()?
        .load(dir().join(format!("{stem}.onnx")))
}

#[test]
fn every_tiny_torchvision_export_is_differentiable_and_agrees_with_onnxruntime() {
    let all = exports();
    assert!(all.len() >= 30, "{} exports in the manifest", all.len());
    let mut failures = Vec::new();
    for (stem, shape) in &all {
        let model = match load(stem, *shape, Backend::Auto) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{stem}: {e}"));
                continue;
            }
        };
        if model.engine() == Engine::Tract {
            failures.push(format!(
                "{stem}: runs on tract only ({:?})",
                model.fallback_reason()
            ));
            continue;
        }
        let (x, expected) = io(stem);
        let got = model.predict(x.view()).unwrap();
        let scale = expected.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
        let err = (&got - &expected).iter().fold(0f32, |a, v| a.max(v.abs())) / scale;
        if err > 1e-4 {
            failures.push(format!(
                "{stem} ({}): max relative difference {err:e}",
                model.engine()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn input_gradients_of_graph_engine_models_match_finite_differences() {
    for stem in [
        "vit_tiny",
        "convnext_tiny",
        "swin_tiny",
        "shufflenet_v2_tiny_legacy",
        "squeezenet_tiny",
    ] {
        let model =
            load(stem, [3, 32, 32], Backend::Graph).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let (x, _) = io(stem);
        let x = x.slice_axis(ndarray::Axis(0), (0..1).into()).to_owned();
        let mut w = Array2::<f32>::zeros((1, model.n_outputs()));
        w[[0, 3]] = 1.0;
        w[[0, 7]] = -0.5;
        let g = model.input_gradient(x.view(), w.view()).unwrap();
        let f = |x: &ArrayD<f32>| -> f64 {
            let y = model.predict(x.view()).unwrap();
            y[[0, 3]] as f64 - 0.5 * y[[0, 7]] as f64
        };
        let gmax = g.iter().fold(0f32, |a, v| a.max(v.abs()));
        for k in [0usize, 100, 1000, 1500, 2047, 3000] {
            let mut p = x.clone();
            let mut q = x.clone();
            let h = 1e-2f32;
            p.as_slice_mut().unwrap()[k] += h;
            q.as_slice_mut().unwrap()[k] -= h;
            let fd = ((f(&p) - f(&q)) / (2.0 * h as f64)) as f32;
            let a = g.as_slice().unwrap()[k];
            assert!(
                (a - fd).abs() <= 0.05 * gmax.max(1e-3),
                "{stem}: dx[{k}] backward {a}, finite difference {fd} (largest |dx| {gmax})"
            );
        }
    }
}
