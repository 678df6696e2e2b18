//! Agreement with captum 0.9 on the committed CNN (`fixtures/cnn.onnx`, input 3x16x16, 5
//! logits), loaded with the graph engine. `fixtures/make_captum_fixtures.py` wrote captum's
//! attributions and the random draws of the stochastic methods (noise, baseline indices,
//! alphas), which the explicit entry points are handed here.
//!
//! The measure: for every input (and class), `‖ours − captum‖₂ / ‖captum‖₂ <= 1e-4` over the
//! input's attribution map. The convergence deltas are differences of nearly equal numbers,
//! so they are compared absolutely: `|δ_ours − δ_captum| <= 1e-4 · Σ|attr|` of the input.

use std::path::PathBuf;

use ndarray::{ArrayD, ArrayViewD, Axis};
use ndarray_npy::read_npy;
use xai_attribution::{
    Baseline, ClassTargets, GradCam, GradCamParams, GradientShap, GradientShapParams,
    InputXGradient, InputXGradientParams, IntegratedGradients, IntegratedGradientsParams,
    IntegrationMethod, NoiseTunnel, NoiseTunnelBase, NoiseTunnelParams, NoiseTunnelType, Occlusion,
    OcclusionParams, Saliency, SaliencyParams,
};
use xai_onnx::{Backend, OnnxModel, OnnxOptions};

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn npy(name: &str) -> ArrayD<f32> {
    read_npy(fixture(&format!("{name}.npy"))).unwrap_or_else(|e| panic!("{name}.npy: {e}"))
}

fn model() -> OnnxModel {
    OnnxOptions::new()
        .input_shape([3, 16, 16])
        .backend(Backend::Graph)
        .check()
        .unwrap()
        .load(fixture("cnn.onnx"))
        .unwrap()
}

fn meta() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("meta.json")).unwrap()).unwrap()
}

fn targets() -> ClassTargets {
    ClassTargets::one_per_input(vec![1, 3, 4])
}

/// `‖a − b‖₂ / ‖b‖₂` over each input's map (axis 0), all within `TOL`.
fn assert_close(what: &str, ours: ArrayViewD<'_, f32>, captum: ArrayViewD<'_, f32>) {
    assert_eq!(
        ours.len(),
        captum.len(),
        "{what}: sizes {:?} vs {:?}",
        ours.shape(),
        captum.shape()
    );
    let n = captum.shape()[0];
    let ours = ours.to_shape(captum.raw_dim()).unwrap();
    for i in 0..n {
        let (a, b) = (ours.index_axis(Axis(0), i), captum.index_axis(Axis(0), i));
        let diff: f64 = a
            .iter()
            .zip(b.iter())
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum();
        let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        let rel = (diff / norm.max(1e-30)).sqrt();
        assert!(
            rel <= TOL as f64,
            "{what}, input {i}: relative L2 difference {rel:.3e} > {TOL:.0e} (norm {:.3e})",
            norm.sqrt()
        );
    }
}

fn assert_delta(what: &str, ours: &[f32], captum: &[f32], attr_abs_sums: &[f32]) {
    assert_eq!(ours.len(), captum.len(), "{what}");
    for (q, ((a, b), s)) in ours.iter().zip(captum).zip(attr_abs_sums).enumerate() {
        assert!(
            (a - b).abs() <= TOL * s.max(1e-6),
            "{what} {q}: delta {a:e} vs captum's {b:e} (Σ|attr| {s:e})"
        );
    }
}

fn abs_sums(a: &ArrayD<f32>, groups: usize) -> Vec<f32> {
    let per = a.len() / groups;
    let flat: Vec<f32> = a.iter().copied().collect();
    flat.chunks(per)
        .map(|c| c.iter().map(|v| v.abs()).sum())
        .collect()
}

#[test]
fn the_model_matches_torch() {
    let m = model();
    let out = xai_core::Predictor::predict(&m, npy("inputs").view()).unwrap();
    assert_close("logits", out.view().into_dyn(), npy("logits").view());
}

