//! Properties of the methods on models whose attributions are known in closed form.

mod common;

use common::{array, matrix, Linear, OneLayer, Smooth};
use ndarray::{ArrayD, Axis, IxDyn};
use proptest::prelude::*;
use xai_attribution::{
    Baseline, ClassTargets, GradCam, GradCamParams, GradientShap, GradientShapParams,
    InputXGradient, InputXGradientParams, IntegratedGradients, IntegratedGradientsParams,
    IntegrationMethod, NoiseTunnel, NoiseTunnelBase, NoiseTunnelParams, NoiseTunnelType, Occlusion,
    OcclusionParams, Saliency, SaliencyParams,
};
use xai_core::Predictor;

const METHODS: [IntegrationMethod; 5] = [
    IntegrationMethod::GaussLegendre,
    IntegrationMethod::RiemannLeft,
    IntegrationMethod::RiemannRight,
    IntegrationMethod::RiemannMiddle,
    IntegrationMethod::RiemannTrapezoid,
];

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// IG of `f = x W + c` is `(x − b) ∘ W_c · Σ_s w_s` for every quadrature: `Σ w_s = 1`,
    /// except captum's trapezoid rule, whose weights sum to `1 − 1/n`. Saliency is `|W_c|`
    /// (or `W_c`), input × gradient `x ∘ W_c`.
    #[test]
    fn linear_model_attributions_are_closed_form(
        seed in 0u64..1000,
        n in 1usize..4,
        k in 1usize..3,
        steps in 2usize..12,
        ibs in 1usize..9,
        method in 0usize..5,
    ) {
        let shape = [2usize, 3, 2];
        let d = 12;
        let classes = 4;
        let model = Linear { shape: shape.to_vec(), w: matrix(d, classes, seed), c: vec![0.5, -1.0, 2.0, 0.0] };
        let x = array(&[n, 2, 3, 2], seed + 1, -2.0, 2.0);
        let b = array(&shape, seed + 2, -1.0, 1.0);
        let rows: Vec<Vec<usize>> = (0..n).map(|i| (0..k).map(|j| (i + 2 * j + seed as usize) % classes).collect()).collect();
        let targets = ClassTargets::per_input(rows).unwrap();
        let method = METHODS[method];
        let params = IntegratedGradientsParams::new().n_steps(steps).method(method).internal_batch_size(ibs).check().unwrap();
        let ig = IntegratedGradients::new(&model, params).attribute(x.view(), &targets, &Baseline::Shared(b.clone())).unwrap();
        let scale = if method == IntegrationMethod::RiemannTrapezoid { 1.0 - 1.0 / steps as f32 } else { 1.0 };
        let sal = Saliency::new(&model, SaliencyParams::new().batch_size(ibs).check().unwrap()).attribute(x.view(), &targets).unwrap();
        let signed = Saliency::new(&model, SaliencyParams::new().abs(false).check().unwrap()).attribute(x.view(), &targets).unwrap();
        let ixg = InputXGradient::new(&model, InputXGradientParams::new().check().unwrap()).attribute(x.view(), &targets).unwrap();
        prop_assert_eq!(ig.values.shape(), &[n, k, 2, 3, 2]);
        for i in 0..n {
            for j in 0..k {
                let c = targets.classes()[[i, j]];
                let xi: Vec<f32> = x.index_axis(Axis(0), i).iter().copied().collect();
                let got: Vec<f32> = ig.get(i, j).iter().copied().collect();
                let s: Vec<f32> = sal.get(i, j).iter().copied().collect();
                let sg: Vec<f32> = signed.get(i, j).iter().copied().collect();
                let g: Vec<f32> = ixg.get(i, j).iter().copied().collect();
                for e in 0..d {
                    let w = model.w[[e, c]];
                    let b_e = b.as_slice().unwrap()[e];
                    prop_assert!(close(got[e], (xi[e] - b_e) * w * scale, 1e-5), "IG {:?} {} {}: {} vs {}", method, i, e, got[e], (xi[e] - b_e) * w * scale);
                    prop_assert_eq!(s[e], w.abs());
                    prop_assert_eq!(sg[e], w);
                    prop_assert!(close(g[e], xi[e] * w, 1e-6));
                }
            }
        }
        // The delta is then exactly the quadrature's shortfall: Σ w_s − 1 times f(x) − f(b).
        let delta = ig.delta.unwrap();
        let fx = model.predict(x.view()).unwrap();
        let fb = model.predict(b.clone().insert_axis(Axis(0)).view()).unwrap();
        for i in 0..n {
            for j in 0..k {
                let c = targets.classes()[[i, j]];
                let diff = fx[[i, c]] - fb[[0, c]];
                prop_assert!(close(delta[[i, j]], (scale - 1.0) * diff, 1e-4), "delta {} vs {}", delta[[i, j]], (scale - 1.0) * diff);
            }
        }
    }

    /// The reported delta is the completeness error, computed independently; with
    /// Gauss-Legendre and 50 steps it is small on a smooth model.
    #[test]
    fn ig_completeness_holds_to_the_reported_delta(seed in 0u64..1000, method in 0usize..5) {
        let model = Smooth { shape: vec![6], w: matrix(6, 3, seed), s: vec![1.0, -2.0, 0.5] };
        let x = array(&[2, 6], seed + 7, -1.0, 1.0);
        let targets = ClassTargets::one_per_input(vec![0, 2]);
        let method = METHODS[method];
        let params = IntegratedGradientsParams::new().method(method).internal_batch_size(13).check().unwrap();
        let a = IntegratedGradients::new(&model, params).attribute(x.view(), &targets, &Baseline::Value(0.1)).unwrap();
        let fx = model.predict(x.view()).unwrap();
        let fb = model.predict(ArrayD::from_elem(IxDyn(&[1, 6]), 0.1f32).view()).unwrap();
        let delta = a.delta.clone().unwrap();
        for i in 0..2 {
            let c = targets.classes()[[i, 0]];
            let sum: f32 = a.get(i, 0).sum();
            let error = sum - (fx[[i, c]] - fb[[0, c]]);
            prop_assert!((error - delta[[i, 0]]).abs() < 1e-5, "{} vs {}", error, delta[[i, 0]]);
            if method == IntegrationMethod::GaussLegendre {
                prop_assert!(delta[[i, 0]].abs() < 1e-4 * (1.0 + (fx[[i, c]] - fb[[0, c]]).abs()), "GL delta {}", delta[[i, 0]]);
            }
        }
    }

    /// Occlusion of a linear model: the occluded difference of a window is `Σ_{e ∈ window}
    /// W_ec (x_e − b_e)`; an element gets the mean over the windows that cover it. The windows
    /// are enumerated here independently: positions `0, s, 2s, …` up to the first that reaches
    /// the border.
    #[test]
    fn occlusion_of_a_linear_model_by_hand(
        seed in 0u64..1000,
        wh in 1usize..4, ww in 1usize..5,
        sh in 1usize..4, sw in 1usize..5,
        ppe in 1usize..6,
    ) {
        let (h, w) = (5usize, 6usize);
        let (sh, sw) = (sh.min(wh), sw.min(ww));
        let model = Linear { shape: vec![1, h, w], w: matrix(h * w, 2, seed), c: vec![0.0, 1.0] };
        let x = array(&[2, 1, h, w], seed + 3, -1.0, 1.0);
        let base = 0.3f32;
        let targets = ClassTargets::one_per_input(vec![1, 0]);
        let occ = Occlusion::new(&model, OcclusionParams::new(vec![1, wh, ww]).strides(vec![1, sh, sw]).perturbations_per_eval(ppe).check().unwrap()).unwrap();
        let a = occ.attribute(x.view(), &targets, &Baseline::Value(base)).unwrap();
        let positions = |d: usize, win: usize, s: usize| {
            let mut p = vec![];
            let mut at = 0;
            loop { p.push(at); if at + win >= d { break; } at += s; }
            p
        };
        for i in 0..2 {
            let c = targets.classes()[[i, 0]];
            let mut total = vec![0.0f64; h * w];
            let mut count = vec![0usize; h * w];
            for &py in &positions(h, wh, sh) {
                for &px in &positions(w, ww, sw) {
                    let cells: Vec<usize> = (py..(py + wh).min(h)).flat_map(|y| (px..(px + ww).min(w)).map(move |z| y * w + z)).collect();
                    let diff: f64 = cells.iter().map(|&e| model.w[[e, c]] as f64 * (x[[i, 0, e / w, e % w]] - base) as f64).sum();
                    for &e in &cells { total[e] += diff; count[e] += 1; }
                }
            }
            for e in 0..h * w {
                let expected = (total[e] / count[e] as f64) as f32;
                let got = a.values[[i, 0, 0, e / w, e % w]];
                prop_assert!(close(got, expected, 1e-4), "{} {}: {} vs {}", i, e, got, expected);
            }
        }
    }
}

