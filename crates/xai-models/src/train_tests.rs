//! The training pass on chunks of samples: the same summed gradients as one whole-batch pass
//! (to float tolerance), and the same trained weights bit for bit whatever the number of threads.

use ndarray::{Array2, Array4};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{DifferentiableModel, Loss, OutputKind, Predictor, Targets};

use crate::graph_tests::{mobilenet_like, resnet_like};
use crate::parallel::CHUNK;
use crate::tests::small_net;
use crate::{train, Network, TrainConfig};

fn images(seed: u64, n: usize, shape: [usize; 3]) -> Array4<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array4::from_shape_fn((n, shape[0], shape[1], shape[2]), |_| {
        rng.gen_range(-1.0..1.0)
    })
}

fn classes(n: usize, k: usize) -> Targets {
    Targets::Classes((0..n).map(|i| (i * 7 + 3) % k).collect())
}

fn shape_of(net: &Network) -> [usize; 3] {
    let s = Predictor::input_shape(net);
    [s[0], s[1], s[2]]
}

/// Chunked `forward_trace` + `backward` against the whole-batch pass, on a batch of three
/// chunks; the input gradient against `input_gradient`.
fn check_chunked_gradients(net: &Network, loss: Loss) {
    let n = 2 * CHUNK + 5;
    let x = images(11, n, shape_of(net));
    let t = classes(n, net.n_outputs());
    let out = net.predict(x.view().into_dyn()).unwrap();
    let (_, g) = loss.value_and_grad(out.view(), &t).unwrap();
    let trace = net.forward_trace(x.view(), None).unwrap();
    assert_eq!(trace.n_samples(), n);
    let trace_out = Array2::from_shape_vec((n, net.n_outputs()), trace.output_flat().to_vec());
    let max_out = out
        .iter()
        .zip(trace_out.unwrap().iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_out < 1e-5,
        "trace outputs differ from predict by {max_out}"
    );
    let got = net.backward(&trace, g.view(), true).unwrap();
    let want = net.whole_batch_gradients(x.view(), g.view()).unwrap();
    assert_eq!(got.params.len(), want.len());
    assert_eq!(got.params.len(), net.param_slices().len());
    for (k, (a, b)) in got.params.iter().zip(&want).enumerate() {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "parameter tensor {k} has an all-zero gradient");
        for (u, v) in a.iter().zip(b) {
            assert!(
                (u - v).abs() <= 1e-5 * scale,
                "parameter tensor {k}: chunked {u} vs whole batch {v}"
            );
        }
    }
    let input = got.input.expect("input gradient was asked for");
    let want_input = net.input_gradient(x.view().into_dyn(), g.view()).unwrap();
    assert_eq!(input.shape(), want_input.shape());
    let scale = want_input.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (u, v) in input.iter().zip(want_input.iter()) {
        assert!((u - v).abs() <= 1e-5 * scale, "input gradient {u} vs {v}");
    }
}

#[test]
fn chunked_conv_net_gradients_equal_the_whole_batch_pass() {
    check_chunked_gradients(
        &small_net(3, 2),
        Loss::CrossEntropy(OutputKind::Probabilities),
    );
}

#[test]
fn chunked_graph_gradients_equal_the_whole_batch_pass() {
    check_chunked_gradients(&resnet_like(4), Loss::CrossEntropy(OutputKind::Logits));
    check_chunked_gradients(&mobilenet_like(5), Loss::MeanSquaredError);
}