#[test]
fn saliency_and_input_x_gradient() {
    let m = model();
    let x = npy("inputs");
    let sal = Saliency::new(&m, SaliencyParams::new().check().unwrap());
    let a = sal.attribute(x.view(), &targets()).unwrap();
    assert_close(
        "saliency (abs)",
        a.values.view(),
        npy("saliency_abs").view(),
    );
    let signed = Saliency::new(
        &m,
        SaliencyParams::new()
            .abs(false)
            .batch_size(2)
            .check()
            .unwrap(),
    );
    let a = signed.attribute(x.view(), &targets()).unwrap();
    assert_close(
        "saliency (signed)",
        a.values.view(),
        npy("saliency_signed").view(),
    );
    // Two classes per input: [n, 2, ..], each slot as captum with that target.
    let two = ClassTargets::per_input(vec![vec![1, 0], vec![3, 2], vec![4, 1]]).unwrap();
    let a = sal.attribute(x.view(), &two).unwrap();
    assert_eq!(a.values.shape(), &[3, 2, 3, 16, 16]);
    assert_close(
        "saliency slot 0",
        a.values.index_axis(Axis(1), 0),
        npy("saliency_abs").view(),
    );
    assert_close(
        "saliency slot 1",
        a.values.index_axis(Axis(1), 1),
        npy("saliency_abs_t2").view(),
    );
    let ixg = InputXGradient::new(&m, InputXGradientParams::new().check().unwrap());
    let a = ixg.attribute(x.view(), &targets()).unwrap();
    assert_close(
        "input x gradient",
        a.values.view(),
        npy("input_x_gradient").view(),
    );
}

#[test]
fn integrated_gradients_every_method() {
    let m = model();
    let x = npy("inputs");
    let meta = meta();
    let baseline = Baseline::Shared(npy("ig_baseline"));
    for method in [
        IntegrationMethod::GaussLegendre,
        IntegrationMethod::RiemannLeft,
        IntegrationMethod::RiemannRight,
        IntegrationMethod::RiemannMiddle,
        IntegrationMethod::RiemannTrapezoid,
    ] {
        let steps = meta["ig_n_steps"][method.name()].as_u64().unwrap() as usize;
        let params = IntegratedGradientsParams::new()
            .n_steps(steps)
            .method(method)
            .internal_batch_size(7)
            .check()
            .unwrap();
        let a = IntegratedGradients::new(&m, params)
            .attribute(x.view(), &targets(), &baseline)
            .unwrap();
        let name = format!("ig_{}", method.name());
        assert_close(&name, a.values.view(), npy(&name).view());
        let delta = a.delta.unwrap();
        assert_eq!(delta.shape(), &[3, 1]);
        assert_delta(
            &name,
            delta.as_slice().unwrap(),
            npy(&format!("{name}_delta")).as_slice().unwrap(),
            &abs_sums(&a.values, 3),
        );
    }
    // A scalar baseline.
    let params = IntegratedGradientsParams::new()
        .n_steps(16)
        .method(IntegrationMethod::RiemannMiddle)
        .check()
        .unwrap();
    let a = IntegratedGradients::new(&m, params)
        .attribute(x.view(), &targets(), &Baseline::Value(0.25))
        .unwrap();
    assert_close(
        "ig scalar baseline",
        a.values.view(),
        npy("ig_scalar_baseline").view(),
    );
    assert_delta(
        "ig scalar baseline",
        a.delta.as_ref().unwrap().as_slice().unwrap(),
        npy("ig_scalar_baseline_delta").as_slice().unwrap(),
        &abs_sums(&a.values, 3),
    );
    // One baseline per input, one interpolant per model call.
    let params = IntegratedGradientsParams::new()
        .n_steps(12)
        .internal_batch_size(1)
        .check()
        .unwrap();
    let a = IntegratedGradients::new(&m, params)
        .attribute(
            x.view(),
            &targets(),
            &Baseline::PerInput(npy("ig_per_input_baseline")),
        )
        .unwrap();
    assert_close(
        "ig per-input baselines",
        a.values.view(),
        npy("ig_per_input").view(),
    );
}

