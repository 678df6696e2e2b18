//! End-to-end: PN and PP on a small trained classifier of synthetic bar images, white-box and
//! black-box, with and without an autoencoder; the c-search schedule; early stop; the quality
//! report; serialisation.

mod common;

use common::{assert_pertinent_invariants, fixture, images_of, SIDE};
use ndarray::Axis;
use xai_cem::{Cem, CemParams, EarlyStop, Mode};
use xai_core::{FnPredictor, Predictor};
use xai_testkit::cem_quality::evaluate_quality;

const RANGE: (f32, f32) = (-0.5, 0.5);

fn params(mode: Mode) -> CemParams {
    // The seed's settings with a smaller budget and alibi's default c_init (the toy classifier
    // is very confident, so the attack term needs a large weight).
    CemParams::alibi_mnist_example(mode)
        .gamma(0.0)
        .c_init(10.0)
        .c_steps(6)
        .max_iterations(300)
}

#[test]
fn white_box_pn_for_bars_adds_the_missing_stroke() {
    let f = fixture();
    let xs = images_of(&[0, 1]);
    let cem = Cem::white_box(params(Mode::PertinentNegative).check().unwrap(), &f.model).unwrap();
    let out = cem.explain_batch(xs.view(), None).unwrap();
    assert_eq!(out.len(), xs.len_of(Axis(0)));
    let no_info = vec![-1.0f32; SIDE * SIDE];
    for e in &out {
        assert!(e.data.found(), "{}", e.data.summary());
        assert_pertinent_invariants(&e.data, &f.model, RANGE, &no_info);
        // A bar plus a stroke is a cross (class 2).
        assert_eq!(e.data.pn_pred(), Some(2), "{}", e.data.summary());
        assert_eq!(e.data.c_steps.len(), 6);
        assert_eq!(e.meta.name, "CEM");
        assert_eq!(e.meta.params["mode"], "PN");
        assert_eq!(e.meta.params["white_box"], true);
    }
}

#[test]
fn white_box_pp_keeps_part_of_each_input() {
    let f = fixture();
    let xs = images_of(&[0, 1, 2]);
    let cem = Cem::white_box(params(Mode::PertinentPositive).check().unwrap(), &f.model).unwrap();
    let out = cem.explain_batch(xs.view(), None).unwrap();
    let no_info = vec![-1.0f32; SIDE * SIDE];
    for e in &out {
        assert!(e.data.found(), "{}", e.data.summary());
        assert_pertinent_invariants(&e.data, &f.model, RANGE, &no_info);
        assert!(e.data.pp_pred() == Some(e.data.x_pred));
    }
    // A cross needs both strokes: its PP keeps something, and less than the whole input.
    let cross = out.iter().find(|e| e.data.x_pred == 2).unwrap();
    let p = cross.data.pertinent.as_ref().unwrap();
    let whole = xai_cem::objective::elastic_net(
        cross.data.x.as_slice().unwrap(),
        cross.data.anchor.as_slice().unwrap(),
        0.1,
    );
    assert!(
        p.l1 > 0.0 && p.elastic_net < whole,
        "{p:?} vs whole {whole}"
    );
}

#[test]
fn autoencoder_term_keeps_pn_valid_and_is_recorded() {
    let f = fixture();
    let xs = images_of(&[0]);
    let p = params(Mode::PertinentNegative).gamma(1.0).check().unwrap();
    let cem = Cem::white_box(p, &f.model)
        .unwrap()
        .with_autoencoder(&f.autoencoder)
        .unwrap();
    let e = cem.explain(xs.index_axis(Axis(0), 0)).unwrap();
    assert!(e.data.found(), "{}", e.data.summary());
    assert_pertinent_invariants(&e.data, &f.model, RANGE, &[-1.0; SIDE * SIDE]);
    assert_eq!(e.meta.params["has_autoencoder"], true);
    assert!(e
        .data
        .c_steps
        .iter()
        .all(|t| t.final_loss.autoencoder > 0.0));
}

#[test]
fn black_box_finds_pn_and_pp_with_numerical_gradients() {
    let f = fixture();
    let model = &f.model;
    let black_box = FnPredictor::new(model.input_shape().to_vec(), 3, |x| model.predict(x));
    let xs = images_of(&[0, 1])
        .slice_axis(Axis(0), (0..2).into())
        .to_owned();
    let no_info = vec![-1.0f32; SIDE * SIDE];
    for mode in [Mode::PertinentNegative, Mode::PertinentPositive] {
        let cem = Cem::black_box(params(mode).check().unwrap(), &black_box).unwrap();
        for e in cem.explain_batch(xs.view(), None).unwrap() {
            assert!(e.data.found(), "{mode}: {}", e.data.summary());
            assert_pertinent_invariants(&e.data, &black_box, RANGE, &no_info);
            assert_eq!(e.meta.params["white_box"], false);
        }
    }
}

