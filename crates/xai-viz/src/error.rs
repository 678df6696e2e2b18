//! The typed error of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while building a figure.
#[derive(Debug, thiserror::Error)]
pub enum VizError {
    /// Nothing to draw (no images, no panels, no bars, an image with zero rows or columns).
    #[error("empty input: {0}")]
    Empty(String),

    /// Two sizes that must agree do not.
    #[error("size mismatch: {what}: expected {expected}, found {found}")]
    SizeMismatch {
        /// What is being compared.
        what: String,
        /// The expected size.
        expected: String,
        /// The size found.
        found: String,
    },

    /// A value range is not finite or not increasing.
    #[error("invalid value range ({min}, {max}): expected finite min < max")]
    InvalidRange {
        /// The lower end.
        min: f32,
        /// The upper end.
        max: f32,
    },

    /// A value that must be finite is not (bar heights, colour limits).
    #[error("non-finite value {value} in {what}")]
    NonFinite {
        /// Where.
        what: String,
        /// The value.
        value: f32,
    },

    /// Any other invalid option (grid too small for the images, zero sizes, alpha out of range).
    #[error("invalid option: {0}")]
    InvalidOption(String),

    /// The figure would be larger than [`crate::MAX_FIGURE_SIDE`] pixels on a side.
    #[error("figure of {width}x{height} pixels is too large (at most {max} on a side)")]
    TooLarge {
        /// Width in pixels.
        width: u64,
        /// Height in pixels.
        height: u64,
        /// The limit.
        max: u32,
    },

    /// The output path does not end in `.png`.
    #[error("output path {} must end in .png", .0.display())]
    NotPng(PathBuf),

    /// Creating the output folder or writing the file failed.
    #[error("cannot write {}: {message}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// The embedded font could not be registered (should not happen).
    #[error("cannot register the embedded font")]
    Font,

    /// plotters reported a drawing error.
    #[error("drawing failed: {0}")]
    Drawing(String),
}

impl<E: std::error::Error + Send + Sync> From<plotters::drawing::DrawingAreaErrorKind<E>>
    for VizError
{
    fn from(e: plotters::drawing::DrawingAreaErrorKind<E>) -> Self {
        VizError::Drawing(e.to_string())
    }
}
