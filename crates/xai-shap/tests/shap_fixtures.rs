//! Agreement with shap's `KernelExplainer` and scikit-learn, on fixtures written by
//! `tests/fixtures/make_shap_fixtures.py` (shap 0.51.0, scikit-learn 1.9.1).

use ndarray::{Array1, Array2, ArrayViewD, Axis, Ix2};
use serde_json::Value;
use xai_core::FnPredictor;
use xai_shap::solver::NormalEquations;
use xai_shap::{BackgroundData, BackgroundGames, FeatureSelection, KernelShapParams, Regression};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    let (n, m) = (rows.len(), rows.first().map_or(0, |r| r.len()));
    Array2::from_shape_vec((n, m), rows.concat()).unwrap()
}

fn vector(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn mode_of(name: &str) -> FeatureSelection {
    if let Some(k) = name
        .strip_prefix("num_features(")
        .and_then(|s| s.strip_suffix(')'))
    {
        FeatureSelection::TopK(k.parse().unwrap())
    } else {
        match name {
            "aic" => FeatureSelection::Aic,
            "bic" => FeatureSelection::Bic,
            "none" => FeatureSelection::None,
            a => FeatureSelection::Alpha(a.parse().unwrap()),
        }
    }
}

/// Every `l1_reg` mode selects scikit-learn's features on shap's augmented problem (the LAR
/// order for `num_features`, the set otherwise).
#[test]
fn l1_reg_selects_what_scikit_learn_selects() {
    let fixture = load("l1_reg_sklearn.json");
    let mut checked = 0;
    for p in fixture["problems"].as_array().unwrap() {
        let m = p["m"].as_u64().unwrap() as usize;
        let z = matrix(&p["mask"]);
        let w = vector(&p["weights"]);
        let y = Array1::from(vector(&p["ey_adj"])).insert_axis(Axis(1));
        let delta = p["delta"].as_f64().unwrap();
        let mut eq = NormalEquations::new(m, 1, Regression::Plain, true);
        // in uneven chunks, as batches arrive
        let n = z.nrows();
        let mut start = 0;
        for chunk in [7, 50, 1, n].iter().cycle() {
            if start >= n {
                break;
            }
            let end = (start + chunk).min(n);
            eq.add(
                z.slice(ndarray::s![start..end, ..]),
                &w[start..end],
                y.slice(ndarray::s![start..end, ..]),
            );
            start = end;
        }
        for (name, expected) in p["selected"].as_object().unwrap() {
            let expected: Vec<usize> = expected
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let got = eq.selected_features(0, delta, mode_of(name)).unwrap();
            assert_eq!(got, expected, "m = {m}, l1_reg = {name}");
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * 9);
}

struct Mlp {
    w1: Array2<f64>,
    b1: Array1<f64>,
    w2: Array2<f64>,
    b2: Array1<f64>,
}

impl Mlp {
    fn from_json(v: &Value) -> Self {
        Self {
            w1: matrix(&v["w1"]),
            b1: Array1::from(vector(&v["b1"])),
            w2: matrix(&v["w2"]),
            b2: Array1::from(vector(&v["b2"])),
        }
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> Array2<f32> {
        let x = x.into_dimensionality::<Ix2>().unwrap().mapv(|v| v as f64);
        let h = (x.dot(&self.w1) + &self.b1).mapv(f64::tanh);
        (h.dot(&self.w2) + &self.b2).mapv(|v| v as f32)
    }
}

/// shap's `KernelExplainer(f, data).shap_values(X, nsamples, l1_reg)` on a tanh MLP, with plain,
/// weighted and `shap.kmeans` backgrounds: equal (to float precision) where shap enumerates
/// every coalition, close where both sample.
#[test]
fn agrees_with_shap_kernel_explainer() {
    let fixture = load("shap_kernel.json");
    let mut exact_runs = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let m = case["n_features"].as_u64().unwrap() as usize;
        let mlp = Mlp::from_json(&case["model"]);
        let model = FnPredictor::new(vec![m], 2, |x: ArrayViewD<'_, f32>| Ok(mlp.predict(x)));
        let bg = matrix(&case["background"]).mapv(|v| v as f32);
        let rows = matrix(&case["rows"]).mapv(|v| v as f32);
        let plain = BackgroundData::new(bg.view().into_dyn()).unwrap();
        let weighted =
            BackgroundData::weighted(bg.view().into_dyn(), &vector(&case["weights"])).unwrap();
        let centroids = matrix(&case["kmeans_centroids"]).mapv(|v| v as f32);
        let kmeans = BackgroundData::weighted(
            centroids.view().into_dyn(),
            &vector(&case["kmeans_weights"]),
        )
        .unwrap();
        let mut reference: Option<Vec<Array2<f64>>> = None;
        for run in case["runs"].as_array().unwrap() {
            let data = match run["background"].as_str().unwrap() {
                "plain" => &plain,
                "weighted" => &weighted,
                _ => &kmeans,
            };
            let nsamples = run["nsamples"].as_u64().unwrap() as usize;
            let l1 = match &run["l1_reg"] {
                Value::String(s) => mode_of(s),
                other => FeatureSelection::Alpha(other.as_f64().unwrap()),
            };
            let games = BackgroundGames::tabular(&model, data, rows.view()).unwrap();
            // shap's estimator on data: shap drops features that do not vary
            let values = KernelShapParams::shap_compatible()
                .skip_inert_features(true)
                .nsamples(nsamples)
                .l1_reg(l1)
                .check()
                .unwrap()
                .estimate_rows(&games)
                .unwrap();
            let shap_values: Vec<Array2<f64>> = run["shap_values"]
                .as_array()
                .unwrap()
                .iter()
                .map(matrix)
                .collect();
            let expected_value = vector(&run["expected_value"]);
            let full = nsamples + 2 >= 1 << m;
            for (r, got) in values.iter().enumerate() {
                for k in 0..2 {
                    assert!((got.base_values[k] - expected_value[k]).abs() < 1e-5);
                }
                let scale = shap_values[r].iter().fold(0f64, |a, v| a.max(v.abs()));
                let err = (&got.values - &shap_values[r])
                    .iter()
                    .fold(0f64, |a, v| a.max(v.abs()));
                let label = format!(
                    "m = {m}, background {}, nsamples {nsamples}, l1_reg {:?}, row {r}",
                    run["background"], run["l1_reg"]
                );
                if full {
                    assert!(got.exact || !got.inert_features.is_empty(), "{label}");
                    assert!(
                        err < 1e-5 * scale.max(1.0),
                        "{label}: max error {err}\n{:?}\n{:?}",
                        got.values,
                        shap_values[r]
                    );
                } else {
                    // both sample: compare each with the exact values from the full run
                    let exact = &reference.as_ref().expect("full run first")[r];
                    let ours = (&got.values - exact)
                        .iter()
                        .fold(0f64, |a, v| a.max(v.abs()));
                    let theirs = (&shap_values[r] - exact)
                        .iter()
                        .fold(0f64, |a, v| a.max(v.abs()));
                    assert!(err < 0.05 * scale, "{label}: {err} vs scale {scale}");
                    assert!(
                        ours < 2.0 * theirs + 1e-3 * scale,
                        "{label}: ours {ours}, shap {theirs}"
                    );
                }
            }
            if full && run["background"] == "plain" && run["l1_reg"] == "none" {
                reference = Some(values.iter().map(|v| v.values.clone()).collect());
                exact_runs += 1;
            }
        }
    }
    assert_eq!(exact_runs, 3);
}
