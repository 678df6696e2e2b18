//! L2X on real MNIST for the shipped MNISTNet. Heavy (minutes): ignored by default. Run with
//!
//! ```text
//! cargo test -p xai-l2x --release --test mnist -- --ignored --nocapture
//! ```
//!
//! Needs MNIST (`xai_datasets::Mnist::load_default`) and `models/mnist_net.safetensors`
//! (`cargo xtask train mnist_net`). The full measurement (60,000 images, 20 epochs,
//! k = 5, 10, 20) is `cargo run --release -p xai-l2x --example mnist_fidelity`.

use xai_testkit::l2x_mnist::{mnist_fidelity_table, MnistFidelityConfig};

/// The claim of the fidelity table, checked in CI on the shipped explainer (no training): on
/// 500 random test digits, the shipped MNISTNet's L2X selection of k = 10 patches lets the
/// approximator predict the black box's class far more often than 10 random patches do, and
/// the black box itself agrees more often with its prediction on the selection than on random
/// patches. (The table in docs/BENCHMARKS.md: 0.924 vs 0.31 post-hoc accuracy on all 10,000.)
#[test]
fn shipped_l2x_explainer_beats_random_patches_on_mnist() {
    use xai_models::zoo::{load_pretrained, ModelKind};
    let kind = ModelKind::MnistNet;
    let black_box = load_pretrained(kind).expect("models/mnist_net.safetensors");
    let l2x = xai_l2x::L2x::load(xai_l2x::explainer_dir("mnist_net")).expect("shipped explainer");
    let mnist = xai_datasets::Mnist::load_default().expect("MNIST in data/mnist");
    let test = mnist.test.random_subset(500, 1).unwrap();
    let f = xai_l2x::fidelity(
        &l2x,
        &black_box,
        test.images_f32(kind.scaling()).view(),
        10,
        3,
    )
    .unwrap();
    println!("{f:?}");
    assert_eq!(f.n_images, 500);
    assert!(
        f.post_hoc_accuracy > 0.85 && f.post_hoc_accuracy > f.post_hoc_accuracy_random + 0.3,
        "{f:?}"
    );
    assert!(
        f.black_box_agreement > f.black_box_agreement_random + 0.1,
        "{f:?}"
    );
}

#[test]
#[ignore = "trains on real MNIST for minutes; needs the data and the shipped MNISTNet"]
fn l2x_beats_random_patches_on_mnist() {
    let config = MnistFidelityConfig {
        model: xai_models::zoo::ModelKind::MnistNet,
        ks: vec![10],
        train_size: Some(10_000),
        test_size: Some(2_000),
        num_epochs: 5,
        seed: 0,
        explainer_dir: None,
        progress: true,
    };
    let table = mnist_fidelity_table(&config).expect("measurement");
    println!("{table}");
    let f = &table.rows[0].fidelity;
    assert!(
        f.post_hoc_accuracy > f.post_hoc_accuracy_random + 0.1,
        "L2X's selection is no better than random patches: {f:?}"
    );
    assert!(
        f.black_box_agreement > f.black_box_agreement_random,
        "the black box agrees less on L2X's selection than on random patches: {f:?}"
    );
}

#[test]
#[ignore = "trains on real MNIST; needs the data and the shipped MNISTNet"]
fn demo_returns_consistent_images_maps_and_masks() {
    use xai_models::zoo::ModelKind;
    use xai_testkit::l2x_mnist::{mnist_demo, mnist_params, MnistDemoConfig};
    let dir = std::env::temp_dir().join(format!("xai-l2x-demo-{}", std::process::id()));
    let config = MnistDemoConfig {
        model: ModelKind::MnistNet,
        n_images: 5,
        explainer_dir: dir.clone(),
        save_trained: true,
        train_size: Some(2_000),
        params: mnist_params(ModelKind::MnistNet, 10, 0).num_epochs(2),
    };
    let first = mnist_demo(&config).expect("demo (training)");
    assert!(first.trained);
    assert_eq!(first.images.shape(), &[5, 28, 28]);
    assert_eq!(first.importance.shape(), &[5, 28, 28]);
    assert_eq!(first.masks.shape(), &[5, 28, 28]);
    assert_eq!(first.true_labels.len(), 5);
    assert_eq!(first.predictions.len(), 5);
    assert_eq!(first.approximator_predictions.len(), 5);
    for i in 0..5 {
        let kept = first.masks.index_axis(ndarray::Axis(0), i).sum();
        // 10 patches of 2-3 x 2-3 pixels each.
        assert!(
            (40.0..=90.0).contains(&kept),
            "image {i}: {kept} pixels kept"
        );
    }
    // The second call loads what the first saved, and explains identically.
    let second = mnist_demo(&config).expect("demo (loading)");
    assert!(!second.trained);
    assert_eq!(second.explanation.data, first.explanation.data);
    std::fs::remove_dir_all(dir).ok();
}
