//! Bad inputs are typed errors, never panics.

mod common;

use common::{array, matrix, Linear, Smooth};
use ndarray::{ArrayD, IxDyn};
use xai_attribution::{
    AttributionError, Baseline, ClassTargets, GradientShap, GradientShapParams,
    IntegratedGradients, IntegratedGradientsParams, NoiseTunnel, NoiseTunnelBase,
    NoiseTunnelParams, Occlusion, OcclusionParams, Saliency, SaliencyParams,
};

fn model() -> Linear {
    Linear {
        shape: vec![2, 3],
        w: matrix(6, 3, 1),
        c: vec![0.0; 3],
    }
}

#[test]
fn targets_are_checked() {
    let m = model();
    let x = array(&[2, 2, 3], 2, -1.0, 1.0);
    let sal = Saliency::new(&m, SaliencyParams::new().check().unwrap());
    let err = sal
        .attribute(x.view(), &ClassTargets::one_per_input(vec![0, 3]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::TargetOutOfRange {
                input: 1,
                class: 3,
                n_outputs: 3
            }
        ),
        "{err}"
    );
    let err = sal
        .attribute(x.view(), &ClassTargets::one_per_input(vec![0]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::TargetCount {
                got: 1,
                n_inputs: 2
            }
        ),
        "{err}"
    );
    let err = ClassTargets::per_input(vec![vec![0, 1], vec![2]]).unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::TargetWidth {
                input: 1,
                got: 1,
                expected: 2
            }
        ),
        "{err}"
    );
    assert!(ClassTargets::per_input(vec![vec![]]).is_err());
    assert!(ClassTargets::top_k(&m, x.view(), 0).is_err());
    assert!(ClassTargets::top_k(&m, x.view(), 4).is_err());
    let top = ClassTargets::top_k(&m, x.view(), 3).unwrap();
    let predicted = ClassTargets::predicted(&m, x.view()).unwrap();
    assert_eq!(top.classes().column(0), predicted.classes().column(0));
}

