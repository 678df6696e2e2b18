//! Scalings, subsets and one-hot on small synthetic splits.

use ndarray::{Array1, Array3};
use proptest::prelude::*;
use xai_datasets::{one_hot, DatasetError, MnistSplit, Scaling};

fn split(n: usize) -> MnistSplit {
    let images = Array3::from_shape_fn((n, 28, 28), |(i, r, c)| ((i * 7 + r * 28 + c) % 256) as u8);
    let labels = Array1::from_shape_fn(n, |i| (i % 10) as u8);
    MnistSplit::new(images, labels).unwrap()
}

#[test]
fn scalings() {
    let mut s = split(2);
    s.images[[0, 0, 0]] = 0;
    s.images[[0, 0, 1]] = 255;
    s.images[[0, 0, 2]] = 51;
    let u = s.images_f32(Scaling::UnitInterval);
    let c = s.images_f32(Scaling::Centered);
    let r = s.images_f32(Scaling::Raw);
    assert_eq!(u.shape(), &[2, 1, 28, 28]);
    assert_eq!(
        [u[[0, 0, 0, 0]], u[[0, 0, 0, 1]], u[[0, 0, 0, 2]]],
        [0.0, 1.0, 0.2]
    );
    assert_eq!([c[[0, 0, 0, 0]], c[[0, 0, 0, 1]]], [-0.5, 0.5]);
    assert!((c[[0, 0, 0, 2]] - (-0.3)).abs() < 1e-6);
    assert_eq!([r[[0, 0, 0, 1]], r[[0, 0, 0, 2]]], [255.0, 51.0]);
    for sc in [Scaling::UnitInterval, Scaling::Centered, Scaling::Raw] {
        let (lo, hi) = sc.range();
        assert_eq!((sc.apply(0), sc.apply(255)), (lo, hi));
        let flat = s.images_flat_f32(sc);
        assert_eq!(flat.shape(), &[2, 784]);
        assert_eq!(
            flat.row(1).to_vec(),
            s.image_f32(1, sc).iter().copied().collect::<Vec<_>>()
        );
    }
}

#[test]
fn subset_and_errors() {
    let s = split(10);
    let sub = s.subset(&[3, 3, 9]).unwrap();
    assert_eq!(sub.labels_usize(), vec![3, 3, 9]);
    assert_eq!(sub.images.index_axis(ndarray::Axis(0), 2), s.image(9));
    assert!(matches!(
        s.subset(&[1, 10]),
        Err(DatasetError::IndexOutOfRange { index: 10, len: 10 })
    ));
    assert!(s.subset(&[]).unwrap().is_empty());
    assert!(matches!(
        s.random_subset(11, 0),
        Err(DatasetError::SubsetTooLarge {
            requested: 11,
            available: 10
        })
    ));
    assert_eq!(s.head(4).len(), 4);
    assert_eq!(s.head(40).len(), 10);
    assert!(MnistSplit::new(Array3::zeros((2, 28, 28)), Array1::zeros(3)).is_err());
}

#[test]
fn binary_subset_relabels() {
    let s = split(30);
    let b = s.binary_subset(0, 1);
    assert_eq!(b.len(), 6);
    assert_eq!(b.labels_usize(), vec![0, 1, 0, 1, 0, 1]);
    assert_eq!(b.image(1), s.image(1));
    assert_eq!(b.image(2), s.image(10));
    let b = s.binary_subset(7, 2);
    assert_eq!(b.labels_usize(), vec![1, 0, 1, 0, 1, 0]); // 2 (-> 1) comes first
    assert_eq!(s.binary_subset(3, 3).labels_usize(), vec![0, 0, 0]);
    assert!(s.binary_subset(11, 12).is_empty());
}

#[test]
fn one_hot_errors() {
    assert!(matches!(
        one_hot(&[0, 4, 2], 4),
        Err(DatasetError::LabelOutOfRange {
            label: 4,
            position: 1,
            n_classes: 4
        })
    ));
    assert!(one_hot(&[], 0).is_err());
    assert_eq!(one_hot(&[], 3).unwrap().shape(), &[0, 3]);
    let s = split(12);
    let y = s.labels_one_hot(10).unwrap();
    assert_eq!(y.shape(), &[12, 10]);
    assert_eq!(y[[11, 1]], 1.0);
    assert!(s.labels_one_hot(5).is_err());
}

proptest! {
    #[test]
    fn random_subset_is_seeded_and_without_replacement(len in 0usize..200, frac in 0.0f64..=1.0, seed in any::<u64>()) {
        let s = split(len);
        let n = ((len as f64) * frac) as usize;
        let idx = s.random_indices(n, seed).unwrap();
        prop_assert_eq!(idx.len(), n);
        let mut sorted = idx.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), n, "indices must be distinct");
        prop_assert!(idx.iter().all(|&i| i < len));
        // Same seed, same subset.
        prop_assert_eq!(&s.random_indices(n, seed).unwrap(), &idx);
        let sub = s.random_subset(n, seed).unwrap();
        prop_assert_eq!(sub.len(), n);
        for (k, &i) in idx.iter().enumerate() {
            prop_assert_eq!(sub.labels[k], s.labels[i]);
            prop_assert_eq!(sub.image(k), s.image(i));
        }
    }

    #[test]
    fn one_hot_rows_sum_to_one(labels in prop::collection::vec(0usize..10, 0..50)) {
        let y = one_hot(&labels, 10).unwrap();
        for (i, &l) in labels.iter().enumerate() {
            prop_assert_eq!(y.row(i).sum(), 1.0);
            prop_assert_eq!(y[[i, l]], 1.0);
        }
    }
}

#[test]
fn different_seeds_differ() {
    let s = split(1000);
    assert_ne!(
        s.random_indices(100, 1).unwrap(),
        s.random_indices(100, 2).unwrap()
    );
}
