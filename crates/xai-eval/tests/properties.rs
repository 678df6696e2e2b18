//! Properties every metric must have: a perfectly faithful map of a linear model (w ∘ x) beats
//! a random map; scale invariance where the definition gives it; curve end points; seeds that
//! reproduce whatever the thread count; parameters checked, also when deserialised.

use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Axis, IxDyn};
use proptest::prelude::*;
use xai_core::{FnPredictor, Predictor};
use xai_eval::*;

const H: usize = 8;
const W: usize = 8;

/// Two outputs on `[1, 8, 8]` images: `w · x` and the constant `threshold`.
fn linear(w: Array1<f32>, threshold: f32) -> impl Predictor {
    FnPredictor::new(vec![1, H, W], 2, move |x: ArrayViewD<'_, f32>| {
        let n = x.shape()[0];
        let x = x.into_shape_with_order((n, H * W)).unwrap();
        let s = x.dot(&w);
        let mut out = Array2::from_elem((n, 2), threshold);
        out.column_mut(0).assign(&s);
        Ok(out)
    })
}

fn weights_and_input(seed: u64) -> (Array1<f32>, ArrayD<f32>) {
    let w = random_attribution(&[H * W], seed).mapv(|v| 2.0 * v - 1.0);
    let x = random_attribution(&[1, H, W], seed + 1);
    (w.into_dimensionality().unwrap(), x)
}

fn exact_map(w: &Array1<f32>, x: &ArrayD<f32>) -> ArrayD<f32> {
    let flat = x.view().into_shape_with_order(H * W).unwrap();
    (&flat * w)
        .into_shape_with_order(IxDyn(&[1, H, W]))
        .unwrap()
}

fn value(model: &dyn Predictor, x: &ArrayD<f32>, map: &ArrayD<f32>, m: &Metric) -> f64 {
    let input = Input {
        x: x.view(),
        map: map.view(),
        target: 0,
        segments: None,
    };
    evaluate(&Context::new(model), &input, std::slice::from_ref(m)).unwrap()[0].value
}

fn better(direction: Direction, a: f64, b: f64) -> bool {
    match direction {
        Direction::LowerIsBetter => a < b,
        Direction::HigherIsBetter => a > b,
    }
}