#[test]
fn noise_tunnel_with_captums_noise() {
    let m = model();
    let x = npy("inputs");
    let meta = meta();
    let samples = meta["nt_samples"].as_u64().unwrap() as usize;
    let nt = |t: NoiseTunnelType| {
        NoiseTunnelParams::new()
            .nt_type(t)
            .nt_samples(samples)
            .nt_samples_batch_size(Some(4))
            .check()
            .unwrap()
    };
    let ig = IntegratedGradientsParams::new()
        .n_steps(meta["nt_ig_n_steps"].as_u64().unwrap() as usize)
        .method(IntegrationMethod::RiemannTrapezoid)
        .internal_batch_size(5)
        .check()
        .unwrap();
    let cases = [
        (
            "nt_smoothgrad_saliency",
            NoiseTunnelType::Smoothgrad,
            NoiseTunnelBase::Saliency(SaliencyParams::new().check().unwrap()),
        ),
        (
            "nt_smoothgrad_sq_ixg",
            NoiseTunnelType::SmoothgradSq,
            NoiseTunnelBase::InputXGradient(InputXGradientParams::new().check().unwrap()),
        ),
        (
            "nt_vargrad_ig",
            NoiseTunnelType::Vargrad,
            NoiseTunnelBase::IntegratedGradients(ig, Baseline::Shared(npy("ig_baseline"))),
        ),
    ];
    for (name, t, base) in cases {
        let is_ig = matches!(base, NoiseTunnelBase::IntegratedGradients(..));
        let tunnel = NoiseTunnel::new(&m, base, nt(t));
        let noise = npy(&format!("{name}_noise"));
        let a = tunnel
            .attribute_with_noise(x.view(), &targets(), noise.view())
            .unwrap();
        assert_close(name, a.values.view(), npy(name).view());
        assert_eq!(
            a.delta.as_ref().map(|d| d.shape().to_vec()),
            is_ig.then(|| vec![3, 1, samples])
        );
    }
}

#[test]
fn gradient_shap_with_captums_draws() {
    let m = model();
    let x = npy("inputs");
    let meta = meta();
    let params = GradientShapParams::new()
        .n_samples(meta["gs_n_samples"].as_u64().unwrap() as usize)
        .internal_batch_size(4)
        .return_convergence_delta(true)
        .check()
        .unwrap();
    let a = GradientShap::new(&m, params)
        .attribute_with(
            x.view(),
            &targets(),
            npy("gs_baselines").view(),
            npy("gs_alphas").view(),
            Some(npy("gs_noise").view()),
        )
        .unwrap();
    assert_close("gradient shap", a.values.view(), npy("gs_attr").view());
    let delta = a.delta.unwrap();
    assert_eq!(delta.shape(), &[3, 1, 7]);
    // Each sample's delta, against Σ|attr| of the input's mean map times the samples.
    let sums: Vec<f32> = abs_sums(&a.values, 3)
        .iter()
        .flat_map(|s| [*s * 7.0; 7])
        .collect();
    assert_delta(
        "gradient shap delta",
        delta.as_slice().unwrap(),
        npy("gs_delta").as_slice().unwrap(),
        &sums,
    );
}

#[test]
fn grad_cam_on_named_nodes() {
    let m = model();
    let x = npy("inputs");
    let meta = meta();
    for (case, relu) in [("conv2", true), ("pool", false)] {
        let layer = meta["gradcam_layers"][case].as_str().unwrap();
        let params = GradCamParams::new(layer)
            .relu_attributions(relu)
            .batch_size(2)
            .check()
            .unwrap();
        let cam = GradCam::new(&m, params)
            .attribute(x.view(), &targets())
            .unwrap();
        assert_close(
            &format!("grad-cam {case} (layer)"),
            cam.layer_map.view(),
            npy(&format!("gradcam_{case}_layer")).view(),
        );
        let up = cam.upsampled.expect("a spatial layer");
        assert_eq!(up.shape(), &[3, 1, 16, 16]);
        assert_close(
            &format!("grad-cam {case}"),
            up.view(),
            npy(&format!("gradcam_{case}")).view(),
        );
    }
    // The node's name works as well as its output's.
    let by_node = GradCam::new(&m, GradCamParams::new("/conv2/Conv").check().unwrap())
        .attribute(x.view(), &targets())
        .unwrap();
    assert_close(
        "grad-cam by node name",
        by_node.layer_map.view(),
        npy("gradcam_conv2_layer").view(),
    );
}

