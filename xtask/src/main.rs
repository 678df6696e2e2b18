//! `cargo xtask` — developer workflows for the xai workspace (the rust-analyzer pattern: plain
//! Rust instead of shell scripts). The alias in `.cargo/config.toml` builds it in release.
//!
//! ```text
//! cargo xtask train <model|all> [--epochs N] [--train-size N] [--out DIR]
//! cargo xtask demo [<method>|all] [--out DIR] [--smoke]
//! cargo xtask demo kernelshap --onnx <file> [--layout nchw|nhwc] [--input-scale <f>]
//!     [--input-offset <f>] [--output logits|probabilities|log-probabilities]
//!     [--backend auto|import|graph|tract]
//! cargo xtask demo l2x [--epochs N] [--train-size N]
//! ```

/// Large activation buffers are allocated every training step; mimalloc reuses them instead of
/// returning them to the OS (see docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = xtask::cli::Cli::parse();
    match xtask::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
