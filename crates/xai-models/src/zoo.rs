//! The example networks of the seeds, with the seeds' exact shapes and parameter counts, their
//! training recipes, and the weights shipped under `models/`.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use xai_core::{Loss, OutputKind};
use xai_datasets::Scaling;

use crate::layers::{Conv2d, Dense, Layer, MaxPool2d, Padding};
use crate::network::NamedLayer;
use crate::ops::{BatchNorm, BinaryOp};
use crate::train::TrainConfig;
use crate::{load_weights, ModelError, Network};

/// The example networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelKind {
    /// alibi's MNIST CNN from the gradient-similarity example (412,778 parameters, softmax
    /// output), trained on inputs in [0, 1].
    AlibiCnn,
    /// The same CNN as in alibi's CEM example, trained on inputs in [-0.5, 0.5].
    CemCnn,
    /// alibi's CEM convolutional autoencoder (5,250 parameters), on inputs in [-0.5, 0.5].
    CemAutoencoder,
    /// omnixai's `MNISTNet` (21,840 parameters, logits output), on inputs in [0, 1].
    MnistNet,
    /// A small binary (0 vs 1) MNIST CNN like dianna's (softmax over 2 classes), inputs in [0, 1].
    BinaryCnn,
    /// A small residual CNN with batch norm in PyTorch's ResNet pattern (19,850 parameters,
    /// softmax output), inputs in [0, 1]: a conv → BN → ReLU stem and max pooling, an identity
    /// block and a block with a strided 1x1 projection conv + BN on the skip (He et al. 2016,
    /// "Deep Residual Learning", fig. 2 and eq. 2), global average pooling and a dense head.
    /// A graph ([`Network::graph`]); its batch norms train with batch statistics.
    ResnetBn,
}

impl ModelKind {
    /// Every kind.
    pub const ALL: [ModelKind; 6] = [
        ModelKind::AlibiCnn,
        ModelKind::CemCnn,
        ModelKind::CemAutoencoder,
        ModelKind::MnistNet,
        ModelKind::BinaryCnn,
        ModelKind::ResnetBn,
    ];

