//! L2X for the shipped MNIST classifiers, by default omnixai's `MNISTNet`
//! ([`xai_models::zoo::ModelKind::MnistNet`], inputs in `[0, 1]`, logits out): training or
//! loading the explainer, the fidelity measurement, and what the demo plots.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array3, Axis};
use serde::{Deserialize, Serialize};
use xai_core::{Explanation, Loss, OutputKind};
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_models::Network;

use xai_l2x::{explainer_dir, L2x};

/// The helpers' result: an L2X, model or MNIST error.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
use xai_l2x::L2xData;
use xai_l2x::L2xParams;
use xai_l2x::{fidelity, FidelityRow, FidelityTable};

/// The parameters for explaining the shipped classifier `model`: omnixai's defaults with `k`,
/// the seed, and the black box's outputs declared as the model produces them (logits for the
/// MNISTNet, probabilities for the softmax CNNs).
pub fn mnist_params(model: ModelKind, k: usize, seed: u64) -> L2xParams {
    let outputs = match model.loss() {
        Loss::CrossEntropy(kind) => kind,
        Loss::MeanSquaredError => OutputKind::Probabilities,
    };
    L2xParams::new().k(k).seed(seed).black_box_outputs(outputs)
}

/// Where the shipped explainer of the MNISTNet lives: `<models_dir>/l2x_mnist_net`.
pub fn default_mnist_explainer_dir() -> PathBuf {
    explainer_dir(ModelKind::MnistNet.name())
}

/// Loads the explainer saved in `dir` if there is one, else trains one with `params` on
/// `train_images` for `black_box` and, if `save`, saves it to `dir`. Returns the explainer and
/// whether it was trained now.
pub fn load_or_train(
    dir: &Path,
    params: &L2xParams,
    train_images: ndarray::ArrayView4<'_, f32>,
    black_box: &Network,
    save: bool,
) -> Result<(L2x, bool)> {
    if L2x::exists(dir) {
        return Ok((L2x::load(dir)?, false));
    }
    let l2x = params.clone().check()?.fit(train_images, black_box)?;
    if save {
        l2x.save(dir)?;
    }
    Ok((l2x, true))
}

/// Settings of [`mnist_fidelity_table`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MnistFidelityConfig {
    /// The explained classifier (shipped weights, its own input scaling).
    pub model: ModelKind,
    /// The values of `k`; one explainer is trained (or loaded) per value.
    pub ks: Vec<usize>,
    /// Training images (a seeded random subset of the 60,000; `None` = all).
    pub train_size: Option<usize>,
    /// Test images (a seeded random subset of the 10,000; `None` = all).
    pub test_size: Option<usize>,
    /// Training epochs (omnixai: 20).
    pub num_epochs: usize,
    /// Seed of the subsets, the explainers and the random baseline.
    pub seed: u64,
    /// If set, explainers are loaded from / saved to `<dir>/k<k>`.
    pub explainer_dir: Option<PathBuf>,
    /// Show progress bars.
    pub progress: bool,
}

impl Default for MnistFidelityConfig {
    /// The MNISTNet, `k ∈ {5, 10, 20}`, all 60,000 training and 10,000 test images, 20 epochs, seed 0, no
    /// saving, progress bars.
    fn default() -> Self {
        Self {
            model: ModelKind::MnistNet,
            ks: vec![5, 10, 20],
            train_size: None,
            test_size: None,
            num_epochs: 20,
            seed: 0,
            explainer_dir: None,
            progress: true,
        }
    }
}

/// The whole fidelity measurement on real MNIST for a shipped classifier (the MNISTNet by
/// default): for each `k`, train
/// (or load) an L2X explainer, then measure post-hoc accuracy and black-box agreement next to
/// random patches on the test images, training time per epoch and explanation time per image.
/// Print the result with `println!("{table}")`.
pub fn mnist_fidelity_table(config: &MnistFidelityConfig) -> Result<FidelityTable> {
    let black_box = load_pretrained(config.model)?;
    let scaling = config.model.scaling();
    let mnist = Mnist::load_default()?;
    let train = match config.train_size {
        Some(n) => mnist.train.random_subset(n, config.seed)?,
        None => mnist.train,
    };
    let test = match config.test_size {
        Some(n) => mnist.test.random_subset(n, config.seed.wrapping_add(1))?,
        None => mnist.test,
    };
    let train_x = train.images_f32(scaling);
    let test_x = test.images_f32(scaling);
    let mut rows = Vec::new();
    for &k in &config.ks {
        let params = mnist_params(config.model, k, config.seed)
            .num_epochs(config.num_epochs)
            .progress(config.progress);
        let (l2x, trained) = match &config.explainer_dir {
            Some(dir) => load_or_train(
                &dir.join(format!("k{k}")),
                &params,
                train_x.view(),
                &black_box,
                true,
            )?,
            None => (params.check()?.fit(train_x.view(), &black_box)?, true),
        };
        let started = Instant::now();
        l2x.explain(&black_box, test_x.view())?;
        let explain_ms = started.elapsed().as_secs_f64() * 1e3 / test_x.len_of(Axis(0)) as f64;
        let q = fidelity(
            &l2x,
            &black_box,
            test_x.view(),
            k,
            config.seed.wrapping_add(3),
        )?;
        let s = l2x.summary();
        rows.push(FidelityRow {
            fidelity: q,
            full_input_accuracy: Some(s.full_input_score),
            seconds_per_epoch: (trained && !s.epoch_seconds.is_empty())
                .then(|| s.epoch_seconds.iter().sum::<f64>() / s.epoch_seconds.len() as f64),
            explain_ms_per_image: Some(explain_ms),
        });
    }
    Ok(FidelityTable { rows })
}

