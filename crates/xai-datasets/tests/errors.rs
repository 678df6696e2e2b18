//! Missing, truncated and wrong files give clear typed errors naming the path.

use std::path::Path;

use xai_datasets::{
    read_idx_images, read_idx_labels, write_idx, DatasetError, IdxFormatError, Mnist, TEST_IMAGES,
    TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};

/// Writes a small valid MNIST-like folder: `n_train` / `n_test` 28x28 images, labels `i % 10`.
fn write_tiny(dir: &Path, n_train: usize, n_test: usize, gzip: bool) {
    for (img, lab, n) in [
        (TRAIN_IMAGES, TRAIN_LABELS, n_train),
        (TEST_IMAGES, TEST_LABELS, n_test),
    ] {
        let suffix = if gzip { ".gz" } else { "" };
        let data: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
        write_idx(
            dir.join(format!("{img}{suffix}")),
            &[n, 28, 28],
            &data,
            gzip,
        )
        .unwrap();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        write_idx(dir.join(format!("{lab}{suffix}")), &[n], &labels, gzip).unwrap();
    }
}

#[test]
fn loads_gz_and_raw_folders() {
    for gzip in [true, false] {
        let d = tempfile::tempdir().unwrap();
        write_tiny(d.path(), 20, 7, gzip);
        let m = Mnist::load(d.path()).unwrap();
        assert_eq!(m.train.len(), 20);
        assert_eq!(m.test.len(), 7);
        assert_eq!(m.test.labels_usize(), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(m.train.images[[1, 0, 0]], (784 % 251) as u8);
    }
}

#[test]
fn missing_file_names_path_and_env_var() {
    let d = tempfile::tempdir().unwrap();
    let e = Mnist::load(d.path()).unwrap_err();
    assert!(matches!(e, DatasetError::NotFound { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("XAI_DATA_DIR"), "{msg}");
    assert!(
        msg.contains(
            &d.path()
                .join("t10k-images-idx3-ubyte.gz")
                .display()
                .to_string()
        ) || msg.contains(
            &d.path()
                .join("train-images-idx3-ubyte.gz")
                .display()
                .to_string()
        ),
        "{msg}"
    );

    let e = read_idx_labels(d.path().join("nope")).unwrap_err();
    assert!(
        e.to_string().contains("nope") && e.to_string().contains("XAI_DATA_DIR"),
        "{e}"
    );
}

#[test]
fn truncated_raw_file_is_an_error_naming_path() {
    let d = tempfile::tempdir().unwrap();
    write_tiny(d.path(), 5, 5, false);
    let p = d.path().join(TRAIN_IMAGES);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = Mnist::load(d.path()).unwrap_err();
    match &e {
        DatasetError::Idx {
            path: Some(path),
            kind: IdxFormatError::LengthMismatch {
                expected, found, ..
            },
        } => {
            assert_eq!(path, &p);
            assert_eq!((*expected, *found), (5 * 784, 5 * 784 - 100));
        }
        other => panic!("unexpected error {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&p.display().to_string()) && msg.contains("need 3920"),
        "{msg}"
    );
}

#[test]
fn truncated_gz_file_is_an_error_naming_path() {
    let d = tempfile::tempdir().unwrap();
    write_tiny(d.path(), 50, 5, true);
    let p = d.path().join(format!("{TRAIN_IMAGES}.gz"));
    let bytes = std::fs::read(&p).unwrap();
    for keep in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&p, &bytes[..keep]).unwrap();
        let e = Mnist::load(d.path()).unwrap_err();
        assert!(
            e.to_string().contains(&p.display().to_string()),
            "keep {keep}: {e}"
        );
    }
}

#[test]
fn wrong_file_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    write_tiny(d.path(), 5, 5, true);
    let labels = d.path().join(format!("{TRAIN_LABELS}.gz"));
    let images = d.path().join(format!("{TRAIN_IMAGES}.gz"));
    // A label file read as images and vice versa.
    let e = read_idx_images(&labels).unwrap_err();
    assert!(matches!(e, DatasetError::Unexpected { .. }), "{e:?}");
    assert!(e.to_string().contains("3 dimensions"), "{e}");
    assert!(e.to_string().contains(&labels.display().to_string()), "{e}");
    let e = read_idx_labels(&images).unwrap_err();
    assert!(e.to_string().contains("1 dimension"), "{e}");

    // A non-IDX file (bad magic).
    std::fs::write(&images, b"hello, this is not an IDX file").unwrap();
    let e = Mnist::load(d.path()).unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::Idx {
                kind: IdxFormatError::BadMagic { .. },
                ..
            }
        ),
        "{e:?}"
    );

    // Wrong image size (not 28x28).
    write_idx(&images, &[5, 27, 29], &[0; 5 * 27 * 29], true).unwrap();
    let e = Mnist::load(d.path()).unwrap_err();
    assert!(
        e.to_string().contains("expected 28x28 images, found 27x29"),
        "{e}"
    );

    // Label count not matching image count.
    write_idx(&images, &[6, 28, 28], &[0; 6 * 784], true).unwrap();
    let e = Mnist::load(d.path()).unwrap_err();
    assert!(e.to_string().contains("expected 6 labels"), "{e}");

    // A label that is not a digit.
    write_idx(&images, &[5, 28, 28], &[0; 5 * 784], true).unwrap();
    write_idx(&labels, &[5], &[0, 1, 2, 10, 3], true).unwrap();
    let e = Mnist::load(d.path()).unwrap_err();
    assert!(e.to_string().contains("label 10 at position 3"), "{e}");
}

#[test]
fn env_var_overrides_default_dir() {
    // The only test in the workspace's xai-datasets tests that touches the environment: it runs
    // in this test binary's process, and no other test here reads XAI_DATA_DIR.
    let d = tempfile::tempdir().unwrap();
    write_tiny(d.path(), 3, 2, true);
    std::env::set_var("XAI_DATA_DIR", d.path());
    assert_eq!(Mnist::default_dir(), d.path());
    let m = Mnist::load_default().unwrap();
    assert_eq!((m.train.len(), m.test.len()), (3, 2));
    std::env::set_var("XAI_DATA_DIR", "");
    assert_eq!(
        Mnist::default_dir(),
        std::path::PathBuf::from(xai_datasets::WORKSPACE_MNIST_DIR)
    );
    // Not set: the current directory's data/mnist, then the workspace's folder.
    std::env::remove_var("XAI_DATA_DIR");
    assert_eq!(
        Mnist::search_dirs(),
        vec![
            std::path::PathBuf::from("data/mnist"),
            std::path::PathBuf::from(xai_datasets::WORKSPACE_MNIST_DIR)
        ]
    );
    // Set to a folder without MNIST: the error names it and the variable.
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("XAI_DATA_DIR", empty.path());
    let e = Mnist::load_default().unwrap_err().to_string();
    assert!(
        e.contains(&empty.path().display().to_string()) && e.contains("XAI_DATA_DIR"),
        "{e}"
    );
    std::env::remove_var("XAI_DATA_DIR");
}

#[test]
fn no_data_dir_error_lists_every_folder_and_the_fix() {
    let e = xai_datasets::DatasetError::NoDataDir {
        looked_in: vec!["data/mnist".into(), "/somewhere/data/mnist".into()],
    }
    .to_string();
    for part in [
        "data/mnist",
        "/somewhere/data/mnist",
        "XAI_DATA_DIR",
        "Mnist::load",
    ] {
        assert!(e.contains(part), "{part} missing from: {e}");
    }
}
