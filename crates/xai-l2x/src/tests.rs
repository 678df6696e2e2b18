//! Tests across modules: the whole training step against finite differences, typed errors,
//! training on the toy task, determinism, persistence.

use ndarray::{s, Array2, Array4, ArrayViewD};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{FnPredictor, Loss, OutputKind, Predictor, Targets};
use xai_models::{Conv2d, Dense, Layer, NamedLayer, Network, Padding};

use crate::algorithm::step_gradients;
use crate::relaxation::sample_gumbel;
use xai_testkit::l2x_toy as toy;

use crate::{fidelity, BilinearUpsample, L2x, L2xError, L2xNet, L2xParams, Mode, TargetKind};

fn named(name: &str, layer: Layer) -> NamedLayer {
    NamedLayer {
        name: name.into(),
        layer,
    }
}

/// A linear selection model on 8x8 images scoring a 6x6 grid, and a small approximator.
fn small_models(seed: u64) -> (Network, Network) {
    let mut r = StdRng::seed_from_u64(seed);
    let sel = Network::new(
        "sel",
        [1, 8, 8],
        vec![
            named(
                "c1",
                Layer::Conv2d(Conv2d::new(1, 2, (3, 3), (1, 1), Padding::Valid, &mut r)),
            ),
            named(
                "c2",
                Layer::Conv2d(Conv2d::new(2, 1, (1, 1), (1, 1), Padding::Valid, &mut r)),
            ),
        ],
    )
    .unwrap();
    let pred = Network::new(
        "pred",
        [1, 8, 8],
        vec![
            named("flat", Layer::Flatten),
            named("d1", Layer::Dense(Dense::new(64, 6, &mut r))),
            named("tanh_free_relu", Layer::Relu),
            named("d2", Layer::Dense(Dense::new(6, 3, &mut r))),
        ],
    )
    .unwrap();
    (sel, pred)
}

