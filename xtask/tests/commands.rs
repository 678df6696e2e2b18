//! Runs the `xtask` binary the way the README does — every command form, on tiny budgets
//! (`--smoke`) and into temporary folders — so that a crash in any of them fails CI.

use std::path::Path;
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("the xtask binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = xtask(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "xtask {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fails(args: &[&str], message: &str) {
    let out = xtask(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "xtask {args:?} should fail");
    assert!(
        stderr.contains(message),
        "xtask {args:?}: expected {message:?} in stderr:\n{stderr}"
    );
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn png_is_nonempty(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"),
        "{}",
        path.display()
    );
}

#[test]
fn bare_demo_draws_every_methods_figures() {
    // `cargo xtask demo` (all methods) once panicked after the second demo.
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    ok(&["demo", "--smoke", "--out", o]);
    png_is_nonempty(&out.path().join("similarity/most_similar.png"));
    png_is_nonempty(&out.path().join("similarity/score_by_class.png"));
    png_is_nonempty(&out.path().join("cem/cem.png"));
    png_is_nonempty(&out.path().join("kernelshap/kernelshap_0.png"));
    png_is_nonempty(&out.path().join("l2x/l2x.png"));
    assert!(out.path().join("cem/PN_0/explanation.json").is_file());
    assert!(out.path().join("cem/PP_0/explanation.json").is_file());
    for m in ["similarity", "cem", "kernelshap", "l2x"] {
        assert!(!files(&out.path().join(m)).is_empty(), "{m}");
    }
    assert!(out.path().join("l2x/explanation.json").is_file());
}

#[test]
fn each_method_alone() {
    for (method, figure) in [
        ("similarity", "most_similar.png"),
        ("cem", "cem.png"),
        ("kernelshap", "kernelshap_0.png"),
        ("l2x", "l2x.png"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let o = out.path().to_str().unwrap();
        ok(&["demo", method, "--smoke", "--out", o]);
        assert_eq!(files(out.path()), vec![method.to_string()], "{method}");
        png_is_nonempty(&out.path().join(method).join(figure));
    }
}

#[test]
fn kernelshap_on_an_onnx_file_with_every_flag() {
    let out = tempfile::tempdir().unwrap();
    let model = xai_models::zoo::load_pretrained(xai_models::zoo::ModelKind::BinaryCnn).unwrap();
    let onnx = out.path().join("binary_cnn.onnx");
    xai_onnx::save_onnx(&model, &onnx, &xai_onnx::ExportOptions::default()).unwrap();
    let o = out.path().join("demo");
    let stdout = ok(&[
        "demo",
        "kernelshap",
        "--onnx",
        onnx.to_str().unwrap(),
        "--layout",
        "nchw",
        "--input-scale",
        "1",
        "--input-offset",
        "0",
        "--output",
        "probabilities",
        "--backend",
        "import",
        "--smoke",
        "--out",
        o.to_str().unwrap(),
    ]);
    assert!(stdout.contains("imported"), "{stdout}");
    png_is_nonempty(&o.join("kernelshap/kernelshap_0.png"));
    // The same file through tract.
    ok(&[
        "demo",
        "kernelshap",
        "--onnx",
        onnx.to_str().unwrap(),
        "--backend",
        "tract",
        "--smoke",
        "--out",
        o.to_str().unwrap(),
    ]);
    fails(
        &[
            "demo",
            "kernelshap",
            "--onnx",
            "/nonexistent/model.onnx",
            "--smoke",
        ],
        "model.onnx",
    );
}

/// `demo kernelshap --onnx` takes every ONNX pattern of issue 12 through the importer (not
/// tract): the committed fixtures in PyTorch's and tf2onnx's node patterns (ResNet-style,
/// MobileNetV2-style, PyTorch's runtime flatten, NHWC Keras; their inputs are not 28 x 28, so
/// the digit is resized to them) and the zoo's `resnet_bn` exported to ONNX.
#[test]
fn kernelshap_imports_every_onnx_pattern() {
    let out = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/xai-onnx/fixtures");
    let resnet = xai_models::zoo::load_pretrained(xai_models::zoo::ModelKind::ResnetBn).unwrap();
    let resnet_onnx = out.path().join("resnet_bn.onnx");
    xai_onnx::save_onnx(&resnet, &resnet_onnx, &xai_onnx::ExportOptions::default()).unwrap();
    let cases = [
        (fixtures.join("resnet_block.onnx"), "nchw"),
        (fixtures.join("mobilenet_block.onnx"), "nchw"),
        (fixtures.join("pytorch_cnn.onnx"), "nchw"),
        (fixtures.join("keras_nhwc.onnx"), "nhwc"),
        (resnet_onnx, "nchw"),
    ];
    for (i, (file, layout)) in cases.iter().enumerate() {
        let o = out.path().join(format!("demo{i}"));
        let stdout = ok(&[
            "demo",
            "kernelshap",
            "--onnx",
            file.to_str().unwrap(),
            "--layout",
            layout,
            "--smoke",
            "--out",
            o.to_str().unwrap(),
        ]);
        assert!(
            stdout.contains("with the imported (xai-models layers) back end"),
            "{}: {stdout}",
            file.display()
        );
        png_is_nonempty(&o.join("kernelshap/kernelshap_0.png"));
    }
}

#[test]
fn l2x_trains_a_fresh_explainer_when_asked() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let stdout = ok(&[
        "demo",
        "l2x",
        "--epochs",
        "1",
        "--train-size",
        "64",
        "--smoke",
        "--out",
        o,
    ]);
    assert!(stdout.contains("trained and saved"), "{stdout}");
    assert!(out.path().join("l2x/explainer").is_dir());
    png_is_nonempty(&out.path().join("l2x/l2x.png"));
}

#[test]
fn train_with_epochs_writes_weights_and_record() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let stdout = ok(&[
        "train",
        "binary_cnn",
        "--epochs",
        "1",
        "--train-size",
        "128",
        "--out",
        o,
    ]);
    assert!(stdout.contains("test accuracy"), "{stdout}");
    assert!(out.path().join("binary_cnn.safetensors").is_file());
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("binary_cnn.json")).unwrap())
            .unwrap();
    assert_eq!(record["model"], "binary_cnn");
    assert_eq!(record["epochs"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_command_lines_fail_with_a_message() {
    fails(&["demo", "lime"], "invalid value 'lime'");
    fails(&["demo", "cem", "--onnx", "m.onnx"], "kernelshap demo only");
    fails(&["demo", "--epochs", "3"], "l2x demo only");
    fails(&["demo", "kernelshap", "--layout", "nhwc"], "--onnx");
    fails(&["train"], "<MODEL>");
    fails(&["train", "resnet1000", "--out", "/tmp"], "unknown model");
    fails(&["deploy"], "unrecognized subcommand");
    let help = ok(&["--help"]);
    assert!(help.contains("demo") && help.contains("train"), "{help}");
}

#[test]
fn msrv_declarations_cover_the_dependencies() {
    let stdout = ok(&["msrv"]);
    assert!(
        stdout.contains("xai-core") && stdout.contains("xai-onnx"),
        "{stdout}"
    );
}

#[test]
fn mnist_npy_writes_images_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mnist");
    let stdout = ok(&[
        "mnist-npy",
        "--split",
        "test",
        "--count",
        "12",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("wrote 12 test images"), "{stdout}");
    assert_eq!(files(&out), ["images.npy", "labels.npy"]);
    // An .npy header then 12 x 784 f32 values (and 12 labels).
    let images = std::fs::read(out.join("images.npy")).unwrap();
    assert!(images.starts_with(b"\x93NUMPY"));
    assert!(images.len() > 12 * 784 * 4 && images.len() < 12 * 784 * 4 + 256);
    let labels = std::fs::read(out.join("labels.npy")).unwrap();
    assert!(labels.len() > 12 * 4 && labels.len() < 12 * 4 + 256);
    fails(
        &["mnist-npy", "--count", "0", "--out", out.to_str().unwrap()],
        "--count 0",
    );
    fails(
        &["mnist-npy", "--split", "valid", "--out", "x"],
        "invalid value",
    );
}
