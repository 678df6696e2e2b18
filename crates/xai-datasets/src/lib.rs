//! # xai-datasets
//!
//! MNIST for the `xai` workspace: an IDX reader (gzipped or raw) that validates magic numbers,
//! dimensions and lengths and reports a typed [`DatasetError`] naming the file and what was
//! expected; the scalings the explanation seeds use ([`Scaling`]); one-hot labels; the binary
//! 0-vs-1 subset; and seeded random subsets.
//!
//! The full MNIST is committed under `data/mnist/` at the workspace root. The environment
//! variable `XAI_DATA_DIR` overrides that folder ([`Mnist::default_dir`]).
//!
//! ```no_run
//! use xai_datasets::{Mnist, Scaling};
//!
//! let mnist = Mnist::load_default()?;
//! let sample = mnist.train.random_subset(1000, 42)?;          // 1000 random training images
//! let x = sample.images_f32(Scaling::Centered);                 // [1000, 1, 28, 28] in [-0.5, 0.5]
//! let y = xai_datasets::one_hot(&sample.labels_usize(), 10)?;   // [1000, 10]
//! let zero_one = mnist.test.binary_subset(0, 1);                // digits 0 and 1, labels 0/1
//! # let _ = (x, y, zero_one);
//! # Ok::<(), xai_datasets::DatasetError>(())
//! ```

mod error;
mod idx;
mod mnist;

pub use error::{DatasetError, IdxFormatError};
pub use idx::{
    decode_idx_bytes, encode_idx, parse_idx, read_idx, read_idx_images, read_idx_labels, write_idx,
    IdxArray, IDX_TYPE_U8, MAX_IDX_PAYLOAD,
};
pub use mnist::{
    one_hot, random_indices, Mnist, MnistSplit, Scaling, DATA_DIR_ENV, MNIST_CLASSES, MNIST_SIDE,
    TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, WORKSPACE_MNIST_DIR,
};
