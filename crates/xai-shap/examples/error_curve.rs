//! Relative L2 error of KernelSHAP estimators vs nsamples on an MNIST digit (dianna's setting:
//! 200 SLIC segments, sigma 0, background 0), against a large-sample reference.
//!
//! The model is a shipped network (`alibi_cnn`, `binary_cnn`, ... from `xai_models::zoo`; the
//! binary model explains test digits 0 and 1 only) or `mlp`, a 784-128-10 ReLU MLP trained here
//! for one epoch (a second in release). Run:
//!
//! ```text
//! cargo run --release -p xai-shap --example error_curve -- [model] [image_index] [reference_nsamples] [background] [repeats]
//! ```
//! Defaults: `alibi_cnn 0 1000000 0 5`. `background` is a number or `mean` (dianna's default,
//! the image mean). The explained label is the model's predicted class. The reference is cached
//! as JSON under `target/xai-shap-references/` and reused by later runs with the same arguments.

use ndarray::{Array1, Array2, ArrayViewD, Axis, Ix2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{FnPredictor, Predictor};
use xai_datasets::{Mnist, Scaling};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_shap::{Background, ImageKernelShapParams, Regression, SamplingScheme, ShapValues};
use xai_testkit::shap_quality::{image_error_curve, ErrorCurveParams, Estimator};

struct Mlp {
    w1: Array2<f32>,
    b1: Array1<f32>,
    w2: Array2<f32>,
    b2: Array1<f32>,
}

impl Mlp {
    fn random(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut init = |r: usize, c: usize| {
            let s = (2.0 / r as f32).sqrt();
            Array2::from_shape_fn((r, c), |_| (rng.gen::<f32>() * 2.0 - 1.0) * s * 1.7)
        };
        Self {
            w1: init(784, 128),
            b1: Array1::zeros(128),
            w2: init(128, 10),
            b2: Array1::zeros(10),
        }
    }

    fn forward(&self, x: &Array2<f32>) -> (Array2<f32>, Array2<f32>) {
        let h = (x.dot(&self.w1) + &self.b1).mapv(|v| v.max(0.0));
        let mut p = h.dot(&self.w2) + &self.b2;
        for mut row in p.axis_iter_mut(Axis(0)) {
            let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            row.mapv_inplace(|v| (v - max).exp());
            let s = row.sum();
            row /= s;
        }
        (h, p)
    }

    fn train_epoch(&mut self, x: &Array2<f32>, y: &[usize], lr: f32) {
        let n = x.nrows();
        for start in (0..n).step_by(64) {
            let end = (start + 64).min(n);
            let xb = x.slice(ndarray::s![start..end, ..]).to_owned();
            let (h, mut p) = self.forward(&xb);
            for (i, &label) in y[start..end].iter().enumerate() {
                p[[i, label]] -= 1.0;
            }
            p /= (end - start) as f32;
            let gw2 = h.t().dot(&p);
            let gb2 = p.sum_axis(Axis(0));
            let mut gh = p.dot(&self.w2.t());
            gh.zip_mut_with(&h, |g, &hv| {
                if hv <= 0.0 {
                    *g = 0.0
                }
            });
            let gw1 = xb.t().dot(&gh);
            let gb1 = gh.sum_axis(Axis(0));
            self.w2.scaled_add(-lr, &gw2);
            self.b2.scaled_add(-lr, &gb2);
            self.w1.scaled_add(-lr, &gw1);
            self.b1.scaled_add(-lr, &gb1);
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match args.get(i) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|e| format!("argument {i} `{s}`: {e}")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model_name: String = arg(&args, 1, "alibi_cnn".to_string())?;
    let index: usize = arg(&args, 2, 0)?;
    let reference_nsamples: usize = arg(&args, 3, 1_000_000)?;
    let background = match args.get(4).map(String::as_str) {
        None => Background::Value(0.0),
        Some("mean") => Background::ChannelMean,
        Some(v) => Background::Value(v.parse()?),
    };
    let repeats: usize = arg(&args, 5, 5)?;

    let mnist = Mnist::load_default()?;
    let model: Box<dyn Predictor> = if model_name == "mlp" {
        let x = mnist.train.images_flat_f32(Scaling::UnitInterval);
        let y = mnist.train.labels_usize();
        let mut mlp = Mlp::random(7);
        let t = std::time::Instant::now();
        mlp.train_epoch(&x, &y, 0.1);
        eprintln!("proxy MLP trained in {:.1?}", t.elapsed());
        Box::new(FnPredictor::new(
            vec![1, 28, 28],
            10,
            move |x: ArrayViewD<'_, f32>| {
                let n = x.shape()[0];
                let flat = x
                    .to_shape((n, 784))
                    .map_err(|e| xai_core::CoreError::Model(e.to_string()))?
                    .into_dimensionality::<Ix2>()
                    .map_err(|e| xai_core::CoreError::Model(e.to_string()))?
                    .to_owned();
                Ok(mlp.forward(&flat).1)
            },
        ))
    } else {
        let kind =
            ModelKind::from_name(&model_name).ok_or(format!("unknown model `{model_name}`"))?;
        Box::new(load_pretrained(kind)?)
    };
    let test = if model_name == "binary_cnn" {
        mnist.test.binary_subset(0, 1)
    } else {
        mnist.test.clone()
    };
    let scaling = ModelKind::from_name(&model_name).map_or(Scaling::UnitInterval, |k| k.scaling());
    let images = test.images_f32(scaling);
    let image = images.index_axis(Axis(0), index).to_owned();
    let probs = model.predict(image.view().insert_axis(Axis(0)).into_dyn())?;
    let label = xai_core::argmax_rows(probs.view())[0];
    eprintln!(
        "{model_name}: test image {index}, true class {}, predicted {label} ({:.3})",
        test.labels_usize()[index],
        probs[[0, label]]
    );
    let params = ImageKernelShapParams::new()
        .labels(vec![label])
        .n_segments(200)
        .compactness(10.0)
        .sigma(0.0)
        .background(background)
        .check()?;
    let est = |sampling, regression, skip| Estimator {
        sampling,
        regression,
        skip_inert_features: skip,
    };
    let curve = ErrorCurveParams {
        reference_nsamples,
        repeats,
        estimators: vec![
            Estimator::SHAP_AS_DIANNA,
            est(SamplingScheme::Leverage, Regression::Plain, false),
            est(SamplingScheme::Leverage, Regression::SizeStratified, false),
            est(
                SamplingScheme::Leverage,
                Regression::SizePolynomial(4),
                false,
            ),
            est(
                SamplingScheme::Leverage,
                Regression::SizePolynomial(8),
                false,
            ),
            est(SamplingScheme::Leverage, Regression::Plain, true),
            est(SamplingScheme::Leverage, Regression::SizeStratified, true),
            est(
                SamplingScheme::Leverage,
                Regression::SizePolynomial(4),
                true,
            ),
            est(
                SamplingScheme::Leverage,
                Regression::SizePolynomial(8),
                true,
            ),
        ],
        ..ErrorCurveParams::default()
    };
    let t = std::time::Instant::now();
    let cache_dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/xai-shap-references"
    );
    let cache = std::path::Path::new(cache_dir).join(format!(
        "{model_name}_{index}_{reference_nsamples}_{}.json",
        args.get(4).map_or("0", String::as_str)
    ));
    let cached: Option<ShapValues> = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if cached.is_some() {
        eprintln!("reusing the reference in {}", cache.display());
    }
    let result = image_error_curve(model.as_ref(), image.view(), &params, &curve, cached)?;
    std::fs::create_dir_all(cache_dir)?;
    std::fs::write(&cache, serde_json::to_string(&result.reference)?)?;
    eprintln!(
        "{} segments, {} inert; done in {:.1?}",
        result.reference.values.ncols(),
        result.reference.inert_features.len(),
        t.elapsed()
    );
    print!("{:<32}", "estimator \\ nsamples");
    for n in &curve.nsamples {
        print!("{n:>9}");
    }
    println!("{:>12}", "s/expl@1000");
    for c in &result.curves {
        print!("{:<32}", c.estimator.name());
        for p in &c.points {
            print!("{:>9.3}", p.mean_error);
        }
        let at = c.points.iter().find(|p| p.nsamples == 1000);
        println!(
            "{:>12.4}",
            at.map_or(f64::NAN, |p| p.seconds_per_explanation)
        );
    }
    Ok(())
}
