//! Figures of the four methods' explanations: each function takes an [`Explanation`] (and the
//! images it is about, where the explanation does not hold them) and draws the figure of the
//! Python reference — alibi's similarity grid and class bars, alibi's CEM panel, dianna's
//! KernelSHAP maps, omnixai's L2X masks. Each has a `render_*` twin that returns the pixels.
//! Every method has a cargo feature of the same name (all on by default).

#[cfg(any(feature = "grad-sim", feature = "l2x"))]
use ndarray::ArrayView3;
#[cfg(any(feature = "cem", feature = "shap"))]
use ndarray::ArrayViewD;
#[cfg(any(feature = "grad-sim", feature = "l2x", feature = "cem"))]
use ndarray::{Array2, Axis};
#[cfg(any(
    feature = "grad-sim",
    feature = "cem",
    feature = "shap",
    feature = "l2x"
))]
use {crate::error::VizError, crate::render::RgbImage, std::path::Path, xai_core::Explanation};

#[cfg(feature = "grad-sim")]
use crate::bars::{render_bar_chart_grid, BarChart, BarChartOptions};
#[cfg(any(feature = "grad-sim", feature = "cem"))]
use crate::grid::{render_image_grid, ImageGridOptions};
#[cfg(any(feature = "shap", feature = "l2x"))]
use crate::heatmap::{render_heatmap_panels, ColorScale, HeatmapOptions, HeatmapPanel};
#[cfg(any(
    feature = "grad-sim",
    feature = "cem",
    feature = "shap",
    feature = "l2x"
))]
use crate::render::check_png_path;

/// A 2-D grayscale view of one image: `[h, w]`, or any shape whose leading axes have size 1
/// (`[1, h, w]`, `[1, 1, h, w]`), or `[c, h, w]` / `[1, c, h, w]` with `c > 1`, which is
/// averaged over the channels.
/// The explained image as a figure background: in colour when it has 3 channels (`[3, h, w]` or
/// `[1, 3, h, w]`), else grayscale.
#[cfg(feature = "shap")]
fn panel_image(
    image: ArrayViewD<'_, f32>,
    what: &str,
) -> Result<crate::heatmap::PanelImage, VizError> {
    let shape = image.shape().to_vec();
    let d = shape.len();
    if d >= 3 && shape[d - 3] == 3 && shape[..d - 3].iter().all(|&s| s == 1) {
        let rgb = image
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((3, shape[d - 2], shape[d - 1]))
            .map_err(|e| VizError::InvalidOption(format!("{what}: {e}")))?;
        return crate::heatmap::PanelImage::from_channels(rgb.view());
    }
    Ok(crate::heatmap::PanelImage::Gray(grayscale(image, what)?))
}

#[cfg(any(feature = "cem", feature = "shap"))]
fn grayscale(image: ArrayViewD<'_, f32>, what: &str) -> Result<ndarray::Array2<f32>, VizError> {
    let shape = image.shape().to_vec();
    let d = shape.len();
    if d < 2 || shape[..d.saturating_sub(3)].iter().any(|&s| s != 1) {
        return Err(VizError::SizeMismatch {
            what: what.to_string(),
            expected: "[h, w], [c, h, w] or [1, c, h, w]".into(),
            found: format!("{shape:?}"),
        });
    }
    let (h, w) = (shape[d - 2], shape[d - 1]);
    let c = if d >= 3 { shape[d - 3] } else { 1 };
    if c == 0 || h == 0 || w == 0 {
        return Err(VizError::Empty(format!("{what} has shape {shape:?}")));
    }
    let flat = image
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((c, h, w))
        .map_err(|e| VizError::InvalidOption(format!("{what}: {e}")))?;
    flat.mean_axis(ndarray::Axis(0))
        .ok_or_else(|| VizError::Empty(format!("{what} has no channels")))
}

// ---------------------------------------------------------------------------------------------
// KernelSHAP (dianna)
// ---------------------------------------------------------------------------------------------

/// Options of [`shap_figure`].
#[cfg(feature = "shap")]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShapFigureOptions {
    /// Names of the classes, indexed by class (default: `"class <k>"`).
    pub class_names: Option<Vec<String>>,
    /// Figure title (default: `"KernelSHAP, <n> superpixels"`).
    pub title: Option<String>,
    /// The image's value range (default: its min and max).
    pub image_range: Option<(f32, f32)>,
}

