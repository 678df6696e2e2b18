//! Background data sets: what an absent feature takes, as shap's `KernelExplainer(f, data)`.
//!
//! A [`BackgroundData`] holds `N` rows (tables: `[N, n_features]`; images: `[N, c, h, w]`) with
//! weights that sum to 1 (uniform unless given, or cluster sizes from [`BackgroundData::kmeans`],
//! shap's `shap.kmeans`). The value of a coalition `S` for an instance `x` is the weighted mean
//! over the background rows `b_n` of the model on `x` where `S` is present and `b_n` elsewhere,
//!
//! `v(S) = Σ_n w_n f(x_S, (b_n)_{N∖S})`,
//!
//! shap's interventional value function (Lundberg & Lee 2017, Eq. 11 with feature independence;
//! shap's `KernelExplainer` computes exactly this mean, `ey`, and applies the link after it). The
//! base value is `v(∅) = Σ_n w_n f(b_n)`.
//!
//! [`BackgroundGames`] turns a model, a background and one or more instances into the games of
//! those instances ([`GameRows`]); every batch of coalitions, of any rows, becomes one model call
//! on `batch · N` inputs.

use ndarray::{Array2, ArrayView2, ArrayView3, ArrayViewD, Axis, IxDyn};
use xai_core::Predictor;

use crate::error::{Result, ShapError};
use crate::kmeans::KMeansParams;
use crate::rows::{CoalitionRequest, GameRows};
use crate::slic::Segmentation;

/// `N` background rows with weights summing to 1 (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct BackgroundData {
    sample_shape: Vec<usize>,
    /// `[N, D]`, each row one sample flattened in standard (row-major) order.
    data: Array2<f32>,
    weights: Vec<f64>,
}

fn flatten(data: ArrayViewD<'_, f32>, what: &str) -> Result<(Vec<usize>, Array2<f32>)> {
    if data.ndim() < 2 {
        return Err(ShapError::shape(
            what,
            data.shape(),
            "[n_rows, ..sample shape] with at least one row",
        ));
    }
    let n = data.shape()[0];
    let sample_shape = data.shape()[1..].to_vec();
    let d: usize = sample_shape.iter().product();
    if n == 0 || d == 0 {
        return Err(ShapError::shape(
            what,
            data.shape(),
            "at least one row of at least one value",
        ));
    }
    xai_core::check_finite(what, &data)?;
    let flat = data
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, d))
        .map_err(|e| ShapError::shape(what, &[n, d], e.to_string()))?;
    Ok((sample_shape, flat))
}

impl BackgroundData {
    /// Equally weighted rows `data` (`[N, ..sample shape]`, e.g. `[N, n_features]` or
    /// `[N, c, h, w]`).
    pub fn new(data: ArrayViewD<'_, f32>) -> Result<Self> {
        let (sample_shape, data) = flatten(data, "background data")?;
        let n = data.nrows();
        Ok(Self {
            sample_shape,
            data,
            weights: vec![1.0 / n as f64; n],
        })
    }

    /// Rows `data` with `weights` (one per row, non-negative, finite, not all 0), normalised to
    /// sum to 1 as shap's `DenseData` does.
    pub fn weighted(data: ArrayViewD<'_, f32>, weights: &[f64]) -> Result<Self> {
        let (sample_shape, data) = flatten(data, "background data")?;
        if weights.len() != data.nrows() {
            return Err(ShapError::shape(
                "background weights",
                &[weights.len()],
                format!("[{}], one per background row", data.nrows()),
            ));
        }
        if let Some(w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(ShapError::param(
                "background weight",
                w,
                "a finite, non-negative number",
            ));
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return Err(ShapError::param(
                "background weights",
                format!("sum {total}"),
                "a positive, finite sum",
            ));
        }
        Ok(Self {
            sample_shape,
            data,
            weights: weights.iter().map(|w| w / total).collect(),
        })
    }

    /// One background sample (shap with a single background row; [`crate::TabularMasker`]).
    pub fn single(sample: ArrayViewD<'_, f32>) -> Result<Self> {
        Self::new(sample.insert_axis(Axis(0)))
    }

    /// shap's `shap.kmeans(data, k)`: the weighted centroids of a seeded k-means of the rows of
    /// `data` (`[N, D]`), weights = cluster sizes (see [`crate::kmeans`]).
    pub fn kmeans(data: ArrayView2<'_, f32>, params: &KMeansParams) -> Result<Self> {
        let summary = params.check()?.fit(data)?;
        Self::weighted(summary.centroids.view().into_dyn(), &summary.weights)
    }

