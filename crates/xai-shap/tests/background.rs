//! KernelSHAP with background data sets: exactness against brute-force enumeration, efficiency
//! against the weighted background mean, many rows per call identical to one call per row,
//! images with several background images.

use ndarray::{Array1, Array2, Array3, Array4, ArrayView1, ArrayViewD, Axis, Ix2, Ix4};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{FnPredictor, Predictor};
use xai_shap::{
    BackgroundData, BackgroundGames, FeatureSelection, ImageKernelShapParams, KMeansParams,
    KernelShapParams, Progress, Regression, SamplingScheme, Segmentation,
};

/// A random non-additive model on `m` features with 2 outputs: tanh of a linear map, plus a
/// pairwise product and a square.
#[derive(Clone)]
struct RandomModel {
    w: Array2<f64>,
    b: Array1<f64>,
    pair: (usize, usize),
}

impl RandomModel {
    fn new(m: usize, rng: &mut StdRng) -> Self {
        Self {
            w: Array2::from_shape_fn((m, 2), |_| rng.gen_range(-1.0..1.0)),
            b: Array1::from_shape_fn(2, |_| rng.gen_range(-0.5..0.5)),
            pair: (0, m - 1),
        }
    }

    fn eval(&self, x: ArrayView1<'_, f64>) -> [f64; 2] {
        let z0 = x.dot(&self.w.column(0)) + self.b[0];
        let z1 = x.dot(&self.w.column(1)) + self.b[1];
        [
            z0.tanh() + 0.5 * x[self.pair.0] * x[self.pair.1],
            z1 * z1 * 0.3 + x[0],
        ]
    }

    fn predictor(
        &self,
    ) -> FnPredictor<impl Fn(ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> + Send + Sync + '_>
    {
        let m = self.w.nrows();
        FnPredictor::new(vec![m], 2, move |x: ArrayViewD<'_, f32>| {
            let x = x.into_dimensionality::<Ix2>().unwrap();
            let mut out = Array2::zeros((x.nrows(), 2));
            for (i, row) in x.axis_iter(Axis(0)).enumerate() {
                let v = self.eval(row.mapv(|v| v as f64).view());
                out[[i, 0]] = v[0] as f32;
                out[[i, 1]] = v[1] as f32;
            }
            Ok(out)
        })
    }
}

/// Brute force, independent of the crate: `v(S) = Σ_n w_n f(x_S, b_n)` on all `2^m`
/// coalitions (f32 inputs and outputs as the model sees them) and the Shapley formula.
fn brute_force(
    model: &RandomModel,
    x: &[f32],
    background: &Array2<f32>,
    weights: &[f64],
) -> (Array2<f64>, [f64; 2], [f64; 2]) {
    let m = x.len();
    let total: f64 = weights.iter().sum();
    let value = |mask: usize| -> [f64; 2] {
        let mut acc = [0.0; 2];
        for (n, b) in background.axis_iter(Axis(0)).enumerate() {
            let input: Array1<f64> = (0..m)
                .map(|j| if mask >> j & 1 == 1 { x[j] } else { b[j] } as f64)
                .collect();
            let out = model.eval(input.view());
            for k in 0..2 {
                acc[k] += weights[n] / total * (out[k] as f32) as f64;
            }
        }
        acc
    };
    let v: Vec<[f64; 2]> = (0..1usize << m).map(value).collect();
    let fact = |n: usize| (1..=n).map(|i| i as f64).product::<f64>();
    let mut phi = Array2::zeros((2, m));
    for mask in 0..(1usize << m) - 1 {
        let s = mask.count_ones() as usize;
        let w = fact(s) * fact(m - s - 1) / fact(m);
        for i in 0..m {
            if mask >> i & 1 == 0 {
                for k in 0..2 {
                    phi[[k, i]] += w * (v[mask | 1 << i][k] - v[mask][k]);
                }
            }
        }
    }
    (phi, v[0], v[(1 << m) - 1])
}

