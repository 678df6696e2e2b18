//! The objective's gradient against finite differences (white-box, with the autoencoder term),
//! the black-box numerical gradient against the white-box one, and typed errors for bad input.

mod common;

use common::{fixture, images_of, SIDE};
use ndarray::{ArrayD, Axis};
use rand::{rngs::StdRng, Rng, SeedableRng};
use xai_cem::{Cem, CemError, CemParams, Mode};
use xai_core::{CoreError, FnPredictor, Predictor};

/// A candidate near `x` inside the PN / PP set, so that the hinge is active.
fn candidate(x: &ArrayD<f32>, seed: u64) -> ArrayD<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    x.mapv(|v| (v + rng.gen_range(-0.2f32..0.2)).clamp(-0.5, 0.5))
}

fn smooth(terms: &xai_cem::LossTerms, beta: f32) -> f64 {
    terms.total - beta as f64 * terms.l1
}

#[test]
fn smooth_gradient_matches_finite_differences() {
    let f = fixture();
    let x = images_of(&[0]).index_axis(Axis(0), 0).to_owned();
    for mode in [Mode::PertinentNegative, Mode::PertinentPositive] {
        let beta = 0.1;
        let p = CemParams::alibi_mnist_example(mode)
            .gamma(3.0)
            .beta(beta)
            .check()
            .unwrap();
        let cem = Cem::white_box(p, &f.model)
            .unwrap()
            .with_autoencoder(&f.autoencoder)
            .unwrap();
        // PN: a target the candidate still predicts keeps the hinge active; PP: another class.
        let target = match mode {
            Mode::PertinentNegative => 0,
            Mode::PertinentPositive => 1,
        };
        let z = candidate(&x, 5);
        let (terms, grad) = cem
            .smooth_objective_gradient(z.view(), x.view(), target, 7.0)
            .unwrap();
        assert!(
            terms.attack > 0.0,
            "{mode}: hinge inactive at the test point"
        );
        assert!(terms.autoencoder > 0.0 && terms.l2 > 0.0);
        let h = 1e-2f32;
        let flat = z.as_slice().unwrap();
        let mut worst = 0.0f64;
        for j in 0..flat.len() {
            let mut plus = z.clone();
            plus.as_slice_mut().unwrap()[j] += h;
            let mut minus = z.clone();
            minus.as_slice_mut().unwrap()[j] -= h;
            let (tp, _) = cem
                .smooth_objective_gradient(plus.view(), x.view(), target, 7.0)
                .unwrap();
            let (tm, _) = cem
                .smooth_objective_gradient(minus.view(), x.view(), target, 7.0)
                .unwrap();
            let fd = (smooth(&tp, beta) - smooth(&tm, beta)) / (2.0 * h as f64);
            let g = grad.as_slice().unwrap()[j] as f64;
            let err = (fd - g).abs() / (1.0 + g.abs());
            worst = worst.max(err);
            assert!(
                err < 2e-2,
                "{mode}, feature {j}: analytic {g} vs finite difference {fd}"
            );
        }
        assert!(worst.is_finite());
    }
}

