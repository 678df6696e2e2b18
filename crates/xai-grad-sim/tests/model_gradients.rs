//! The test model's per-sample gradients: the batched, factored blocks against the scalar-loop
//! naive gradient and both against central finite differences.

mod common;

use common::*;
use ndarray::{Array2, ArrayViewD, Axis};
use xai_core::{
    DifferentiableModel, GradBlock, Loss, OutputKind, ParamSelection, Predictor, Targets,
};
use xai_testkit::grad_sim_toy::{OutputActivation, TwoLayerMlp, PARAM_GROUPS};

fn instance(x: &ndarray::ArrayD<f32>, i: usize) -> ArrayViewD<'_, f32> {
    x.index_axis(Axis(0), i)
}

/// Mutable access to parameter `k` of the flattened order.
fn param_mut(m: &mut TwoLayerMlp, mut k: usize) -> &mut f32 {
    let sizes = [m.w1.len(), m.b1.len(), m.w2.len(), m.b2.len()];
    for (g, &s) in sizes.iter().enumerate() {
        if k < s {
            return match g {
                0 => m.w1.as_slice_mut().unwrap().get_mut(k).unwrap(),
                1 => m.b1.as_slice_mut().unwrap().get_mut(k).unwrap(),
                2 => m.w2.as_slice_mut().unwrap().get_mut(k).unwrap(),
                _ => m.b2.as_slice_mut().unwrap().get_mut(k).unwrap(),
            };
        }
        k -= s;
    }
    panic!("parameter index out of range")
}

fn loss_of(m: &TwoLayerMlp, x: ArrayViewD<'_, f32>, t: &Targets, loss: &Loss) -> f64 {
    let out = m.predict(x.insert_axis(Axis(0))).unwrap();
    loss.value_and_grad(out.view(), t).unwrap().0[0] as f64
}

fn cases() -> Vec<(TwoLayerMlp, Loss, Targets, Targets)> {
    let probs = Loss::CrossEntropy(OutputKind::Probabilities);
    let logits = Loss::CrossEntropy(OutputKind::Logits);
    let logit_model = TwoLayerMlp::new_random(
        INPUT_SHAPE.to_vec(),
        5,
        N_CLASSES,
        OutputActivation::Identity,
        3,
    )
    .unwrap();
    vec![
        (
            softmax_model(1),
            probs,
            Targets::Classes(vec![2]),
            Targets::Classes(vec![0, 3, 1]),
        ),
        (
            logit_model,
            logits,
            Targets::Classes(vec![1]),
            Targets::Classes(vec![3, 3, 0]),
        ),
        (
            regression_model(2),
            Loss::MeanSquaredError,
            random_values(1, 9),
            random_values(3, 10),
        ),
    ]
}

#[test]
fn factored_blocks_equal_the_naive_gradient() {
    let (x, _) = random_data(3, 5);
    for (model, loss, _, targets) in cases() {
        let grads = model
            .per_sample_grads(x.view(), &targets, &loss, &ParamSelection::All)
            .unwrap();
        assert_eq!(grads.n_params(), model.n_params());
        // Weights factored, biases full.
        let forms: Vec<bool> = grads
            .blocks()
            .iter()
            .map(|b| matches!(b, GradBlock::Outer { .. }))
            .collect();
        assert_eq!(forms, vec![true, false, true, false]);
        let flat = grads.to_flat();
        for i in 0..3 {
            let naive = model
                .naive_flat_gradient(instance(&x, i), &targets.select(&[i]).unwrap(), &loss)
                .unwrap();
            for (k, (a, b)) in flat.row(i).iter().zip(naive.iter()).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{loss:?} sample {i} param {k}: batched {a} vs naive {b}"
                );
            }
        }
    }
}

#[test]
fn naive_gradient_matches_finite_differences() {
    let (x, _) = random_data(2, 6);
    let h = 1e-2f32;
    for (model, loss, target, _) in cases() {
        let xi = instance(&x, 1);
        let analytic = model
            .naive_flat_gradient(xi.view(), &target, &loss)
            .unwrap();
        assert_eq!(analytic.len(), model.n_params());
        let mut max_err = 0.0f64;
        for k in 0..model.n_params() {
            let mut plus = model.clone();
            *param_mut(&mut plus, k) += h;
            let mut minus = model.clone();
            *param_mut(&mut minus, k) -= h;
            let fd = (loss_of(&plus, xi.view(), &target, &loss)
                - loss_of(&minus, xi.view(), &target, &loss))
                / (2.0 * h as f64);
            let err = (fd - analytic[k] as f64).abs() / (1.0 + fd.abs());
            max_err = max_err.max(err);
        }
        // Central differences in f32 with h = 1e-2: O(h^2) truncation plus rounding.
        assert!(max_err < 2e-3, "{loss:?}: max relative error {max_err}");
    }
}

#[test]
fn input_gradient_matches_finite_differences() {
    let (x, _) = random_data(2, 8);
    let model = softmax_model(4);
    let weights =
        Array2::from_shape_fn((2, N_CLASSES), |(i, j)| (i as f32 + 1.0) * (j as f32 - 1.5));
    let grad = model.input_gradient(x.view(), weights.view()).unwrap();
    assert_eq!(grad.shape(), x.shape());
    let objective = |x: &ndarray::ArrayD<f32>| -> f64 {
        let out = model.predict(x.view()).unwrap();
        (&out * &weights).sum() as f64
    };
    let h = 1e-2f32;
    for k in 0..x.len() {
        let mut plus = x.clone();
        plus.as_slice_mut().unwrap()[k] += h;
        let mut minus = x.clone();
        minus.as_slice_mut().unwrap()[k] -= h;
        let fd = (objective(&plus) - objective(&minus)) / (2.0 * h as f64);
        let g = grad.as_slice().unwrap()[k] as f64;
        assert!(
            (fd - g).abs() < 2e-3 * (1.0 + fd.abs()),
            "input {k}: fd {fd} vs {g}"
        );
    }
}

#[test]
fn selection_keeps_the_selected_slices() {
    let (x, labels) = random_data(3, 11);
    let model = softmax_model(5);
    let t = Targets::Classes(labels);
    let loss = ce_probs();
    let all = model
        .per_sample_grads(x.view(), &t, &loss, &ParamSelection::All)
        .unwrap()
        .to_flat();
    let sel = ParamSelection::Groups(vec![PARAM_GROUPS[2].into(), PARAM_GROUPS[3].into()]);
    let part = model.per_sample_grads(x.view(), &t, &loss, &sel).unwrap();
    let offset = model.w1.len() + model.b1.len();
    assert_eq!(part.n_params(), model.n_params() - offset);
    assert_eq!(
        part.to_flat(),
        all.slice(ndarray::s![.., offset..]).to_owned()
    );
    let bad = ParamSelection::Groups(vec!["conv1.weight".into()]);
    assert!(model.per_sample_grads(x.view(), &t, &loss, &bad).is_err());
}