fn random_case(
    m: usize,
    n_bg: usize,
    seed: u64,
) -> (RandomModel, Array2<f32>, Vec<f64>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let model = RandomModel::new(m, &mut rng);
    let background = Array2::from_shape_fn((n_bg, m), |_| rng.gen_range(-1.0f32..1.0));
    let weights: Vec<f64> = (0..n_bg).map(|_| rng.gen_range(0.1..2.0)).collect();
    let rows = Array2::from_shape_fn((3, m), |_| rng.gen_range(-1.0f32..1.0));
    (model, background, weights, rows)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// With a budget covering every coalition, the values against a weighted background set are
    /// the brute-force Shapley values of `v(S) = Σ w_n f(x_S, b_n)`, for shap's estimator and
    /// the default one.
    #[test]
    fn full_budget_is_exact_with_a_background_set(
        m in 2usize..=10,
        n_bg in 1usize..=6,
        seed in any::<u64>(),
    ) {
        let (model, bg, weights, rows) = random_case(m, n_bg, seed);
        let predictor = model.predictor();
        let data = BackgroundData::weighted(bg.view().into_dyn(), &weights).unwrap();
        let games = BackgroundGames::tabular(&predictor, &data, rows.view()).unwrap();
        for params in [KernelShapParams::shap_compatible(), KernelShapParams::new()] {
            let values = params.nsamples(1usize << m).check().unwrap().estimate_rows(&games).unwrap();
            for (r, got) in values.iter().enumerate() {
                prop_assert!(got.exact);
                let x: Vec<f32> = rows.row(r).to_vec();
                let (phi, base, full) = brute_force(&model, &x, &bg, &weights);
                for k in 0..2 {
                    prop_assert!((got.base_values[k] - base[k]).abs() < 1e-9);
                    prop_assert!((got.instance_values[k] - full[k]).abs() < 1e-9);
                    for j in 0..m {
                        prop_assert!(
                            (got.values[[k, j]] - phi[[k, j]]).abs() < 1e-7,
                            "row {} output {} feature {}: {} vs {}", r, k, j, got.values[[k, j]], phi[[k, j]]
                        );
                    }
                }
            }
        }
    }

    /// Sampled estimates add up to `f(x) - Σ w_n f(b_n)` (efficiency), computed from the
    /// model directly, for every scheme.
    #[test]
    fn efficiency_against_the_weighted_background_mean(
        m in 12usize..=24,
        n_bg in 1usize..=8,
        seed in any::<u64>(),
    ) {
        let (model, bg, weights, rows) = random_case(m, n_bg, seed);
        let predictor = model.predictor();
        let data = BackgroundData::weighted(bg.view().into_dyn(), &weights).unwrap();
        let games = BackgroundGames::tabular(&predictor, &data, rows.view()).unwrap();
        let total: f64 = weights.iter().sum();
        let f = |x: ArrayView1<'_, f32>| {
            let out = predictor.predict(x.insert_axis(Axis(0)).into_dyn()).unwrap();
            [out[[0, 0]] as f64, out[[0, 1]] as f64]
        };
        let mut base = [0.0; 2];
        for (n, b) in bg.axis_iter(Axis(0)).enumerate() {
            let out = f(b);
            for k in 0..2 {
                base[k] += weights[n] / total * out[k];
            }
        }
        for scheme in [SamplingScheme::Shap, SamplingScheme::PairedKernel, SamplingScheme::Leverage] {
            let values = KernelShapParams::new()
                .sampling(scheme)
                .nsamples(60)
                .seed(seed)
                .check()
                .unwrap()
                .estimate_rows(&games)
                .unwrap();
            for (r, got) in values.iter().enumerate() {
                let fx = f(rows.row(r));
                for k in 0..2 {
                    let sum: f64 = got.values.row(k).sum();
                    prop_assert!((sum - (fx[k] - base[k])).abs() < 1e-5, "{} vs {}", sum, fx[k] - base[k]);
                }
            }
        }
    }
}

/// Many rows per call: batches that straddle rows give bit-identical values to one call per
/// row with the same seed, with fewer model calls, and progress reports every row.
#[test]
fn many_rows_are_identical_to_one_call_per_row() {
    let (model, bg, weights, _) = random_case(9, 4, 11);
    let mut rng = StdRng::seed_from_u64(5);
    let mut rows = Array2::from_shape_fn((6, 9), |_| rng.gen_range(-1.0f32..1.0));
    // feature 4 is constant in the background and row 2 has that value: row 2 has one inert
    // feature and so a design over fewer players than the other rows
    let mut bg = bg;
    bg.column_mut(4).fill(0.25);
    rows[[2, 4]] = 0.25;
    let predictor = model.predictor();
    let data = BackgroundData::weighted(bg.view().into_dyn(), &weights).unwrap();
    for (params, name) in [
        (KernelShapParams::new(), "default"),
        (
            KernelShapParams::shap_compatible().skip_inert_features(true),
            "shap",
        ),
        (
            KernelShapParams::shap_defaults().l1_reg(FeatureSelection::Aic),
            "shap+aic",
        ),
        (
            KernelShapParams::new().regression(Regression::SizeStratified),
            "stratified",
        ),
    ] {
        let params = params.nsamples(70).batch_size(32).seed(3).check().unwrap();
        let games = BackgroundGames::tabular(&predictor, &data, rows.view()).unwrap();
        let mut reports: Vec<Progress> = Vec::new();
        let all = params
            .estimate_rows_with_progress(&games, &mut |p| reports.push(*p))
            .unwrap();
        assert_eq!(all.len(), 6);
        let mut separate_calls = 0;
        for r in 0..6 {
            let one = rows.slice(ndarray::s![r..r + 1, ..]);
            let g = BackgroundGames::tabular(&predictor, &data, one).unwrap();
            let mut last = None;
            let single = params
                .estimate_rows_with_progress(&g, &mut |p| last = Some(*p))
                .unwrap();
            separate_calls += last.unwrap().calls;
            assert_eq!(single[0], all[r], "{name}: row {r}");
        }
        assert_eq!(all[2].inert_features, vec![4], "{name}");
        assert_eq!(all[2].values[[0, 4]], 0.0);
        let last = reports.last().unwrap();
        assert_eq!(last.rows_done, 6);
        assert!(
            last.calls < separate_calls,
            "{name}: {} vs {separate_calls}",
            last.calls
        );
        assert!(reports.windows(2).all(|w| w[0].rows_done <= w[1].rows_done));
    }
}