    /// Number of rows `N`.
    pub fn len(&self) -> usize {
        self.data.nrows()
    }

    /// Whether there are no rows (never: construction needs at least one).
    pub fn is_empty(&self) -> bool {
        self.data.nrows() == 0
    }

    /// Shape of one row (the model's input shape).
    pub fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }

    /// The rows, flattened: `[N, D]`.
    pub fn rows(&self) -> ArrayView2<'_, f32> {
        self.data.view()
    }

    /// The weights, summing to 1.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// `Σ_n w_n f(b_n)`: the model's weighted mean output on the background (the base value
    /// before the link), `[n_outputs]`.
    pub fn mean_output(&self, model: &dyn Predictor) -> Result<Vec<f64>> {
        let mut shape = vec![self.len()];
        shape.extend_from_slice(&self.sample_shape);
        let x = self
            .data
            .view()
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|e| ShapError::shape("background data", &shape, e.to_string()))?;
        let out = model.predict(x)?;
        let mut mean = vec![0.0; out.ncols()];
        for (row, &w) in out.axis_iter(Axis(0)).zip(&self.weights) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += w * v as f64;
            }
        }
        Ok(mean)
    }
}

/// Which input elements each player controls.
#[derive(Debug, Clone, PartialEq)]
enum Players {
    /// Player `j` is input element `j` (tables).
    Elements,
    /// Per row, per player, the flat input elements (images: a superpixel in every channel).
    Groups(Vec<Vec<Vec<usize>>>),
}

/// The games of one or more instances against a [`BackgroundData`] (see the module docs).
pub struct BackgroundGames<'a> {
    model: &'a dyn Predictor,
    background: &'a BackgroundData,
    /// `[R, D]`
    instances: Array2<f32>,
    players: Players,
}

impl<'a> BackgroundGames<'a> {
    fn checked(
        model: &'a dyn Predictor,
        background: &'a BackgroundData,
        instances: ArrayViewD<'_, f32>,
        players: Players,
    ) -> Result<Self> {
        if model.input_shape() != background.sample_shape() {
            return Err(ShapError::shape(
                "background rows",
                background.sample_shape(),
                format!("the model's input shape {:?}", model.input_shape()),
            ));
        }
        let expected_shape = |n: &str| {
            format!(
                "[{n}, ..{:?}] like the background rows",
                background.sample_shape()
            )
        };
        if instances.ndim() != background.sample_shape().len() + 1
            || &instances.shape()[1..] != background.sample_shape()
        {
            return Err(ShapError::shape(
                "instances",
                instances.shape(),
                expected_shape("n_rows"),
            ));
        }
        let (_, instances) = flatten(instances, "instances")?;
        Ok(Self {
            model,
            background,
            instances,
            players: Players::Elements,
        }
        .with_players(players))
    }

    fn with_players(mut self, players: Players) -> Self {
        self.players = players;
        self
    }

    /// Tables: rows `instances` (`[R, n_features]`, the model's input shape `[n_features]`);
    /// feature `j` is player `j`.
    pub fn tabular(
        model: &'a dyn Predictor,
        background: &'a BackgroundData,
        instances: ArrayView2<'_, f32>,
    ) -> Result<Self> {
        if background.sample_shape().len() != 1 {
            return Err(ShapError::shape(
                "background rows",
                background.sample_shape(),
                "[n_features] for tabular data",
            ));
        }
        Self::checked(model, background, instances.into_dyn(), Players::Elements)
    }

    /// Images: `images` (`[R, c, h, w]`) with one segmentation each; superpixel `k` of image
    /// `r` (label `start_label + k`) is a player, in every channel, and takes the background
    /// images' pixels when absent.
    pub fn images(
        model: &'a dyn Predictor,
        background: &'a BackgroundData,
        images: ArrayViewD<'_, f32>,
        segmentations: &[Segmentation],
    ) -> Result<Self> {
        if images.ndim() != 4 {
            return Err(ShapError::shape(
                "images",
                images.shape(),
                "[n_images, channels, height, width]",
            ));
        }
        let (r, c, h, w) = (
            images.shape()[0],
            images.shape()[1],
            images.shape()[2],
            images.shape()[3],
        );
        if segmentations.len() != r {
            return Err(ShapError::shape(
                "segmentations",
                &[segmentations.len()],
                format!("[{r}], one per image"),
            ));
        }
        let mut groups = Vec::with_capacity(r);
        for seg in segmentations {
            if seg.dim() != (h, w) {
                return Err(ShapError::shape(
                    "segmentation",
                    seg.labels().shape(),
                    format!("[{h}, {w}] like the images"),
                ));
            }
            let plane = h * w;
            groups.push(
                seg.pixels_per_segment()
                    .into_iter()
                    .map(|pixels| {
                        (0..c)
                            .flat_map(|ch| pixels.iter().map(move |&p| ch * plane + p))
                            .collect()
                    })
                    .collect(),
            );
        }
        Self::checked(model, background, images, Players::Groups(groups))
    }

