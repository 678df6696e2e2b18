//! # xai-viz
//!
//! PNG figures for the `xai` workspace, drawn with [`plotters`]' bitmap backend and an embedded
//! font (DejaVu Sans, registered once as `"sans-serif"`): no system font libraries are needed.
//!
//! * [`image_grid`] — rows x columns of small grayscale images, each with its own title
//!   (e.g. `"label 4, pred 4"`), and an optional figure title (alibi's figures).
//! * [`heatmap_panels`] — panels side by side, each a grayscale image, a heatmap, or a heatmap
//!   drawn semi-transparently over the image, on a blue-white-red map centred on 0 with a
//!   symmetric range shared by all panels, and a shared colour bar with a label (dianna's
//!   KernelSHAP figure).
//! * [`bar_chart`] and [`bar_chart_grid`] — labelled bars with a title and axis labels, alone
//!   or several in one figure (alibi's similarity figure).
//! * [`bwr`], [`diverging_color`], [`DivergingColormap`] — the diverging colour map, and
//!   [`viridis`], [`SequentialColormap`] — the sequential one, for others.
//!
//! Figures of explanations (one cargo feature per method, all on by default), each taking the
//! method's [`xai_core::Explanation`]:
//! [`shap_figure`] (dianna's KernelSHAP maps with a diverging colour bar), [`similarity_grid`]
//! and [`similarity_class_bars`] (alibi's gradient-similarity figures), [`cem_figure`] (alibi's
//! CEM panel) and [`l2x_figure`] (omnixai's L2X masks, importances on a sequential scale).
//!
//! Each figure also has a `render_*` twin that returns the pixels as an [`RgbImage`].
//! Every function reports bad input (nothing to draw, sizes that disagree, a bad range) as a
//! [`VizError`] and never panics on it.

mod bars;
mod colormap;
mod error;
mod explained;
mod grid;
mod heatmap;
mod lines;
mod render;
mod text;

pub use bars::{
    bar_chart, bar_chart_grid, render_bar_chart, render_bar_chart_grid, BarChart, BarChartOptions,
};
pub use colormap::{
    blend, bwr, diverging_color, gray_color, symmetric_limit, viridis, DivergingColormap, Rgb,
    SequentialColormap,
};
pub use error::VizError;
pub use grid::{image_grid, render_image_grid, ImageGridOptions};
pub use heatmap::{
    attribution_overlay, heatmap_panels, render_attribution_overlay, render_heatmap_panels,
    ColorScale, HeatmapOptions, HeatmapPanel, PanelImage,
};
pub use lines::{line_charts, render_line_charts, LineChart, LineSeries};
pub use render::{ensure_font, RgbImage, FONT_FAMILY, MAX_FIGURE_SIDE};

#[cfg(feature = "cem")]
pub use explained::{cem_figure, render_cem_figure};
#[cfg(feature = "l2x")]
pub use explained::{l2x_figure, render_l2x_figure, L2xFigureOptions};
#[cfg(feature = "shap")]
pub use explained::{render_shap_figure, shap_figure, ShapFigureOptions};
#[cfg(feature = "grad-sim")]
pub use explained::{
    render_similarity_class_bars, render_similarity_grid, similarity_class_bars, similarity_grid,
    ClassGrouping, SimilarityGridOptions,
};
