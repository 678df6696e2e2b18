//! Properties of the KernelSHAP estimators (Lundberg & Lee 2017; Shapley 1953 axioms):
//! exactness under a full budget, efficiency, symmetry, null players, additivity, determinism.

use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayViewD, Axis, Ix4};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::FnPredictor;
use xai_shap::{
    exact_shapley_values, Background, FeatureSelection, FnGame, ImageKernelShapParams,
    KernelShapParams, Link, Regression, SamplingScheme, Segmentation, ShapError, TabularMasker,
};

const SCHEMES: [SamplingScheme; 3] = [
    SamplingScheme::Shap,
    SamplingScheme::PairedKernel,
    SamplingScheme::Leverage,
];
const REGRESSIONS: [Regression; 4] = [
    Regression::Plain,
    Regression::SizeStratified,
    Regression::SizePolynomial(2),
    Regression::SizePolynomial(6),
];

/// A game with a random value table over all `2^m` coalitions and `d` outputs.
fn table_game(m: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((1 << m, d), |_| rng.gen_range(-1.0..1.0))
}

fn mask_index(row: ndarray::ArrayView1<'_, bool>) -> usize {
    row.iter()
        .enumerate()
        .map(|(j, &b)| (b as usize) << j)
        .sum()
}

fn lookup_game(
    m: usize,
    table: &Array2<f64>,
) -> FnGame<impl Fn(ArrayView2<'_, bool>) -> xai_shap::Result<Array2<f64>> + Sync + '_> {
    FnGame::new(m, table.ncols(), move |c: ArrayView2<'_, bool>| {
        let mut out = Array2::zeros((c.nrows(), table.ncols()));
        for (r, row) in c.axis_iter(Axis(0)).enumerate() {
            out.row_mut(r).assign(&table.row(mask_index(row)));
        }
        Ok(out)
    })
}