    /// One image (`[c, h, w]`) on one segmentation.
    pub fn image(
        model: &'a dyn Predictor,
        background: &'a BackgroundData,
        image: ArrayView3<'_, f32>,
        segmentation: &Segmentation,
    ) -> Result<Self> {
        Self::images(
            model,
            background,
            image.insert_axis(Axis(0)).into_dyn(),
            std::slice::from_ref(segmentation),
        )
    }

    /// The background.
    pub fn background(&self) -> &BackgroundData {
        self.background
    }

    fn group<'s>(&'s self, row: usize, player: usize) -> GroupIter<'s> {
        match &self.players {
            Players::Elements => GroupIter::One(Some(player)),
            Players::Groups(g) => GroupIter::Many(g[row][player].iter()),
        }
    }
}

enum GroupIter<'s> {
    One(Option<usize>),
    Many(std::slice::Iter<'s, usize>),
}

impl Iterator for GroupIter<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        match self {
            GroupIter::One(o) => o.take(),
            GroupIter::Many(it) => it.next().copied(),
        }
    }
}

impl GameRows for BackgroundGames<'_> {
    fn n_rows(&self) -> usize {
        self.instances.nrows()
    }

    fn n_players(&self, row: usize) -> usize {
        match &self.players {
            Players::Elements => self.instances.ncols(),
            Players::Groups(g) => g[row].len(),
        }
    }

    fn n_outputs(&self) -> usize {
        self.model.n_outputs()
    }

    fn evaluate(&self, requests: &[CoalitionRequest]) -> Result<Array2<f64>> {
        let n = self.background.len();
        let d = self.instances.ncols();
        let b = requests.len();
        let mut inputs = Array2::<f32>::zeros((b * n, d));
        for (i, req) in requests.iter().enumerate() {
            if req.row >= self.n_rows() || req.mask.len() != self.n_players(req.row) {
                return Err(ShapError::shape(
                    "coalition",
                    &[req.row, req.mask.len()],
                    format!(
                        "a row below {} and one entry per player of that row",
                        self.n_rows()
                    ),
                ));
            }
            let x = self.instances.row(req.row);
            let mut block = inputs.slice_mut(ndarray::s![i * n..(i + 1) * n, ..]);
            block.assign(&self.background.data);
            for (player, _) in req.mask.iter().enumerate().filter(|(_, p)| **p) {
                for e in self.group(req.row, player) {
                    let v = x[e];
                    block.column_mut(e).fill(v);
                }
            }
        }
        let mut shape = vec![b * n];
        shape.extend_from_slice(&self.background.sample_shape);
        let inputs = inputs
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|e| ShapError::shape("masked inputs", &shape, e.to_string()))?;
        let out = self.model.predict(inputs.view())?;
        let o = self.model.n_outputs();
        if out.shape() != [b * n, o] {
            return Err(ShapError::BatchShape {
                what: "model".into(),
                got: out.shape().to_vec(),
                expected: format!("[{}, {o}]", b * n),
            });
        }
        let mut values = Array2::<f64>::zeros((b, o));
        for i in 0..b {
            for (k, &w) in self.background.weights.iter().enumerate() {
                let row = out.row(i * n + k);
                for (acc, &v) in values.row_mut(i).iter_mut().zip(row) {
                    *acc += w * v as f64;
                }
            }
        }
        Ok(values)
    }

    fn inert_players(&self, row: usize) -> Vec<usize> {
        let x = self.instances.row(row);
        (0..self.n_players(row))
            .filter(|&p| {
                self.group(row, p)
                    .all(|e| self.background.data.column(e).iter().all(|&b| b == x[e]))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array3};
    use xai_core::FnPredictor;

    fn sum_model(
        n: usize,
    ) -> FnPredictor<impl Fn(ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> + Send + Sync>
    {
        FnPredictor::new(vec![n], 2, |x: ArrayViewD<'_, f32>| {
            let x = x.into_dimensionality::<ndarray::Ix2>().unwrap();
            let s = x.sum_axis(Axis(1));
            let mut out = Array2::zeros((x.nrows(), 2));
            out.column_mut(0).assign(&s);
            out.column_mut(1).assign(&x.column(0).mapv(|v| v * v));
            Ok(out)
        })
    }

    #[test]
    fn weighted_mean_over_background_rows() {
        let bg = array![[0.0f32, 1.0, 2.0], [10.0, 20.0, 30.0]];
        let data = BackgroundData::weighted(bg.view().into_dyn(), &[3.0, 1.0]).unwrap();
        assert_eq!(data.weights(), &[0.75, 0.25]);
        let model = sum_model(3);
        let x = array![[1.0f32, 1.0, 1.0]];
        let games = BackgroundGames::tabular(&model, &data, x.view()).unwrap();
        let req = |mask: Vec<bool>| CoalitionRequest { row: 0, mask };
        let v = games
            .evaluate(&[req(vec![false; 3]), req(vec![true, false, true])])
            .unwrap();
        // empty: 0.75 * 3 + 0.25 * 60; {0, 2}: 0.75 * (1+1+1) + 0.25 * (1+20+1)
        assert!((v[[0, 0]] - (2.25 + 15.0)).abs() < 1e-9);
        assert!((v[[1, 0]] - (2.25 + 5.5)).abs() < 1e-9);
        // output 1 = x0^2 : empty 0.75 * 0 + 0.25 * 100
        assert!((v[[0, 1]] - 25.0).abs() < 1e-9);
        assert_eq!(data.mean_output(&model).unwrap(), vec![17.25, 25.0]);
        assert!(games.inert_players(0).is_empty());
        let same = array![[1.0f32, 5.0], [1.0, 6.0]];
        let data2 = BackgroundData::new(same.view().into_dyn()).unwrap();
        let model2 = sum_model(2);
        let x2 = array![[1.0f32, 5.0]];
        let g2 = BackgroundGames::tabular(&model2, &data2, x2.view()).unwrap();
        assert_eq!(g2.inert_players(0), vec![0]);
    }

    #[test]
    fn invalid_backgrounds_are_errors() {
        let bg = array![[0.0f32, 1.0]];
        assert!(BackgroundData::weighted(bg.view().into_dyn(), &[1.0, 2.0]).is_err());
        assert!(BackgroundData::weighted(bg.view().into_dyn(), &[-1.0]).is_err());
        assert!(BackgroundData::weighted(bg.view().into_dyn(), &[0.0]).is_err());
        let nan = array![[f32::NAN, 1.0]];
        assert!(BackgroundData::new(nan.view().into_dyn()).is_err());
        let empty = Array2::<f32>::zeros((0, 2));
        assert!(BackgroundData::new(empty.view().into_dyn()).is_err());
        let data = BackgroundData::new(bg.view().into_dyn()).unwrap();
        let model = sum_model(3);
        let x = array![[1.0f32, 1.0]];
        assert!(BackgroundGames::tabular(&model, &data, x.view()).is_err());
        let model2 = sum_model(2);
        let x3 = array![[1.0f32, 1.0, 1.0]];
        assert!(BackgroundGames::tabular(&model2, &data, x3.view()).is_err());
    }

    #[test]
    fn image_players_cover_every_channel() {
        let labels = array![[0usize, 0], [1, 1]];
        let seg = Segmentation::new(labels, 0).unwrap();
        let model = FnPredictor::new(vec![2, 2, 2], 1, |x: ArrayViewD<'_, f32>| {
            let n = x.shape()[0];
            let flat = x.into_shape_with_order((n, 8)).unwrap();
            // output: value of channel 1, pixel (1, 0)
            Ok(flat.column(6).to_owned().insert_axis(Axis(1)))
        });
        let bgs = ndarray::Array4::from_shape_fn((2, 2, 2, 2), |(n, _, _, _)| n as f32 * 10.0);
        let data = BackgroundData::new(bgs.view().into_dyn()).unwrap();
        let image = Array3::from_elem((2, 2, 2), 1.0f32);
        let games = BackgroundGames::image(&model, &data, image.view(), &seg).unwrap();
        assert_eq!(games.n_players(0), 2);
        let req = |mask: Vec<bool>| CoalitionRequest { row: 0, mask };
        let v = games
            .evaluate(&[req(vec![true, false]), req(vec![false, true])])
            .unwrap();
        assert_eq!(v[[0, 0]], 5.0);
        assert_eq!(v[[1, 0]], 1.0);
    }
}