fn curve_metrics() -> Vec<Metric> {
    let curve = CurveParams::new()
        .baseline(Baseline::Value(0.0))
        .features_in_step(2)
        .check()
        .unwrap();
    let region = RegionParams::new()
        .patch_size(2)
        .regions_evaluation(16)
        .baseline(Baseline::Value(0.0))
        .check()
        .unwrap();
    vec![
        Metric::DeletionAuc(curve.clone()),
        Metric::InsertionAuc(curve.clone()),
        Metric::PixelFlippingMorf(curve.clone()),
        Metric::PixelFlippingLerf(curve.clone()),
        Metric::PixelFlippingDifference(curve),
        Metric::RegionPerturbationMorf(region.clone()),
        Metric::RegionPerturbationLerf(region.clone()),
        Metric::RegionPerturbationDifference(region),
        Metric::Infidelity(
            InfidelityParams::new()
                .perturbation(InfidelityPerturbation::Squares {
                    patch_sizes: vec![2, 4],
                    baseline: Baseline::Value(0.0),
                })
                .check()
                .unwrap(),
        ),
        Metric::Infidelity(
            InfidelityParams::new()
                .perturbation(InfidelityPerturbation::Gaussian {
                    std: 0.1,
                    n_samples: 20,
                })
                .check()
                .unwrap(),
        ),
        Metric::FaithfulnessCorrelation(
            FaithfulnessCorrelationParams::new()
                .subset_size(8)
                .nr_runs(30)
                .baseline(Baseline::Value(0.0))
                .check()
                .unwrap(),
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn exact_map_of_a_linear_model_beats_random(seed in 0u64..1000, map_seed in 0u64..1000) {
        let (w, x) = weights_and_input(seed);
        let model = linear(w.clone(), 0.0);
        let exact = exact_map(&w, &x);
        let random = random_attribution(&[1, H, W], 10_000 + map_seed);
        for m in curve_metrics() {
            let (e, r) = (value(&model, &x, &exact, &m), value(&model, &x, &random, &m));
            prop_assert!(better(m.direction(), e, r), "{}: exact {e}, random {r}", m.name());
        }
    }

    #[test]
    fn ranking_metrics_ignore_positive_scaling(seed in 0u64..1000, scale in 0.01f32..100.0) {
        let (w, x) = weights_and_input(seed);
        let model = linear(w, 0.0);
        let map = random_attribution(&[1, H, W], seed + 7).mapv(|v| v - 0.5);
        let scaled = map.mapv(|v| v * scale);
        let road = RoadParams::new().percentages(vec![10.0, 30.0, 60.0]).check().unwrap();
        for m in curve_metrics().into_iter().filter(|m| m.name() != "infidelity").chain([Metric::RoadMorf(road)]) {
            let (a, b) = (value(&model, &x, &map, &m), value(&model, &x, &scaled, &m));
            // Exact for the rankings; the correlation sees the f32 rounding of the scaled map.
            prop_assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{}: {a} vs {b}", m.name());
        }
    }

    #[test]
    fn deletion_and_insertion_curves_end_where_they_must(seed in 0u64..1000, step in 1usize..20) {
        let (w, x) = weights_and_input(seed);
        let model = linear(w, 0.0);
        let map = random_attribution(&[1, H, W], seed + 3);
        let p = CurveParams::new().baseline(Baseline::Value(0.25)).features_in_step(step).batch_size(5).check().unwrap();
        let f = |v: &ArrayD<f32>| f64::from(model.predict(v.view().insert_axis(Axis(0))).unwrap()[[0, 0]]);
        let removed = ArrayD::from_elem(IxDyn(&[1, H, W]), 0.25f32);
        let d = deletion(&model, x.view(), map.view(), 0, None, &p).unwrap();
        let i = insertion(&model, x.view(), map.view(), 0, None, &p).unwrap();
        let n = (H * W).div_ceil(step) + 1;
        prop_assert_eq!(d.curve.y.len(), n);
        prop_assert!((d.curve.y[0] - f(&x)).abs() < 1e-6);
        prop_assert!((d.curve.y[n - 1] - f(&removed)).abs() < 1e-6);
        prop_assert!((i.curve.y[0] - f(&removed)).abs() < 1e-6);
        prop_assert!((i.curve.y[n - 1] - f(&x)).abs() < 1e-6);
        prop_assert_eq!(d.curve.x[0], 0.0);
        prop_assert_eq!(d.curve.x[n - 1], 1.0);
    }
}

/// A bright 3 x 3 square on a dark image; the model says class 0 while `w · x` is above half its
/// value on the intact image. Imputing the square (MoRF of the exact map) flips it early.
#[test]
fn road_ranks_the_exact_map_above_random() {
    let mut x = ArrayD::from_elem(IxDyn(&[1, H, W]), 0.05f32);
    for r in 2..5 {
        for c in 3..6 {
            x[[0, r, c]] = 1.0;
        }
    }
    let w = Array1::from_elem(H * W, 1.0f32);
    let f0: f32 = x.sum();
    let model = linear(w.clone(), 0.5 * f0);
    let exact = exact_map(&w, &x);
    let p = RoadParams::new()
        .percentages(vec![5.0, 10.0, 15.0, 20.0, 30.0, 40.0])
        .check()
        .unwrap();
    for map_seed in 0..5 {
        let random = random_attribution(&[1, H, W], map_seed);
        let e = road(&model, x.view(), exact.view(), 0, Order::Morf, &p).unwrap();
        let r = road(&model, x.view(), random.view(), 0, Order::Morf, &p).unwrap();
        assert!(
            e.value < r.value,
            "exact {:?}, random {:?}",
            e.curve.y,
            r.curve.y
        );
        let el = road(&model, x.view(), exact.view(), 0, Order::Lerf, &p).unwrap();
        assert!(el.value >= r.value, "LeRF exact {:?}", el.curve.y);
    }
}

/// The method `w ∘ x` re-run on noisy inputs changes little; a method returning a new random map
/// for every input changes completely.
#[test]
fn sensitivity_of_the_exact_method_is_below_random() {
    let (w, x) = weights_and_input(5);
    let wc = w.clone();
    let exact = move |xs: ArrayViewD<'_, f32>, _t: &[usize]| -> Result<ArrayD<f32>> {
        let n = xs.shape()[0];
        let flat = xs.into_shape_with_order((n, H * W)).unwrap();
        Ok((&flat * &wc)
            .into_shape_with_order(IxDyn(&[n, 1, H, W]))
            .unwrap())
    };
    let random = |xs: ArrayViewD<'_, f32>, _t: &[usize]| -> Result<ArrayD<f32>> {
        let n = xs.shape()[0];
        let seed = xs
            .iter()
            .map(|v| v.to_bits() as u64)
            .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b));
        Ok(random_attribution(&[n, 1, H, W], seed))
    };
    let p = SensitivityParams::new()
        .nr_samples(20)
        .seed(1)
        .check()
        .unwrap();
    let map_e = exact_map(&w, &x);
    let map_r = random_attribution(&[1, H, W], 99);
    let e = sensitivity(&exact, x.view(), map_e.view(), 0, &p).unwrap();
    let r = sensitivity(&random, x.view(), map_r.view(), 0, &p).unwrap();
    assert!(e.max < r.max && e.avg < r.avg, "exact {e:?}, random {r:?}");
    assert!(e.avg <= e.max && e.per_sample.len() == 20);
    // Through `evaluate`, with the explainer in the context.
    let model = linear(w, 0.0);
    let ctx = Context {
        explainer: Some(&exact),
        ..Context::new(&model)
    };
    let input = Input {
        x: x.view(),
        map: map_e.view(),
        target: 0,
        segments: None,
    };
    let rows = evaluate(
        &ctx,
        &input,
        &[Metric::MaxSensitivity(p.clone()), Metric::AvgSensitivity(p)],
    )
    .unwrap();
    assert_eq!((rows[0].value, rows[1].value), (e.max, e.avg));
    // Without one it says what is missing.
    let err = evaluate(
        &Context::new(&model),
        &input,
        &[Metric::from_name("max_sensitivity").unwrap()],
    )
    .unwrap_err();
    assert!(err.to_string().contains("explainer"), "{err}");
}