fn assert_close(a: &Array2<f64>, b: &Array2<f64>, tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.dim(), b.dim());
    for (x, y) in a.iter().zip(b.iter()) {
        prop_assert!(
            (x - y).abs() <= tol,
            "{} vs {} (tol {})\n{:?}\n{:?}",
            x,
            y,
            tol,
            a,
            b
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// With a budget covering all `2^M - 2` coalitions every scheme and regression returns the
    /// brute-force Shapley values.
    #[test]
    fn full_budget_gives_exact_shapley_values(m in 2usize..=10, seed in any::<u64>()) {
        let table = table_game(m, 2, seed);
        let game = lookup_game(m, &table);
        let exact = exact_shapley_values(&game, &[0, 1], Link::Identity, 64).unwrap();
        for scheme in SCHEMES {
            for regression in REGRESSIONS {
                let est = KernelShapParams::new()
                    .sampling(scheme)
                    .regression(regression)
                    .nsamples(1 << m)
                    .batch_size(100)
                    .check()
                    .unwrap()
                    .estimate(&game)
                    .unwrap();
                prop_assert!(est.exact);
                prop_assert_eq!(est.n_coalitions, (1 << m) - 2);
                assert_close(&est.values, &exact, 1e-8)?;
            }
        }
    }

    /// The values add up to `v(N) - v(∅)` to 1e-5, whatever the budget.
    #[test]
    fn efficiency_holds_when_sampling(
        m in 2usize..=40,
        seed in any::<u64>(),
        nsamples in 4usize..300,
        scheme_index in 0usize..3,
        regression_index in 0usize..4,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let weights: Vec<f64> = (0..m).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let game = FnGame::new(m, 1, move |c: ArrayView2<'_, bool>| {
            Ok(Array2::from_shape_fn((c.nrows(), 1), |(r, _)| {
                let s: f64 = c.row(r).iter().zip(&weights).map(|(&b, w)| if b { *w } else { 0.0 }).sum();
                (3.0 * s).tanh() + s * s
            }))
        });
        let regression = REGRESSIONS[regression_index];
        let est = KernelShapParams::new()
            .sampling(SCHEMES[scheme_index])
            .regression(regression)
            .nsamples(nsamples)
            .seed(seed)
            .check()
            .unwrap()
            .estimate(&game)
            .unwrap();
        let total: f64 = est.values.row(0).sum();
        let delta = est.instance_values[0] - est.base_values[0];
        prop_assert!((total - delta).abs() < 1e-5, "{} vs {}", total, delta);
        prop_assert!(est.values.iter().all(|v| v.is_finite()));
    }

    /// Interchangeable players (here 0 and 1) get equal values; a null player (here the last)
    /// gets 0: exactly under a full budget.
    #[test]
    fn symmetry_and_null_player(m in 3usize..=9, seed in any::<u64>()) {
        let base = table_game(m, 1, seed);
        // v(S) = base(S with player m-1 removed, players 0 and 1 sorted)
        let sym = move |mask: usize| {
            let mut mask = mask & !(1 << (m - 1));
            let (a, b) = (mask & 1, mask >> 1 & 1);
            if a == 0 && b == 1 {
                mask ^= 0b11;
            }
            base[[mask, 0]]
        };
        let table = Array2::from_shape_fn((1 << m, 1), |(i, _)| sym(i));
        let game = lookup_game(m, &table);
        for scheme in SCHEMES {
            for regression in REGRESSIONS {
                let est = KernelShapParams::new()
                    .sampling(scheme)
                    .regression(regression)
                    .nsamples(1 << m)
                    .check()
                    .unwrap()
                    .estimate(&game)
                    .unwrap();
                prop_assert!((est.values[[0, 0]] - est.values[[0, 1]]).abs() < 1e-9);
                prop_assert!(est.values[[0, m - 1]].abs() < 1e-9);
            }
        }
    }

    /// An additive game `v(S) = c + Σ_{j∈S} a_j` gets `φ_j = a_j`, also from a sampled design.
    #[test]
    fn additive_game_returns_its_terms(
        m in 2usize..=50,
        seed in any::<u64>(),
        scheme_index in 0usize..3,
        regression_index in 0usize..4,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let terms: Vec<f64> = (0..m).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let c = rng.gen_range(-1.0..1.0);
        let t = terms.clone();
        let game = FnGame::new(m, 1, move |coal: ArrayView2<'_, bool>| {
            Ok(Array2::from_shape_fn((coal.nrows(), 1), |(r, _)| {
                c + coal.row(r).iter().zip(&t).map(|(&b, a)| if b { *a } else { 0.0 }).sum::<f64>()
            }))
        });
        let regression = REGRESSIONS[regression_index];
        // enough coalitions for a full-rank design
        let est = KernelShapParams::new()
            .sampling(SCHEMES[scheme_index])
            .regression(regression)
            .nsamples(4 * m + 20)
            .seed(seed)
            .check()
            .unwrap()
            .estimate(&game)
            .unwrap();
        let expected = Array2::from_shape_vec((1, m), terms).unwrap();
        assert_close(&est.values, &expected, 1e-7)?;
    }

    /// Same seed, same result; the result depends on the seed when sampling.
    #[test]
    fn seeded_and_deterministic(seed in any::<u64>(), scheme_index in 0usize..3) {
        let m = 25;
        let game = FnGame::new(m, 2, |c: ArrayView2<'_, bool>| {
            Ok(Array2::from_shape_fn((c.nrows(), 2), |(r, k)| {
                let s = c.row(r).iter().enumerate().filter(|(_, &b)| b).map(|(j, _)| (j as f64 + 1.0).sqrt()).sum::<f64>();
                let pair = (c[[r, 3]] && c[[r, 7]]) as u8 as f64;
                (s / 10.0).sin() * (k as f64 + 1.0) + pair
            }))
        });
        let params = |seed| KernelShapParams::new()
            .sampling(SCHEMES[scheme_index])
            .nsamples(200)
            .seed(seed)
            .check()
            .unwrap();
        let a = params(seed).estimate(&game).unwrap();
        let b = params(seed).estimate(&game).unwrap();
        prop_assert_eq!(&a, &b);
        let c = params(seed.wrapping_add(1)).estimate(&game).unwrap();
        prop_assert!(a.values != c.values);
    }
}

#[test]
fn top_k_selection_keeps_k_features_and_efficiency() {
    let m = 12;
    let terms: Vec<f64> = (0..m)
        .map(|j| {
            if j < 3 {
                5.0 - j as f64
            } else {
                0.01 * j as f64
            }
        })
        .collect();
    let t = terms.clone();
    let game = FnGame::new(m, 1, move |c: ArrayView2<'_, bool>| {
        Ok(Array2::from_shape_fn((c.nrows(), 1), |(r, _)| {
            c.row(r)
                .iter()
                .zip(&t)
                .map(|(&b, a)| if b { *a } else { 0.0 })
                .sum::<f64>()
        }))
    });
    for regression in REGRESSIONS {
        let est = KernelShapParams::new()
            .l1_reg(FeatureSelection::TopK(3))
            .regression(regression)
            .nsamples(300)
            .check()
            .unwrap()
            .estimate(&game)
            .unwrap();
        let nonzero: Vec<usize> = (0..m).filter(|&j| est.values[[0, j]] != 0.0).collect();
        assert_eq!(nonzero, vec![0, 1, 2], "{regression:?}: {:?}", est.values);
        let delta = est.instance_values[0] - est.base_values[0];
        assert!((est.values.sum() - delta).abs() < 1e-9);
    }
}