#[test]
fn shapes_and_non_finite_values_are_checked() {
    let m = model();
    let x = array(&[2, 2, 3], 2, -1.0, 1.0);
    let t = ClassTargets::one_per_input(vec![0, 1]);
    let sal = Saliency::new(&m, SaliencyParams::new().check().unwrap());
    let err = sal
        .attribute(array(&[2, 3, 2], 2, 0.0, 1.0).view(), &t)
        .unwrap_err();
    assert!(err.to_string().contains("expected [n, 2, 3]"), "{err}");
    let err = sal
        .attribute(
            ArrayD::zeros(IxDyn(&[0, 2, 3])).view(),
            &ClassTargets::one_per_input(vec![]),
        )
        .unwrap_err();
    assert!(matches!(err, AttributionError::EmptyBatch), "{err}");
    let mut bad = x.clone();
    bad[[1, 0, 2]] = f32::NAN;
    let err = sal.attribute(bad.view(), &t).unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::NonFinite {
                what: "the input",
                index: 8,
                ..
            }
        ),
        "{err}"
    );

    let ig = IntegratedGradients::new(&m, IntegratedGradientsParams::new().check().unwrap());
    let err = ig
        .attribute(x.view(), &t, &Baseline::Value(f32::INFINITY))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::NonFinite {
                what: "the baseline",
                ..
            }
        ),
        "{err}"
    );
    let err = ig
        .attribute(
            x.view(),
            &t,
            &Baseline::Shared(ArrayD::zeros(IxDyn(&[3, 2]))),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::Shape {
                what: "the shared baseline",
                ..
            }
        ),
        "{err}"
    );
    let err = ig
        .attribute(
            x.view(),
            &t,
            &Baseline::PerInput(ArrayD::zeros(IxDyn(&[1, 2, 3]))),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::Shape {
                what: "the per-input baselines",
                ..
            }
        ),
        "{err}"
    );
    let mut nan_base = ArrayD::zeros(IxDyn(&[2, 3]));
    nan_base[[0, 0]] = f32::NAN;
    assert!(ig
        .attribute(x.view(), &t, &Baseline::Shared(nan_base))
        .is_err());

    let nt = NoiseTunnel::new(
        &m,
        NoiseTunnelBase::Saliency(SaliencyParams::new().check().unwrap()),
        NoiseTunnelParams::new().nt_samples(2).check().unwrap(),
    );
    let err = nt
        .attribute_with_noise(x.view(), &t, ArrayD::zeros(IxDyn(&[2, 3, 2, 3])).view())
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::Shape {
                what: "the noise",
                ..
            }
        ),
        "{err}"
    );
    let mut noise = ArrayD::zeros(IxDyn(&[2, 2, 2, 3]));
    noise[[0, 1, 0, 0]] = f32::NAN;
    assert!(nt.attribute_with_noise(x.view(), &t, noise.view()).is_err());

    let gs = GradientShap::new(&m, GradientShapParams::new().n_samples(2).check().unwrap());
    let err = gs
        .attribute(x.view(), &t, ArrayD::zeros(IxDyn(&[0, 2, 3])).view())
        .unwrap_err();
    assert!(err.to_string().contains("background"), "{err}");
    let baselines = ArrayD::zeros(IxDyn(&[2, 2, 2, 3]));
    let err = gs
        .attribute_with(
            x.view(),
            &t,
            baselines.view(),
            ArrayD::from_elem(IxDyn(&[2, 2]), 1.5f32).view(),
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("alphas"), "{err}");
    let err = gs
        .attribute_with(
            x.view(),
            &t,
            baselines.view(),
            ArrayD::zeros(IxDyn(&[2, 3])).view(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::Shape {
                what: "the alphas",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn occlusion_windows_are_checked_against_the_input() {
    let m = model();
    let too_big = Occlusion::new(&m, OcclusionParams::new(vec![3, 1]).check().unwrap());
    assert!(matches!(
        too_big,
        Err(AttributionError::InvalidParameter {
            name: "sliding_window_shapes",
            ..
        })
    ));
    let wrong_rank = Occlusion::new(&m, OcclusionParams::new(vec![1]).check().unwrap());
    assert!(wrong_rank.is_err());
    let stride = Occlusion::new(
        &m,
        OcclusionParams::new(vec![1, 2])
            .strides(vec![1, 3])
            .check()
            .unwrap(),
    );
    assert!(matches!(
        stride,
        Err(AttributionError::InvalidParameter {
            name: "strides",
            ..
        })
    ));
    // A stride beyond the window is fine where the window spans the dimension (captum).
    assert!(Occlusion::new(
        &m,
        OcclusionParams::new(vec![2, 2])
            .strides(vec![5, 1])
            .check()
            .unwrap()
    )
    .is_ok());
}

/// A model that returns NaN gives a typed error naming the input.
#[test]
fn non_finite_model_outputs_are_errors() {
    // Gradients NaN everywhere (NaN times a zero weight is NaN).
    let m = Smooth {
        shape: vec![2],
        w: matrix(2, 2, 3),
        s: vec![f32::NAN, 1.0],
    };
    let x = array(&[2, 2], 4, -1.0, 1.0);
    let sal = Saliency::new(&m, SaliencyParams::new().check().unwrap());
    let err = sal
        .attribute(x.view(), &ClassTargets::one_per_input(vec![1, 0]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::NonFiniteModelOutput {
                what: "gradient",
                input: 0,
                ..
            }
        ),
        "{err}"
    );
    // Output 0 is NaN (its bias), its gradient finite: the delta's forward pass finds it.
    let m = Linear {
        shape: vec![2],
        w: matrix(2, 2, 3),
        c: vec![f32::NAN, 0.0],
    };
    let ig = IntegratedGradients::new(
        &m,
        IntegratedGradientsParams::new().n_steps(4).check().unwrap(),
    );
    let err = ig
        .attribute(
            x.view(),
            &ClassTargets::one_per_input(vec![1, 0]),
            &Baseline::Zero,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttributionError::NonFiniteModelOutput {
                what: "output",
                input: 1,
                ..
            }
        ),
        "{err}"
    );
}