#[test]
fn the_whole_training_step_matches_finite_differences() {
    let (mut sel, mut pred) = small_models(5);
    // Non-zero biases so that no ReLU sits at a kink.
    for p in pred.params_mut() {
        p.iter_mut().for_each(|v| *v += 0.05);
    }
    let mut rng = StdRng::seed_from_u64(11);
    let n = 3;
    let x = Array4::from_shape_simple_fn((n, 1, 8, 8), || rng.gen_range(0.0..1.0f32));
    let mut t = Array2::from_shape_simple_fn((n, 3), || rng.gen_range(0.1..1.0f32));
    for mut row in t.rows_mut() {
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    let targets = Targets::Probabilities(t);
    let up = BilinearUpsample::new((6, 6), (8, 8)).unwrap();
    let loss = Loss::CrossEntropy(OutputKind::Logits);
    let (tau, k) = (0.7, 3);
    let g = sample_gumbel(n, k, 36, &mut rng);
    let mean_loss = |sel: &Network, pred: &Network| -> f64 {
        step_gradients(sel, pred, &up, &loss, tau, &x, &targets, g.view(), None)
            .unwrap()
            .loss_sum
            / n as f64
    };
    let out = step_gradients(&sel, &pred, &up, &loss, tau, &x, &targets, g.view(), None).unwrap();
    let h = 5e-3f32;
    let mut checked = 0;
    // Every selection parameter (the gradient through approximator, product with x,
    // upsampling and relaxation), and the first parameters of each approximator tensor.
    for which in 0..2 {
        let n_groups = if which == 0 {
            sel.params_mut().len()
        } else {
            pred.params_mut().len()
        };
        for gi in 0..n_groups {
            let len = if which == 0 {
                sel.params_mut()[gi].len()
            } else {
                pred.params_mut()[gi].len()
            };
            let take = if which == 0 { len } else { len.min(6) };
            for j in 0..take {
                let bump = |sel: &mut Network, pred: &mut Network, d: f32| {
                    if which == 0 {
                        sel.params_mut()[gi][j] += d;
                    } else {
                        pred.params_mut()[gi][j] += d;
                    }
                };
                bump(&mut sel, &mut pred, h);
                let lp = mean_loss(&sel, &pred);
                bump(&mut sel, &mut pred, -2.0 * h);
                let lm = mean_loss(&sel, &pred);
                bump(&mut sel, &mut pred, h);
                let fd = (lp - lm) / (2.0 * h as f64);
                let a = if which == 0 {
                    out.selection_grads[gi][j]
                } else {
                    out.prediction_grads[gi][j]
                } as f64;
                assert!(
                    (a - fd).abs() <= 2e-3 + 5e-2 * fd.abs(),
                    "{} group {gi} param {j}: analytic {a} vs finite difference {fd}",
                    if which == 0 {
                        "selection"
                    } else {
                        "prediction"
                    }
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 30);
    // The selection gradient is not trivially zero.
    assert!(out.selection_grads.iter().flatten().any(|v| v.abs() > 1e-4));
}

fn quick(k: usize, epochs: usize) -> L2xParams {
    L2xParams::new()
        .k(k)
        .num_epochs(epochs)
        .batch_size(Some(32))
        .progress(false)
}

#[test]
fn invalid_inputs_are_typed_errors() {
    let (x, _) = toy::square_images(8, 16, 0).unwrap();
    let bb = toy::QuadrantClassifier::new(16, 2.0);
    // 16x16 images give a 5x5 grid with the default selection model.
    let err = quick(26, 1)
        .check()
        .unwrap()
        .fit(x.view(), &bb)
        .unwrap_err();
    assert!(
        matches!(
            err,
            L2xError::KTooLarge {
                k: 26,
                n_patches: 25
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("expected 1 <= k <= 25"), "{err}");
    let empty = Array4::<f32>::zeros((0, 1, 16, 16));
    assert!(matches!(
        quick(2, 1).check().unwrap().fit(empty.view(), &bb),
        Err(L2xError::EmptyTrainingData)
    ));
    let other = toy::QuadrantClassifier::new(20, 2.0);
    let err = quick(2, 1)
        .check()
        .unwrap()
        .fit(x.view(), &other)
        .unwrap_err();
    assert!(matches!(err, L2xError::ShapeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("[n, 1, 20, 20]"), "{err}");
    // Logits declared as probabilities.
    let logits = FnPredictor::new(vec![1, 16, 16], 4, |x: ArrayViewD<'_, f32>| {
        Ok(Array2::from_elem((x.shape()[0], 4), 2.0))
    });
    let err = quick(2, 1)
        .check()
        .unwrap()
        .fit(x.view(), &logits)
        .unwrap_err();
    assert!(
        matches!(err, L2xError::NotProbabilities { row: 0, .. }),
        "{err}"
    );
    // A black box with NaN outputs.
    let nan = FnPredictor::new(vec![1, 16, 16], 4, |x: ArrayViewD<'_, f32>| {
        Ok(Array2::from_elem((x.shape()[0], 4), f32::NAN))
    });
    assert!(quick(2, 1).check().unwrap().fit(x.view(), &nan).is_err());
    // A prediction model with the wrong number of outputs.
    let (sel, pred) = small_models(0);
    let (x8, _) = (Array4::<f32>::zeros((4, 1, 8, 8)), ());
    let bb8 = FnPredictor::new(vec![1, 8, 8], 5, |x: ArrayViewD<'_, f32>| {
        Ok(Array2::from_elem((x.shape()[0], 5), 0.2))
    });
    let err = quick(2, 1)
        .check()
        .unwrap()
        .fit_with(x8.view(), &bb8, sel, pred)
        .unwrap_err();
    assert!(matches!(err, L2xError::ShapeMismatch { .. }), "{err}");
}

#[test]
fn custom_models_train_and_regression_mode_works() {
    let mut rng = StdRng::seed_from_u64(2);
    let x = Array4::from_shape_simple_fn((96, 1, 8, 8), || rng.gen_range(0.0..1.0f32));
    // A regression black box: the mean of the top-left 3x3 corner.
    let bb = FnPredictor::new(vec![1, 8, 8], 1, |x: ArrayViewD<'_, f32>| {
        let n = x.shape()[0];
        Ok(Array2::from_shape_fn((n, 1), |(i, _)| {
            x.slice(s![i, 0, 0..3, 0..3]).mean().unwrap_or(0.0)
        }))
    });
    let (sel, mut pred) = small_models(1);
    // One output for regression: rebuild the last layer.
    let mut r = StdRng::seed_from_u64(3);
    let layers = {
        let mut l = pred.layers().to_vec();
        l.pop();
        l.push(named("d2", Layer::Dense(Dense::new(6, 1, &mut r))));
        l
    };
    pred = Network::new("pred", [1, 8, 8], layers).unwrap();
    let l2x = quick(4, 3)
        .mode(Mode::Regression)
        .check()
        .unwrap()
        .fit_with(x.view(), &bb, sel, pred)
        .unwrap();
    let s = l2x.summary();
    assert_eq!(s.epoch_losses.len(), 3);
    assert!(
        s.epoch_losses[2] < s.epoch_losses[0],
        "{:?}",
        s.epoch_losses
    );
    let e = l2x.explain(&bb, x.slice(s![0..5, .., .., ..])).unwrap();
    assert!(e.data.labels.is_none());
    assert_eq!(e.data.patch_mask.shape(), &[5, 6, 6]);
    assert!(matches!(
        fidelity(&l2x, &bb, x.view(), 4, 0),
        Err(L2xError::RequiresClassification(_))
    ));
}

#[test]
fn training_on_the_toy_task_finds_the_square() {
    let (x, q) = toy::square_images(768, 16, 1).unwrap();
    let bb = toy::QuadrantClassifier::new(16, 2.0);
    let l2x = quick(2, 6)
        .seed(3)
        .check()
        .unwrap()
        .fit(x.view(), &bb)
        .unwrap();
    let s = l2x.summary();
    assert!(
        s.epoch_losses.last() < s.epoch_losses.first(),
        "{:?}",
        s.epoch_losses
    );
    let (test, tq) = toy::square_images(300, 16, 2).unwrap();
    let f = fidelity(&l2x, &bb, test.view(), 2, 7).unwrap();
    eprintln!("toy fidelity: {f:?}, training: {s:?}");
    assert!(f.post_hoc_accuracy >= 0.9, "post-hoc accuracy {f:?}");
    assert!(
        f.post_hoc_accuracy >= f.post_hoc_accuracy_random + 0.2,
        "post-hoc accuracy {f:?}"
    );
    assert!(
        f.black_box_agreement >= f.black_box_agreement_random + 0.2,
        "black-box agreement {f:?}"
    );
    // The explained labels are the black box's, which finds every square.
    let e = l2x.explain(&bb, test.view()).unwrap();
    assert_eq!(e.data.labels.as_ref().unwrap(), &tq);
    assert_eq!(q.len(), 768);
}

#[test]
fn same_seed_same_explainer_and_save_load_round_trip() {
    let (x, _) = toy::square_images(96, 16, 4).unwrap();
    let bb = toy::QuadrantClassifier::new(16, 2.0);
    let params = quick(3, 1)
        .targets(TargetKind::Classes)
        .seed(9)
        .check()
        .unwrap();
    let a = params.fit(x.view(), &bb).unwrap();
    let b = params.fit(x.view(), &bb).unwrap();
    let ea = a.explain(&bb, x.view()).unwrap();
    let eb = b.explain(&bb, x.view()).unwrap();
    assert_eq!(ea.data, eb.data);
    assert_eq!(a.summary().epoch_losses, b.summary().epoch_losses);
    assert_eq!(
        a.sample_importance(x.view(), 1).unwrap(),
        b.sample_importance(x.view(), 1).unwrap()
    );
    let c = quick(3, 1)
        .targets(TargetKind::Classes)
        .seed(10)
        .check()
        .unwrap()
        .fit(x.view(), &bb)
        .unwrap();
    assert_ne!(
        c.explain(&bb, x.view()).unwrap().data.patch_logits,
        ea.data.patch_logits
    );

    let dir = std::env::temp_dir().join(format!("xai-l2x-test-{}", std::process::id()));
    a.save(&dir).unwrap();
    assert!(L2x::exists(&dir));
    let loaded = L2x::load(&dir).unwrap();
    let el = loaded.explain(&bb, x.view()).unwrap();
    assert_eq!(el.data, ea.data);
    assert_eq!(el.meta, ea.meta);
    assert_eq!(loaded.params(), a.params());
    // The explanation serialises, and its arrays export.
    let json = el.to_json().unwrap();
    assert!(
        json.contains("\"tau\": 0.5"),
        "{}",
        &json[..400.min(json.len())]
    );
    let npy = el.save_npy(dir.join("npy")).unwrap();
    assert!(npy.len() >= 8);
    // A black box with other outputs is refused.
    let other = FnPredictor::new(vec![1, 16, 16], 3, |x: ArrayViewD<'_, f32>| {
        Ok(Array2::from_elem((x.shape()[0], 3), 1.0 / 3.0))
    });
    assert!(matches!(
        loaded.explain(&other, x.view()),
        Err(L2xError::ShapeMismatch { .. })
    ));
    let wrong = Array4::<f32>::zeros((2, 1, 12, 12));
    assert!(loaded.explain(&bb, wrong.view()).is_err());
    // Sizes in the configuration that the weight files cannot hold are refused before any
    // network is built (they used to drive terabyte allocations).
    let config = std::fs::read_to_string(dir.join(crate::CONFIG_FILE)).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&config).unwrap();
    for (shape, outputs) in [
        (
            serde_json::json!([1, 16, 16]),
            serde_json::json!(1_000_000_000_000u64),
        ),
        (
            serde_json::json!([1u64 << 40, 16, 16]),
            serde_json::json!(4),
        ),
        (
            serde_json::json!([1, 1u64 << 31, 1u64 << 31]),
            serde_json::json!(4),
        ),
        (serde_json::json!([0, 16, 16]), serde_json::json!(4)),
    ] {
        value["input_shape"] = shape;
        value["n_outputs"] = outputs;
        std::fs::write(dir.join(crate::CONFIG_FILE), value.to_string()).unwrap();
        let e = L2x::load(&dir).expect_err("a corrupt configuration");
        assert!(matches!(e, L2xError::Saved { .. }), "{e}");
    }
    // A corrupted configuration is a typed error.
    std::fs::write(dir.join(crate::CONFIG_FILE), "{}").unwrap();
    assert!(matches!(L2x::load(&dir), Err(L2xError::Saved { .. })));
    std::fs::remove_dir_all(&dir).ok();
    assert!(matches!(L2x::load(&dir), Err(L2xError::Io { .. })));
}

#[test]
fn explanation_parts_are_consistent() {
    let (x, _) = toy::square_images(64, 16, 6).unwrap();
    let bb = toy::QuadrantClassifier::new(16, 2.0);
    let l2x = quick(4, 1).check().unwrap().fit(x.view(), &bb).unwrap();
    let e = l2x.explain(&bb, x.slice(s![0..6, .., .., ..])).unwrap();
    let d = &e.data;
    for i in 0..6 {
        let im = d.image(i).unwrap();
        let pm = d.patch_mask.slice(s![i, .., ..]);
        assert_eq!(pm.iter().filter(|v| **v == 1.0).count(), 4);
        for &p in im.selected_patches {
            assert_eq!(pm.iter().nth(p), Some(&1.0));
        }
        // The pixel mask is the patch mask through the regions.
        for (pix, &r) in l2x.pixel_regions().iter().enumerate() {
            assert_eq!(im.mask.iter().nth(pix), pm.iter().nth(r));
        }
        assert!(im.importance.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(
            im.label,
            Some(xai_core::argmax_rows(d.black_box_outputs.view())[i])
        );
    }
    assert!(d.image(6).is_none());
    let sampled = l2x.sample_importance(x.view(), 3).unwrap();
    assert!(sampled.iter().all(|v| (0.0..=1.0 + 1e-6).contains(v)));
    let empty = Array4::<f32>::zeros((0, 1, 16, 16));
    assert!(l2x.explain(&bb, empty.view()).is_err());
    assert!(bb.predict(x.view().into_dyn()).is_ok());
}
