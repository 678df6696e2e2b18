//! MNIST: loading the four IDX files, scalings, subsets and one-hot labels.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array3, Array4, ArrayView2, Axis};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::DatasetError;
use crate::idx::{read_idx_images, read_idx_labels};

/// The environment variable that overrides the MNIST folder.
pub const DATA_DIR_ENV: &str = "XAI_DATA_DIR";

/// The workspace's committed MNIST folder (`<workspace>/data/mnist`), fixed at compile time.
pub const WORKSPACE_MNIST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");

/// File stems of the four MNIST files; each is looked up as `<stem>.gz`, then `<stem>`.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// See [`TRAIN_IMAGES`].
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// Image side length of MNIST digits.
pub const MNIST_SIDE: usize = 28;
/// Number of MNIST classes.
pub const MNIST_CLASSES: usize = 10;

/// How `u8` pixels are turned into `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scaling {
    /// `x / 255`, in `[0, 1]`.
    UnitInterval,
    /// `x / 255 - 0.5`, in `[-0.5, 0.5]`.
    Centered,
    /// `x` as is, in `0..=255`.
    Raw,
}

impl Scaling {
    /// Scales one pixel.
    #[inline]
    pub fn apply(self, x: u8) -> f32 {
        match self {
            Scaling::UnitInterval => x as f32 / 255.0,
            Scaling::Centered => x as f32 / 255.0 - 0.5,
            Scaling::Raw => x as f32,
        }
    }

    /// The `(min, max)` range of scaled values.
    pub fn range(self) -> (f32, f32) {
        match self {
            Scaling::UnitInterval => (0.0, 1.0),
            Scaling::Centered => (-0.5, 0.5),
            Scaling::Raw => (0.0, 255.0),
        }
    }
}

/// MNIST's training (60,000) and test (10,000) splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Mnist {
    /// The training split.
    pub train: MnistSplit,
    /// The test split.
    pub test: MnistSplit,
}

/// One split: images `[n, 28, 28]` (`u8`, 0 = background) and labels `[n]` (digits 0..=9,
/// or 0/1 after [`MnistSplit::binary_subset`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MnistSplit {
    /// Images `[n, rows, cols]`.
    pub images: Array3<u8>,
    /// Labels `[n]`.
    pub labels: Array1<u8>,
}

impl Mnist {
    /// The folders [`Mnist::load_default`] looks in, in order: only `$XAI_DATA_DIR` when it is
    /// set and non-empty; otherwise `data/mnist` under the current directory, then
    /// [`WORKSPACE_MNIST_DIR`] (the folder this crate was built in, which holds MNIST in a checkout
    /// of the xai repository but not in a crate downloaded as a dependency).
    pub fn search_dirs() -> Vec<PathBuf> {
        match std::env::var_os(DATA_DIR_ENV) {
            Some(d) if !d.is_empty() => vec![PathBuf::from(d)],
            _ => vec![
                PathBuf::from("data").join("mnist"),
                PathBuf::from(WORKSPACE_MNIST_DIR),
            ],
        }
    }

    /// The first of [`Mnist::search_dirs`] that holds the training images (as `.gz` or raw),
    /// else the first of them.
    pub fn default_dir() -> PathBuf {
        let dirs = Mnist::search_dirs();
        dirs.iter()
            .find(|d| find_file(d, TRAIN_IMAGES).is_ok())
            .unwrap_or(&dirs[0])
            .clone()
    }

    /// Loads MNIST from [`Mnist::default_dir`]; when no folder of [`Mnist::search_dirs`] holds
    /// it, the error lists where it looked and how to point the loader at the files. Nothing is
    /// downloaded.
    pub fn load_default() -> Result<Mnist, DatasetError> {
        let dirs = Mnist::search_dirs();
        match dirs.iter().find(|d| find_file(d, TRAIN_IMAGES).is_ok()) {
            Some(dir) => Mnist::load(dir),
            None if dirs.len() == 1 => Mnist::load(&dirs[0]),
            None => Err(DatasetError::NoDataDir { looked_in: dirs }),
        }
    }