/// Trains a copy of `net` on rayon pools of 1, 2 and 4 threads; the weights must agree bit for
/// bit and differ from the initial ones.
fn check_training_is_thread_count_independent(net: &Network, loss: Loss) {
    let n = 3 * CHUNK + 9;
    let x = images(21, n, shape_of(net));
    let t = match loss {
        Loss::MeanSquaredError => {
            let mut rng = StdRng::seed_from_u64(22);
            Targets::Values(Array2::from_shape_fn((n, net.n_outputs()), |_| {
                rng.gen_range(-1.0..1.0)
            }))
        }
        _ => classes(n, net.n_outputs()),
    };
    let config = TrainConfig {
        epochs: 2,
        batch_size: 2 * CHUNK + 3,
        learning_rate: 1e-2,
        seed: 7,
        loss,
        progress: false,
    };
    let weights: Vec<Vec<Vec<f32>>> = [1, 2, 4]
        .iter()
        .map(|&threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut net = net.clone();
                train(&mut net, x.view(), &t, &config).unwrap();
                net.param_slices().iter().map(|p| p.to_vec()).collect()
            })
        })
        .collect();
    let initial: Vec<Vec<f32>> = net.param_slices().iter().map(|p| p.to_vec()).collect();
    assert_ne!(weights[0], initial, "training changed no weight");
    for (w, threads) in weights[1..].iter().zip([2, 4]) {
        for (k, (a, b)) in w.iter().zip(&weights[0]).enumerate() {
            let same = a.iter().zip(b).all(|(u, v)| u.to_bits() == v.to_bits());
            assert!(same, "tensor {k}: {threads} threads differ from 1 thread");
        }
    }
}

#[test]
fn training_gives_the_same_weights_on_1_2_and_4_threads() {
    // Dropout after a ReLU and before the head: the masks come from per-chunk generators.
    check_training_is_thread_count_independent(
        &small_net(8, 2),
        Loss::CrossEntropy(OutputKind::Probabilities),
    );
}

#[test]
fn graph_training_gives_the_same_weights_on_1_2_and_4_threads() {
    check_training_is_thread_count_independent(
        &resnet_like(9),
        Loss::CrossEntropy(OutputKind::Logits),
    );
    check_training_is_thread_count_independent(&mobilenet_like(10), Loss::MeanSquaredError);
}

/// `train_gradients` (forward, loss and backward chunk by chunk) against `forward_trace` with
/// the same generator followed by `backward` (mean loss) or, for a softmax network with
/// cross-entropy on probabilities, `backward_below` at the logits.
#[test]
fn train_gradients_equal_forward_trace_then_backward() {
    let cases = [
        (
            small_net(12, 2),
            Loss::CrossEntropy(OutputKind::Probabilities),
            true,
        ),
        (
            resnet_like(13),
            Loss::CrossEntropy(OutputKind::Logits),
            false,
        ),
    ];
    for (net, loss, fused) in cases {
        let n = 2 * CHUNK + 5;
        let x = images(31, n, shape_of(&net));
        let t = classes(n, net.n_outputs());
        let got = net
            .train_gradients(x.view(), &t, &loss, &mut StdRng::seed_from_u64(3))
            .unwrap();
        let trace = net
            .forward_trace(x.view(), Some(&mut StdRng::seed_from_u64(3)))
            .unwrap();
        let k = net.n_outputs();
        let outputs = Array2::from_shape_vec((n, k), trace.output_flat().to_vec()).unwrap();
        assert_eq!(got.outputs, outputs, "same dropout masks, same outputs");
        let (values, g) = loss.value_and_grad(outputs.view(), &t).unwrap();
        assert_eq!(got.losses, values.to_vec());
        let want = if fused {
            let td = t.to_dense(k).unwrap();
            let mut lg = outputs.clone();
            for (mut r, tr) in lg.rows_mut().into_iter().zip(td.rows()) {
                let s = tr.sum();
                r.zip_mut_with(&tr, |p, tv| *p = (*p * s - tv) / n as f32);
            }
            net.backward_below(&trace, 1, lg.view(), false).unwrap()
        } else {
            net.backward(&trace, (g / n as f32).view(), false).unwrap()
        };
        assert_eq!(got.params.len(), want.params.len());
        for (a, b) in got.params.iter().zip(&want.params) {
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0);
            // Layers before a training-mode batch norm get gradients that cancel to ~1e-8 (the
            // normalisation removes the batch mean): an absolute floor for those.
            for (u, v) in a.iter().zip(b) {
                assert!((u - v).abs() <= 1e-5 * scale + 1e-7, "{u} vs {v}");
            }
        }
    }
}
