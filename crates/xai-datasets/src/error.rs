//! The typed error of this crate.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading, validating or slicing a data set.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A data file does not exist under any of the names tried.
    #[error(
        "MNIST file not found: tried {}; set the XAI_DATA_DIR environment variable to the folder \
         holding the MNIST IDX files (`.gz` or raw), default {}",
        display_paths(.tried),
        .default_dir.display()
    )]
    NotFound {
        /// Every path that was tried (the `.gz` name and the raw name).
        tried: Vec<PathBuf>,
        /// The workspace's default data folder, to help the user.
        default_dir: PathBuf,
    },

    /// [`crate::Mnist::load_default`] found MNIST in none of the folders it searches.
    #[error(
        "MNIST not found: looked in {}; set the XAI_DATA_DIR environment variable to a folder \
         holding the four MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, \
         t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; `.gz` or raw), or call \
         `Mnist::load(<folder>)`; nothing is downloaded",
        display_paths(.looked_in)
    )]
    NoDataDir {
        /// Every folder searched, in order.
        looked_in: Vec<PathBuf>,
    },

    /// The file exists but could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The file starts like gzip but does not decompress (truncated or corrupted archive).
    #[error(
        "cannot decompress {}: expected a complete gzip stream ({source})",
        display_opt_path(.path.as_deref())
    )]
    Gzip {
        /// The file, if the bytes came from one.
        path: Option<PathBuf>,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a valid IDX array.
    #[error("invalid IDX data in {}: {kind}", display_opt_path(.path.as_deref()))]
    Idx {
        /// The file, if the bytes came from one.
        path: Option<PathBuf>,
        /// What was expected and what was found.
        #[source]
        kind: IdxFormatError,
    },

    /// A file parsed as IDX but does not have the shape the caller expects.
    #[error("unexpected content in {}: expected {expected}, found {found}", .path.display())]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },

    /// An index passed to [`crate::MnistSplit::subset`] is out of range.
    #[error("index {index} is out of range for a split of {len} samples")]
    IndexOutOfRange {
        /// The bad index.
        index: usize,
        /// The number of samples.
        len: usize,
    },

    /// More samples were requested than are available.
    #[error(
        "requested {requested} samples without replacement but only {available} are available"
    )]
    SubsetTooLarge {
        /// How many were asked for.
        requested: usize,
        /// How many there are.
        available: usize,
    },

    /// A label is not smaller than the number of classes (one-hot encoding).
    #[error("label {label} at position {position} is out of range for {n_classes} classes")]
    LabelOutOfRange {
        /// The bad label.
        label: usize,
        /// Where it is.
        position: usize,
        /// The number of classes.
        n_classes: usize,
    },

    /// An argument is invalid (e.g. zero classes, dimensions and data length that disagree).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Why a byte buffer is not a valid IDX array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdxFormatError {
    /// Fewer than the 4 bytes of the magic number, or fewer than the dimension sizes announce.
    #[error("truncated header: expected at least {expected} bytes, found {found}")]
    TruncatedHeader {
        /// Bytes needed for the header.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The first two bytes are not zero.
    #[error("bad magic number: expected 0x0000 in the first two bytes, found 0x{found:04x}")]
    BadMagic {
        /// The first two bytes, big-endian.
        found: u16,
    },
    /// The type code is not 0x08 (unsigned byte), the only type MNIST uses.
    #[error("unsupported element type: expected 0x08 (unsigned byte), found 0x{found:02x}")]
    UnsupportedType {
        /// The type byte.
        found: u8,
    },
    /// The number of dimensions is zero.
    #[error("expected at least one dimension, found 0")]
    NoDimensions,
    /// The dimension sizes multiply to more than `usize::MAX`.
    #[error("dimension sizes {dims:?} overflow")]
    Overflow {
        /// The dimension sizes.
        dims: Vec<usize>,
    },
    /// The header declares more data than the reader accepts: above [`crate::MAX_IDX_PAYLOAD`],
    /// or more than the compressed stream could possibly hold (deflate expands at most about
    /// 1032:1), so nothing is allocated for it.
    #[error(
        "dimensions {dims:?} declare {declared} data bytes, more than {limit} ({why}); \
         the file is corrupt or not an IDX file"
    )]
    TooLarge {
        /// The dimension sizes.
        dims: Vec<usize>,
        /// Bytes the dimensions declare.
        declared: usize,
        /// The largest number of bytes accepted here.
        limit: usize,
        /// Which limit applied.
        why: String,
    },
    /// The payload has the wrong length (truncated file or trailing bytes).
    #[error(
        "payload length mismatch: dimensions {dims:?} need {expected} data bytes, found {found}{}",
        if *.found > *.expected { " (or more)" } else { "" }
    )]
    LengthMismatch {
        /// The dimension sizes.
        dims: Vec<usize>,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
}

impl DatasetError {
    /// Attaches `path` to an error that came from bytes without one.
    pub(crate) fn with_path(self, p: &Path) -> Self {
        match self {
            DatasetError::Idx { path: None, kind } => DatasetError::Idx {
                path: Some(p.to_path_buf()),
                kind,
            },
            DatasetError::Gzip { path: None, source } => DatasetError::Gzip {
                path: Some(p.to_path_buf()),
                source,
            },
            other => other,
        }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

fn display_opt_path(p: Option<&Path>) -> impl fmt::Display + '_ {
    struct D<'a>(Option<&'a Path>);
    impl fmt::Display for D<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Some(p) => write!(f, "{}", p.display()),
                None => f.write_str("<bytes>"),
            }
        }
    }
    D(p)
}