#[test]
fn inert_features_get_zero_and_leave_the_regression() {
    // tabular: features equal to the background are inert
    let x = Array1::from(vec![1.0f32, 0.0, 2.0, 0.0, -1.0]);
    let bg = Array1::zeros(5);
    let masker = TabularMasker::new(x.view(), bg.view()).unwrap();
    let model = FnPredictor::new(vec![5], 1, |x: ArrayViewD<'_, f32>| {
        let x = x.into_dimensionality::<ndarray::Ix2>().unwrap();
        Ok(
            x.map_axis(Axis(1), |r| (r[0] * r[2] + r[4]).tanh() + r[1] * 7.0 + r[3])
                .insert_axis(Axis(1)),
        )
    });
    let e = KernelShapParams::new()
        .nsamples(4)
        .check()
        .unwrap()
        .explain(&model, &masker)
        .unwrap();
    assert_eq!(e.data.inert_features, vec![1, 3]);
    assert_eq!(e.data.values[[0, 1]], 0.0);
    assert_eq!(e.data.values[[0, 3]], 0.0);
    // 3 active features: 2^3 - 2 = 6 coalitions would be exact; 4 are sampled
    assert_eq!(e.data.n_coalitions, 4);
    assert_eq!(e.meta.name, "KernelShap");
    let delta = e.data.instance_values[0] - e.data.base_values[0];
    assert!((e.data.values.sum() - delta).abs() < 1e-9);
    // with skipping off they take part (and with the exact budget still get 0)
    let e = KernelShapParams::new()
        .skip_inert_features(false)
        .nsamples(100)
        .check()
        .unwrap()
        .explain(&model, &masker)
        .unwrap();
    assert!(e.data.inert_features.is_empty() && e.data.exact);
    assert!(e.data.values[[0, 1]].abs() < 1e-9);
}

/// A linear model on 1 x 6 x 6 images: output k = Σ_p w_kp x_p.
fn linear_image_model(
    weights: Array2<f32>,
) -> FnPredictor<impl Fn(ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> + Send + Sync> {
    FnPredictor::new(
        vec![1, 6, 6],
        weights.nrows(),
        move |x: ArrayViewD<'_, f32>| {
            let x = x.into_dimensionality::<Ix4>().unwrap();
            let n = x.shape()[0];
            let flat = x.to_shape((n, 36)).unwrap().to_owned();
            Ok(flat.dot(&weights.t()))
        },
    )
}

#[test]
fn image_explanation_of_a_linear_model_is_its_segment_sums() {
    let mut rng = StdRng::seed_from_u64(3);
    let weights = Array2::from_shape_fn((3, 36), |_| rng.gen_range(-1.0f32..1.0));
    let model = linear_image_model(weights.clone());
    let image = Array3::from_shape_fn((1, 6, 6), |_| rng.gen_range(0.0f32..1.0));
    let params = ImageKernelShapParams::new()
        .labels(vec![2, 0])
        .nsamples(200)
        .n_segments(9)
        .background(Background::Value(0.25))
        .check()
        .unwrap();
    let e = params.explain(&model, image.view()).unwrap();
    let data = &e.data;
    assert_eq!(data.labels, vec![2, 0]);
    assert_eq!(data.attributions.shape(), &[2, 6, 6]);
    let seg = &data.segmentation;
    assert_eq!(data.segment_values.shape(), &[2, seg.n_segments()]);
    for (row, &label) in data.labels.iter().enumerate() {
        let mut expected = vec![0f32; seg.n_segments()];
        for (p, &l) in seg.labels().iter().enumerate() {
            expected[l - seg.start_label()] +=
                weights[[label, p]] * (image.as_slice().unwrap()[p] - 0.25);
        }
        for (k, e) in expected.iter().enumerate() {
            assert!(
                (data.segment_values[[row, k]] - e).abs() < 1e-4,
                "segment {k}: {} vs {e}",
                data.segment_values[[row, k]]
            );
        }
        for (p, &l) in seg.labels().iter().enumerate() {
            assert_eq!(
                data.attributions[[row, p / 6, p % 6]],
                data.segment_values[[row, l - seg.start_label()]]
            );
        }
    }
    // meta records every parameter
    assert_eq!(e.meta.name, "KernelShapImage");
    let json = e.to_json().unwrap();
    for key in [
        "n_segments",
        "compactness",
        "sigma",
        "nsamples",
        "background",
        "labels",
        "seed",
        "sampling",
        "regression",
        "link",
        "l1_reg",
        "batch_size",
    ] {
        assert!(json.contains(key), "meta lacks {key}");
    }
    // npy arrays
    let names: Vec<String> = xai_core::NpyArrays::npy_arrays(data)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"attributions".to_string()) && names.contains(&"segmentation".to_string())
    );
}

