//! Shared fixtures: a small bar-image classifier and autoencoder, trained once per test binary.

#![allow(dead_code)]

use std::sync::OnceLock;

use ndarray::{Array4, ArrayD, Axis};
use xai_cem::{CemData, Mode};
use xai_core::Predictor;
use xai_testkit::cem_toy::{self as toy, TwoLayerNet};

pub const SIDE: usize = 8;

pub struct Fixture {
    pub model: TwoLayerNet,
    pub autoencoder: TwoLayerNet,
    pub train: Array4<f32>,
    pub test: Array4<f32>,
    pub test_labels: Vec<usize>,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (model, train, _) = toy::trained_bar_classifier(SIDE, 12, 7).unwrap();
        let autoencoder = toy::trained_autoencoder(&train, 16, 11).unwrap();
        let (test, test_labels) = toy::bar_images(2, SIDE, 0.1, 2024);
        Fixture {
            model,
            autoencoder,
            train,
            test,
            test_labels,
        }
    })
}

/// Test images whose label is one of `classes` (and which the model classifies correctly).
pub fn images_of(classes: &[usize]) -> ArrayD<f32> {
    let f = fixture();
    let pred = xai_core::argmax_rows(f.model.predict(f.test.view().into_dyn()).unwrap().view());
    let idx: Vec<usize> = (0..f.test_labels.len())
        .filter(|&i| classes.contains(&f.test_labels[i]) && pred[i] == f.test_labels[i])
        .collect();
    assert!(!idx.is_empty());
    f.test.select(Axis(0), &idx).into_dyn()
}

/// Checks the invariants of a found PN / PP: the class condition (also on a fresh prediction),
/// the feature range, and "PN only adds / PP only keeps" relative to `no_info`.
pub fn assert_pertinent_invariants(
    data: &CemData,
    model: &dyn Predictor,
    range: (f32, f32),
    no_info: &[f32],
) {
    let p = data.pertinent.as_ref().expect("a PN/PP was found");
    let fresh = xai_core::argmax_rows(model.predict(p.instance.view()).unwrap().view())[0];
    assert_eq!(fresh, p.pred, "stored prediction differs from a fresh one");
    match data.mode {
        Mode::PertinentNegative => {
            assert_ne!(p.pred, data.x_pred, "a PN must change the class");
            assert!(data.pp().is_none() && data.pn().is_some());
        }
        Mode::PertinentPositive => {
            assert_eq!(p.pred, data.x_pred, "a PP must keep the class");
            assert!(data.pn().is_none() && data.pp().is_some());
        }
    }
    let x0 = data.x.as_slice().unwrap();
    let z = p.instance.as_slice().unwrap();
    for j in 0..z.len() {
        assert!(
            z[j] >= range.0 && z[j] <= range.1,
            "feature {j} = {} outside {range:?}",
            z[j]
        );
        let dz = (z[j] - no_info[j]).abs();
        let dx = (x0[j] - no_info[j]).abs();
        match data.mode {
            // Only additions: every feature at least as far from no-info as the original.
            Mode::PertinentNegative => assert!(
                dz >= dx,
                "PN removes at feature {j}: {} vs x {}",
                z[j],
                x0[j]
            ),
            // Only a part: between (clipped) no-info and the original value.
            Mode::PertinentPositive => {
                let empty = no_info[j].clamp(range.0, range.1);
                let (lo, hi) = (empty.min(x0[j]), empty.max(x0[j]));
                assert!(
                    z[j] >= lo && z[j] <= hi,
                    "PP adds at feature {j}: {} not in [{lo}, {hi}]",
                    z[j]
                );
            }
        }
    }
}
