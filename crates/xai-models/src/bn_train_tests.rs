//! Batch norm in training mode: the batch-statistics forward pass against finite differences
//! (input and parameter gradients, through a conv and through a dense layer, in a chain and in
//! a residual graph), the running-statistics update against a hand computation, invariants of
//! the normalised output and its gradient (proptest), weights with buffers, and `train()`.

use ndarray::{Array2, Array4};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{Loss, OutputKind, Predictor, Targets};

use crate::layers::{Conv2d, Dense, Layer, Padding};
use crate::ops::{BatchNorm, BinaryOp};
use crate::{NamedLayer, Network};

fn named(name: &str, layer: Layer) -> NamedLayer {
    NamedLayer {
        name: name.into(),
        layer,
    }
}

fn random_bn(rng: &mut StdRng, c: usize) -> Layer {
    let mut bn = BatchNorm::new(c);
    bn.gamma = (0..c).map(|_| rng.gen_range(0.5..1.5)).collect();
    bn.beta = (0..c).map(|_| rng.gen_range(-0.3..0.3)).collect();
    // Running statistics far from the batch's, so that a pass that used them would disagree.
    bn.mean = (0..c).map(|_| rng.gen_range(2.0..3.0)).collect();
    bn.var = (0..c).map(|_| rng.gen_range(4.0..5.0)).collect();
    Layer::BatchNorm(bn)
}

fn conv(rng: &mut StdRng, i: usize, o: usize, s: usize) -> Layer {
    let mut c = Conv2d::new(i, o, (3, 3), (s, s), Padding::Same, rng);
    c.bias = (0..o).map(|_| rng.gen_range(-0.2..0.2)).collect();
    Layer::Conv2d(c)
}

/// conv → BN → tanh → flatten → dense → BN (on flat features) → tanh → dense.
fn chain(seed: u64) -> Network {
    let mut r = StdRng::seed_from_u64(seed);
    let layers = vec![
        named("conv", conv(&mut r, 2, 3, 1)),
        named("bn1", random_bn(&mut r, 3)),
        named("tanh1", Layer::Tanh),
        named("flatten", Layer::Flatten),
        named("dense1", Layer::Dense(Dense::new(4 * 4 * 3, 5, &mut r))),
        named("bn2", random_bn(&mut r, 5)),
        named("tanh2", Layer::Tanh),
        named("dense2", Layer::Dense(Dense::new(5, 3, &mut r))),
    ];
    Network::new("bn_chain", [2, 4, 4], layers).unwrap()
}

/// A residual block with batch norm on both paths (the zoo's `resnet_bn` pattern, tiny).
fn graph(seed: u64) -> Network {
    let mut r = StdRng::seed_from_u64(seed);
    let spec: Vec<(NamedLayer, Vec<usize>)> = vec![
        (named("conv1", conv(&mut r, 2, 4, 2)), vec![0]),
        (named("bn1", random_bn(&mut r, 4)), vec![1]),
        (named("tanh1", Layer::Tanh), vec![2]),
        (named("conv2", conv(&mut r, 4, 4, 1)), vec![3]),
        (named("bn2", random_bn(&mut r, 4)), vec![4]),
        (named("proj", conv(&mut r, 2, 4, 2)), vec![0]),
        (named("proj_bn", random_bn(&mut r, 4)), vec![6]),
        (named("add", Layer::Binary(BinaryOp::Add)), vec![5, 7]),
        (named("tanh2", Layer::Tanh), vec![8]),
        (named("gap", Layer::GlobalAvgPool), vec![9]),
        (named("flatten", Layer::Flatten), vec![10]),
        (
            named("fc", Layer::Dense(Dense::new(4, 3, &mut r))),
            vec![11],
        ),
    ];
    let (layers, inputs) = spec.into_iter().unzip();
    Network::graph("bn_graph", [2, 6, 6], layers, inputs).unwrap()
}

