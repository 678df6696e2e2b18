//! Coalition games: what KernelSHAP explains.
//!
//! A [`CoalitionGame`] maps a batch of coalitions (0/1 masks over `M` players) to the model's
//! outputs for each coalition. For a [`Predictor`] the step "coalition -> model input" is a
//! [`CoalitionMasker`]: [`ImageMasker`] (superpixels absent take a background value or image, as
//! dianna does), [`TabularMasker`] (features absent take a background row, as shap with one
//! background sample) or any closure through [`FnMasker`]. [`MaskedPredictor`] joins a predictor
//! and a masker into a game; [`FnGame`] makes a game from a closure.

use ndarray::{Array1, Array2, Array3, ArrayD, ArrayView1, ArrayView2, ArrayView3, IxDyn};
use serde::{Deserialize, Serialize};
use xai_core::Predictor;

use crate::error::{Result, ShapError};
use crate::slic::Segmentation;

/// A cooperative game with vector payoffs: `v(S)` for batches of coalitions `S`.
pub trait CoalitionGame: Sync {
    /// Number of players (features, superpixels).
    fn n_players(&self) -> usize;

    /// Number of outputs of `v`.
    fn n_outputs(&self) -> usize;

    /// `v(S)` for each row of `coalitions` (`[b, n_players]`, `true` = present): `[b, n_outputs]`.
    fn evaluate(&self, coalitions: ArrayView2<'_, bool>) -> Result<Array2<f64>>;

    /// Players known never to change `v` (null players, e.g. superpixels equal to the
    /// background). KernelSHAP gives them 0 and leaves them out of the regression, as shap does
    /// with features that do not vary. The default knows none.
    fn inert_players(&self) -> Vec<usize> {
        Vec::new()
    }
}

/// A [`CoalitionGame`] from a closure over coalition batches.
pub struct FnGame<F> {
    n_players: usize,
    n_outputs: usize,
    f: F,
}

impl<F> FnGame<F>
where
    F: Fn(ArrayView2<'_, bool>) -> Result<Array2<f64>> + Sync,
{
    /// A game of `n_players` with `n_outputs` outputs computed by `f`.
    pub fn new(n_players: usize, n_outputs: usize, f: F) -> Self {
        Self {
            n_players,
            n_outputs,
            f,
        }
    }
}

impl<F> CoalitionGame for FnGame<F>
where
    F: Fn(ArrayView2<'_, bool>) -> Result<Array2<f64>> + Sync,
{
    fn n_players(&self) -> usize {
        self.n_players
    }
    fn n_outputs(&self) -> usize {
        self.n_outputs
    }
    fn evaluate(&self, coalitions: ArrayView2<'_, bool>) -> Result<Array2<f64>> {
        (self.f)(coalitions)
    }
}

/// Turns coalitions into model inputs.
pub trait CoalitionMasker: Sync {
    /// Number of features (players).
    fn n_features(&self) -> usize;

    /// Shape of one model input, without the batch axis.
    fn sample_shape(&self) -> &[usize];

    /// Model inputs `[b, ..sample_shape]` for coalitions `[b, n_features]`.
    fn model_inputs(&self, coalitions: ArrayView2<'_, bool>) -> Result<ArrayD<f32>>;

    /// Features whose presence never changes the model input (see
    /// [`CoalitionGame::inert_players`]). The default knows none.
    fn inert_features(&self) -> Vec<usize> {
        Vec::new()
    }
}

fn check_coalitions(coalitions: &ArrayView2<'_, bool>, n_features: usize) -> Result<()> {
    if coalitions.ncols() != n_features {
        return Err(ShapError::shape(
            "coalitions",
            coalitions.shape(),
            format!("[b, {n_features}]"),
        ));
    }
    Ok(())
}

/// A [`CoalitionMasker`] from a closure.
pub struct FnMasker<F> {
    n_features: usize,
    sample_shape: Vec<usize>,
    f: F,
}

impl<F> FnMasker<F>
where
    F: Fn(ArrayView2<'_, bool>) -> Result<ArrayD<f32>> + Sync,
{
    /// A masker of `n_features` features producing inputs shaped `sample_shape` through `f`.
    pub fn new(n_features: usize, sample_shape: Vec<usize>, f: F) -> Self {
        Self {
            n_features,
            sample_shape,
            f,
        }
    }
}

impl<F> CoalitionMasker for FnMasker<F>
where
    F: Fn(ArrayView2<'_, bool>) -> Result<ArrayD<f32>> + Sync,
{
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }
    fn model_inputs(&self, coalitions: ArrayView2<'_, bool>) -> Result<ArrayD<f32>> {
        check_coalitions(&coalitions, self.n_features)?;
        (self.f)(coalitions)
    }
}

/// Tabular masking with one background row: feature `j` absent takes `background[j]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TabularMasker {
    x: Array1<f32>,
    background: Array1<f32>,
    shape: Vec<usize>,
}

impl TabularMasker {
    /// Explains `x` against `background` (same length).
    pub fn new(x: ArrayView1<'_, f32>, background: ArrayView1<'_, f32>) -> Result<Self> {
        if x.len() != background.len() {
            return Err(ShapError::shape(
                "background",
                background.shape(),
                format!("[{}] like the instance", x.len()),
            ));
        }
        Ok(Self {
            x: x.to_owned(),
            background: background.to_owned(),
            shape: vec![x.len()],
        })
    }
}

impl CoalitionMasker for TabularMasker {
    fn n_features(&self) -> usize {
        self.x.len()
    }
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }
    fn model_inputs(&self, coalitions: ArrayView2<'_, bool>) -> Result<ArrayD<f32>> {
        check_coalitions(&coalitions, self.x.len())?;
        let out = Array2::from_shape_fn(coalitions.dim(), |(i, j)| {
            if coalitions[[i, j]] {
                self.x[j]
            } else {
                self.background[j]
            }
        });
        Ok(out.into_dyn())
    }
    fn inert_features(&self) -> Vec<usize> {
        (0..self.x.len())
            .filter(|&j| self.x[j] == self.background[j])
            .collect()
    }
}

/// What an absent superpixel shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Background {
    /// Each channel's mean over the image (dianna's default, `background=None`).
    #[default]
    ChannelMean,
    /// One value for every channel (dianna's `background=0` in the MNIST example).
    Value(f32),
    /// A whole image `[channels, height, width]` (e.g. a blurred copy or a dataset mean).
    Image(Array3<f32>),
}

impl Background {
    /// The background as an image shaped like `image`.
    pub fn to_image(&self, image: ArrayView3<'_, f32>) -> Result<Array3<f32>> {
        let (c, h, w) = image.dim();
        match self {
            Background::ChannelMean => {
                let mut out = Array3::zeros((c, h, w));
                for ch in 0..c {
                    let plane = image.index_axis(ndarray::Axis(0), ch);
                    let mean = plane.iter().map(|&v| v as f64).sum::<f64>() / (h * w).max(1) as f64;
                    out.index_axis_mut(ndarray::Axis(0), ch).fill(mean as f32);
                }
                Ok(out)
            }
            Background::Value(v) => {
                if !v.is_finite() {
                    return Err(ShapError::param("background", v, "a finite value"));
                }
                Ok(Array3::from_elem((c, h, w), *v))
            }
            Background::Image(b) => {
                if b.dim() != (c, h, w) {
                    return Err(ShapError::shape(
                        "background image",
                        b.shape(),
                        format!("[{c}, {h}, {w}] like the explained image"),
                    ));
                }
                xai_core::check_finite("background image", &b.view().into_dyn())?;
                Ok(b.clone())
            }
        }
    }
}

/// Superpixel masking: a coalition keeps the image on its superpixels and shows the background
/// elsewhere (dianna's `_mask_image`, with segment `k` = label `start_label + k`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMasker {
    image: Array3<f32>,
    background: Array3<f32>,
    segment_pixels: Vec<Vec<usize>>,
    shape: Vec<usize>,
}

impl ImageMasker {
    /// Masks `image` (`[channels, height, width]`) by the superpixels of `segmentation`.
    pub fn new(
        image: ArrayView3<'_, f32>,
        segmentation: &Segmentation,
        background: &Background,
    ) -> Result<Self> {
        let (c, h, w) = image.dim();
        if segmentation.dim() != (h, w) {
            return Err(ShapError::shape(
                "segmentation",
                segmentation.labels().shape(),
                format!("[{h}, {w}] like the image"),
            ));
        }
        let background = background.to_image(image)?;
        Ok(Self {
            image: image.as_standard_layout().into_owned(),
            background: background.as_standard_layout().into_owned(),
            segment_pixels: segmentation.pixels_per_segment(),
            shape: vec![c, h, w],
        })
    }