    /// Loads MNIST from `dir`, which holds the four files, each gzipped (`<name>.gz`) or raw.
    ///
    /// Validates the IDX headers and lengths, that images are 28x28, that each split has as
    /// many labels as images and that every label is a digit 0..=9. The two splits are
    /// decompressed on two threads.
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist, DatasetError> {
        let dir = dir.as_ref();
        let (train, test) = std::thread::scope(|s| {
            let train = s.spawn(|| load_split(dir, TRAIN_IMAGES, TRAIN_LABELS));
            let test = load_split(dir, TEST_IMAGES, TEST_LABELS);
            (train.join().expect("MNIST loader thread panicked"), test)
        });
        Ok(Mnist {
            train: train?,
            test: test?,
        })
    }
}

/// Finds `<stem>.gz` or `<stem>` in `dir`.
fn find_file(dir: &Path, stem: &str) -> Result<PathBuf, DatasetError> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(DatasetError::NotFound {
            tried: vec![gz, raw],
            default_dir: PathBuf::from(WORKSPACE_MNIST_DIR),
        })
    }
}

fn load_split(dir: &Path, images: &str, labels: &str) -> Result<MnistSplit, DatasetError> {
    let ipath = find_file(dir, images)?;
    let lpath = find_file(dir, labels)?;
    let (imgs, labs) = std::thread::scope(|s| {
        let l = s.spawn(|| read_idx_labels(&lpath));
        let i = read_idx_images(&ipath);
        (i, l.join().expect("MNIST label loader thread panicked"))
    });
    let (imgs, labs) = (imgs?, labs?);
    let (_, r, c) = imgs.dim();
    if (r, c) != (MNIST_SIDE, MNIST_SIDE) {
        return Err(DatasetError::Unexpected {
            path: ipath,
            expected: format!("{MNIST_SIDE}x{MNIST_SIDE} images"),
            found: format!("{r}x{c} images"),
        });
    }
    if labs.len() != imgs.len_of(Axis(0)) {
        return Err(DatasetError::Unexpected {
            path: lpath,
            expected: format!(
                "{} labels (one per image in {})",
                imgs.len_of(Axis(0)),
                ipath.display()
            ),
            found: format!("{} labels", labs.len()),
        });
    }
    if let Some((pos, &bad)) = labs
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= MNIST_CLASSES)
    {
        return Err(DatasetError::Unexpected {
            path: lpath,
            expected: "labels 0..=9".into(),
            found: format!("label {bad} at position {pos}"),
        });
    }
    Ok(MnistSplit {
        images: imgs,
        labels: labs,
    })
}

impl MnistSplit {
    /// Builds a split, checking that there are as many labels as images.
    pub fn new(images: Array3<u8>, labels: Array1<u8>) -> Result<MnistSplit, DatasetError> {
        if images.len_of(Axis(0)) != labels.len() {
            return Err(DatasetError::InvalidArgument(format!(
                "{} images but {} labels",
                images.len_of(Axis(0)),
                labels.len()
            )));
        }
        Ok(MnistSplit { images, labels })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `(rows, cols)` of each image.
    pub fn image_shape(&self) -> (usize, usize) {
        let (_, r, c) = self.images.dim();
        (r, c)
    }

    /// All images as `f32`, `[n, 1, rows, cols]` (NCHW).
    pub fn images_f32(&self, scaling: Scaling) -> Array4<f32> {
        let (n, r, c) = self.images.dim();
        let data: Vec<f32> = self.images.iter().map(|&x| scaling.apply(x)).collect();
        Array4::from_shape_vec((n, 1, r, c), data).expect("shape matches")
    }

    /// All images as `f32` rows, `[n, rows * cols]`.
    pub fn images_flat_f32(&self, scaling: Scaling) -> Array2<f32> {
        let (n, r, c) = self.images.dim();
        let data: Vec<f32> = self.images.iter().map(|&x| scaling.apply(x)).collect();
        Array2::from_shape_vec((n, r * c), data).expect("shape matches")
    }

    /// Image `i` as `f32`, `[rows, cols]`. Panics if `i >= len()` (like indexing).
    pub fn image_f32(&self, i: usize, scaling: Scaling) -> Array2<f32> {
        self.image(i).mapv(|x| scaling.apply(x))
    }

    /// A view of image `i`, `[rows, cols]`. Panics if `i >= len()` (like indexing).
    pub fn image(&self, i: usize) -> ArrayView2<'_, u8> {
        self.images.index_axis(Axis(0), i)
    }

