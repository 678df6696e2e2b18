//! Loads MNIST (from `$XAI_DATA_DIR` or the workspace's `data/mnist`) and prints counts per digit.
//!
//! `cargo run --release -p xai-datasets --example load_mnist`

use std::time::Instant;

use xai_datasets::{Mnist, MNIST_CLASSES};

fn main() {
    let dir = Mnist::default_dir();
    let t = Instant::now();
    let mnist = match Mnist::load(&dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let elapsed = t.elapsed();
    println!(
        "loaded MNIST from {} in {:.3} s",
        dir.display(),
        elapsed.as_secs_f64()
    );
    for (name, split) in [("train", &mnist.train), ("test", &mnist.test)] {
        let (r, c) = split.image_shape();
        println!("{name}: {} images of {r}x{c}", split.len());
        let counts = split.class_counts(MNIST_CLASSES);
        for (digit, count) in counts.iter().enumerate() {
            println!("  digit {digit}: {count}");
        }
    }
}
