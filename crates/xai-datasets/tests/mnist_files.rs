//! Tests on the committed MNIST files under `data/mnist/`.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use xai_datasets::{Mnist, Scaling, WORKSPACE_MNIST_DIR};

fn dir() -> PathBuf {
    PathBuf::from(WORKSPACE_MNIST_DIR)
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `SHA256SUMS` as file name -> hex digest.
fn sums() -> HashMap<String, String> {
    let text = std::fs::read_to_string(dir().join("SHA256SUMS")).expect("SHA256SUMS");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            let digest = it.next().unwrap().to_string();
            let name = it
                .next()
                .expect("file name")
                .trim_start_matches('*')
                .to_string();
            (name, digest)
        })
        .collect()
}

#[test]
fn committed_files_match_sha256sums() {
    let sums = sums();
    let stems = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    for stem in stems {
        let gz_name = format!("{stem}.gz");
        let gz = std::fs::read(dir().join(&gz_name)).unwrap();
        assert_eq!(
            hex(Sha256::digest(&gz)),
            sums[&gz_name],
            "sha256 of {gz_name}"
        );
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(
            hex(Sha256::digest(&raw)),
            sums[stem],
            "sha256 of decompressed {gz_name}"
        );
    }
}

#[test]
fn loads_full_mnist_with_known_counts() {
    let t = std::time::Instant::now();
    let m = Mnist::load(dir()).unwrap();
    eprintln!("loaded MNIST in {:?} (this build profile)", t.elapsed());
    assert_eq!(m.train.images.dim(), (60000, 28, 28));
    assert_eq!(m.test.images.dim(), (10000, 28, 28));
    assert_eq!(m.train.len(), 60000);
    assert_eq!(m.test.len(), 10000);
    assert_eq!(
        m.train.class_counts(10),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        m.test.class_counts(10),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // Well-known first labels.
    assert_eq!(m.train.labels.as_slice().unwrap()[..5], [5, 0, 4, 1, 9]);
    assert_eq!(m.test.labels.as_slice().unwrap()[..5], [7, 2, 1, 0, 4]);
    // Pixels span the full byte range; borders are background.
    assert_eq!(*m.train.images.iter().max().unwrap(), 255);
    assert_eq!(m.train.images[[0, 0, 0]], 0);

    let x = m.test.head(3).images_f32(Scaling::UnitInterval);
    assert_eq!(x.shape(), &[3, 1, 28, 28]);
    assert!(x.iter().all(|&v| (0.0..=1.0).contains(&v)));

    // Binary 0-vs-1 subset of the test split: 980 zeros and 1135 ones.
    let b = m.test.binary_subset(0, 1);
    assert_eq!(b.class_counts(2), vec![980, 1135]);
}