#[test]
fn seeded_metrics_reproduce_across_thread_counts() {
    let (w, x) = weights_and_input(11);
    let model = linear(w, 0.0);
    let map = random_attribution(&[1, H, W], 12);
    let metrics = vec![
        Metric::RoadMorf(RoadParams::new().seed(4).check().unwrap()),
        Metric::FaithfulnessCorrelation(
            FaithfulnessCorrelationParams::new()
                .subset_size(10)
                .nr_runs(20)
                .seed(4)
                .check()
                .unwrap(),
        ),
        Metric::Infidelity(
            InfidelityParams::new()
                .perturbation(InfidelityPerturbation::Gaussian {
                    std: 0.2,
                    n_samples: 10,
                })
                .seed(4)
                .check()
                .unwrap(),
        ),
    ];
    // An explainer that itself splits the batch over rayon's threads.
    let explainer = |xs: ArrayViewD<'_, f32>, _t: &[usize]| -> Result<ArrayD<f32>> {
        use rayon::prelude::*;
        let rows: Vec<f32> = xs.as_slice().unwrap().par_iter().map(|v| v * v).collect();
        Ok(ArrayD::from_shape_vec(xs.raw_dim(), rows).unwrap())
    };
    let sens = SensitivityParams::new()
        .nr_samples(12)
        .batch_size(5)
        .seed(4)
        .check()
        .unwrap();
    let metrics = [
        metrics,
        vec![
            Metric::MaxSensitivity(sens.clone()),
            Metric::AvgSensitivity(sens),
        ],
    ]
    .concat();
    let ctx = Context {
        explainer: Some(&explainer),
        ..Context::new(&model)
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let input = Input {
                    x: x.view(),
                    map: map.view(),
                    target: 0,
                    segments: None,
                };
                evaluate(&ctx, &input, &metrics).unwrap()
            })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    // ROAD's noise is drawn: another seed gives other imputations (values of the curve may
    // coincide, the imputed inputs do not).
    let x3 = x.view().into_shape_with_order((1, H, W)).unwrap();
    let a = noisy_linear_imputation(x3, &[9, 10, 17], 0.01, 1, 100, 1e-8).unwrap();
    let b = noisy_linear_imputation(x3, &[9, 10, 17], 0.01, 2, 100, 1e-8).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        a,
        noisy_linear_imputation(x3, &[9, 10, 17], 0.01, 1, 100, 1e-8).unwrap()
    );
}

#[test]
fn segments_remove_whole_superpixels() {
    let (w, x) = weights_and_input(21);
    let model = linear(w.clone(), 0.0);
    // Four quadrants.
    let labels = Array2::from_shape_fn((H, W), |(r, c)| (r / 4) * 2 + c / 4);
    let exact = exact_map(&w, &x);
    let p = CurveParams::new()
        .features(Features::Segments)
        .baseline(Baseline::Value(0.0))
        .check()
        .unwrap();
    let d = deletion(&model, x.view(), exact.view(), 0, Some(labels.view()), &p).unwrap();
    assert_eq!(d.curve.x, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    // The most positive quadrant goes first: the first drop is the largest.
    let drops: Vec<f64> = d.curve.y.windows(2).map(|v| v[0] - v[1]).collect();
    assert!(drops.windows(2).all(|v| v[0] >= v[1] - 1e-6), "{drops:?}");
    // A missing label map is an error naming it.
    let err = deletion(&model, x.view(), exact.view(), 0, None, &p).unwrap_err();
    assert!(err.to_string().contains("label map"), "{err}");
}

#[test]
fn blur_baseline_and_per_feature_inputs() {
    let (w, x) = weights_and_input(31);
    let model = linear(w.clone(), 0.0);
    let exact = exact_map(&w, &x);
    let p = CurveParams::new()
        .baseline(Baseline::Blur { sigma: 1.5 })
        .features_in_step(4)
        .check()
        .unwrap();
    let i = insertion(&model, x.view(), exact.view(), 0, None, &p).unwrap();
    assert!(i.curve.y[0] != i.curve.y[i.curve.y.len() - 1]);
    // Per-feature models: a map per feature.
    let wf = w.clone();
    let tabular = FnPredictor::new(vec![H * W], 1, move |x: ArrayViewD<'_, f32>| {
        let x = x.into_dimensionality::<ndarray::Ix2>().unwrap();
        Ok(x.dot(&wf).insert_axis(Axis(1)))
    });
    let xf = x
        .view()
        .into_shape_with_order(IxDyn(&[H * W]))
        .unwrap()
        .to_owned();
    let mf = exact
        .view()
        .into_shape_with_order(IxDyn(&[H * W]))
        .unwrap()
        .to_owned();
    let pv = CurveParams::new()
        .baseline(Baseline::Value(0.0))
        .check()
        .unwrap();
    let d = deletion(&tabular, xf.view(), mf.view(), 0, None, &pv).unwrap();
    assert_eq!(d.curve.y.len(), H * W + 1);
    // Blur needs an image.
    assert!(deletion(&tabular, xf.view(), mf.view(), 0, None, &p).is_err());
}