    /// The background image.
    pub fn background(&self) -> &Array3<f32> {
        &self.background
    }
}

impl CoalitionMasker for ImageMasker {
    fn n_features(&self) -> usize {
        self.segment_pixels.len()
    }
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }
    fn model_inputs(&self, coalitions: ArrayView2<'_, bool>) -> Result<ArrayD<f32>> {
        check_coalitions(&coalitions, self.segment_pixels.len())?;
        let b = coalitions.nrows();
        let (c, h, w) = self.image.dim();
        let plane = h * w;
        let sample = c * plane;
        let image = self.image.as_slice().expect("standard layout");
        let background = self.background.as_slice().expect("standard layout");
        let mut out = vec![0f32; b * sample];
        for (i, dst) in out.chunks_exact_mut(sample).enumerate() {
            dst.copy_from_slice(background);
            for (k, pixels) in self.segment_pixels.iter().enumerate() {
                if coalitions[[i, k]] {
                    for ch in 0..c {
                        let off = ch * plane;
                        for &p in pixels {
                            dst[off + p] = image[off + p];
                        }
                    }
                }
            }
        }
        let mut shape = vec![b];
        shape.extend_from_slice(&self.shape);
        ArrayD::from_shape_vec(IxDyn(&shape), out)
            .map_err(|e| ShapError::shape("masked images", &shape, e.to_string()))
    }
    fn inert_features(&self) -> Vec<usize> {
        let (c, h, w) = self.image.dim();
        let plane = h * w;
        let image = self.image.as_slice().expect("standard layout");
        let background = self.background.as_slice().expect("standard layout");
        (0..self.segment_pixels.len())
            .filter(|&k| {
                self.segment_pixels[k]
                    .iter()
                    .all(|&p| (0..c).all(|ch| image[ch * plane + p] == background[ch * plane + p]))
            })
            .collect()
    }
}