    /// Labels as `usize`.
    pub fn labels_usize(&self) -> Vec<usize> {
        self.labels.iter().map(|&l| l as usize).collect()
    }

    /// Labels one-hot encoded, `[n, n_classes]`.
    pub fn labels_one_hot(&self, n_classes: usize) -> Result<Array2<f32>, DatasetError> {
        one_hot(&self.labels_usize(), n_classes)
    }

    /// Number of samples per label value `0..n_classes` (labels `>= n_classes` are ignored).
    pub fn class_counts(&self, n_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; n_classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// The samples at `indices`, in that order (repeats allowed). Errors on an index `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> Result<MnistSplit, DatasetError> {
        let len = self.len();
        if let Some(&index) = indices.iter().find(|&&i| i >= len) {
            return Err(DatasetError::IndexOutOfRange { index, len });
        }
        Ok(MnistSplit {
            images: self.images.select(Axis(0), indices),
            labels: self.labels.select(Axis(0), indices),
        })
    }

    /// The first `n` samples (or all of them if there are fewer).
    pub fn head(&self, n: usize) -> MnistSplit {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.subset(&idx).expect("in range")
    }

    /// `n` distinct samples drawn uniformly without replacement with `StdRng::seed_from_u64(seed)`
    /// (same seed, same subset). Errors if `n > len()`.
    pub fn random_subset(&self, n: usize, seed: u64) -> Result<MnistSplit, DatasetError> {
        self.subset(&self.random_indices(n, seed)?)
    }

    /// The indices [`MnistSplit::random_subset`] picks, in the order it returns them.
    pub fn random_indices(&self, n: usize, seed: u64) -> Result<Vec<usize>, DatasetError> {
        random_indices(self.len(), n, seed)
    }

    /// Keeps only classes `class_a` and `class_b` (in their original order), relabelled to 0
    /// (`class_a`) and 1 (`class_b`). If the two are equal, every kept sample is labelled 0.
    pub fn binary_subset(&self, class_a: u8, class_b: u8) -> MnistSplit {
        let idx: Vec<usize> = self
            .labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == class_a || l == class_b)
            .map(|(i, _)| i)
            .collect();
        let images = self.images.select(Axis(0), &idx);
        let labels = idx
            .iter()
            .map(|&i| u8::from(self.labels[i] != class_a))
            .collect::<Array1<u8>>();
        MnistSplit { images, labels }
    }

    /// Keeps the samples whose label satisfies `keep`, labels unchanged.
    pub fn filter_labels(&self, mut keep: impl FnMut(u8) -> bool) -> MnistSplit {
        let idx: Vec<usize> = (0..self.len()).filter(|&i| keep(self.labels[i])).collect();
        self.subset(&idx).expect("in range")
    }
}

/// `n` distinct indices in `0..len`, drawn without replacement with `StdRng::seed_from_u64(seed)`.
pub fn random_indices(len: usize, n: usize, seed: u64) -> Result<Vec<usize>, DatasetError> {
    if n > len {
        return Err(DatasetError::SubsetTooLarge {
            requested: n,
            available: len,
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    Ok(rand::seq::index::sample(&mut rng, len, n).into_vec())
}

/// One-hot encodes `labels` as `[labels.len(), n_classes]` `f32` rows. Errors if
/// `n_classes == 0` or a label is `>= n_classes`.
///
/// ```
/// let y = xai_datasets::one_hot(&[2, 0], 3).unwrap();
/// assert_eq!(y, ndarray::array![[0.0f32, 0.0, 1.0], [1.0, 0.0, 0.0]]);
/// assert!(xai_datasets::one_hot(&[3], 3).is_err());
/// ```
pub fn one_hot(labels: &[usize], n_classes: usize) -> Result<Array2<f32>, DatasetError> {
    if n_classes == 0 {
        return Err(DatasetError::InvalidArgument(
            "one_hot needs at least one class".into(),
        ));
    }
    let mut out = Array2::<f32>::zeros((labels.len(), n_classes));
    for (position, &label) in labels.iter().enumerate() {
        if label >= n_classes {
            return Err(DatasetError::LabelOutOfRange {
                label,
                position,
                n_classes,
            });
        }
        out[[position, label]] = 1.0;
    }
    Ok(out)
}