    /// Short snake-case name, used for file names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::AlibiCnn => "alibi_cnn",
            ModelKind::CemCnn => "cem_cnn",
            ModelKind::CemAutoencoder => "cem_autoencoder",
            ModelKind::MnistNet => "mnist_net",
            ModelKind::BinaryCnn => "binary_cnn",
            ModelKind::ResnetBn => "resnet_bn",
        }
    }

    /// Parses [`ModelKind::name`].
    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The input scaling the network is trained with.
    pub fn scaling(self) -> Scaling {
        match self {
            ModelKind::CemCnn | ModelKind::CemAutoencoder => Scaling::Centered,
            _ => Scaling::UnitInterval,
        }
    }

    /// The loss it is trained with (and that explains it).
    pub fn loss(self) -> Loss {
        match self {
            ModelKind::MnistNet => Loss::CrossEntropy(OutputKind::Logits),
            ModelKind::CemAutoencoder => Loss::MeanSquaredError,
            _ => Loss::CrossEntropy(OutputKind::Probabilities),
        }
    }

    /// The untrained network, initialised from `seed`.
    pub fn build(self, seed: u64) -> Network {
        let mut rng = StdRng::seed_from_u64(seed);
        let r = &mut rng;
        let layers = match self {
            ModelKind::AlibiCnn | ModelKind::CemCnn => vec![
                conv("conv1", 1, 64, 2, Padding::Same, r),
                relu("relu1"),
                pool("pool1", Padding::Valid),
                dropout("dropout1", 0.3),
                conv("conv2", 64, 32, 2, Padding::Same, r),
                relu("relu2"),
                pool("pool2", Padding::Valid),
                dropout("dropout2", 0.3),
                named("flatten", Layer::Flatten),
                dense("dense1", 7 * 7 * 32, 256, r),
                relu("relu3"),
                dropout("dropout3", 0.5),
                dense("dense2", 256, 10, r),
                named("softmax", Layer::Softmax),
            ],
            ModelKind::CemAutoencoder => vec![
                conv("enc_conv1", 1, 16, 3, Padding::Same, r),
                relu("enc_relu1"),
                conv("enc_conv2", 16, 16, 3, Padding::Same, r),
                relu("enc_relu2"),
                pool("enc_pool", Padding::Same),
                conv("encoded", 16, 1, 3, Padding::Same, r),
                conv("dec_conv1", 1, 16, 3, Padding::Same, r),
                relu("dec_relu1"),
                named("dec_upsample", Layer::Upsample2d(2)),
                conv("dec_conv2", 16, 16, 3, Padding::Same, r),
                relu("dec_relu2"),
                conv("decoded", 16, 1, 3, Padding::Same, r),
            ],
            ModelKind::MnistNet => vec![
                conv("conv1", 1, 10, 5, Padding::Valid, r),
                pool("pool1", Padding::Valid),
                relu("relu1"),
                conv("conv2", 10, 20, 5, Padding::Valid, r),
                dropout("dropout1", 0.5),
                pool("pool2", Padding::Valid),
                relu("relu2"),
                named("flatten", Layer::Flatten),
                dense("fc1", 320, 50, r),
                relu("relu3"),
                dropout("dropout2", 0.5),
                dense("fc2", 50, 10, r),
            ],
            ModelKind::BinaryCnn => vec![
                conv("conv1", 1, 32, 3, Padding::Valid, r),
                relu("relu1"),
                pool("pool1", Padding::Valid),
                conv("conv2", 32, 64, 3, Padding::Valid, r),
                relu("relu2"),
                pool("pool2", Padding::Valid),
                named("flatten", Layer::Flatten),
                dense("dense1", 5 * 5 * 64, 128, r),
                relu("relu3"),
                dense("dense2", 128, 2, r),
                named("softmax", Layer::Softmax),
            ],
            ModelKind::ResnetBn => return resnet_bn(r),
        };
        Network::new(self.name(), [1, 28, 28], layers).expect("the zoo's architectures are valid")
    }

    /// The seed's training recipe (epochs, batch size, Adam learning rate), with a fixed seed.
    pub fn train_config(self) -> TrainConfig {
        let (epochs, batch_size) = match self {
            ModelKind::AlibiCnn => (6, 256),
            ModelKind::CemCnn => (5, 64),
            ModelKind::CemAutoencoder => (10, 128),
            ModelKind::MnistNet => (5, 32),
            ModelKind::BinaryCnn => (2, 64),
            ModelKind::ResnetBn => (5, 128),
        };
        TrainConfig {
            epochs,
            batch_size,
            learning_rate: 1e-3,
            seed: 2026,
            loss: self.loss(),
            progress: true,
        }
    }

    /// Path of the shipped weights, `<models_dir>/<name>.safetensors`.
    pub fn weights_path(self) -> PathBuf {
        models_dir().join(format!("{}.safetensors", self.name()))
    }
}

/// The environment variable that overrides the folder of shipped weights.
pub const MODELS_DIR_ENV: &str = "XAI_MODELS_DIR";

/// The workspace's `models/` folder, fixed at compile time (it exists in a checkout of the xai
/// repository, not in a crate downloaded as a dependency).
pub const WORKSPACE_MODELS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models");

/// The folders searched for shipped weights, in order: only `$XAI_MODELS_DIR` when it is set and
/// non-empty; otherwise `models/` under the current directory, then [`WORKSPACE_MODELS_DIR`].
pub fn models_search_dirs() -> Vec<PathBuf> {
    match std::env::var_os(MODELS_DIR_ENV) {
        Some(d) if !d.is_empty() => vec![PathBuf::from(d)],
        _ => vec![PathBuf::from("models"), PathBuf::from(WORKSPACE_MODELS_DIR)],
    }
}

