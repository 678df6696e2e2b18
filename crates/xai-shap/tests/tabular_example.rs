//! Runs the `tabular` example binary (built by `cargo test`, which builds a package's examples)
//! on the committed fixtures: the JSON layout the docs promise, efficiency of every row, and its
//! argument errors.

use std::path::{Path, PathBuf};
use std::process::Command;

fn example() -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/tabular
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir
        .join("examples")
        .join(format!("tabular{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: `cargo test -p xai-shap` builds the examples (a `--test` filter alone \
         does not)",
        path.display()
    );
    path
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(example()).args(args).output().unwrap()
}

#[test]
fn explains_rows_of_a_tabular_onnx_model() {
    let dir = std::env::temp_dir().join(format!("xai-shap-tabular-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for extra in [&[][..], &["--kmeans", "5", "--estimator", "shap"][..]] {
        let out = dir.join("out.json");
        let (model, bg, ex) = (
            fixture("tabular_mlp.onnx"),
            fixture("tabular_background50.csv"),
            fixture("tabular_explain.csv"),
        );
        let mut args = vec![
            "--model",
            &model,
            "--background",
            &bg,
            "--explain",
            &ex,
            "--nsamples",
            "300",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{extra:?}: {stderr}");
        // The importer runs the MLP (no tract fallback).
        assert!(stderr.contains("imported"), "{stderr}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let names = json["feature_names"].as_array().unwrap();
        assert_eq!(names.len(), 11);
        assert_eq!(names[0], "f0");
        let rows = json["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        for row in rows {
            let phi = row["shap_values"].as_array().unwrap();
            let base = row["base_values"].as_array().unwrap();
            let outputs = row["outputs"].as_array().unwrap();
            assert_eq!((phi.len(), base.len(), outputs.len()), (2, 2, 2));
            for k in 0..2 {
                let values: Vec<f64> = phi[k]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                assert_eq!(values.len(), 11);
                // Efficiency: base value plus the SHAP values is the model's output.
                let total = base[k].as_f64().unwrap() + values.iter().sum::<f64>();
                let want = outputs[k].as_f64().unwrap();
                assert!(
                    (total - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{extra:?}: {total} vs {want}"
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn argument_errors_are_reported() {
    let o = run(&["--model"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--model needs a value"));
    let o = run(&["--background", &fixture("tabular_background50.csv")]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("usage: tabular"));
    let o = run(&["--estimator", "exact"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected default|shap"));
    let o = run(&[
        "--model",
        &fixture("tabular_explain.csv"),
        "--background",
        &fixture("tabular_background50.csv"),
        "--explain",
        &fixture("tabular_explain.csv"),
        "--out",
        "/dev/null",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("tabular_explain.csv") && err.contains("ONNX"),
        "{err}"
    );
}
