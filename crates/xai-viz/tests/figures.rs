//! Each figure is written to a PNG in a temp folder, read back, and checked for its size and
//! for not being blank; bad input gives typed errors.

use std::path::Path;

use ndarray::Array2;
use xai_viz::*;

/// Reads a PNG back: (width, height, number of distinct colours).
fn read_back(path: &Path) -> (u32, u32, usize) {
    let img = image::open(path).expect("PNG readable").to_rgb8();
    let mut colors = std::collections::HashSet::new();
    for p in img.pixels() {
        colors.insert(p.0);
    }
    (img.width(), img.height(), colors.len())
}

/// A synthetic 28x28 "digit": a ring whose radius depends on `k`.
fn digit(k: usize) -> Array2<f32> {
    Array2::from_shape_fn((28, 28), |(r, c)| {
        let d = ((r as f32 - 14.0).powi(2) + (c as f32 - 14.0).powi(2)).sqrt();
        (1.0 - (d - 4.0 - k as f32 * 0.8).abs() / 2.0).clamp(0.0, 1.0)
    })
}

/// A synthetic attribution map in roughly [-scale, scale].
fn attribution(k: usize, scale: f32) -> Array2<f32> {
    Array2::from_shape_fn((28, 28), |(r, c)| {
        scale * ((r as f32 / 4.0 + k as f32).sin() * (c as f32 / 5.0).cos())
    })
}

#[test]
fn image_grid_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/grid.png");
    let images: Vec<Array2<f32>> = (0..10).map(digit).collect();
    let titles: Vec<String> = (0..10)
        .map(|i| format!("label {i}, pred {}", (i + 1) % 10))
        .collect();
    let opts = ImageGridOptions::default()
        .grid(2, 5)
        .title("Ten digits")
        .value_range(0.0, 1.0);
    image_grid(&path, &images, &titles, &opts).unwrap();
    let (w, h, colors) = read_back(&path);
    let expected = render_image_grid(&images, &titles, &opts).unwrap();
    assert_eq!((w, h), (expected.width, expected.height));
    assert_eq!((w, h), (5 * 122 + 10, 34 + 2 * (22 + 122) + 10));
    assert!(colors > 1, "blank image");
    // Gray levels of the images themselves are there (not just black text on white).
    assert!(colors > 20, "only {colors} colours");

    // Views work too, and no titles at all.
    let views: Vec<_> = images.iter().map(|a| a.view()).collect();
    let img = render_image_grid(&views, &[] as &[&str], &ImageGridOptions::default()).unwrap();
    assert!(img.distinct_colors() > 1);
}