/// Tabular API: feature names, outputs, the example's JSON layout; k-means backgrounds.
#[test]
fn explain_table_with_names_and_kmeans_background() {
    let (model, bg, _, rows) = random_case(5, 40, 2);
    let predictor = model.predictor();
    let summary = BackgroundData::kmeans(bg.view(), &KMeansParams::new(6).seed(1)).unwrap();
    assert_eq!(summary.len(), 6);
    assert!((summary.weights().iter().sum::<f64>() - 1.0).abs() < 1e-12);
    let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    let params = KernelShapParams::new().nsamples(100).check().unwrap();
    let ex = params
        .explain_table(&predictor, &summary, rows.view(), Some(names.clone()), None)
        .unwrap();
    let json = serde_json::to_value(ex.data.to_json()).unwrap();
    assert_eq!(json["feature_names"][4], "e");
    assert_eq!(json["rows"].as_array().unwrap().len(), 3);
    assert_eq!(json["rows"][0]["shap_values"].as_array().unwrap().len(), 2);
    assert_eq!(
        json["rows"][0]["shap_values"][1].as_array().unwrap().len(),
        5
    );
    let mean = summary.mean_output(&predictor).unwrap();
    for (r, row) in ex.data.rows.iter().enumerate() {
        for k in 0..2 {
            assert!((row.base_values[k] - mean[k]).abs() < 1e-9);
            let total: f64 = row.values.row(k).sum();
            assert!((total - (ex.data.outputs[r][k] - mean[k])).abs() < 1e-5);
        }
    }
    assert!(params
        .explain_table(
            &predictor,
            &summary,
            rows.view(),
            Some(vec!["x".into()]),
            None
        )
        .is_err());
}

/// Images against several background images: a linear model's exact values are each
/// superpixel's weighted sum of `x - b_n`.
#[test]
fn images_with_several_background_images() {
    let (c, h, w) = (2, 6, 6);
    let weights_px = Array3::from_shape_fn((c, h, w), |(ch, y, x)| {
        (ch as f32 + 1.0) * ((y * w + x) as f32 * 0.37).sin()
    });
    let wp = weights_px.clone();
    let model = FnPredictor::new(vec![c, h, w], 1, move |x: ArrayViewD<'_, f32>| {
        let x = x.into_dimensionality::<Ix4>().unwrap();
        let mut out = Array2::zeros((x.shape()[0], 1));
        for (i, img) in x.axis_iter(Axis(0)).enumerate() {
            out[[i, 0]] = (&img * &wp).sum();
        }
        Ok(out)
    });
    let image = Array3::from_shape_fn((c, h, w), |(ch, y, x)| ((ch + y * x) % 5) as f32 / 4.0);
    let bgs = Array4::from_shape_fn((3, c, h, w), |(n, ch, y, _)| (n + ch + y) as f32 * 0.1);
    let bg_weights = [1.0, 2.0, 1.0];
    let data = BackgroundData::weighted(bgs.view().into_dyn(), &bg_weights).unwrap();
    let params = ImageKernelShapParams::new()
        .labels(vec![0])
        .n_segments(4)
        .nsamples(1000)
        .check()
        .unwrap();
    let ex = params
        .explain_with_data(&model, image.view(), &data)
        .unwrap();
    let seg: &Segmentation = &ex.data.segmentation;
    let n_seg = ex.data.segment_values.ncols();
    assert!(ex.data.exact);
    let mut expected = vec![0f64; n_seg];
    let idx = seg.segment_indices();
    for ch in 0..c {
        for p in 0..h * w {
            let (y, x) = (p / w, p % w);
            let mean_bg: f64 = (0..3)
                .map(|n| bg_weights[n] / 4.0 * bgs[[n, ch, y, x]] as f64)
                .sum();
            expected[idx[p]] +=
                weights_px[[ch, y, x]] as f64 * (image[[ch, y, x]] as f64 - mean_bg);
        }
    }
    for k in 0..n_seg {
        let got = ex.data.segment_values[[0, k]] as f64;
        assert!(
            (got - expected[k]).abs() < 1e-3,
            "{k}: {got} vs {}",
            expected[k]
        );
    }
}