/// Settings of [`mnist_demo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MnistDemoConfig {
    /// The explained classifier (shipped weights).
    pub model: ModelKind,
    /// How many test images to explain (the first ones, as omnixai's `test_imgs[0:5]`).
    pub n_images: usize,
    /// Where the explainer is loaded from, or saved to after training.
    pub explainer_dir: PathBuf,
    /// Save a freshly trained explainer to `explainer_dir`.
    pub save_trained: bool,
    /// Training images if one must be trained (`None` = all 60,000).
    pub train_size: Option<usize>,
    /// Parameters if one must be trained.
    pub params: L2xParams,
}

impl Default for MnistDemoConfig {
    /// The MNISTNet, 5 images, the shipped explainer folder ([`default_mnist_explainer_dir`]),
    /// saving after training, all training images, [`mnist_params`] with `k = 10`, seed 0.
    fn default() -> Self {
        Self {
            model: ModelKind::MnistNet,
            n_images: 5,
            explainer_dir: default_mnist_explainer_dir(),
            save_trained: true,
            train_size: None,
            params: mnist_params(ModelKind::MnistNet, 10, 0),
        }
    }
}

/// Everything the demo plots, per test image.
#[derive(Debug, Clone)]
pub struct MnistDemo {
    /// The images, `[n, 28, 28]`, scaled as the classifier expects (`[0, 1]` for the MNISTNet).
    pub images: Array3<f32>,
    /// Importance heatmaps, `[n, 28, 28]` in `[0, 1]`.
    pub importance: Array3<f32>,
    /// Binary masks of the selected patches, `[n, 28, 28]`.
    pub masks: Array3<f32>,
    /// The images with everything outside the selected patches set to the background value.
    pub selected: Array3<f32>,
    /// True digits.
    pub true_labels: Vec<usize>,
    /// The classifier's predictions (the explained labels).
    pub predictions: Vec<usize>,
    /// The approximator's predictions from the selected patches alone.
    pub approximator_predictions: Vec<usize>,
    /// The full explanation (with `meta`).
    pub explanation: Explanation<L2xData>,
    /// Whether the explainer was trained in this run (else loaded).
    pub trained: bool,
}

/// Loads (or trains, and saves) the L2X explainer of the shipped classifier (the MNISTNet by
/// default) and explains the first `n_images` test images: what `cargo xtask demo l2x` plots.
pub fn mnist_demo(config: &MnistDemoConfig) -> Result<MnistDemo> {
    let black_box = load_pretrained(config.model)?;
    let scaling = config.model.scaling();
    let mnist = Mnist::load_default()?;
    let (l2x, trained) = if L2x::exists(&config.explainer_dir) {
        (L2x::load(&config.explainer_dir)?, false)
    } else {
        let train = match config.train_size {
            Some(n) => mnist
                .train
                .random_subset(n, config.params.clone().check()?.seed())?,
            None => mnist.train.clone(),
        };
        let x = train.images_f32(scaling);
        load_or_train(
            &config.explainer_dir,
            &config.params,
            x.view(),
            &black_box,
            config.save_trained,
        )?
    };
    let test = mnist.test.head(config.n_images);
    let x = test.images_f32(scaling);
    let explanation = l2x.explain(&black_box, x.view())?;
    let d = &explanation.data;
    let images = x.index_axis(Axis(1), 0).to_owned();
    let background = l2x.params().background();
    let selected = ndarray::Zip::from(&images)
        .and(&d.mask)
        .map_collect(|&v, &m| if m > 0.5 { v } else { background });
    Ok(MnistDemo {
        selected,
        importance: d.importance.clone(),
        masks: d.mask.clone(),
        true_labels: test.labels_usize(),
        predictions: d.labels.clone().unwrap_or_default(),
        approximator_predictions: d.approximator_labels.clone().unwrap_or_default(),
        images,
        explanation,
        trained,
    })
}
