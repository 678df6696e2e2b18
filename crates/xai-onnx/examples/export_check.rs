//! Loads every export that `benches/python/torchvision_export.py` wrote (its `manifest.tsv`),
//! and prints one tab-separated row per model: the engine that runs it (and why the ones
//! before it declined), the largest difference to onnxruntime's outputs (`<stem>.io.txt`,
//! relative to the largest output), and the median time of `predict` and of the input
//! gradient of one class score at batch 1 and 8.
//!
//! ```sh
//! /work/venv/bin/python benches/python/torchvision_export.py --set full --out target/torchvision-exports
//! cargo run --release -p xai-onnx --example export_check -- target/torchvision-exports [reps]
//! ```
//!
//! `EXPORT_CHECK_TIMING=0` skips the timings (loading and agreement only).
//!
//! Exit status 1 when a model fails to load, is not differentiable or differs from
//! onnxruntime by more than 1e-4 relative.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array2, ArrayD, Axis, IxDyn};
use xai_core::{DifferentiableModel, Predictor};
use xai_onnx::{Engine, OnnxOptions};

fn io(path: &Path) -> Result<(ArrayD<f32>, Array2<f32>), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<Vec<f64>> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|v| v.parse())
                .collect::<Result<_, _>>()
        })
        .collect::<Result<_, _>>()?;
    if lines.len() < 4 {
        return Err(format!("{}: expected 4 lines", path.display()).into());
    }
    let dims = |l: &[f64]| l.iter().map(|&d| d as usize).collect::<Vec<_>>();
    let x = ArrayD::from_shape_vec(
        IxDyn(&dims(&lines[0])),
        lines[1].iter().map(|&v| v as f32).collect(),
    )?;
    let yd = dims(&lines[2]);
    let y = Array2::from_shape_vec((yd[0], yd[1]), lines[3].iter().map(|&v| v as f32).collect())?;
    Ok((x, y))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up (kernel packing, caches)
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .ok_or("usage: export_check <exports folder> [reps]")?,
    );
    let reps: usize = args.get(1).map(|r| r.parse()).transpose()?.unwrap_or(3);
    let timing = std::env::var("EXPORT_CHECK_TIMING").map_or(true, |v| v != "0");
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv"))?;
    println!("name\texporter\tengine\tmax_rel_diff\tpredict_b1_s\tpredict_b8_s\tgrad_b1_s\tgrad_b8_s\tnote");
    let mut bad = 0;
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 5 || cols[4] != "ok" {
            continue;
        }
        let (name, exporter, file) = (cols[0], cols[1], cols[2]);
        let dims: Vec<usize> = cols[3].split('x').filter_map(|d| d.parse().ok()).collect();
        let [c, h, w] = dims[..] else { continue };
        let path = dir.join(file);
        let io_path = path.with_extension("io.txt");
        let model = match OnnxOptions::new()
            .input_shape([c, h, w])
            .check()?
            .load(&path)
        {
            Ok(m) => m,
            Err(e) => {
                bad += 1;
                println!("{name}\t{exporter}\tnone\t\t\t\t\t\t{e}");
                continue;
            }
        };
        let (x, expected) = io(&io_path)?;
        let got = model.predict(x.view())?;
        let scale = expected.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
        let diff = (&got - &expected).iter().fold(0f32, |a, v| a.max(v.abs())) / scale;
        let one = x.index_axis(Axis(0), 0).insert_axis(Axis(0)).to_owned();
        let eight = ndarray::concatenate(Axis(0), &vec![one.view(); 8])?;
        let (p1, p8) = if timing {
            (
                format!("{:.4}", time(reps, || drop(model.predict(one.view())))),
                format!("{:.4}", time(reps, || drop(model.predict(eight.view())))),
            )
        } else {
            (String::new(), String::new())
        };
        let differentiable = model.engine() != Engine::Tract;
        let (g1, g8) = if differentiable && timing {
            let mut w1 = Array2::<f32>::zeros((1, model.n_outputs()));
            w1[[0, 0]] = 1.0;
            let mut w8 = Array2::<f32>::zeros((8, model.n_outputs()));
            w8.column_mut(0).fill(1.0);
            (
                format!(
                    "{:.4}",
                    time(reps, || drop(model.input_gradient(one.view(), w1.view())))
                ),
                format!(
                    "{:.4}",
                    time(reps, || drop(model.input_gradient(eight.view(), w8.view())))
                ),
            )
        } else {
            (String::new(), String::new())
        };
        if !differentiable || diff > 1e-4 {
            bad += 1;
        }
        println!(
            "{name}\t{exporter}\t{}\t{diff:.2e}\t{p1}\t{p8}\t{g1}\t{g8}\t{}",
            model.engine(),
            model.fallback_reason().unwrap_or("")
        );
    }
    if bad > 0 {
        eprintln!("{bad} models failed to load, are not differentiable or differ from onnxruntime");
        std::process::exit(1);
    }
    Ok(())
}