/// The folder of shipped weights: the first of [`models_search_dirs`] that holds any
/// `.safetensors` file, else the first of them.
pub fn models_dir() -> PathBuf {
    let dirs = models_search_dirs();
    let holds_weights = |d: &PathBuf| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        })
    };
    dirs.iter()
        .find(|d| holds_weights(d))
        .unwrap_or(&dirs[0])
        .clone()
}

/// The network of `kind` with its shipped, trained weights, from the first of
/// [`models_search_dirs`] that holds `<name>.safetensors`; the error lists every folder looked
/// in and how to point the loader at the file. Nothing is downloaded.
pub fn load_pretrained(kind: ModelKind) -> Result<Network, ModelError> {
    let file = format!("{}.safetensors", kind.name());
    let dirs = models_search_dirs();
    match dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file()) {
        Some(path) => load_pretrained_from(kind, path),
        None => Err(ModelError::MissingWeights {
            path: dirs[0].join(&file),
            hint: format!(
                "looked in {}; set XAI_MODELS_DIR to the folder holding {file}, call \
                 `load_pretrained_from(ModelKind::{kind:?}, <file>)`, or make it with \
                 `cargo xtask train {}` in the xai repository; nothing is downloaded",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                kind.name()
            ),
        }),
    }
}

/// The network of `kind` with the weights of the safetensors file at `path` (an explicit
/// location, e.g. a copy of the shipped `models/<name>.safetensors` in your project).
pub fn load_pretrained_from(
    kind: ModelKind,
    path: impl AsRef<Path>,
) -> Result<Network, ModelError> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(ModelError::MissingWeights {
            path: path.to_path_buf(),
            hint: format!("expected the {} weights there", kind.name()),
        });
    }
    let mut net = kind.build(0);
    load_weights(&mut net, path)?;
    Ok(net)
}

/// [`ModelKind::ResnetBn`]: PyTorch's ResNet pattern at MNIST size (3x3 convolutions with
/// padding 1, each followed by batch norm).
fn resnet_bn(r: &mut StdRng) -> Network {
    let pad1 = Padding::Explicit {
        top: 1,
        bottom: 1,
        left: 1,
        right: 1,
    };
    let conv3 = |name: &str, i: usize, o: usize, s: usize, r: &mut StdRng| {
        named(
            name,
            Layer::Conv2d(Conv2d::new(i, o, (3, 3), (s, s), pad1, r)),
        )
    };
    let bn = |name: &str, c: usize| named(name, Layer::BatchNorm(BatchNorm::new(c)));
    // (layer, the nodes it reads); node 0 is the input, node j + 1 the output of layer j.
    let spec: Vec<(NamedLayer, Vec<usize>)> = vec![
        (conv3("conv1", 1, 16, 1, r), vec![0]), // 28x28x16
        (bn("bn1", 16), vec![1]),
        (relu("relu1"), vec![2]),
        (pool("pool1", Padding::Valid), vec![3]), // node 4: 14x14x16
        (conv3("block1_conv1", 16, 16, 1, r), vec![4]),
        (bn("block1_bn1", 16), vec![5]),
        (relu("block1_relu1"), vec![6]),
        (conv3("block1_conv2", 16, 16, 1, r), vec![7]),
        (bn("block1_bn2", 16), vec![8]),
        (
            named("block1_add", Layer::Binary(BinaryOp::Add)),
            vec![9, 4],
        ),
        (relu("block1_relu2"), vec![10]), // node 11: 14x14x16
        (conv3("block2_conv1", 16, 32, 2, r), vec![11]), // 7x7x32
        (bn("block2_bn1", 32), vec![12]),
        (relu("block2_relu1"), vec![13]),
        (conv3("block2_conv2", 32, 32, 1, r), vec![14]),
        (bn("block2_bn2", 32), vec![15]), // node 16
        (
            named(
                "block2_proj",
                Layer::Conv2d(Conv2d::new(16, 32, (1, 1), (2, 2), Padding::Valid, r)),
            ),
            vec![11],
        ),
        (bn("block2_proj_bn", 32), vec![17]), // node 18
        (
            named("block2_add", Layer::Binary(BinaryOp::Add)),
            vec![16, 18],
        ),
        (relu("block2_relu2"), vec![19]),
        (named("gap", Layer::GlobalAvgPool), vec![20]),
        (named("flatten", Layer::Flatten), vec![21]),
        (dense("fc", 32, 10, r), vec![22]),
        (named("softmax", Layer::Softmax), vec![23]),
    ];
    let (layers, inputs) = spec.into_iter().unzip();
    Network::graph(ModelKind::ResnetBn.name(), [1, 28, 28], layers, inputs)
        .expect("the zoo's architectures are valid")
}

