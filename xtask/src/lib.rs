//! The library behind `cargo xtask` (see `main.rs`): the command line ([`cli`]), training of
//! the shipped networks and the four demos. A library so that tests can call each step.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub mod cem;
pub mod cli;
pub mod kernelshap;
pub mod l2x;
pub mod mnist_npy;
pub mod msrv;
pub mod similarity;
pub mod train;

/// Runs a parsed command line.
pub fn run(cli: cli::Cli) -> Result<()> {
    match cli.command {
        cli::Command::Train(args) => train::run(&args),
        cli::Command::Demo(args) => run_demos(&args),
        cli::Command::Msrv => msrv::run(),
        cli::Command::MnistNpy(args) => mnist_npy::run(&args),
    }
}

/// Runs the demos `args` names, each into `<out>/<method>/`; with several, every one runs even
/// if an earlier one failed, and the command fails if any did.
pub fn run_demos(args: &cli::DemoArgs) -> Result<()> {
    let methods = args.methods()?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => workspace_root().join("target").join("xai-demo"),
    };
    let mut failed = Vec::new();
    for m in &methods {
        println!("== demo {m}");
        let dir = demo_dir(&out, m)?;
        let result = match *m {
            "similarity" => similarity::run(&dir, args.smoke),
            "cem" => cem::run(&dir, args.smoke),
            "kernelshap" => kernelshap::run(&dir, &args.onnx, args.smoke),
            "l2x" => l2x::run(&dir, &args.l2x, args.smoke),
            other => bail!("no demo named `{other}`"),
        };
        if let Err(e) = result {
            eprintln!("demo {m} failed: {e:#}");
            failed.push(*m);
        }
    }
    if !failed.is_empty() {
        bail!("demo {} failed (see above)", failed.join(", "));
    }
    Ok(())
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// `<out>/<method>/`, created.
pub fn demo_dir(out: &Path, method: &str) -> Result<PathBuf> {
    let dir = out.join(method);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
