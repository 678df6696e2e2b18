//! Checked types cannot be deserialised around their checks (issue 14): a `batch_size` of 0
//! used to make KernelSHAP loop forever, a bad segmentation to panic or abort.

use ndarray::Array2;
use xai_shap::hyperparams::{KernelShapParams, ValidKernelShapParams};
use xai_shap::slic::{Segmentation, SlicParams, ValidSlicParams};

#[test]
fn kernel_shap_params_are_checked_when_read() {
    let valid = KernelShapParams::new().check().unwrap();
    let json = serde_json::to_value(&valid).unwrap();
    let back: ValidKernelShapParams = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, valid);
    let mut bad = json;
    bad["batch_size"] = serde_json::json!(0);
    let e = serde_json::from_value::<ValidKernelShapParams>(bad).unwrap_err();
    assert!(e.to_string().contains("batch_size"), "{e}");
}

#[test]
fn slic_params_are_checked_when_read() {
    let valid = SlicParams::default().check().unwrap();
    let json = serde_json::to_value(&valid).unwrap();
    let back: ValidSlicParams = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, valid);
    let mut bad = json;
    bad["n_segments"] = serde_json::json!(0);
    let e = serde_json::from_value::<ValidSlicParams>(bad).unwrap_err();
    assert!(e.to_string().contains("n_segments"), "{e}");
}

#[test]
fn segmentations_are_checked_when_read_and_huge_labels_are_refused() {
    let labels = Array2::from_shape_vec((2, 2), vec![1, 1, 2, 3]).unwrap();
    let seg = Segmentation::new(labels, 1).unwrap();
    let json = serde_json::to_value(&seg).unwrap();
    let back: Segmentation = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, seg);
    // A declared count that the labels do not have.
    let mut bad = json.clone();
    bad["n_segments"] = serde_json::json!(7);
    assert!(serde_json::from_value::<Segmentation>(bad).is_err());
    // A label below start_label.
    let mut bad = json;
    bad["start_label"] = serde_json::json!(2);
    assert!(serde_json::from_value::<Segmentation>(bad).is_err());
    // A huge label: more segments than pixels, refused before allocating (it used to abort).
    let huge = Array2::from_shape_vec((1, 2), vec![0, usize::MAX]).unwrap();
    let e = Segmentation::new(huge, 0).unwrap_err();
    assert!(e.to_string().contains("only 2 pixels"), "{e}");
}