/// Grad-CAM of `A = M x` (1x1 convolution), `f_c = Σ V_c ∘ A`: the gradient with respect to
/// `A` is `V_c`, so `L = ReLU(Σ_k mean(V_c[k]) A_k)`; upsampling is the identity here.
#[test]
fn grad_cam_of_a_one_layer_model_by_hand() {
    let model = OneLayer {
        shape: vec![2, 4, 3],
        m: matrix(3, 2, 5),
        v: array(&[4, 3, 4, 3], 6, -1.0, 1.0),
    };
    let x = array(&[2, 2, 4, 3], 7, -1.0, 1.0);
    let targets = ClassTargets::per_input(vec![vec![0, 3], vec![2, 1]]).unwrap();
    for relu in [true, false] {
        let cam = GradCam::new(
            &model,
            GradCamParams::new("A")
                .relu_attributions(relu)
                .batch_size(3)
                .check()
                .unwrap(),
        )
        .attribute(x.view(), &targets)
        .unwrap();
        let a = model.activation(&x.view());
        assert_eq!(cam.layer_map.shape(), &[2, 2, 4, 3]);
        let mut positive = 0;
        for i in 0..2 {
            for j in 0..2 {
                let c = targets.classes()[[i, j]];
                // ∂f_c/∂A = V_c.
                let (s, expected) = cam_by_hand(
                    a.index_axis(Axis(0), i),
                    model.v.index_axis(Axis(0), c),
                    relu,
                );
                positive += s.iter().filter(|v| **v > 0.0).count();
                let got = cam.layer_map.index_axis(Axis(0), i);
                let got = got.index_axis(Axis(0), j);
                for (g, e) in got.iter().zip(expected.iter()) {
                    assert!(close(*g, *e, 1e-5), "{g} != {e}");
                }
            }
        }
        // The maps are not trivially zero or all clipped.
        assert!(positive > 0 && positive < 2 * 2 * 12);
        assert_eq!(cam.upsampled.unwrap(), cam.layer_map);
    }
    let err = GradCam::new(&model, GradCamParams::new("B").check().unwrap())
        .attribute(x.view(), &ClassTargets::one_per_input(vec![0, 0]))
        .unwrap_err();
    assert!(
        err.to_string().contains("`B`") && err.to_string().contains("A"),
        "{err}"
    );
}

