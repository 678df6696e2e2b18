//! SLIC against scikit-image: `fixtures/slic_skimage.json` holds skimage 0.26 labels for MNIST
//! test digits (grayscale, `channel_axis=None`) and a synthetic RGB image, made by
//! `fixtures/make_slic_fixture.py`.

use ndarray::{Array2, Array3};
use serde::Deserialize;
use xai_shap::slic::SlicParams;

#[derive(Deserialize)]
struct Fixture {
    skimage_version: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    channels: usize,
    height: usize,
    width: usize,
    image: Vec<f32>,
    n_segments: usize,
    compactness: f32,
    sigma: f32,
    labels: Vec<usize>,
}

#[test]
fn labels_match_scikit_image() {
    let text = include_str!("fixtures/slic_skimage.json");
    let fixture: Fixture = serde_json::from_str(text).unwrap();
    assert!(!fixture.cases.is_empty());
    for case in &fixture.cases {
        let image =
            Array3::from_shape_vec((case.channels, case.height, case.width), case.image.clone())
                .unwrap();
        let seg = SlicParams::new()
            .n_segments(case.n_segments)
            .compactness(case.compactness)
            .sigma(case.sigma)
            .check()
            .unwrap()
            .segment(image.view())
            .unwrap();
        let expected =
            Array2::from_shape_vec((case.height, case.width), case.labels.clone()).unwrap();
        let n_expected = case.labels.iter().max().unwrap();
        let mismatches = seg
            .labels()
            .iter()
            .zip(expected.iter())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            mismatches, 0,
            "{} (skimage {}): {mismatches} of {} pixels differ; {} segments vs skimage's {n_expected}",
            case.name,
            fixture.skimage_version,
            case.labels.len(),
            seg.n_segments()
        );
    }
}
