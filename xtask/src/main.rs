//! `cargo xtask` — developer workflows for the xai workspace (the rust-analyzer pattern: plain
//! Rust instead of shell scripts). The alias in `.cargo/config.toml` builds it in release.
//!
//! ```text
//! cargo xtask train <model|all>      train an example network and write models/<model>.safetensors
//! cargo xtask demo [<method>|all]    reproduce a seed's figures under target/xai-demo/<method>/
//! ```

use std::path::PathBuf;

use anyhow::{bail, Result};

mod cem;
mod demo;
mod kernelshap;
mod l2x;
mod similarity;
mod train;

/// Large activation buffers are allocated every training step; mimalloc reuses them instead of
/// returning them to the OS (see docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage:
  cargo xtask train <model|all>     models: alibi_cnn, cem_cnn, cem_autoencoder, mnist_net, binary_cnn
  cargo xtask demo [<method>|all]   methods: similarity, cem, kernelshap, l2x
                                    (kernelshap also takes --onnx <file> [--layout nchw|nhwc]
                                     [--input-scale <f>] [--input-offset <f>]
                                     [--output logits|probabilities|log-probabilities]
                                     [--backend auto|import|tract])";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("train") => train::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("-h") | Some("--help") | Some("help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// `target/xai-demo/<method>/`, created.
pub fn demo_dir(method: &str) -> Result<PathBuf> {
    let dir = workspace_root()
        .join("target")
        .join("xai-demo")
        .join(method);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