/// `Σ w ∘ f(x)` with the training forward pass (batch statistics; no dropout, so the rng is
/// not used), in f64.
fn train_objective(net: &Network, x: &Array4<f32>, w: &Array2<f32>) -> f64 {
    let mut rng = StdRng::seed_from_u64(0);
    let trace = net.forward_trace(x.view(), Some(&mut rng)).unwrap();
    trace
        .output_flat()
        .iter()
        .zip(w)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum()
}

fn close(fd: f64, analytic: f32) -> bool {
    (fd - analytic as f64).abs() <= 2e-2 * (1.0 + fd.abs())
}

/// Input and summed parameter gradients of the training pass against central differences of
/// the training pass (so through the batch mean and variance).
fn check_train_gradients(net: &Network, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let [c, h, w_] = [
        net.input_shape()[0],
        net.input_shape()[1],
        net.input_shape()[2],
    ];
    let n = 4;
    let x = Array4::from_shape_fn((n, c, h, w_), |_| rng.gen_range(-1.0f32..1.0));
    let w = Array2::from_shape_fn((n, net.n_outputs()), |_| rng.gen_range(-1.0f32..1.0));
    let mut trng = StdRng::seed_from_u64(0);
    let trace = net.forward_trace(x.view(), Some(&mut trng)).unwrap();
    let grads = net.backward(&trace, w.view(), true).unwrap();
    // The training pass differs from evaluation (the running statistics are far off).
    let eval = net.forward(x.view()).unwrap();
    let diff: f32 = eval
        .iter()
        .zip(trace.output_flat())
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(diff > 1e-2, "training and evaluation passes agree ({diff})");

    let h_step = 1e-3f32;
    let input = grads.input.as_ref().unwrap();
    let mut bad = Vec::new();
    for idx in 0..x.len() {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp.as_slice_mut().unwrap()[idx] += h_step;
        xm.as_slice_mut().unwrap()[idx] -= h_step;
        let fd =
            (train_objective(net, &xp, &w) - train_objective(net, &xm, &w)) / (2.0 * h_step as f64);
        let a = input.as_slice().unwrap()[idx];
        if !close(fd, a) {
            bad.push((idx, fd, a));
        }
    }
    assert!(bad.is_empty(), "input gradient: {bad:?}");

    let groups = net.param_slices().len();
    assert_eq!(grads.params.len(), groups);
    for g in 0..groups {
        let len = grads.params[g].len();
        for j in (0..len).step_by(len.div_ceil(6).max(1)) {
            let mut plus = net.clone();
            let mut minus = net.clone();
            plus.param_slices_mut()[g][j] += h_step;
            minus.param_slices_mut()[g][j] -= h_step;
            let fd = (train_objective(&plus, &x, &w) - train_objective(&minus, &x, &w))
                / (2.0 * h_step as f64);
            let a = grads.params[g][j];
            assert!(
                close(fd, a),
                "parameter group {g}[{j}]: fd {fd}, analytic {a}"
            );
        }
    }
}

#[test]
fn training_pass_gradients_match_finite_differences_of_the_batch_statistics_in_a_chain() {
    check_train_gradients(&chain(3), 4);
}

#[test]
fn training_pass_gradients_match_finite_differences_of_the_batch_statistics_in_a_graph() {
    check_train_gradients(&graph(5), 6);
}

/// One BN layer over 2 channels, inputs `[2, 2, 1, 2]`.
fn lone_bn() -> Network {
    Network::new(
        "bn",
        [2, 1, 2],
        vec![named("bn", Layer::BatchNorm(BatchNorm::new(2)))],
    )
    .unwrap()
}

fn bn_of(net: &Network) -> &BatchNorm {
    match &net.layers()[0].layer {
        Layer::BatchNorm(b) => b,
        other => panic!("not a batch norm: {other:?}"),
    }
}