/// The black-box gradient goes to the model in chunks bounded by `black_box_memory`: with room
/// for one `(+eps, -eps)` pair per call, no call holds more than two perturbed inputs (or the
/// two instances), and the explanations are bit-identical to the default's.
#[test]
fn black_box_gradients_in_bounded_chunks_give_the_same_explanations() {
    let f = fixture();
    let model = &f.model;
    let largest = std::sync::atomic::AtomicUsize::new(0);
    let black_box = FnPredictor::new(model.input_shape().to_vec(), 3, |x| {
        largest.fetch_max(x.shape()[0], std::sync::atomic::Ordering::Relaxed);
        model.predict(x)
    });
    let xs = images_of(&[0, 1])
        .slice_axis(Axis(0), (0..2).into())
        .to_owned();
    let p = params(Mode::PertinentNegative)
        .c_steps(1)
        .max_iterations(5)
        .check()
        .unwrap();
    let default = Cem::black_box(p.clone(), &black_box)
        .unwrap()
        .explain_batch(xs.view(), None)
        .unwrap();
    assert!(largest.load(std::sync::atomic::Ordering::Relaxed) > 2);
    largest.store(0, std::sync::atomic::Ordering::Relaxed);
    let bounded = Cem::black_box(p, &black_box)
        .unwrap()
        .black_box_memory(1)
        .explain_batch(xs.view(), None)
        .unwrap();
    assert_eq!(largest.load(std::sync::atomic::Ordering::Relaxed), 2);
    for (a, b) in default.iter().zip(&bounded) {
        assert_eq!(a, b);
    }
}

#[test]
fn explanations_are_bit_identical_across_runs_and_batching() {
    let f = fixture();
    let xs = images_of(&[0, 2]);
    let p = params(Mode::PertinentNegative).c_steps(3).check().unwrap();
    let cem = Cem::white_box(p, &f.model)
        .unwrap()
        .with_autoencoder(&f.autoencoder)
        .unwrap();
    let a = cem.explain_batch(xs.view(), None).unwrap();
    let b = cem.explain_batch(xs.view(), None).unwrap();
    let bits = |e: &xai_core::Explanation<xai_cem::CemData>| -> Vec<u32> {
        let mut v: Vec<u32> = e
            .data
            .c_steps
            .iter()
            .flat_map(|t| t.objective.iter().map(|x| x.to_bits()))
            .collect();
        if let Some(p) = &e.data.pertinent {
            v.extend(p.instance.iter().map(|x| x.to_bits()));
        }
        v
    };
    for (ea, eb) in a.iter().zip(&b) {
        assert_eq!(ea, eb);
        assert_eq!(bits(ea), bits(eb));
    }
    // One instance alone gives the same result as inside the batch (the toy model is row-wise).
    let single = cem.explain(xs.index_axis(Axis(0), 1)).unwrap();
    assert_eq!(bits(&single), bits(&a[1]));
}

#[test]
fn c_search_follows_alibi_schedule() {
    let f = fixture();
    let xs = images_of(&[0, 1, 2]);
    let c_init = 0.5f32;
    let p = params(Mode::PertinentNegative)
        .c_init(c_init)
        .c_steps(7)
        .max_iterations(150)
        .check()
        .unwrap();
    let cem = Cem::white_box(p, &f.model).unwrap();
    for e in cem.explain_batch(xs.view(), None).unwrap() {
        let (mut lb, mut c, mut ub) = (0.0f32, c_init, 1e10f32);
        for t in &e.data.c_steps {
            assert_eq!(t.c, c, "c-step {}", t.c_step);
            assert_eq!(t.found, t.best_elastic_net.is_some());
            assert_eq!(t.iterations, 150);
            assert!(!t.stopped_early);
            assert_eq!(t.objective.len(), 150);
            if t.found {
                ub = ub.min(c);
                if ub < 1e9 {
                    c = (lb + ub) / 2.0;
                }
            } else {
                lb = lb.max(c);
                c = if ub < 1e9 { (lb + ub) / 2.0 } else { c * 10.0 };
            }
        }
        // The overall best is the smallest distance over all successful c-steps.
        let best_step = e
            .data
            .c_steps
            .iter()
            .filter_map(|t| t.best_elastic_net)
            .fold(f64::INFINITY, f64::min);
        match &e.data.pertinent {
            Some(p) => assert_eq!(p.elastic_net, best_step),
            None => assert!(best_step.is_infinite()),
        }
    }
}

