//! Arbitrary shapes, values and options give a figure or a typed error, never a panic.

use ndarray::Array2;
use proptest::prelude::*;
use xai_viz::*;

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -2.0f32..2.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
    ]
}

/// Mostly finite values: most generated figures should get through validation and be drawn.
fn finite_mostly() -> impl Strategy<Value = f32> {
    prop_oneof![20 => -2.0f32..2.0, 1 => value()]
}

fn matrix() -> impl Strategy<Value = Array2<f32>> {
    prop_oneof![1 => (0usize..3, 0usize..3), 6 => (1usize..30, 1usize..30)].prop_flat_map(
        |(r, c)| {
            prop::collection::vec(value(), r * c)
                .prop_map(move |v| Array2::from_shape_vec((r, c), v).unwrap())
        },
    )
}

/// An image and/or a heatmap, usually of the same shape.
fn panel_parts() -> impl Strategy<Value = (Option<Array2<f32>>, Option<Array2<f32>>)> {
    prop_oneof![
        6 => (1usize..30, 1usize..30, 0u8..3).prop_flat_map(|(r, c, kind)| {
            let m = || prop::collection::vec(finite_mostly(), r * c)
                .prop_map(move |v| Array2::from_shape_vec((r, c), v).unwrap());
            (m(), m()).prop_map(move |(a, b)| match kind {
                0 => (Some(a), None),
                1 => (None, Some(b)),
                _ => (Some(a), Some(b)),
            })
        }),
        1 => (prop::option::of(matrix()), prop::option::of(matrix())),
    ]
}

/// A figure's pixel buffer matches its size; an error has a message.
fn assert_figure(r: Result<RgbImage, VizError>) -> Result<(), TestCaseError> {
    match r {
        Ok(img) => {
            prop_assert!(img.width > 0 && img.height > 0);
            prop_assert_eq!(img.data.len(), 3 * img.width as usize * img.height as usize);
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn image_grid_never_panics(
        images in prop::collection::vec(matrix(), 0..5),
        n_titles in prop_oneof![4 => Just(None), 1 => (0usize..5).prop_map(Some)],
        rows in prop::option::of(0usize..4),
        cols in prop::option::of(0usize..4),
        range in prop::option::of((value(), value())),
        cell in prop_oneof![1 => 0u32..10, 6 => 10u32..80],
    ) {
        let n_titles = n_titles.unwrap_or(images.len());
        let titles: Vec<String> = (0..n_titles).map(|i| format!("title {i}")).collect();
        let opts = ImageGridOptions { rows, cols, value_range: range, cell_px: cell, title: Some("T".into()), ..Default::default() };
        if let Ok(img) = render_image_grid(&images, &titles, &opts) {
            prop_assert_eq!(img.data.len(), 3 * img.width as usize * img.height as usize);
        }
    }

    #[test]
    fn heatmap_panels_never_panic(
        parts in prop::collection::vec(panel_parts(), 0..5),
        limit in prop::option::of(prop_oneof![4 => 0.01f32..3.0, 1 => value()]),
        alpha in prop_oneof![6 => 0.0f32..=1.0, 1 => -0.5f32..1.5],
        cols in prop::option::of(0usize..4),
        panel in prop_oneof![1 => 0u32..10, 6 => 10u32..80],
    ) {
        let panels: Vec<HeatmapPanel<'_>> = parts
            .iter()
            .enumerate()
            .map(|(i, (img, heat))| HeatmapPanel {
                rgb: None,
                title: format!("panel {i}"),
                image: img.as_ref().map(|a| a.view()),
                heatmap: heat.as_ref().map(|a| a.view()),
            })
            .collect();
        let opts = HeatmapOptions { limit, overlay_alpha: alpha, cols, panel_px: panel, colorbar_label: Some("v".into()), ..Default::default() };
        assert_figure(render_heatmap_panels(&panels, &opts))?;
    }

    #[test]
    fn bar_charts_never_panic(
        values in prop::collection::vec(finite_mostly(), 0..12),
        n_labels in prop_oneof![6 => Just(None), 1 => (0usize..12).prop_map(Some)],
        highlight in prop::option::of(0usize..12),
        w in 100u32..600,
        h in 90u32..400,
        cols in prop::option::of(0usize..3),
    ) {
        let chart = BarChart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            labels: (0..n_labels.unwrap_or(values.len())).map(|i| format!("label {i}")).collect(),
            values,
            highlight,
        };
        let opts = BarChartOptions { chart_size: (w, h), cols, ..Default::default() };
        assert_figure(render_bar_chart(&chart, &opts))?;
        assert_figure(render_bar_chart_grid(&[chart.clone(), chart], &opts))?;
    }
}