#[test]
fn explain_image_matches_the_builder_and_dianna_call() {
    let weights = Array2::from_shape_fn(
        (2, 36),
        |(k, p)| if k == 1 { (p % 6) as f32 / 6.0 } else { 0.1 },
    );
    let model = linear_image_model(weights);
    let image = Array3::from_shape_fn((1, 6, 6), |(_, y, x)| ((x * y) % 5) as f32 / 4.0);
    let a = xai_shap::explain_image(
        &model,
        image.view(),
        &[0, 1],
        300,
        Background::Value(0.0),
        12,
        10.0,
        0.0,
    )
    .unwrap();
    let b = ImageKernelShapParams::new()
        .labels(vec![0, 1])
        .nsamples(300)
        .background(Background::Value(0.0))
        .n_segments(12)
        .compactness(10.0)
        .sigma(0.0)
        .check()
        .unwrap()
        .explain(&model, image.view())
        .unwrap();
    assert_eq!(a, b);
    // a given segmentation: two halves
    let labels = Array2::from_shape_fn((6, 6), |(_, x)| if x < 3 { 1 } else { 2 });
    let seg = Segmentation::new(labels, 1).unwrap();
    let e = ImageKernelShapParams::new()
        .labels(vec![1])
        .background(Background::Value(0.0))
        .check()
        .unwrap()
        .explain_segmented(&model, image.view(), seg)
        .unwrap();
    assert!(e.data.exact);
    assert_eq!(e.data.n_evaluations, 4);
}

#[test]
fn errors_are_typed_not_panics() {
    let weights = Array2::from_shape_fn((2, 36), |_| 0.5f32);
    let model = linear_image_model(weights);
    let params = ImageKernelShapParams::new()
        .labels(vec![5])
        .check()
        .unwrap();
    let image = Array3::<f32>::from_elem((1, 6, 6), 0.5);
    assert!(matches!(
        params.explain(&model, image.view()),
        Err(ShapError::LabelOutOfRange {
            label: 5,
            n_outputs: 2
        })
    ));
    let params = ImageKernelShapParams::new()
        .labels(vec![0])
        .check()
        .unwrap();
    let wrong = Array3::<f32>::zeros((3, 6, 6));
    assert!(matches!(
        params.explain(&model, wrong.view()),
        Err(ShapError::Shape { .. })
    ));
    let logit = ImageKernelShapParams::new()
        .labels(vec![0])
        .link(Link::Logit)
        .check()
        .unwrap();
    let bright = Array3::<f32>::from_elem((1, 6, 6), 1.0);
    // outputs are 18 (not a probability)
    assert!(matches!(
        logit.explain(&model, bright.view()),
        Err(ShapError::LogitDomain { .. })
    ));
    let nan_model = FnPredictor::new(vec![1, 6, 6], 1, |x: ArrayViewD<'_, f32>| {
        Ok(Array2::from_elem((x.shape()[0], 1), f32::NAN))
    });
    let err = params.explain(&nan_model, bright.view()).unwrap_err();
    assert!(matches!(err, ShapError::NonFiniteOutput { .. }), "{err}");
    let game = FnGame::new(3, 2, |c: ArrayView2<'_, bool>| {
        Ok(Array2::zeros((c.nrows(), 1)))
    });
    let err = KernelShapParams::new()
        .check()
        .unwrap()
        .estimate(&game)
        .unwrap_err();
    assert!(matches!(err, ShapError::BatchShape { .. }), "{err}");
}

#[test]
fn logit_link_explains_log_odds() {
    // p = sigmoid(a·z): in logit units the game is additive, so values are exact
    let a = [1.0, -0.5, 2.0, 0.3];
    let game = FnGame::new(4, 1, move |c: ArrayView2<'_, bool>| {
        Ok(Array2::from_shape_fn((c.nrows(), 1), |(r, _)| {
            let s: f64 = c
                .row(r)
                .iter()
                .zip(&a)
                .map(|(&b, w)| if b { *w } else { 0.0 })
                .sum();
            1.0 / (1.0 + (-s).exp())
        }))
    });
    let est = KernelShapParams::new()
        .link(Link::Logit)
        .nsamples(10)
        .check()
        .unwrap()
        .estimate(&game)
        .unwrap();
    for j in 0..4 {
        assert!((est.values[[0, j]] - a[j]).abs() < 1e-6, "{:?}", est.values);
    }
    assert!(est.base_values[0].abs() < 1e-12);
}