#[test]
fn no_pn_within_budget_is_reported_not_invented() {
    let f = fixture();
    let xs = images_of(&[0]);
    let x = xs.index_axis(Axis(0), 0);
    // A feature range that pins every feature to its value: nothing can be added.
    let flat: Vec<f32> = x.iter().copied().collect();
    let p = params(Mode::PertinentNegative)
        .feature_range_per_feature(flat.clone(), flat)
        .c_steps(2)
        .max_iterations(20)
        .check()
        .unwrap();
    let cem = Cem::white_box(p, &f.model).unwrap();
    let e = cem.explain(x.view()).unwrap();
    assert!(!e.data.found());
    assert!(e.data.pn().is_none() && e.data.pn_pred().is_none() && e.data.delta().is_none());
    assert!(
        e.data.summary().starts_with("no PN found"),
        "{}",
        e.data.summary()
    );
    assert!(e.data.c_steps.iter().all(|t| !t.found));
    // A tiny budget with a tiny c also finds nothing, and says so.
    let p = params(Mode::PertinentNegative)
        .c_init(1e-6)
        .c_steps(1)
        .max_iterations(1)
        .check()
        .unwrap();
    let e = Cem::white_box(p, &f.model).unwrap().explain(x).unwrap();
    assert!(e.data.pertinent.is_none());
}

#[test]
fn early_stop_shortens_c_steps_and_still_finds_pn() {
    let f = fixture();
    let xs = images_of(&[1]);
    let stop = EarlyStop {
        patience: 20,
        min_relative_improvement: 1e-3,
    };
    let p = params(Mode::PertinentNegative)
        .max_iterations(1000)
        .early_stop(Some(stop))
        .check()
        .unwrap();
    let cem = Cem::white_box(p, &f.model).unwrap();
    let e = cem.explain(xs.index_axis(Axis(0), 0)).unwrap();
    assert!(e.data.found(), "{}", e.data.summary());
    assert_pertinent_invariants(&e.data, &f.model, RANGE, &[-1.0; SIDE * SIDE]);
    assert!(e
        .data
        .c_steps
        .iter()
        .any(|t| t.stopped_early && t.iterations < 1000));
    for t in &e.data.c_steps {
        assert_eq!(
            t.objective.len(),
            t.iterations + usize::from(t.stopped_early)
        );
    }
}

#[test]
fn fit_sets_per_feature_median_and_pn_adds_relative_to_it() {
    let f = fixture();
    let p = params(Mode::PertinentNegative).c_steps(4).check().unwrap();
    let mut cem = Cem::white_box(p, &f.model).unwrap();
    cem.fit(f.train.view().into_dyn()).unwrap();
    let no_info = cem.no_info_values().unwrap().to_vec();
    // Median of feature 0 computed by hand.
    let mut col: Vec<f32> = f
        .train
        .index_axis(Axis(1), 0)
        .index_axis(Axis(1), 0)
        .index_axis(Axis(1), 0)
        .to_vec();
    col.sort_by(f32::total_cmp);
    let n = col.len();
    let expected = if n % 2 == 1 {
        col[n / 2]
    } else {
        (col[n / 2 - 1] + col[n / 2]) / 2.0
    };
    assert!((no_info[0] - expected).abs() < 1e-6);
    let xs = images_of(&[0]);
    let e = cem.explain(xs.index_axis(Axis(0), 0)).unwrap();
    assert_eq!(e.meta.params["no_info_source"]["fit"], "median");
    if e.data.found() {
        assert_pertinent_invariants(&e.data, &f.model, RANGE, &no_info);
    }
}