#[test]
fn parameters_are_checked_also_when_deserialised() {
    assert!(CurveParams::new().features_in_step(0).check().is_err());
    assert!(CurveParams::new()
        .baseline(Baseline::Value(f32::NAN))
        .check()
        .is_err());
    assert!(RoadParams::new().percentages(vec![0.0]).check().is_err());
    assert!(RoadParams::new().noise(-1.0).check().is_err());
    assert!(RegionParams::new().patch_size(0).check().is_err());
    assert!(SensitivityParams::new().lower_bound(0.0).check().is_err());
    assert!(FaithfulnessCorrelationParams::new()
        .nr_runs(1)
        .check()
        .is_err());
    assert!(InfidelityParams::new()
        .perturbation(InfidelityPerturbation::Squares {
            patch_sizes: vec![],
            baseline: Baseline::Black
        })
        .check()
        .is_err());
    let m = Metric::from_name("road_morf").unwrap();
    let json = serde_json::to_string(&m).unwrap();
    let back: Metric = serde_json::from_str(&json).unwrap();
    assert_eq!(m, back);
    let bad = json.replace("\"batch_size\":64", "\"batch_size\":0");
    assert_ne!(bad, json);
    let err = serde_json::from_str::<Metric>(&bad).unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
    for name in METRIC_NAMES {
        assert_eq!(Metric::from_name(name).unwrap().name(), *name);
    }
    assert!(Metric::from_name("accuracy").is_err());
}

#[test]
fn wrong_shapes_and_targets_are_errors() {
    let (w, x) = weights_and_input(41);
    let model = linear(w, 0.0);
    let p = CurveParams::new().check().unwrap();
    let bad_map = ArrayD::<f32>::zeros(IxDyn(&[2, H, W]));
    let err = deletion(&model, x.view(), bad_map.view(), 0, None, &p).unwrap_err();
    assert!(err.to_string().contains("attribution map"), "{err}");
    let map = ArrayD::<f32>::zeros(IxDyn(&[H, W]));
    assert!(deletion(&model, x.view(), map.view(), 0, None, &p).is_ok());
    let err = deletion(&model, x.view(), map.view(), 5, None, &p).unwrap_err();
    assert!(err.to_string().contains("target 5"), "{err}");
    let bad_x = ArrayD::<f32>::zeros(IxDyn(&[1, H, W + 1]));
    assert!(deletion(&model, bad_x.view(), map.view(), 0, None, &p).is_err());
}

#[test]
fn max_steps_bounds_the_curve_length() {
    let (w, x) = weights_and_input(51);
    let model = linear(w, 0.0);
    let map = random_attribution(&[1, H, W], 52);
    // 64 pixels, at most 10 steps: 7 pixels per step, 10 steps and the intact input.
    let p = CurveParams::new()
        .max_steps(Some(10))
        .baseline(Baseline::Value(0.0))
        .check()
        .unwrap();
    let d = deletion(&model, x.view(), map.view(), 0, None, &p).unwrap();
    assert_eq!(d.curve.x.len(), 11);
    assert!((d.curve.x[1] - 7.0 / 64.0).abs() < 1e-12);
    assert_eq!(*d.curve.x.last().unwrap(), 1.0);
    // A larger features_in_step wins.
    let p = CurveParams::new()
        .max_steps(Some(10))
        .features_in_step(16)
        .check()
        .unwrap();
    let d = deletion(&model, x.view(), map.view(), 0, None, &p).unwrap();
    assert_eq!(d.curve.x.len(), 5);
    assert!(CurveParams::new().max_steps(Some(0)).check().is_err());
}