/// Grad-CAM by hand from one sample's activation `a` and gradient `g` (`[K, ..spatial]`):
/// `α_k = mean(g_k)`, `s = Σ_k α_k a_k`; returns `(s, ReLU(s) or s)`.
fn cam_by_hand(
    a: ndarray::ArrayViewD<'_, f32>,
    g: ndarray::ArrayViewD<'_, f32>,
    relu: bool,
) -> (ArrayD<f32>, ArrayD<f32>) {
    let mut s = ArrayD::<f32>::zeros(IxDyn(&a.shape()[1..]));
    for k in 0..a.shape()[0] {
        let alpha = g.index_axis(Axis(0), k).mean().unwrap();
        s.scaled_add(alpha, &a.index_axis(Axis(0), k));
    }
    let cam = if relu {
        s.mapv(|v| v.max(0.0))
    } else {
        s.clone()
    };
    (s, cam)
}

/// Grad-CAM of an `xai_models::Network` (`conv` 3x3 → `relu` → `pool` 2x2 → `flatten` →
/// `fc`, logits) on its pooling layer, by hand: the activation from a hand-written
/// convolution, ReLU and max pooling, the gradient of logit `c` with respect to it the dense
/// layer's column `c` read in the network's (NHWC) flatten order, the map upsampled from 3x2
/// to the input's 8x6 by PyTorch's nearest index `⌊d · in/out⌋`.
#[test]
fn grad_cam_of_a_network_by_hand() {
    use xai_models::{Conv2d, Dense, Layer, MaxPool2d, NamedLayer, Network, Padding};
    let (ci, co, h, w, classes) = (2usize, 3usize, 8usize, 6usize, 4usize);
    let (ph, pw) = ((h - 2) / 2, (w - 2) / 2);
    // Weights [kh, kw, in, out], dense [in, out] with `in` in NHWC order (y, x, channel).
    let kw = array(&[3, 3, ci, co], 21, -1.0, 1.0);
    let kb = array(&[co], 22, -0.3, 0.3);
    let dw = array(&[ph, pw, co, classes], 23, -1.0, 1.0);
    let named = |name: &str, layer: Layer| NamedLayer {
        name: name.into(),
        layer,
    };
    let net = Network::new(
        "cam",
        [ci, h, w],
        vec![
            named(
                "conv",
                Layer::Conv2d(Conv2d {
                    in_channels: ci,
                    out_channels: co,
                    kernel: (3, 3),
                    stride: (1, 1),
                    padding: Padding::Valid,
                    weight: kw.iter().copied().collect(),
                    bias: kb.iter().copied().collect(),
                }),
            ),
            named("relu", Layer::Relu),
            named("pool", Layer::MaxPool2d(MaxPool2d::new(2, Padding::Valid))),
            named("flatten", Layer::Flatten),
            named(
                "fc",
                Layer::Dense(Dense {
                    in_features: ph * pw * co,
                    out_features: classes,
                    weight: dw.iter().copied().collect(),
                    bias: vec![0.1; classes],
                }),
            ),
        ],
    )
    .unwrap();
    let x = array(&[3, ci, h, w], 24, -1.0, 1.0);
    let targets = ClassTargets::per_input(vec![vec![0, 3], vec![2, 1], vec![1, 1]]).unwrap();
    // The pooled activation by hand, [n, co, ph, pw].
    let conv_relu = |i: usize, o: usize, y: usize, z: usize| {
        let mut v = kb[[o]];
        for dy in 0..3 {
            for dz in 0..3 {
                for c in 0..ci {
                    v += kw[[dy, dz, c, o]] * x[[i, c, y + dy, z + dz]];
                }
            }
        }
        v.max(0.0)
    };
    let mut a = ArrayD::<f32>::zeros(IxDyn(&[3, co, ph, pw]));
    for ((i, o, y, z), v) in a
        .view_mut()
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap()
        .indexed_iter_mut()
    {
        *v = (0..2)
            .flat_map(|dy| (0..2).map(move |dz| (dy, dz)))
            .map(|(dy, dz)| conv_relu(i, o, 2 * y + dy, 2 * z + dz))
            .fold(f32::NEG_INFINITY, f32::max);
    }
    let nearest = |d: usize, input: usize, output: usize| {
        (((d as f32) * (input as f32 / output as f32)).floor() as usize).min(input - 1)
    };
    for relu in [true, false] {
        let cam = GradCam::new(
            &net,
            GradCamParams::new("pool")
                .relu_attributions(relu)
                .batch_size(4)
                .check()
                .unwrap(),
        )
        .attribute(x.view(), &targets)
        .unwrap();
        assert_eq!(cam.layer_map.shape(), &[3, 2, ph, pw]);
        let up = cam.upsampled.as_ref().unwrap();
        assert_eq!(up.shape(), &[3, 2, h, w]);
        let (mut positive, mut negative) = (0, 0);
        for i in 0..3 {
            for j in 0..2 {
                let c = targets.classes()[[i, j]];
                // ∂f_c/∂A[o, y, z] = fc.weight[(y, z, o), c].
                let g = ArrayD::from_shape_fn(IxDyn(&[co, ph, pw]), |p| dw[[p[1], p[2], p[0], c]]);
                let (s, expected) = cam_by_hand(a.index_axis(Axis(0), i), g.view(), relu);
                positive += s.iter().filter(|v| **v > 0.0).count();
                negative += s.iter().filter(|v| **v < 0.0).count();
                for y in 0..h {
                    for z in 0..w {
                        let (sy, sz) = (nearest(y, ph, h), nearest(z, pw, w));
                        let e = expected[[sy, sz]];
                        assert!(close(cam.layer_map[[i, j, sy, sz]], e, 1e-5));
                        assert!(
                            close(up[[i, j, y, z]], e, 1e-5),
                            "{i} {j} {y} {z}: {} != {e}",
                            up[[i, j, y, z]]
                        );
                    }
                }
            }
        }
        // Neither all clipped nor all kept: the ReLU matters.
        assert!(positive > 0 && negative > 0, "{positive} {negative}");
    }
    // An unknown layer: the network's typed error, naming its layers.
    let err = GradCam::new(&net, GradCamParams::new("conv9").check().unwrap())
        .attribute(x.view(), &ClassTargets::one_per_input(vec![0, 0, 0]))
        .unwrap_err();
    assert!(
        err.to_string().contains("`conv9`") && err.to_string().contains("conv, relu, pool"),
        "{err}"
    );
}