#[test]
fn quality_report_counts_and_averages() {
    let f = fixture();
    let xs = images_of(&[0, 1]);
    let n = xs.len_of(Axis(0));
    let p = params(Mode::PertinentNegative).check().unwrap();
    let cem = Cem::white_box(p, &f.model).unwrap();
    let report = evaluate_quality(&cem, xs.view(), 3).unwrap();
    assert_eq!(report.n_instances, n);
    assert_eq!(report.per_instance.len(), n);
    let found = report
        .per_instance
        .iter()
        .filter(|q| q.pred.is_some())
        .count();
    assert_eq!(report.n_found, found);
    assert!((report.found_rate - found as f64 / n as f64).abs() < 1e-12);
    let l1s: Vec<f64> = report.per_instance.iter().filter_map(|q| q.l1).collect();
    let mean_l1 = l1s.iter().sum::<f64>() / l1s.len() as f64;
    assert!((report.mean_l1.unwrap() - mean_l1).abs() < 1e-9);
    assert!(report.mean_l1.unwrap() > 0.0 && report.mean_l2.unwrap() > 0.0);
    assert!(report.to_string().starts_with("PN: found"), "{report}");
    assert!(evaluate_quality(&cem, xs.view(), 0).is_err());
}

#[test]
fn explanation_serialises_and_saves_arrays() {
    let f = fixture();
    let xs = images_of(&[1]);
    let p = params(Mode::PertinentNegative).c_steps(3).check().unwrap();
    let cem = Cem::white_box(p, &f.model).unwrap();
    let e = cem.explain(xs.index_axis(Axis(0), 0)).unwrap();
    let json = e.to_json().unwrap();
    assert!(json.contains("\"X_pred\"") && json.contains("\"mode\": \"PN\""));
    let back: xai_core::Explanation<xai_cem::CemData> = serde_json::from_str(&json).unwrap();
    assert_eq!(back.data.x_pred, e.data.x_pred);
    assert_eq!(back.data.pertinent.is_some(), e.data.found());
    let dir = std::env::temp_dir().join(format!("xai-cem-test-{}", std::process::id()));
    let files = e.save_npy(&dir).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"X.npy".to_string()));
    if e.data.found() {
        assert!(
            names.contains(&"PN.npy".to_string()) && names.contains(&"PN_delta.npy".to_string())
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn seed_example_helper_writes_both_modes() {
    let f = fixture();
    let xs = images_of(&[0, 1])
        .slice_axis(Axis(0), (0..2).into())
        .to_owned();
    let dir = std::env::temp_dir().join(format!("xai-cem-demo-{}", std::process::id()));
    let outputs =
        xai_testkit::cem_runs::seed_example(&f.model, Some(&f.autoencoder), xs.view(), &dir, |p| {
            p.gamma(1.0).c_init(10.0).c_steps(4).max_iterations(200)
        })
        .unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0].quality.mode, Mode::PertinentNegative);
    assert_eq!(outputs[1].quality.mode, Mode::PertinentPositive);
    for out in &outputs {
        assert_eq!(out.explanations.len(), 2);
        assert!(out.files.iter().all(|p| p.exists()), "{:?}", out.files);
        assert_eq!(out.quality.n_instances, 2);
    }
    assert!(dir.join("PN_0").join("explanation.json").exists());
    let summary = std::fs::read_to_string(dir.join("PP_summary.txt")).unwrap();
    assert!(summary.contains("PP: found"), "{summary}");
    std::fs::remove_dir_all(dir).ok();
}

/// Progress reports climb to `c_steps * max_iterations` without going back, one per iteration
/// unless instances stop early, and the explanations are those of `explain_batch`.
#[test]
fn progress_reports_climb_to_the_whole_search_and_change_nothing() {
    let f = fixture();
    let xs = images_of(&[0, 1]);
    let p = params(Mode::PertinentNegative)
        .c_steps(3)
        .max_iterations(40)
        .check()
        .unwrap();
    let cem = Cem::white_box(p, &f.model).unwrap();
    let mut seen: Vec<xai_cem::Progress> = Vec::new();
    let with = cem
        .explain_batch_with_progress(
            xs.view(),
            None,
            Some(&mut |p: &xai_cem::Progress| seen.push(*p)),
        )
        .unwrap();
    let plain = cem.explain_batch(xs.view(), None).unwrap();
    assert_eq!(
        serde_json::to_string(&with.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap(),
        serde_json::to_string(&plain.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap()
    );
    let last = seen.last().unwrap();
    assert_eq!((last.done(), last.total()), (120, 120));
    assert!(seen.windows(2).all(|w| w[0].done() < w[1].done()));
    // Every step ends with a report of the whole step.
    for step in 0..3 {
        assert!(seen
            .iter()
            .any(|p| p.c_step == step && p.iterations_done == 40));
    }
    let n = xs.len_of(Axis(0));
    assert!(seen.iter().all(|p| p.active_instances <= n));
}
