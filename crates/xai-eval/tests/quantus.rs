//! Agreement with Quantus 0.6 on a committed model (`fixtures/model.onnx`, a seeded 1x16x16 CNN
//! with 3 classes), 3 inputs and 2 maps per input (gradient x input, a random normal map), and
//! Quantus' scores on them (`fixtures/quantus.json`, written by
//! `fixtures/make_quantus_fixtures.py`). Quantus' random draws (subsets, noise) are recorded in
//! the fixture and passed in; no test runs Python.

use std::path::PathBuf;

use ndarray::{Array3, ArrayD, IxDyn};
use serde_json::Value;
use xai_core::DifferentiableModel;
use xai_eval::*;
use xai_onnx::{Backend, OnnxModel, OnnxOptions, OutputKind};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn load() -> (OnnxModel, Value) {
    let model = OnnxOptions::new()
        .input_shape([1, 16, 16])
        .output_kind(OutputKind::Logits)
        .backend(Backend::Import)
        .check()
        .unwrap()
        .load(fixtures().join("model.onnx"))
        .unwrap();
    let text = std::fs::read_to_string(fixtures().join("quantus.json")).unwrap();
    (model, serde_json::from_str(&text).unwrap())
}

fn floats(v: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Number(n) => out.push(n.as_f64().unwrap() as f32),
            _ => panic!("not a number: {v}"),
        }
    }
    walk(v, &mut out);
    out
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn sample(v: &Value, i: usize) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(&[1, 16, 16]), floats(&v[i])).unwrap()
}

/// |a - b| <= tol * max(|b|, scale): relative, with the curve's scale for values near zero.
fn close(a: f64, b: f64, tol: f64, scale: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(scale)
}

fn assert_curve(ours: &[f64], theirs: &[f64], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: curve lengths");
    let scale = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (k, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            close(*a, *b, 1e-4, scale),
            "{what}: point {k}: ours {a}, Quantus {b}"
        );
    }
}

const MAPS: [&str; 2] = ["grad_x_input", "random"];

#[test]
fn model_matches_the_fixture_logits() {
    let (model, fx) = load();
    use xai_core::Predictor;
    let x = ArrayD::from_shape_vec(IxDyn(&[3, 1, 16, 16]), floats(&fx["x"])).unwrap();
    let out = model.predict(x.view()).unwrap();
    let theirs = floats(&fx["logits"]);
    for (a, b) in out.iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn pixel_flipping_matches_quantus() {
    let (model, fx) = load();
    for name in MAPS {
        for (key, step, baseline) in [
            ("pixel_flipping_black", 4, Baseline::Black),
            ("pixel_flipping_value", 8, Baseline::Value(0.3)),
        ] {
            let p = CurveParams::new()
                .features(Features::Elements)
                .features_in_step(step)
                .baseline(baseline)
                .batch_size(7)
                .check()
                .unwrap();
            for i in 0..3 {
                let x = sample(&fx["x"], i);
                let a = sample(&fx["maps"][name], i);
                let t = fx["y"][i].as_u64().unwrap() as usize;
                let s =
                    pixel_flipping(&model, x.view(), a.view(), t, None, Order::Morf, &p).unwrap();
                let theirs = f64s(&fx["metrics"][name][key][i]);
                assert_curve(&s.curve.y, &theirs, &format!("{name} {key} input {i}"));
                // The AUC is Quantus' `return_auc_per_sample` (np.trapz, unit spacing).
                let auc: f64 = theirs.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum();
                assert!(close(s.value, auc, 1e-4, 1.0));
                // Pixels of a one-channel image are its elements (the batch size, 64 here,
                // changes only the last bits of the model's sums).
                let px = CurveParams::new()
                    .features_in_step(step)
                    .baseline(baseline)
                    .check()
                    .unwrap();
                let s2 =
                    pixel_flipping(&model, x.view(), a.view(), t, None, Order::Morf, &px).unwrap();
                for (u, v) in s.curve.y.iter().zip(&s2.curve.y) {
                    assert!((u - v).abs() <= 1e-5 * v.abs().max(1.0), "{u} vs {v}");
                }
            }
        }
    }
}

#[test]
fn region_perturbation_matches_quantus() {
    let (model, fx) = load();
    // Patches of 3 on 16 x 16: Quantus pads by (0, 1); 36 patches, 20 evaluated.
    let p = RegionParams::new()
        .patch_size(3)
        .regions_evaluation(20)
        .batch_size(8)
        .check()
        .unwrap();
    for name in MAPS {
        for (order, key) in [
            (Order::Morf, "region_perturbation_morf"),
            (Order::Lerf, "region_perturbation_lerf"),
        ] {
            for i in 0..3 {
                let x = sample(&fx["x"], i);
                let a = sample(&fx["maps"][name], i);
                let t = fx["y"][i].as_u64().unwrap() as usize;
                let s = region_perturbation(&model, x.view(), a.view(), t, order, &p).unwrap();
                assert_curve(
                    &s.curve.y,
                    &f64s(&fx["metrics"][name][key][i]),
                    &format!("{name} {key} {i}"),
                );
            }
        }
    }
}

#[test]
fn infidelity_matches_quantus() {
    let (model, fx) = load();
    for name in MAPS {
        for (key, sizes, baseline) in [
            ("infidelity", vec![4], Baseline::Black),
            ("infidelity_two_sizes", vec![2, 8], Baseline::Value(0.0)),
        ] {
            let p = InfidelityParams::new()
                .perturbation(InfidelityPerturbation::Squares {
                    patch_sizes: sizes,
                    baseline,
                })
                .check()
                .unwrap();
            for i in 0..3 {
                let x = sample(&fx["x"], i);
                let a = sample(&fx["maps"][name], i);
                let t = fx["y"][i].as_u64().unwrap() as usize;
                let ours = infidelity(&model, x.view(), a.view(), t, &p).unwrap();
                let theirs = fx["metrics"][name][key][i].as_f64().unwrap();
                assert!(
                    close(ours, theirs, 1e-4, 0.0),
                    "{name} {key} {i}: ours {ours}, Quantus {theirs}"
                );
            }
        }
    }
}

#[test]
fn faithfulness_correlation_matches_quantus_on_its_subsets() {
    let (model, fx) = load();
    for name in MAPS {
        for i in 0..3 {
            let x = sample(&fx["x"], i);
            let a = sample(&fx["maps"][name], i);
            let t = fx["y"][i].as_u64().unwrap() as usize;
            let subsets: Vec<Vec<usize>> = fx["metrics"][name]["faithfulness_correlation_subsets"]
                [i]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    s.as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_u64().unwrap() as usize)
                        .collect()
                })
                .collect();
            let ours = faithfulness_correlation_with_subsets(
                &model,
                x.view(),
                a.view(),
                t,
                &subsets,
                Baseline::Black,
                Similarity::Pearson,
                64,
            )
            .unwrap();
            let theirs = fx["metrics"][name]["faithfulness_correlation"][i]
                .as_f64()
                .unwrap();
            assert!(
                close(ours, theirs, 1e-4, 1.0),
                "{name} {i}: ours {ours}, Quantus {theirs}"
            );
        }
    }
}