/// A [`Predictor`] seen through a [`CoalitionMasker`]: `v(S) = f(mask(S))`.
pub struct MaskedPredictor<'a> {
    model: &'a dyn Predictor,
    masker: &'a dyn CoalitionMasker,
}

impl<'a> MaskedPredictor<'a> {
    /// Joins `model` and `masker`; the masker's sample shape must be the model's input shape.
    pub fn new(model: &'a dyn Predictor, masker: &'a dyn CoalitionMasker) -> Result<Self> {
        if masker.sample_shape() != model.input_shape() {
            return Err(ShapError::shape(
                "masker output sample",
                masker.sample_shape(),
                format!("the model's input shape {:?}", model.input_shape()),
            ));
        }
        Ok(Self { model, masker })
    }
}

impl CoalitionGame for MaskedPredictor<'_> {
    fn n_players(&self) -> usize {
        self.masker.n_features()
    }
    fn n_outputs(&self) -> usize {
        self.model.n_outputs()
    }
    fn evaluate(&self, coalitions: ArrayView2<'_, bool>) -> Result<Array2<f64>> {
        let inputs = self.masker.model_inputs(coalitions)?;
        let b = coalitions.nrows();
        if inputs.shape().first() != Some(&b) || &inputs.shape()[1..] != self.model.input_shape() {
            return Err(ShapError::BatchShape {
                what: "masker".into(),
                got: inputs.shape().to_vec(),
                expected: format!("[{b}, {:?}]", self.model.input_shape()),
            });
        }
        let out = self.model.predict(inputs.view())?;
        Ok(out.mapv(|v| v as f64))
    }
    fn inert_players(&self) -> Vec<usize> {
        self.masker.inert_features()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};
    use xai_core::FnPredictor;

    #[test]
    fn image_masker_fills_absent_segments_with_background() {
        let labels = array![[1usize, 1, 2], [3, 3, 2]];
        let seg = Segmentation::new(labels, 1).unwrap();
        let image = Array3::from_shape_fn((2, 2, 3), |(c, y, x)| (c * 10 + y * 3 + x) as f32 + 1.0);
        let masker = ImageMasker::new(image.view(), &seg, &Background::Value(-1.0)).unwrap();
        assert_eq!(masker.n_features(), 3);
        let coalitions = array![[true, false, false], [false, true, true]];
        let out = masker.model_inputs(coalitions.view()).unwrap();
        assert_eq!(out.shape(), &[2, 2, 2, 3]);
        // row 0 keeps segment 1 = pixels (0,0),(0,1)
        assert_eq!(out[[0, 0, 0, 0]], image[[0, 0, 0]]);
        assert_eq!(out[[0, 1, 0, 1]], image[[1, 0, 1]]);
        assert_eq!(out[[0, 0, 0, 2]], -1.0);
        assert_eq!(out[[0, 1, 1, 0]], -1.0);
        // row 1 keeps segments 2 and 3
        assert_eq!(out[[1, 0, 0, 0]], -1.0);
        assert_eq!(out[[1, 1, 1, 1]], image[[1, 1, 1]]);
        assert!(masker.model_inputs(array![[true, false]].view()).is_err());
    }

    #[test]
    fn inert_segments_equal_the_background() {
        let labels = array![[1usize, 2], [1, 2]];
        let seg = Segmentation::new(labels, 1).unwrap();
        let image = array![[[0.0f32, 0.5], [0.0, 0.7]]];
        let masker = ImageMasker::new(image.view(), &seg, &Background::Value(0.0)).unwrap();
        assert_eq!(masker.inert_features(), vec![0]);
        let mean = ImageMasker::new(image.view(), &seg, &Background::ChannelMean).unwrap();
        assert!(mean.inert_features().is_empty());
        assert!((mean.background()[[0, 0, 0]] - 0.3).abs() < 1e-6);
        let bad = Background::Image(Array3::zeros((1, 3, 3)));
        assert!(ImageMasker::new(image.view(), &seg, &bad).is_err());
    }

    #[test]
    fn masked_predictor_checks_shapes() {
        let x = array![1.0f32, 2.0, 3.0];
        let bg = array![0.0f32, 2.0, 0.0];
        let masker = TabularMasker::new(x.view(), bg.view()).unwrap();
        assert_eq!(masker.inert_features(), vec![1]);
        let model = FnPredictor::new(vec![3], 1, |x: ndarray::ArrayViewD<'_, f32>| {
            let x = x.into_dimensionality::<ndarray::Ix2>().unwrap();
            Ok(x.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1)))
        });
        let game = MaskedPredictor::new(&model, &masker).unwrap();
        let v = game
            .evaluate(array![[true, false, true], [false, false, false]].view())
            .unwrap();
        assert_eq!(v, array![[6.0], [2.0]]);
        let wrong = FnPredictor::new(vec![4], 1, |x: ndarray::ArrayViewD<'_, f32>| {
            Ok(Array2::zeros((x.shape()[0], 1)))
        });
        assert!(MaskedPredictor::new(&wrong, &masker).is_err());
        assert!(TabularMasker::new(x.view(), array![0.0f32].view()).is_err());
    }
}