#[test]
fn black_box_gradient_approximates_white_box() {
    let f = fixture();
    let model = &f.model;
    let black_box = FnPredictor::new(model.input_shape().to_vec(), 3, |x| model.predict(x));
    let x = images_of(&[1]).index_axis(Axis(0), 0).to_owned();
    let z = candidate(&x, 9);
    let p = CemParams::alibi_mnist_example(Mode::PertinentNegative)
        .gamma(0.0)
        .eps(1e-3)
        .check()
        .unwrap();
    let white = Cem::white_box(p.clone(), model).unwrap();
    let black = Cem::black_box(p, &black_box).unwrap();
    let (tw, gw) = white
        .smooth_objective_gradient(z.view(), x.view(), 1, 10.0)
        .unwrap();
    let (tb, gb) = black
        .smooth_objective_gradient(z.view(), x.view(), 1, 10.0)
        .unwrap();
    assert_eq!(tw, tb);
    assert!(tw.attack > 0.0);
    let scale = gw.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    for (a, b) in gw.iter().zip(gb.iter()) {
        assert!(
            (a - b).abs() <= 2e-2 * scale,
            "white {a} vs black {b} (scale {scale})"
        );
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let f = fixture();
    let model = &f.model;
    let p = CemParams::alibi_mnist_example(Mode::PertinentNegative)
        .c_steps(1)
        .max_iterations(2);
    let cem = Cem::white_box(p.clone().check().unwrap(), model).unwrap();
    let x = images_of(&[0]).index_axis(Axis(0), 0).to_owned();

    let mut nan = x.clone();
    nan[[0, 2, 3]] = f32::NAN;
    let err = cem.explain(nan.view()).unwrap_err();
    assert!(
        matches!(err, CemError::Core(CoreError::NonFinite { .. })),
        "{err}"
    );

    let wrong = ArrayD::<f32>::zeros(vec![1, 7, 7]);
    let err = cem.explain(wrong.view()).unwrap_err();
    assert!(
        matches!(err, CemError::Core(CoreError::ShapeMismatch { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("[1, 7, 7]"), "{err}");

    let mut outside = x.clone();
    outside[[0, 1, 1]] = 0.75;
    let err = cem.explain(outside.view()).unwrap_err();
    assert!(
        matches!(err, CemError::OutsideFeatureRange { feature: 9, .. }),
        "{err}"
    );

    let err = cem.explain_with_target(x.view(), 3).unwrap_err();
    assert!(
        matches!(err, CemError::TargetOutOfRange { target: 3, .. }),
        "{err}"
    );
    let batch = x.clone().insert_axis(Axis(0));
    let err = cem.explain_batch(batch.view(), Some(&[0, 1])).unwrap_err();
    assert!(
        matches!(
            err,
            CemError::TargetCount {
                got: 2,
                expected: 1
            }
        ),
        "{err}"
    );
    let empty = ArrayD::<f32>::zeros(vec![0, 1, SIDE, SIDE]);
    assert!(cem.explain_batch(empty.view(), None).is_err());

    // No no_info_val and no fit.
    let unset = CemParams::new(Mode::PertinentPositive)
        .feature_range(-0.5, 0.5)
        .check()
        .unwrap();
    let err = Cem::white_box(unset, model)
        .unwrap()
        .explain(x.view())
        .unwrap_err();
    assert!(matches!(err, CemError::NoInfoValueMissing), "{err}");
    assert!(err.to_string().contains("fit"), "{err}");

    // Per-feature arrays of the wrong length.
    let err = Cem::white_box(
        p.clone()
            .feature_range_per_feature(vec![-0.5; 3], vec![0.5; 3])
            .check()
            .unwrap(),
        model,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            CemError::FeatureCount {
                got: 3,
                expected: 64,
                ..
            }
        ),
        "{err}"
    );
    let err = Cem::white_box(
        p.clone()
            .no_info_val_per_feature(vec![0.0; 5])
            .check()
            .unwrap(),
        model,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            CemError::FeatureCount {
                what: "no_info_val",
                ..
            }
        ),
        "{err}"
    );

    // An autoencoder that does not reconstruct the classifier's inputs.
    let err = Cem::white_box(p.clone().check().unwrap(), model)
        .unwrap()
        .with_autoencoder(model)
        .unwrap_err();
    assert!(
        matches!(err, CemError::AutoencoderShape { ae_outputs: 3, .. }),
        "{err}"
    );

    // A classifier with one output.
    let single = FnPredictor::new(vec![2], 1, |x| {
        Ok(ndarray::Array2::zeros((x.shape()[0], 1)))
    });
    let err = Cem::black_box(p.clone().check().unwrap(), &single).unwrap_err();
    assert!(matches!(err, CemError::TooFewClasses(1)), "{err}");

    // A model that turns non-finite once the input moves away from the blank image.
    let broken = FnPredictor::new(vec![1, SIDE, SIDE], 3, |x| {
        let n = x.shape()[0];
        let per_row = x.len() / n.max(1);
        let values: Vec<f32> = x.iter().copied().collect();
        let mut out = ndarray::Array2::zeros((n, 3));
        for (i, row) in values.chunks(per_row).enumerate() {
            let s = row.iter().map(|v| v + 0.5).sum::<f32>() / per_row as f32;
            let p0 = if s > 0.01 { f32::NAN } else { 0.6 - s };
            out.row_mut(i).assign(&ndarray::array![p0, 0.2 + s, 0.2]);
        }
        Ok(out)
    });
    let clean = ArrayD::from_elem(vec![1, SIDE, SIDE], -0.5f32);
    let err = Cem::black_box(
        p.clone()
            .beta(0.0)
            .c_init(1000.0)
            .max_iterations(50)
            .check()
            .unwrap(),
        &broken,
    )
    .unwrap()
    .explain(clean.view())
    .unwrap_err();
    assert!(
        matches!(err, CemError::NonFiniteDuringSearch { c_step: 0, .. }),
        "{err}"
    );

    // fit with bad data.
    let mut cem = Cem::white_box(
        CemParams::new(Mode::PertinentNegative).check().unwrap(),
        model,
    )
    .unwrap();
    assert!(cem.fit(wrong.view()).is_err());
    assert!(cem.fit(nan.insert_axis(Axis(0)).view()).is_err());
}