#[test]
fn noisy_linear_imputation_matches_quantus_without_noise() {
    let (_, fx) = load();
    let x = Array3::from_shape_vec((1, 16, 16), floats(&fx["x"][0])).unwrap();
    let idx: Vec<usize> = fx["imputation"]["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let theirs = floats(&fx["imputation"]["imputed"]);
    let ours = noisy_linear_imputation(x.view(), &idx, 0.0, 0, 2000, 1e-10).unwrap();
    for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "element {k}: ours {a}, Quantus {b}"
        );
    }
    // The imputed pixels changed, the others did not.
    let changed = ours.iter().zip(x.iter()).filter(|(a, b)| a != b).count();
    assert!(changed > 90 && changed <= 100, "{changed}");
}

#[test]
fn road_matches_quantus() {
    let (model, fx) = load();
    for name in MAPS {
        let r = &fx["metrics"][name];
        let percentages = f64s(&r["road_percentages"]);
        for (noise, key) in [(0.0f32, "road_noise0"), (0.01, "road_noise001")] {
            let p = RoadParams::new()
                .percentages(percentages.clone())
                .noise(noise)
                .seed(3)
                .check()
                .unwrap();
            // Quantus reports the accuracy over the 3 inputs per percentage.
            let mut acc = vec![0.0; percentages.len()];
            for i in 0..3 {
                let x = sample(&fx["x"], i);
                let a = sample(&fx["maps"][name], i);
                let t = fx["y"][i].as_u64().unwrap() as usize;
                let s = road(&model, x.view(), a.view(), t, Order::Morf, &p).unwrap();
                for (k, v) in s.curve.y.iter().enumerate() {
                    acc[k] += v / 3.0;
                }
            }
            let theirs = f64s(&r[key]);
            if noise == 0.0 {
                assert_curve(&acc, &theirs, &format!("{name} {key}"));
            } else {
                // With noise 0.01 (std) a prediction flips only at a near tie: at most one
                // input of one percentage may differ from Quantus' draw.
                let diff: f64 = acc.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).sum();
                assert!(
                    diff <= 1.0 / 3.0 + 1e-9,
                    "{name} {key}: ours {acc:?}, Quantus {theirs:?}"
                );
            }
        }
    }
}