/// Riemann rules converge as the steps grow (right rule: O(1/n)).
#[test]
fn delta_shrinks_with_more_steps() {
    let model = Smooth {
        shape: vec![6],
        w: matrix(6, 3, 11),
        s: vec![1.0, -2.0, 0.5],
    };
    let x = array(&[1, 6], 12, -1.0, 1.0);
    let targets = ClassTargets::one_per_input(vec![1]);
    let delta = |steps: usize| {
        let p = IntegratedGradientsParams::new()
            .method(IntegrationMethod::RiemannRight)
            .n_steps(steps)
            .check()
            .unwrap();
        IntegratedGradients::new(&model, p)
            .attribute(x.view(), &targets, &Baseline::Zero)
            .unwrap()
            .delta
            .unwrap()[[0, 0]]
        .abs()
    };
    let (d4, d64, d512) = (delta(4), delta(64), delta(512));
    assert!(d4 > 1e-3, "{d4}");
    assert!(d64 < d4 / 8.0 && d512 < d64 / 4.0, "{d4} {d64} {d512}");
}

/// NoiseTunnel and GradientSHAP draw the same noise whatever the thread count and batch
/// sizes; another seed draws other noise.
#[test]
fn seeded_methods_are_reproducible_across_thread_counts() {
    let model = Smooth {
        shape: vec![2, 3, 3],
        w: matrix(18, 3, 21),
        s: vec![1.0, -2.0, 0.5],
    };
    let x = array(&[3, 2, 3, 3], 22, -1.0, 1.0);
    let background = array(&[5, 2, 3, 3], 23, -1.0, 1.0);
    let targets = ClassTargets::per_input(vec![vec![0, 1], vec![2, 0], vec![1, 1]]).unwrap();
    let run = |threads: usize, batch: usize, seed: u64| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let nt = NoiseTunnel::new(
                &model,
                NoiseTunnelBase::Saliency(SaliencyParams::new().batch_size(batch).check().unwrap()),
                NoiseTunnelParams::new()
                    .nt_type(NoiseTunnelType::Vargrad)
                    .nt_samples(7)
                    .stdevs(0.3)
                    .nt_samples_batch_size(Some(batch))
                    .seed(seed)
                    .check()
                    .unwrap(),
            )
            .attribute(x.view(), &targets)
            .unwrap();
            let gs = GradientShap::new(
                &model,
                GradientShapParams::new()
                    .n_samples(6)
                    .stdevs(0.1)
                    .internal_batch_size(batch)
                    .seed(seed)
                    .return_convergence_delta(true)
                    .check()
                    .unwrap(),
            )
            .attribute(x.view(), &targets, background.view())
            .unwrap();
            (nt, gs)
        })
    };
    let (nt1, gs1) = run(1, 2, 9);
    let (nt2, gs2) = run(2, 5, 9);
    assert_eq!(nt1, nt2);
    assert_eq!(gs1, gs2);
    let (nt3, gs3) = run(2, 5, 10);
    assert_ne!(nt1.values, nt3.values);
    assert_ne!(gs1.values, gs3.values);
    // GradientSHAP is an average of (x − b) ∘ gradient: each sample's delta is reported.
    assert_eq!(gs1.delta.unwrap().shape(), &[3, 2, 6]);
}