fn named(name: &str, layer: Layer) -> NamedLayer {
    NamedLayer {
        name: name.into(),
        layer,
    }
}

fn conv(name: &str, i: usize, o: usize, k: usize, p: Padding, r: &mut StdRng) -> NamedLayer {
    named(name, Layer::Conv2d(Conv2d::new(i, o, (k, k), (1, 1), p, r)))
}

fn dense(name: &str, i: usize, o: usize, r: &mut StdRng) -> NamedLayer {
    named(name, Layer::Dense(Dense::new(i, o, r)))
}

fn relu(name: &str) -> NamedLayer {
    named(name, Layer::Relu)
}

fn pool(name: &str, p: Padding) -> NamedLayer {
    named(name, Layer::MaxPool2d(MaxPool2d::new(2, p)))
}

fn dropout(name: &str, p: f32) -> NamedLayer {
    named(name, Layer::Dropout(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xai_core::Predictor;

    #[test]
    fn parameter_counts_match_the_seeds() {
        assert_eq!(ModelKind::AlibiCnn.build(0).n_params(), 412_778);
        assert_eq!(ModelKind::CemCnn.build(0).n_params(), 412_778);
        assert_eq!(ModelKind::CemAutoencoder.build(0).n_params(), 5_250);
        // omnixai MNISTNet: 260 + 5,020 + 16,050 + 510.
        assert_eq!(ModelKind::MnistNet.build(0).n_params(), 21_840);
        assert_eq!(ModelKind::CemAutoencoder.build(0).n_outputs(), 784);
        assert_eq!(ModelKind::BinaryCnn.build(0).n_outputs(), 2);
        // 160 + 2,320 x 2 + 4,640 + 9,248 + 544 (convs) + 2 x (16 x 3 + 32 x 3) (batch norms)
        // + 330 (head).
        assert_eq!(ModelKind::ResnetBn.build(0).n_params(), 19_850);
        assert_eq!(ModelKind::ResnetBn.build(0).n_outputs(), 10);
    }

    #[test]
    fn output_shapes_match_the_seed_summaries() {
        let net = ModelKind::AlibiCnn.build(0);
        let d = net.dims();
        // conv1 28x28x64, pool 14x14x64, conv2 14x14x32, pool 7x7x32, flatten 1568.
        assert_eq!((d[1].h, d[1].w, d[1].c), (28, 28, 64));
        assert_eq!((d[3].h, d[3].w, d[3].c), (14, 14, 64));
        assert_eq!((d[5].h, d[5].w, d[5].c), (14, 14, 32));
        assert_eq!(d[9].c, 1568);
        let ae = ModelKind::CemAutoencoder.build(0);
        let d = ae.dims();
        assert_eq!((d[6].h, d[6].w, d[6].c), (14, 14, 1));
        for k in ModelKind::ALL {
            assert_eq!(ModelKind::from_name(k.name()), Some(k));
        }
    }
}