#[cfg(feature = "shap")]
impl ShapFigureOptions {
    /// Sets the class names (indexed by class).
    pub fn class_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.class_names = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the figure title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the image's value range.
    pub fn image_range(mut self, min: f32, max: f32) -> Self {
        self.image_range = Some((min, max));
        self
    }
}

/// dianna's KernelSHAP figure of one explained image: the image titled with the explained class
/// of highest model output, then one attribution map per explained class drawn over it, classes
/// by decreasing model output (`instance_values`), on one shared blue-white-red scale centred on
/// 0 with a colour bar of the SHAP values. `image` is the explained image (`[h, w]`, or
/// `[c, h, w]`, averaged over channels), with the explanation's map size.
#[cfg(feature = "shap")]
pub fn render_shap_figure(
    image: ArrayViewD<'_, f32>,
    explanation: &Explanation<xai_shap::ImageShapValues>,
    opts: &ShapFigureOptions,
) -> Result<RgbImage, VizError> {
    let data = &explanation.data;
    let background = panel_image(image, "explained image")?;
    let n_labels = data.labels.len();
    if n_labels == 0
        || data.attributions.len_of(ndarray::Axis(0)) != n_labels
        || data.instance_values.len() != n_labels
    {
        return Err(VizError::SizeMismatch {
            what: "KernelSHAP explanation".into(),
            expected: "one attribution map and one instance value per explained label".into(),
            found: format!(
                "{n_labels} labels, {} maps, {} instance values",
                data.attributions.len_of(ndarray::Axis(0)),
                data.instance_values.len()
            ),
        });
    }
    let name = |k: usize| match opts.class_names.as_ref().and_then(|n| n.get(k)) {
        Some(n) => n.clone(),
        None => format!("class {k}"),
    };
    let mut order: Vec<usize> = (0..n_labels).collect();
    order.sort_by(|&a, &b| {
        data.instance_values[b]
            .partial_cmp(&data.instance_values[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let top = order[0];
    let mut panels = vec![background.panel(format!(
        "{} ({:.2})",
        name(data.labels[top]),
        data.instance_values[top]
    ))];
    for &row in &order {
        panels.push(background.overlay(
            name(data.labels[row]),
            data.attributions.index_axis(ndarray::Axis(0), row),
        ));
    }
    let mut heat = HeatmapOptions::default()
        .title(opts.title.clone().unwrap_or_else(|| {
            format!("KernelSHAP, {} superpixels", data.segmentation.n_segments())
        }))
        .colorbar_label("SHAP value")
        .scale(ColorScale::Diverging);
    if let Some((lo, hi)) = opts.image_range {
        heat = heat.image_range(lo, hi);
    }
    render_heatmap_panels(&panels, &heat)
}

/// Writes [`render_shap_figure`]'s figure to a PNG file (parent folders are created).
#[cfg(feature = "shap")]
pub fn shap_figure(
    path: impl AsRef<Path>,
    image: ArrayViewD<'_, f32>,
    explanation: &Explanation<xai_shap::ImageShapValues>,
    opts: &ShapFigureOptions,
) -> Result<(), VizError> {
    check_png_path(path.as_ref())?;
    render_shap_figure(image, explanation, opts)?.save_png(path)
}

// ---------------------------------------------------------------------------------------------
// Gradient similarity (alibi)
// ---------------------------------------------------------------------------------------------

/// Options of [`similarity_grid`].
#[cfg(feature = "grad-sim")]
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarityGridOptions {
    /// How many of the most similar references to show per test instance (at most the
    /// explanation's `n_similar`).
    pub k: usize,
    /// Title of each test instance's image (default: `"test <i>"`).
    pub test_titles: Option<Vec<String>>,
    /// A caption per reference, indexed by reference (e.g. `"label 3, pred 3"`), shown under
    /// its rank and score.
    pub reference_captions: Option<Vec<String>>,
    /// Figure title.
    pub title: Option<String>,
    /// The images' value range (default: their min and max).
    pub value_range: Option<(f32, f32)>,
}

#[cfg(feature = "grad-sim")]
impl Default for SimilarityGridOptions {
    fn default() -> Self {
        SimilarityGridOptions {
            k: 5,
            test_titles: None,
            reference_captions: None,
            title: None,
            value_range: None,
        }
    }
}

/// alibi's similarity figure: one row per test instance, its image followed by its `k` most
/// similar references, most similar first, each titled with its rank and score.
/// `test_images` is `[n_test, h, w]`, `reference_images` `[n_references, h, w]` (the fitted
/// reference set, in the order given to `fit`).
#[cfg(feature = "grad-sim")]
pub fn render_similarity_grid(
    test_images: ArrayView3<'_, f32>,
    reference_images: ArrayView3<'_, f32>,
    explanation: &Explanation<xai_grad_sim::SimilarityData>,
    opts: &SimilarityGridOptions,
) -> Result<RgbImage, VizError> {
    let data = &explanation.data;
    let n_test = data.n_test();
    let k_avail = data.most_similar_indices.len_of(Axis(1));
    if n_test != test_images.len_of(Axis(0)) {
        return Err(VizError::SizeMismatch {
            what: "test images".into(),
            expected: format!("{n_test} (the explained instances)"),
            found: format!("{}", test_images.len_of(Axis(0))),
        });
    }
    if opts.k == 0 || opts.k > k_avail {
        return Err(VizError::InvalidOption(format!(
            "k = {} must be in 1..={k_avail} (the explanation's n_similar)",
            opts.k
        )));
    }
    let n_ref = reference_images.len_of(Axis(0));
    let mut images: Vec<Array2<f32>> = Vec::with_capacity(n_test * (opts.k + 1));
    let mut titles: Vec<String> = Vec::with_capacity(images.capacity());
    for i in 0..n_test {
        images.push(test_images.index_axis(Axis(0), i).to_owned());
        titles.push(match opts.test_titles.as_ref().and_then(|t| t.get(i)) {
            Some(t) => t.clone(),
            None => format!("test {i}"),
        });
        for j in 0..opts.k {
            let r = data.most_similar_indices[[i, j]];
            if r >= n_ref {
                return Err(VizError::SizeMismatch {
                    what: "reference images".into(),
                    expected: format!("more than {r} (an index in the explanation)"),
                    found: format!("{n_ref}"),
                });
            }
            images.push(reference_images.index_axis(Axis(0), r).to_owned());
            let score = data.most_similar_scores[[i, j]];
            titles.push(
                match opts.reference_captions.as_ref().and_then(|c| c.get(r)) {
                    Some(c) => format!("#{} {score:.3}: {c}", j + 1),
                    None => format!("#{} score {score:.3}", j + 1),
                },
            );
        }
    }
    let mut grid = ImageGridOptions::default().grid(n_test, opts.k + 1);
    if let Some(t) = &opts.title {
        grid = grid.title(t.clone());
    }
    if let Some((lo, hi)) = opts.value_range {
        grid = grid.value_range(lo, hi);
    }
    render_image_grid(&images, &titles, &grid)
}

/// Writes [`render_similarity_grid`]'s figure to a PNG file (parent folders are created).
#[cfg(feature = "grad-sim")]
pub fn similarity_grid(
    path: impl AsRef<Path>,
    test_images: ArrayView3<'_, f32>,
    reference_images: ArrayView3<'_, f32>,
    explanation: &Explanation<xai_grad_sim::SimilarityData>,
    opts: &SimilarityGridOptions,
) -> Result<(), VizError> {
    check_png_path(path.as_ref())?;
    render_similarity_grid(test_images, reference_images, explanation, opts)?.save_png(path)
}

/// One way of grouping the references into classes for [`similarity_class_bars`] (e.g. by true
/// label, or by the model's prediction).
#[cfg(feature = "grad-sim")]
#[derive(Debug, Clone, PartialEq)]
pub struct ClassGrouping {
    /// What the classes are (`"true class"`, `"predicted class"`): the x axis label.
    pub name: String,
    /// The class of each reference, indexed by reference.
    pub reference_classes: Vec<usize>,
    /// A class to highlight per test instance (e.g. its label), if any.
    pub highlight: Option<Vec<usize>>,
}

/// alibi's second similarity figure: per test instance and per grouping, the mean similarity
/// score of the references of each class, as bars (one chart per test instance and grouping,
/// `groupings.len()` charts per row). Needs the explanation's full score rows (`keep_scores`).
#[cfg(feature = "grad-sim")]
pub fn render_similarity_class_bars(
    explanation: &Explanation<xai_grad_sim::SimilarityData>,
    groupings: &[ClassGrouping],
    title: Option<&str>,
) -> Result<RgbImage, VizError> {
    let data = &explanation.data;
    let scores = data.scores_by_reference().ok_or_else(|| {
        VizError::InvalidOption(
            "the explanation holds no full score rows: explain with keep_scores".into(),
        )
    })?;
    if groupings.is_empty() {
        return Err(VizError::Empty("no class grouping to draw".into()));
    }
    let (n_test, n_ref) = scores.dim();
    let sim_fn = explanation
        .meta
        .params
        .get("sim_fn")
        .and_then(|v| v.as_str())
        .unwrap_or("score")
        .to_string();
    let mut charts = Vec::with_capacity(n_test * groupings.len());
    for i in 0..n_test {
        for g in groupings {
            if g.reference_classes.len() != n_ref {
                return Err(VizError::SizeMismatch {
                    what: format!("reference classes of grouping {:?}", g.name),
                    expected: format!("{n_ref} (one per reference)"),
                    found: format!("{}", g.reference_classes.len()),
                });
            }
            let n_classes = g.reference_classes.iter().max().map_or(0, |&m| m + 1);
            let mut sum = vec![0.0f64; n_classes];
            let mut count = vec![0usize; n_classes];
            for (r, &c) in g.reference_classes.iter().enumerate() {
                sum[c] += scores[[i, r]] as f64;
                count[c] += 1;
            }
            let means: Vec<f32> = sum
                .iter()
                .zip(&count)
                .map(|(&s, &n)| if n > 0 { (s / n as f64) as f32 } else { 0.0 })
                .collect();
            let mut chart = BarChart::new(
                format!("test {i}: by {}", g.name),
                (0..n_classes).map(|c| c.to_string()),
                means,
            )
            .axes(g.name.clone(), format!("mean {sim_fn}"));
            if let Some(h) = g.highlight.as_ref().and_then(|h| h.get(i)) {
                chart = chart.highlight(*h);
            }
            charts.push(chart);
        }
    }
    let mut opts = BarChartOptions::default().cols(groupings.len());
    if let Some(t) = title {
        opts = opts.title(t);
    }
    render_bar_chart_grid(&charts, &opts)
}

/// Writes [`render_similarity_class_bars`]'s figure to a PNG file (parent folders are created).
#[cfg(feature = "grad-sim")]
pub fn similarity_class_bars(
    path: impl AsRef<Path>,
    explanation: &Explanation<xai_grad_sim::SimilarityData>,
    groupings: &[ClassGrouping],
    title: Option<&str>,
) -> Result<(), VizError> {
    check_png_path(path.as_ref())?;
    render_similarity_class_bars(explanation, groupings, title)?.save_png(path)
}

// ---------------------------------------------------------------------------------------------
// CEM (alibi)
// ---------------------------------------------------------------------------------------------

/// alibi's CEM figure: the explained instance titled with its prediction, any `extra` panels
/// (e.g. an autoencoder's reconstruction), then per explanation its pertinent negative or
/// positive titled with its prediction (an empty panel when none was found). All explanations
/// must be of the same instance. `value_range` is the feature range (e.g. `(-0.5, 0.5)`).
#[cfg(feature = "cem")]
pub fn render_cem_figure(
    explanations: &[&Explanation<xai_cem::CemData>],
    extra: &[(String, ArrayViewD<'_, f32>)],
    value_range: (f32, f32),
    title: Option<&str>,
) -> Result<RgbImage, VizError> {
    let first = explanations
        .first()
        .ok_or_else(|| VizError::Empty("no CEM explanation to draw".into()))?;
    let original = grayscale(first.data.x.view(), "explained instance")?;
    let mut images = vec![original.clone()];
    let mut titles = vec![format!("original, pred {}", first.data.x_pred)];
    for (name, image) in extra {
        images.push(grayscale(image.view(), name)?);
        titles.push(name.clone());
    }
    for e in explanations {
        if e.data.x != first.data.x {
            return Err(VizError::InvalidOption(
                "the CEM explanations are of different instances".into(),
            ));
        }
        let name = match e.data.mode {
            xai_cem::Mode::PertinentNegative => "pertinent negative",
            xai_cem::Mode::PertinentPositive => "pertinent positive",
        };
        match &e.data.pertinent {
            Some(p) => {
                images.push(grayscale(p.instance.view(), name)?);
                titles.push(format!("{name}, pred {}", p.pred));
            }
            None => {
                images.push(Array2::from_elem(original.dim(), value_range.0));
                titles.push(format!("no {name} found"));
            }
        }
    }
    let mut grid = ImageGridOptions::default()
        .grid(1, images.len())
        .value_range(value_range.0, value_range.1);
    if let Some(t) = title {
        grid = grid.title(t);
    }
    render_image_grid(&images, &titles, &grid)
}

/// Writes [`render_cem_figure`]'s figure to a PNG file (parent folders are created).
#[cfg(feature = "cem")]
pub fn cem_figure(
    path: impl AsRef<Path>,
    explanations: &[&Explanation<xai_cem::CemData>],
    extra: &[(String, ArrayViewD<'_, f32>)],
    value_range: (f32, f32),
    title: Option<&str>,
) -> Result<(), VizError> {
    check_png_path(path.as_ref())?;
    render_cem_figure(explanations, extra, value_range, title)?.save_png(path)
}

// ---------------------------------------------------------------------------------------------
// L2X (omnixai)
// ---------------------------------------------------------------------------------------------

/// Options of [`l2x_figure`].
#[cfg(feature = "l2x")]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct L2xFigureOptions {
    /// Title of each image's first panel (default: its label and the approximator's label).
    pub image_titles: Option<Vec<String>>,
    /// Value of the pixels outside the selected patches in the third panel (default: the
    /// images' minimum).
    pub background: Option<f32>,
    /// The images' value range (default: their min and max).
    pub image_range: Option<(f32, f32)>,
    /// Figure title.
    pub title: Option<String>,
}

/// omnixai's L2X figure: per explained image one row of three panels — the image, its selection
/// importance on a sequential (viridis) scale from 0 to the largest importance, with a colour
/// bar, and the image with everything outside the `k` selected patches set to the background.
/// `images` is `[n, h, w]` (the explained images, grayscale, at the masks' size).
#[cfg(feature = "l2x")]
pub fn render_l2x_figure(
    images: ArrayView3<'_, f32>,
    explanation: &Explanation<xai_l2x::L2xData>,
    opts: &L2xFigureOptions,
) -> Result<RgbImage, VizError> {
    let data = &explanation.data;
    if images.dim() != data.mask.dim() || images.dim() != data.importance.dim() {
        return Err(VizError::SizeMismatch {
            what: "L2X images".into(),
            expected: format!("{:?} (the explanation's masks)", data.mask.shape()),
            found: format!("{:?}", images.shape()),
        });
    }
    let background = opts
        .background
        .unwrap_or_else(|| images.iter().copied().fold(f32::INFINITY, f32::min));
    let selected = ndarray::Zip::from(&images)
        .and(&data.mask)
        .map_collect(|&v, &m| if m > 0.5 { v } else { background });
    let mut panels = Vec::with_capacity(3 * images.len_of(Axis(0)));
    for i in 0..images.len_of(Axis(0)) {
        let label = data.labels.as_ref().and_then(|l| l.get(i));
        let approx = data.approximator_labels.as_ref().and_then(|l| l.get(i));
        let title = match (opts.image_titles.as_ref().and_then(|t| t.get(i)), label) {
            (Some(t), _) => t.clone(),
            (None, Some(l)) => format!("image {i}, label {l}"),
            (None, None) => format!("image {i}"),
        };
        panels.push(HeatmapPanel::image(title, images.index_axis(Axis(0), i)));
        panels.push(HeatmapPanel::heatmap(
            "importance",
            data.importance.index_axis(Axis(0), i),
        ));
        panels.push(HeatmapPanel::image(
            match approx {
                Some(a) => format!("{} patches: approx. {a}", data.k),
                None => format!("{} patches", data.k),
            },
            selected.index_axis(Axis(0), i),
        ));
    }
    let max_importance = data
        .importance
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, &v| m.max(v));
    let mut heat = HeatmapOptions::default()
        .scale(ColorScale::Sequential)
        .colorbar_label("selection importance");
    heat.cols = Some(3);
    if max_importance > 0.0 {
        heat = heat.limit(max_importance);
    }
    if let Some(t) = &opts.title {
        heat = heat.title(t.clone());
    }
    if let Some((lo, hi)) = opts.image_range {
        heat = heat.image_range(lo, hi);
    }
    render_heatmap_panels(&panels, &heat)
}

/// Writes [`render_l2x_figure`]'s figure to a PNG file (parent folders are created).
#[cfg(feature = "l2x")]
pub fn l2x_figure(
    path: impl AsRef<Path>,
    images: ArrayView3<'_, f32>,
    explanation: &Explanation<xai_l2x::L2xData>,
    opts: &L2xFigureOptions,
) -> Result<(), VizError> {
    check_png_path(path.as_ref())?;
    render_l2x_figure(images, explanation, opts)?.save_png(path)
}