/// With zero noise, SmoothGrad is the method itself, and VarGrad is zero.
#[test]
fn noise_free_tunnel_is_the_base_method() {
    let model = Smooth {
        shape: vec![4],
        w: matrix(4, 2, 31),
        s: vec![1.0, -1.0],
    };
    let x = array(&[2, 4], 32, -1.0, 1.0);
    let targets = ClassTargets::one_per_input(vec![0, 1]);
    let ig = IntegratedGradientsParams::new()
        .n_steps(10)
        .check()
        .unwrap();
    let plain = IntegratedGradients::new(&model, ig.clone())
        .attribute(x.view(), &targets, &Baseline::Zero)
        .unwrap();
    let tunnel = |t: NoiseTunnelType| {
        NoiseTunnel::new(
            &model,
            NoiseTunnelBase::IntegratedGradients(ig.clone(), Baseline::Zero),
            NoiseTunnelParams::new()
                .nt_type(t)
                .nt_samples(3)
                .stdevs(0.0)
                .check()
                .unwrap(),
        )
        .attribute(x.view(), &targets)
        .unwrap()
    };
    let sg = tunnel(NoiseTunnelType::Smoothgrad);
    for (a, b) in sg.values.iter().zip(plain.values.iter()) {
        assert!(close(*a, *b, 1e-6));
    }
    let delta = sg.delta.unwrap();
    assert_eq!(delta.shape(), &[2, 1, 3]);
    assert!(close(delta[[0, 0, 2]], plain.delta.unwrap()[[0, 0]], 1e-5));
    assert!(tunnel(NoiseTunnelType::Vargrad)
        .values
        .iter()
        .all(|v| v.abs() < 1e-6));
}