fn gradient(
    model: &OnnxModel,
) -> impl Fn(ndarray::ArrayViewD<'_, f32>, &[usize]) -> Result<ArrayD<f32>> + '_ {
    move |x, t| gradient_explainer(model as &dyn DifferentiableModel, x, t)
}

#[test]
fn sensitivities_match_quantus_on_its_noise() {
    let (model, fx) = load();
    let explainer = gradient(&model);
    for (key, pick) in [("max_sensitivity", true), ("avg_sensitivity", false)] {
        let s = &fx["sensitivity"][key];
        let draws = s["noise"].as_array().unwrap();
        for i in 0..3 {
            let x = sample(&fx["x"], i);
            let t = fx["y"][i].as_u64().unwrap() as usize;
            let a =
                gradient_explainer(&model, x.view().insert_axis(ndarray::Axis(0)), &[t]).unwrap();
            let a = a.index_axis(ndarray::Axis(0), 0).to_owned();
            // Draw k of Quantus' noise has shape [3 inputs, 256].
            let mut noise = Vec::new();
            for d in draws {
                noise.extend(floats(&d[i]));
            }
            let noise = ArrayD::from_shape_vec(IxDyn(&[draws.len(), 1, 16, 16]), noise).unwrap();
            let p = SensitivityParams::new().batch_size(4).check().unwrap();
            let ours = sensitivity_with_noise(&explainer, x.view(), a.view(), t, noise.view(), &p)
                .unwrap();
            let ours = if pick { ours.max } else { ours.avg };
            let theirs = s["scores"][i].as_f64().unwrap();
            assert!(
                close(ours, theirs, 1e-3, 0.0),
                "{key} {i}: ours {ours}, Quantus {theirs}"
            );
        }
    }
}

#[test]
fn correlations_match_scipy_and_ssim_matches_skimage() {
    let (_, fx) = load();
    for pair in fx["correlations"].as_array().unwrap() {
        let (a, b) = (f64s(&pair["a"]), f64s(&pair["b"]));
        assert!((spearman(&a, &b) - pair["spearman"].as_f64().unwrap()).abs() < 1e-12);
        assert!((pearson(&a, &b) - pair["pearson"].as_f64().unwrap()).abs() < 1e-12);
        let (ours, theirs) = (ssim(&a, &b), pair["ssim"].as_f64().unwrap());
        assert!(
            (ours - theirs).abs() < 1e-10,
            "ssim: ours {ours}, skimage {theirs}"
        );
    }
}

#[test]
fn mprt_cascades_over_quantus_layers() {
    let (model, fx) = load();
    let net = model.network().expect("the importer reads this CNN");
    let layers: Vec<String> = fx["mprt_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        net.randomizable_layers().len(),
        layers.len(),
        "ours {:?}, Quantus {layers:?}",
        net.randomizable_layers()
    );
    let p = MprtParams::new().check().unwrap();
    let explain = |m: &dyn DifferentiableModel, x: ndarray::ArrayViewD<'_, f32>, t: &[usize]| {
        gradient_explainer(m, x, t)
    };
    for i in 0..3 {
        let x = sample(&fx["x"], i);
        let t = fx["y"][i].as_u64().unwrap() as usize;
        let a = gradient_explainer(&model, x.view().insert_axis(ndarray::Axis(0)), &[t]).unwrap();
        let a = a.index_axis(ndarray::Axis(0), 0).to_owned();
        let s = mprt(net, &explain, x.view(), a.view(), t, &p).unwrap();
        // Different random weights than torch's, so the values are compared by range: Quantus'
        // similarities after randomisation are all below 0.5 on this model, and so are ours
        // once the whole model is random.
        let theirs: Vec<f64> = layers
            .iter()
            .map(|l| fx["mprt"][l][i].as_f64().unwrap())
            .collect();
        assert!(theirs.iter().all(|v| *v < 0.5));
        assert!(s.curve.y.iter().all(|v| *v < 0.9), "{:?}", s.curve.y);
        assert!(s.curve.y.last().unwrap().abs() < 0.5, "{:?}", s.curve.y);
        // Reproducible from the seed.
        let again = mprt(net, &explain, x.view(), a.view(), t, &p).unwrap();
        assert_eq!(s, again);
        // SSIM (Quantus' other similarity): below 1 once the model is random.
        let ps = MprtParams::new()
            .similarity(Similarity::Ssim)
            .check()
            .unwrap();
        let s = mprt(net, &explain, x.view(), a.view(), t, &ps).unwrap();
        assert!(
            s.curve.y.iter().all(|v| v.is_finite() && *v < 1.0),
            "{:?}",
            s.curve.y
        );
    }
}
