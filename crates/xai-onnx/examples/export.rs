//! Writes the shipped `binary_cnn` and `alibi_cnn` (trained weights from `models/`) as ONNX files.
//!
//! ```text
//! cargo run --release -p xai-onnx --example export -- <dir> [--layout nchw|nhwc] [--input-scale <f>] [--output logits|probabilities|log-probabilities] [model...]
//! ```
//! Models default to `binary_cnn alibi_cnn`; any name of `xai_models::zoo::ModelKind` except the
//! autoencoder works. Each file is `<dir>/<model>.onnx` (opset 13, input `[N, 1, 28, 28]`, or
//! `[N, 28, 28, 1]` with `--layout nhwc`), read back with the importer and checked against the
//! network on 64 MNIST test images before the program reports it.

use xai_core::Predictor;
use xai_datasets::Mnist;
use xai_models::layers::Layer;
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_onnx::{save_onnx, Backend, ExportOptions, Layout, OnnxOptions, OutputKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        return Err("usage: export <dir> [--layout nchw|nhwc] [--input-scale <f>] [--output <kind>] [model...]".into());
    };
    let mut export = ExportOptions::new();
    let mut load = OnnxOptions::new().backend(Backend::Import);
    let mut models = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let next = || args.get(i + 1).ok_or(format!("{} needs a value", args[i]));
        match args[i].as_str() {
            "--layout" => {
                let l: Layout = next()?.parse()?;
                export = export.layout(l);
                load = load.layout(l);
                i += 1;
            }
            "--input-scale" => {
                let s: f32 = next()?.parse()?;
                export = export.input_scale(s);
                load = load.input_scale(s);
                i += 1;
            }
            "--output" => {
                let k: OutputKind = next()?.parse()?;
                export = export.output(k);
                i += 1;
            }
            name => {
                models.push(ModelKind::from_name(name).ok_or(format!("unknown model `{name}`"))?)
            }
        }
        i += 1;
    }
    if models.is_empty() {
        models = vec![ModelKind::BinaryCnn, ModelKind::AlibiCnn];
    }
    std::fs::create_dir_all(dir)?;
    let mnist = Mnist::load_default()?;
    for kind in models {
        let net = load_pretrained(kind)?;
        let path = std::path::Path::new(dir).join(format!("{}.onnx", kind.name()));
        save_onnx(&net, &path, &export)?;
        let test = if kind == ModelKind::BinaryCnn {
            mnist.test.binary_subset(0, 1).head(64)
        } else {
            mnist.test.head(64)
        };
        let x = test.images_f32(kind.scaling());
        // Compared as probabilities, whatever the exported output kind.
        let mut expected = net.predict(x.view().into_dyn())?;
        if !matches!(net.layers().last().map(|l| &l.layer), Some(Layer::Softmax)) {
            for mut row in expected.rows_mut() {
                let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                row.mapv_inplace(|v| (v - max).exp());
                let s = row.sum();
                row /= s;
            }
        }
        let model = load.clone().probabilities(true).check()?.load(&path)?;
        let got = model.predict(x.view().into_dyn())?;
        let diff = (&got - &expected)
            .iter()
            .fold(0.0f32, |a, d| a.max(d.abs()));
        println!(
            "{}: {} bytes, {} parameters; imported back, max |difference| of the probabilities on 64 test images {diff:.1e}",
            path.display(),
            std::fs::metadata(&path)?.len(),
            net.n_params()
        );
    }
    Ok(())
}
