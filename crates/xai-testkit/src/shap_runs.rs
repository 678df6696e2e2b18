//! The demo behind `cargo xtask demo kernelshap`: dianna's KernelSHAP MNIST tutorial
//! (`explain_image(model, image, labels=[0, 1], method="KernelSHAP", nsamples=1000,
//! background=0, n_segments=200, sigma=0)`), with every explanation written as JSON and `.npy`
//! files and drawn as dianna's figure: the digit, then one attribution map per class over it,
//! classes in order of predicted probability, on one shared blue-white-red scale.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{ArrayView4, Axis};
use xai_core::{argmax_rows, CoreError, Explanation, Predictor};
use xai_shap::error::{Result, ShapError};
use xai_shap::game::Background;
use xai_shap::hyperparams::ImageKernelShapParams;
use xai_shap::ImageShapValues;
use xai_viz::{shap_figure, ShapFigureOptions};

/// dianna's tutorial settings for `labels`: `nsamples = 1000`, `background = 0`,
/// `n_segments = 200`, `compactness = 10`, `sigma = 0`.
pub fn dianna_mnist_params(labels: &[usize]) -> ImageKernelShapParams {
    ImageKernelShapParams::new()
        .labels(labels.to_vec())
        .nsamples(1000)
        .background(Background::Value(0.0))
        .n_segments(200)
        .compactness(10.0)
        .sigma(0.0)
}

/// What [`dianna_mnist_example`] produced.
#[derive(Debug)]
pub struct DemoOutput {
    /// One explanation per image.
    pub explanations: Vec<Explanation<ImageShapValues>>,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// Mean wall-clock seconds per explained image (segmentation, sampling, model, solve).
    pub seconds_per_image: f64,
}

fn io_error(path: &Path, source: std::io::Error) -> ShapError {
    CoreError::Io {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// Explains each image of `images` (`[n, channels, height, width]`, the model's input shape)
/// for `labels` with [`dianna_mnist_params`] changed by `configure`, and writes under `out_dir`:
/// `image_<i>/explanation.json`, `image_<i>/*.npy` (attributions, segment values, segmentation,
/// base and instance values), `kernelshap_<i>.png` (dianna's figure; titles use `class_names`
/// when given) and `summary.txt` (one line per image: predicted class, values, time).
pub fn dianna_mnist_example(
    model: &dyn Predictor,
    images: ArrayView4<'_, f32>,
    labels: &[usize],
    class_names: Option<&[&str]>,
    out_dir: impl AsRef<Path>,
    configure: impl Fn(ImageKernelShapParams) -> ImageKernelShapParams,
) -> Result<DemoOutput> {
    let out_dir = out_dir.as_ref();
    std::fs::create_dir_all(out_dir).map_err(|e| io_error(out_dir, e))?;
    let params = configure(dianna_mnist_params(labels)).check()?;
    let mut explanations = Vec::new();
    let mut files = Vec::new();
    let mut summary = String::from(
        "image\tpredicted\tprobability\tlabel: sum of values (= f(x) - f(background))\tseconds\n",
    );
    let mut total_seconds = 0.0;
    for (i, image) in images.axis_iter(Axis(0)).enumerate() {
        let probs = model.predict(image.insert_axis(Axis(0)).into_dyn())?;
        let predicted = argmax_rows(probs.view())[0];
        let start = Instant::now();
        let explanation = params.explain(model, image)?;
        let seconds = start.elapsed().as_secs_f64();
        total_seconds += seconds;

        let dir = out_dir.join(format!("image_{i}"));
        let json = dir.join("explanation.json");
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        explanation.save_json(&json)?;
        files.push(json);
        files.extend(explanation.save_npy(&dir)?);

        // dianna's figure: the digit, then the labels by decreasing predicted probability
        let data = &explanation.data;
        let png = out_dir.join(format!("kernelshap_{i}.png"));
        let mut opts = ShapFigureOptions::default();
        if let Some(names) = class_names {
            opts = opts.class_names(names.iter().copied());
        }
        shap_figure(&png, image.into_dyn(), &explanation, &opts).map_err(|e| {
            ShapError::Figure {
                path: png.clone(),
                message: e.to_string(),
            }
        })?;
        files.push(png);

        summary.push_str(&format!("{i}\t{predicted}\t{:.4}\t", probs[[0, predicted]]));
        for (row, &l) in data.labels.iter().enumerate() {
            summary.push_str(&format!("{l}: {:+.4} ", data.segment_values.row(row).sum()));
        }
        summary.push_str(&format!("\t{seconds:.3}\n"));
        explanations.push(explanation);
    }
    let n = explanations.len().max(1) as f64;
    let summary_path = out_dir.join("summary.txt");
    std::fs::write(&summary_path, summary).map_err(|e| io_error(&summary_path, e))?;
    files.push(summary_path);
    Ok(DemoOutput {
        explanations,
        files,
        seconds_per_image: total_seconds / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array4, ArrayViewD, Ix4};
    use xai_core::FnPredictor;

    #[test]
    fn writes_explanations_and_figures() {
        // class 1 = brightness of the top half
        let model = FnPredictor::new(vec![1, 10, 10], 2, |x: ArrayViewD<'_, f32>| {
            let x = x.into_dimensionality::<Ix4>().unwrap();
            let mut out = Array2::zeros((x.shape()[0], 2));
            for (i, img) in x.axis_iter(Axis(0)).enumerate() {
                let top: f32 = img.iter().take(50).sum::<f32>() / 50.0;
                out[[i, 1]] = top;
                out[[i, 0]] = 1.0 - top;
            }
            Ok(out)
        });
        let images = Array4::from_shape_fn((2, 1, 10, 10), |(n, _, y, x)| {
            ((x + y + n) % 4) as f32 / 3.0
        });
        let dir = std::env::temp_dir().join(format!("xai-shap-demo-{}", std::process::id()));
        let out = dianna_mnist_example(
            &model,
            images.view(),
            &[0, 1],
            Some(&["zero", "one"]),
            &dir,
            |p| p.nsamples(200).n_segments(20),
        )
        .unwrap();
        assert_eq!(out.explanations.len(), 2);
        for i in 0..2 {
            assert!(dir.join(format!("kernelshap_{i}.png")).is_file());
            assert!(dir.join(format!("image_{i}/explanation.json")).is_file());
            assert!(dir.join(format!("image_{i}/attributions.npy")).is_file());
        }
        assert!(out.files.iter().all(|f| f.is_file()));
        let summary = std::fs::read_to_string(dir.join("summary.txt")).unwrap();
        assert_eq!(summary.lines().count(), 3);
        std::fs::remove_dir_all(dir).ok();
    }
}