#[test]
fn occlusion_windows_and_strides() {
    let m = model();
    let x = npy("inputs");
    let occ = Occlusion::new(
        &m,
        OcclusionParams::new(vec![3, 4, 4])
            .strides(vec![3, 3, 3])
            .perturbations_per_eval(4)
            .check()
            .unwrap(),
    )
    .unwrap();
    let a = occ
        .attribute(x.view(), &targets(), &Baseline::Value(0.2))
        .unwrap();
    assert_close(
        "occlusion 3x4x4",
        a.values.view(),
        npy("occlusion_3x4x4").view(),
    );
    let occ = Occlusion::new(
        &m,
        OcclusionParams::new(vec![1, 5, 5])
            .strides(vec![1, 4, 4])
            .perturbations_per_eval(3)
            .check()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(occ.n_windows(), 3 * 4 * 4);
    let a = occ
        .attribute(x.view(), &targets(), &Baseline::Zero)
        .unwrap();
    assert_close(
        "occlusion 1x5x5",
        a.values.view(),
        npy("occlusion_1x5x5").view(),
    );
}

/// The importer's networks expose their layers by ONNX name too: Grad-CAM on the imported
/// model agrees with captum on the same nodes (by output and by node name); an unknown name
/// lists the layers.
#[test]
fn grad_cam_on_an_imported_model_by_onnx_name() {
    let imported = OnnxOptions::new()
        .input_shape([3, 16, 16])
        .backend(Backend::Import)
        .check()
        .unwrap()
        .load(fixture("cnn.onnx"))
        .unwrap();
    let names = xai_core::LayerModel::layer_names(&imported);
    assert!(
        names.iter().any(|n| n == "/conv2/Conv_output_0"),
        "{names:?}"
    );
    let x = npy("inputs");
    let meta = meta();
    for (case, relu) in [("conv2", true), ("pool", false)] {
        let layer = meta["gradcam_layers"][case].as_str().unwrap();
        let params = GradCamParams::new(layer)
            .relu_attributions(relu)
            .check()
            .unwrap();
        let cam = GradCam::new(&imported, params)
            .attribute(x.view(), &targets())
            .unwrap();
        assert_close(
            &format!("grad-cam {case} (importer)"),
            cam.layer_map.view(),
            npy(&format!("gradcam_{case}_layer")).view(),
        );
    }
    let by_node = GradCam::new(
        &imported,
        GradCamParams::new("/conv2/Conv").check().unwrap(),
    )
    .attribute(x.view(), &targets())
    .unwrap();
    assert_close(
        "grad-cam by node name (importer)",
        by_node.layer_map.view(),
        npy("gradcam_conv2_layer").view(),
    );
    let err = GradCam::new(&imported, GradCamParams::new("/nope").check().unwrap())
        .attribute(x.view(), &targets())
        .unwrap_err();
    assert!(err.to_string().contains("/conv2/Conv_output_0"), "{err}");
    // The gradient methods run on it and agree with captum too.
    let a = Saliency::new(&imported, SaliencyParams::new().check().unwrap())
        .attribute(x.view(), &targets())
        .unwrap();
    assert_close(
        "saliency (importer)",
        a.values.view(),
        npy("saliency_abs").view(),
    );
    // And the graph engine lists the node outputs.
    let names = xai_core::LayerModel::layer_names(&model());
    assert!(
        names.iter().any(|n| n == "/conv2/Conv_output_0"),
        "{names:?}"
    );
}
