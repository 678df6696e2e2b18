//! End-to-end on MNIST: the shipped CNN of alibi's CEM example (`cem_cnn`, inputs in
//! [-0.5, 0.5]); pertinent negatives and positives for a handful of test digits, explained in
//! lock-step with a reduced budget. (The autoencoder term is exercised on the toy models in
//! `end_to_end.rs` and on MNIST by `cargo xtask demo cem`.)

mod common;

use common::assert_pertinent_invariants;
use xai_cem::{Cem, CemParams, Mode};
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};

const RANGE: (f32, f32) = (-0.5, 0.5);
const DIGITS: [usize; 4] = [0, 1, 2, 4];

fn digits() -> ndarray::ArrayD<f32> {
    let mnist = Mnist::load_default().expect("MNIST is committed under data/mnist");
    mnist
        .test
        .subset(&DIGITS)
        .unwrap()
        .images_f32(ModelKind::CemCnn.scaling())
        .into_dyn()
}

fn budget(mode: Mode) -> CemParams {
    // The seed's settings without the autoencoder and with a smaller budget. The CNN's outputs
    // are probabilities, saturated for confident digits, so the attack term needs a large `c`:
    // with the seed's c_init = 1, PNs appear only from c = 1e6 on and PPs around c = 1e3
    // (measured with the full 10 x 1000 budget), so the search starts there.
    let c_init = match mode {
        Mode::PertinentNegative => 1e6,
        Mode::PertinentPositive => 1e3,
    };
    CemParams::alibi_mnist_example(mode)
        .gamma(0.0)
        .c_init(c_init)
        .c_steps(3)
        .max_iterations(400)
}

#[test]
fn pn_and_pp_are_found_for_mnist_digits_and_satisfy_their_definitions() {
    let cnn = load_pretrained(ModelKind::CemCnn).expect("shipped weights");
    let xs = digits();
    let no_info = vec![-1.0f32; 784];
    for mode in [Mode::PertinentNegative, Mode::PertinentPositive] {
        let cem = Cem::white_box(budget(mode).check().unwrap(), &cnn).unwrap();
        let out = cem.explain_batch(xs.view(), None).unwrap();
        assert_eq!(out.len(), DIGITS.len());
        let found = out.iter().filter(|e| e.data.found()).count();
        assert!(
            found == DIGITS.len(),
            "{mode:?}: found {found}/{}: {:?}",
            DIGITS.len(),
            out.iter().map(|e| e.data.summary()).collect::<Vec<_>>()
        );
        for e in out.iter().filter(|e| e.data.found()) {
            assert_pertinent_invariants(&e.data, &cnn, RANGE, &no_info);
        }
    }
}
