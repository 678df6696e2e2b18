//! Shared by the adapter crates' example tests: runs an adapter's MNIST example binary (built by
//! `cargo test`, which builds a package's examples) on a small budget — it trains, explains and
//! writes both figures — and checks its argument errors.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example binary `name` next to the running test binary.
pub fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: `cargo test -p <crate>` builds the examples (a `--test` filter alone \
         does not)",
        path.display()
    );
    path
}

/// Trains on 1,280 digits, explains, and checks the accuracy line and both PNG figures.
pub fn trains_explains_and_draws_on_a_small_budget(name: &str) {
    let dir = std::env::temp_dir().join(format!("xai-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = Command::new(example(name))
        .args([
            "--train-size",
            "1280",
            "--references",
            "20",
            "--nsamples",
            "60",
        ])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("trained one epoch"), "{stdout}");
    let acc: f32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("test accuracy "))
        .and_then(|v| v.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no accuracy line in {stdout}"));
    // 1,280 digits, one epoch (20 Adam steps): well above chance (10%) already.
    assert!(acc > 30.0, "accuracy {acc}%");
    for f in ["grad_sim.png", "kernel_shap.png"] {
        let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(bytes.starts_with(b"\x89PNG"), "{f} is not a PNG");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Out-of-range, malformed and unknown arguments exit with code 2 and an error; `--help` works.
pub fn argument_errors_exit_with_code_2(name: &str) {
    for args in [
        &["--train-size", "10"][..],
        &["--nsamples", "many"][..],
        &["--references", "0"][..],
        &["--unknown"][..],
    ] {
        let o = Command::new(example(name)).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
    let o = Command::new(example(name)).arg("--help").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("--train-size"));
}