#[test]
fn running_statistics_follow_pytorchs_update_computed_by_hand() {
    let mut net = lone_bn();
    // Channel 0 holds 1, 3 (sample 0) and 5, 7 (sample 1): mean 4, biased variance 5,
    // unbiased 20/3. Channel 1 holds 0, 0 and 2, -2: mean 0, biased variance 2, unbiased 8/3.
    let x = Array4::from_shape_vec((2, 2, 1, 2), vec![1.0, 3.0, 0.0, 0.0, 5.0, 7.0, 2.0, -2.0])
        .unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let trace = net.forward_trace(x.view(), Some(&mut rng)).unwrap();
    // The training output is normalised with the batch statistics (NHWC inside: [ch0, ch1] per
    // position).
    let y = trace.output_flat();
    let s0 = (5.0f32 + 1e-5).sqrt();
    let s1 = (2.0f32 + 1e-5).sqrt();
    let expected = [
        -3.0 / s0,
        0.0,
        -1.0 / s0,
        0.0,
        1.0 / s0,
        2.0 / s1,
        3.0 / s0,
        -2.0 / s1,
    ];
    for (a, b) in y.iter().zip(expected) {
        assert!((a - b).abs() < 1e-5, "{y:?} vs {expected:?}");
    }
    assert_eq!(net.update_batch_norm_statistics(&trace, 0.1).unwrap(), 1);
    let bn = bn_of(&net);
    // mean: 0.9 * 0 + 0.1 * [4, 0]; var: 0.9 * 1 + 0.1 * [20/3, 8/3].
    let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-6;
    assert!(close(bn.mean[0], 0.4) && close(bn.mean[1], 0.0), "{bn:?}");
    assert!(
        close(bn.var[0], 0.9 + 2.0 / 3.0) && close(bn.var[1], 0.9 + 0.8 / 3.0),
        "{bn:?}"
    );
    // A second batch: channel 0 all 2 (variance 0), channel 1 holds 1, 2, 3, 4 (mean 2.5,
    // unbiased variance 5/3).
    let x2 =
        Array4::from_shape_vec((2, 2, 1, 2), vec![2.0, 2.0, 1.0, 2.0, 2.0, 2.0, 3.0, 4.0]).unwrap();
    let trace2 = net.forward_trace(x2.view(), Some(&mut rng)).unwrap();
    net.update_batch_norm_statistics(&trace2, 0.1).unwrap();
    let bn = bn_of(&net);
    assert!(close(bn.mean[0], 0.9 * 0.4 + 0.2), "{bn:?}");
    assert!(close(bn.mean[1], 0.25), "{bn:?}");
    assert!(close(bn.var[0], 0.9 * (0.9 + 2.0 / 3.0)), "{bn:?}");
    assert!(
        close(bn.var[1], 0.9 * (0.9 + 0.8 / 3.0) + 0.1 * 5.0 / 3.0),
        "{bn:?}"
    );
    // Evaluation uses the running statistics.
    let (mean, var) = (bn.mean.clone(), bn.var.clone());
    let out = net.predict(x.view().into_dyn()).unwrap();
    // Output order [c, h, w]: out[0] = sample 0, channel 0, position 0.
    let want = (1.0 - mean[0]) / (var[0] + 1e-5).sqrt();
    assert!((out[[0, 0]] - want).abs() < 1e-5, "{out:?} vs {want}");
    // An evaluation trace updates nothing; a bad momentum is an error.
    let eval_trace = net.forward_trace(x.view(), None).unwrap();
    assert_eq!(
        net.update_batch_norm_statistics(&eval_trace, 0.1).unwrap(),
        0
    );
    assert!(net.update_batch_norm_statistics(&trace, 1.5).is_err());
    assert!(lone_bn().couples_samples_in_training());
    assert!(!chain_without_bn().couples_samples_in_training());
}