#[test]
fn image_grid_errors() {
    let images = vec![digit(1), digit(2), digit(3)];
    let none: &[&str] = &[];
    let o = ImageGridOptions::default();
    let empty: Vec<Array2<f32>> = vec![];
    assert!(matches!(
        render_image_grid(&empty, none, &o),
        Err(VizError::Empty(_))
    ));
    assert!(matches!(
        render_image_grid(&images, &["a", "b"], &o),
        Err(VizError::SizeMismatch { .. })
    ));
    assert!(matches!(
        render_image_grid(&[Array2::<f32>::zeros((0, 28))], none, &o),
        Err(VizError::Empty(_))
    ));
    assert!(matches!(
        render_image_grid(&images, none, &o.clone().grid(1, 2)),
        Err(VizError::InvalidOption(_))
    ));
    assert!(matches!(
        render_image_grid(&images, none, &o.clone().value_range(1.0, 1.0)),
        Err(VizError::InvalidRange { .. })
    ));
    assert!(matches!(
        render_image_grid(&images, none, &o.clone().value_range(0.0, f32::NAN)),
        Err(VizError::InvalidRange { .. })
    ));
    assert!(matches!(
        render_image_grid(&images, none, &o.clone().cell_px(100_000)),
        Err(VizError::TooLarge { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        image_grid(dir.path().join("x.jpg"), &images, none, &o),
        Err(VizError::NotPng(_))
    ));
    // NaN and infinite pixels are drawn, not a panic.
    let mut odd = digit(0);
    odd[[0, 0]] = f32::NAN;
    odd[[0, 1]] = f32::INFINITY;
    assert!(render_image_grid(&[odd], &["odd"], &o).is_ok());
    // A very long title is shrunk / shortened, not an error.
    let long = "a very long title that cannot possibly fit above a small cell".repeat(3);
    assert!(render_image_grid(&images[..1], &[long.as_str()], &o).is_ok());
}

#[test]
fn heatmap_panels_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shap.png");
    let d = digit(3);
    let maps: Vec<Array2<f32>> = (0..10)
        .map(|k| attribution(k, 0.02 * (k + 1) as f32))
        .collect();
    let mut panels = vec![HeatmapPanel::image("digit", d.view())];
    for (k, m) in maps.iter().enumerate() {
        panels.push(HeatmapPanel::overlay(
            format!("class {k}"),
            d.view(),
            m.view(),
        ));
    }
    panels.push(HeatmapPanel::heatmap("alone", maps[9].view()));
    let opts = HeatmapOptions::default()
        .title("KernelSHAP")
        .colorbar_label("SHAP value")
        .image_range(0.0, 1.0);
    heatmap_panels(&path, &panels, &opts).unwrap();
    let (w, h, colors) = read_back(&path);
    assert_eq!(w, 12 * (140 + 12) + 12);
    assert!(h > 140 + 50, "{h}");
    assert!(colors > 50, "only {colors} colours");
    // The colour bar runs from saturated blue to saturated red.
    let img = render_heatmap_panels(&panels, &opts).unwrap();
    let flat: Vec<[u8; 3]> = img
        .data
        .chunks_exact(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    assert!(flat.contains(&[0, 0, 255]) && flat.contains(&[255, 0, 0]));

    // Wrapped into rows, without colour bar label, with a fixed limit.
    let opts = HeatmapOptions {
        cols: Some(4),
        ..HeatmapOptions::default()
    }
    .limit(0.1);
    let img = render_heatmap_panels(&panels, &opts).unwrap();
    assert_eq!(img.width, 4 * 152 + 12);
    assert!(img.distinct_colors() > 1);
}

#[test]
fn heatmap_panels_errors() {
    let d = digit(1);
    let m = attribution(1, 1.0);
    let small = Array2::<f32>::zeros((14, 14));
    let o = HeatmapOptions::default();
    assert!(matches!(
        render_heatmap_panels(&[], &o),
        Err(VizError::Empty(_))
    ));
    let neither = HeatmapPanel {
        rgb: None,
        title: "x".into(),
        image: None,
        heatmap: None,
    };
    assert!(matches!(
        render_heatmap_panels(&[neither], &o),
        Err(VizError::Empty(_))
    ));
    assert!(matches!(
        render_heatmap_panels(&[HeatmapPanel::overlay("x", d.view(), small.view())], &o),
        Err(VizError::SizeMismatch { .. })
    ));
    let p = [HeatmapPanel::overlay("x", d.view(), m.view())];
    assert!(render_heatmap_panels(
        &p,
        &HeatmapOptions {
            overlay_alpha: 1.5,
            ..o.clone()
        }
    )
    .is_err());
    assert!(render_heatmap_panels(&p, &o.clone().limit(0.0)).is_err());
    assert!(render_heatmap_panels(&p, &o.clone().limit(f32::INFINITY)).is_err());
    assert!(render_heatmap_panels(&p, &o.clone().image_range(2.0, 1.0)).is_err());
    // All-zero or NaN attributions still draw.
    let z = Array2::<f32>::zeros((28, 28));
    let nan = Array2::<f32>::from_elem((28, 28), f32::NAN);
    let img = render_heatmap_panels(
        &[
            HeatmapPanel::heatmap("zero", z.view()),
            HeatmapPanel::overlay("nan", d.view(), nan.view()),
        ],
        &o,
    )
    .unwrap();
    assert!(img.distinct_colors() > 1);
}

#[test]
fn bar_chart_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bars.png");
    let values = [0.1f32, 0.8, 0.25, -0.05, 0.3, 0.12, 0.0, 0.4, 0.33, 0.2];
    let chart = BarChart::new(
        "mean similarity per class",
        (0..10).map(|c| c.to_string()),
        values,
    )
    .axes("class", "mean score")
    .highlight(1);
    bar_chart(&path, &chart, &BarChartOptions::default()).unwrap();
    let (w, h, colors) = read_back(&path);
    assert_eq!((w, h), (480, 320));
    assert!(colors > 1);
    // Both bar colours are present.
    let img = render_bar_chart(&chart, &BarChartOptions::default()).unwrap();
    let flat: Vec<[u8; 3]> = img
        .data
        .chunks_exact(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    assert!(flat.contains(&[31, 119, 180]) && flat.contains(&[214, 39, 40]));
}

#[test]
fn bar_chart_grid_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.png");
    let mut charts = vec![];
    for i in 0..4 {
        let v: Vec<f32> = (0..10).map(|c| ((c + i) as f32 * 0.7).sin()).collect();
        charts.push(
            BarChart::new(
                format!("test image {i}: by true class"),
                (0..10).map(|c| c.to_string()),
                v.clone(),
            )
            .axes("true class", "mean score"),
        );
        charts.push(
            BarChart::new(
                format!("test image {i}: by predicted class"),
                (0..10).map(|c| c.to_string()),
                v,
            )
            .axes("predicted class", "mean score")
            .highlight(i),
        );
    }
    let opts = BarChartOptions::default()
        .cols(2)
        .title("Similarity scores");
    bar_chart_grid(&path, &charts, &opts).unwrap();
    let (w, h, colors) = read_back(&path);
    assert_eq!((w, h), (2 * 480, 36 + 4 * 320));
    assert!(colors > 1);
}

#[test]
fn bar_chart_errors() {
    let o = BarChartOptions::default();
    let ok = BarChart::new("t", ["a", "b"], [1.0, 2.0]);
    assert!(matches!(
        render_bar_chart(&BarChart::new("t", Vec::<String>::new(), vec![]), &o),
        Err(VizError::Empty(_))
    ));
    assert!(matches!(
        render_bar_chart(&BarChart::new("t", ["a"], [1.0, 2.0]), &o),
        Err(VizError::SizeMismatch { .. })
    ));
    assert!(matches!(
        render_bar_chart(&BarChart::new("t", ["a", "b"], [1.0, f32::NAN]), &o),
        Err(VizError::NonFinite { .. })
    ));
    assert!(render_bar_chart(&ok.clone().highlight(2), &o).is_err());
    assert!(render_bar_chart(
        &ok,
        &BarChartOptions {
            chart_size: (10, 10),
            ..o.clone()
        }
    )
    .is_err());
    assert!(matches!(
        render_bar_chart_grid(&[], &o),
        Err(VizError::Empty(_))
    ));
    assert!(render_bar_chart_grid(&[ok.clone(), BarChart::new("t", ["a"], [])], &o).is_err());
    assert!(render_bar_chart_grid(std::slice::from_ref(&ok), &o.clone().cols(0)).is_err());
    // All-zero, all-negative and single bars draw.
    for c in [
        BarChart::new("zero", ["a", "b"], [0.0, 0.0]),
        BarChart::new("neg", ["a", "b"], [-1.0, -3.0]),
        BarChart::new("", ["only"], [5.0]),
    ] {
        assert!(render_bar_chart(&c, &o).unwrap().distinct_colors() > 1);
    }
}

#[test]
fn colormap_is_usable_by_others() {
    let cm = DivergingColormap::symmetric_for(&[-2.0, 1.0]);
    assert_eq!(cm.color(-2.0), [0, 0, 255]);
    assert_eq!(cm.color(0.0), [255, 255, 255]);
    assert_eq!(cm.color(1.0), [255, 128, 128]);
    assert_eq!(diverging_color(2.0, 2.0), [255, 0, 0]);
}

/// Pixels of `img` close to `rgb`.
fn count_near(img: &RgbImage, rgb: [u8; 3]) -> usize {
    img.data
        .chunks(3)
        .filter(|p| {
            p.iter()
                .zip(rgb)
                .all(|(a, b)| (*a as i32 - b as i32).abs() < 30)
        })
        .count()
}

/// A 3-channel image is drawn in colour (a red photo shows red pixels; its grayscale version
/// none), attribution maps are drawn over it, and maps of another size are errors.
#[test]
fn attribution_overlay_draws_photos_in_colour() {
    let (h, w) = (20, 30);
    let mut red = ndarray::Array3::<f32>::zeros((3, h, w));
    red.index_axis_mut(ndarray::Axis(0), 0).fill(1.0);
    let map = Array2::from_shape_fn((h, w), |(r, c)| (r as f32 - c as f32) / 30.0);
    let opts = HeatmapOptions::default().image_range(0.0, 1.0);
    let maps = [("class 0".to_string(), map.view())];
    let colour = render_attribution_overlay(red.view(), "photo", &maps, &opts).unwrap();
    let gray = red
        .mean_axis(ndarray::Axis(0))
        .unwrap()
        .insert_axis(ndarray::Axis(0));
    let gray_fig = render_attribution_overlay(gray.view(), "photo", &maps, &opts).unwrap();
    // The photo's panel (scaled into 140 x 93 pixels) is red; the heatmap and colour bar have
    // red in both figures.
    let (in_colour, in_gray) = (
        count_near(&colour, [255, 0, 0]),
        count_near(&gray_fig, [255, 0, 0]),
    );
    assert!(
        in_colour > in_gray + 10_000,
        "{in_colour} vs {in_gray} red pixels"
    );
    let wrong = Array2::<f32>::zeros((h, w + 1));
    let e = render_attribution_overlay(
        red.view(),
        "photo",
        &[("bad".to_string(), wrong.view())],
        &opts,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("the image's height and width"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overlay.png");
    attribution_overlay(&path, red.view(), "photo", &maps, &opts).unwrap();
    assert_eq!(read_back(&path).0, colour.width);
}

/// Curves of several methods on shared axes, side by side; empty and non-finite curves are
/// errors.
#[test]
fn line_charts_draw_curves_with_a_legend() {
    let curve = |name: &str, f: fn(f64) -> f64| LineSeries {
        name: name.into(),
        points: (0..=10)
            .map(|i| i as f64 / 10.0)
            .map(|x| (x, f(x)))
            .collect(),
    };
    let charts = [
        LineChart {
            title: "deletion".into(),
            x_label: "fraction removed".into(),
            series: vec![curve("shap", |x| 1.0 - x), curve("random", |x| 1.0 - x * x)],
        },
        LineChart {
            title: "insertion".into(),
            x_label: "fraction inserted".into(),
            series: vec![curve("shap", |x| x), curve("random", |x| x * x)],
        },
    ];
    let img = render_line_charts(&charts, Some("d0"), (320, 240), None).unwrap();
    assert_eq!((img.width, img.height), (640, 276));
    // tab10's blue and orange are drawn.
    assert!(count_near(&img, [31, 119, 180]) > 50);
    assert!(count_near(&img, [255, 127, 14]) > 50);
    let bad = LineChart {
        series: vec![LineSeries {
            name: "nan".into(),
            points: vec![(0.0, f64::NAN)],
        }],
        ..LineChart::default()
    };
    assert!(render_line_charts(&[bad], None, (320, 240), None).is_err());
    assert!(render_line_charts(&[LineChart::default()], None, (320, 240), None).is_err());
    assert!(render_line_charts(&charts, None, (10, 10), None).is_err());
}