fn chain_without_bn() -> Network {
    Network::new("plain", [1, 2, 2], vec![named("relu", Layer::Relu)]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A training pass normalises each channel to mean β and variance γ² σ²/(σ² + ε); its input
    /// gradient is orthogonal, per channel, to constant shifts and to `x̂` (the output does not
    /// change when a channel is shifted or, up to ε, scaled).
    #[test]
    fn training_output_is_normalised_and_its_gradient_ignores_shift_and_scale(
        seed in 0u64..1000,
        n in 2usize..5,
        c in 1usize..4,
        scale in 0.1f32..10.0,
        shift in -5.0f32..5.0,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = Network::new(
            "bn",
            [c, 3, 2],
            vec![named("bn", random_bn(&mut rng, c))],
        )
        .unwrap();
        let x = Array4::from_shape_fn((n, c, 3, 2), |_| rng.gen_range(-1.0f32..1.0) * scale + shift);
        let mut trng = StdRng::seed_from_u64(0);
        let trace = net.forward_trace(x.view(), Some(&mut trng)).unwrap();
        let y = trace.output_flat();
        let bn = bn_of(&net).clone();
        let dy: Vec<f32> = (0..y.len()).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        // Gradients come back NCHW; compare per channel.
        let dy_nchw = Array2::from_shape_fn((n, c * 6), |(s, j)| {
            let (ch, p) = (j / 6, j % 6);
            dy[s * c * 6 + p * c + ch]
        });
        let g = net.backward(&trace, dy_nchw.view(), true).unwrap();
        let dx = g.input.unwrap();
        for ch in 0..c {
            let vals: Vec<f64> = y.iter().skip(ch).step_by(c).map(|v| *v as f64).collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / vals.len() as f64;
            let xs: Vec<f64> = x.index_axis(ndarray::Axis(1), ch).iter().map(|v| *v as f64).collect();
            let xm = xs.iter().sum::<f64>() / xs.len() as f64;
            let xv = xs.iter().map(|a| (a - xm).powi(2)).sum::<f64>() / xs.len() as f64;
            let want_v = (bn.gamma[ch] as f64).powi(2) * xv / (xv + bn.eps as f64);
            prop_assert!((m - bn.beta[ch] as f64).abs() < 1e-4, "mean {m} vs beta {}", bn.beta[ch]);
            prop_assert!((v - want_v).abs() < 1e-3 * (1.0 + want_v), "variance {v} vs {want_v}");
            let dxs: Vec<f64> = dx.index_axis(ndarray::Axis(1), ch).iter().map(|v| *v as f64).collect();
            let dys: Vec<f64> = (0..n)
                .flat_map(|s| (0..6).map(move |p| (s, p)))
                .map(|(s, p)| dy_nchw[[s, ch * 6 + p]] as f64)
                .collect();
            let inv = 1.0 / (xv + bn.eps as f64).sqrt();
            let xhat: Vec<f64> = xs.iter().map(|a| (a - xm) * inv).collect();
            let size: f64 = dxs.iter().map(|a| a.abs()).sum::<f64>() + 1e-6;
            let shift_dot: f64 = dxs.iter().sum();
            prop_assert!(shift_dot.abs() < 1e-4 * size, "Σ dx = {shift_dot}");
            // Σ dx x̂ = γ/√(σ² + ε) · Σ dy x̂ · ε/(σ² + ε): zero but for ε.
            let xhat_dot: f64 = dxs.iter().zip(&xhat).map(|(d, h)| d * h).sum();
            let dy_xhat: f64 = dys.iter().zip(&xhat).map(|(d, h)| d * h).sum();
            let want = bn.gamma[ch] as f64 * inv * dy_xhat * bn.eps as f64 / (xv + bn.eps as f64);
            prop_assert!(
                (xhat_dot - want).abs() < 1e-3 * size,
                "Σ dx x̂ = {xhat_dot}, expected {want}"
            );
        }
        // The running statistics move towards the batch's and stay finite and non-negative.
        net.update_batch_norm_statistics(&trace, 0.1).unwrap();
        let after = bn_of(&net);
        prop_assert!(after.var.iter().all(|v| v.is_finite() && *v >= 0.0));
        for ch in 0..c {
            prop_assert!(after.mean[ch] != bn.mean[ch] || shift == 0.0 || bn.mean[ch].is_nan());
        }
    }
}

#[test]
fn running_statistics_are_saved_and_loaded_with_the_weights() {
    let dir = std::env::temp_dir().join(format!("xai_bn_buffers_{}", std::process::id()));
    let mut net = graph(1);
    if let Layer::BatchNorm(bn) = &mut net.layers_mut()[1].layer {
        bn.mean = vec![0.5, -0.5, 1.5, 2.5];
        bn.var = vec![0.25, 1.5, 2.0, 3.0];
    }
    let path = dir.join("net.safetensors");
    crate::save_weights(&net, &path, Default::default()).unwrap();
    let mut fresh = graph(2);
    assert_ne!(fresh, net);
    crate::load_weights(&mut fresh, &path).unwrap();
    assert_eq!(fresh, net, "parameters and running statistics round-trip");
    assert_eq!(net.buffers().len(), 6, "mean and variance of 3 batch norms");
    assert_eq!(net.buffers()[0].0, "bn1.running_mean");
    // A file without the buffers (parameters only) is refused with the missing name.
    let no_bn = Network::new(
        "no_bn",
        [1, 2, 2],
        vec![
            named("flatten", Layer::Flatten),
            named(
                "fc",
                Layer::Dense(Dense::new(4, 2, &mut StdRng::seed_from_u64(0))),
            ),
        ],
    )
    .unwrap();
    let other = dir.join("other.safetensors");
    crate::save_weights(&no_bn, &other, Default::default()).unwrap();
    let mut with_bn = Network::new(
        "with_bn",
        [1, 2, 2],
        vec![
            named("flatten", Layer::Flatten),
            named(
                "fc",
                Layer::Dense(Dense::new(4, 2, &mut StdRng::seed_from_u64(0))),
            ),
            named("bn", Layer::BatchNorm(BatchNorm::new(2))),
        ],
    )
    .unwrap();
    let err = crate::load_weights(&mut with_bn, &other)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bn.weight") || err.contains("bn.running_mean"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn training_with_batch_norm_learns_and_moves_the_running_statistics() {
    // Three classes of 6x6 images told apart by a bright row, on a large offset that batch norm
    // must remove.
    let mut rng = StdRng::seed_from_u64(21);
    let n = 96;
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let mut x = Array4::from_shape_fn((n, 2, 6, 6), |_| 3.0 + rng.gen_range(-0.3f32..0.3));
    for (i, &l) in labels.iter().enumerate() {
        for j in 0..6 {
            x[[i, 0, l * 2, j]] += 1.0;
        }
    }
    let t = Targets::Classes(labels);
    let mut net = graph(7)
        .with_layer(named("softmax", Layer::Softmax))
        .unwrap();
    let before: Vec<f32> = net.buffers().iter().flat_map(|(_, v)| v.to_vec()).collect();
    let config = crate::TrainConfig {
        epochs: 30,
        batch_size: 32,
        learning_rate: 1e-2,
        seed: 3,
        loss: Loss::CrossEntropy(OutputKind::Probabilities),
        progress: false,
    };
    let hist = crate::train(&mut net, x.view(), &t, &config).unwrap();
    assert!(hist.last().unwrap().loss < 0.5 * hist[0].loss, "{hist:?}");
    // Evaluation (running statistics) classifies the training set too.
    let m = crate::evaluate(&net, x.view(), &t, &config.loss).unwrap();
    assert!(m.accuracy.unwrap() > 0.9, "{m:?}");
    let after: Vec<f32> = net.buffers().iter().flat_map(|(_, v)| v.to_vec()).collect();
    assert!(
        before.iter().zip(&after).all(|(a, b)| a != b),
        "every running statistic moved"
    );
}
