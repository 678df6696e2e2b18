//! Runs the `xai` binary on files the tests write: MNIST digits as PNG files (one, a folder, a
//! folder of labelled subfolders), ONNX files exported from the shipped networks, and broken
//! files for the error messages. Budgets are tiny (few samples, iterations, epochs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xai_datasets::{Mnist, Scaling};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_onnx::{save_onnx, ExportOptions};

fn xai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xai"))
        .args(args)
        .output()
        .expect("the xai binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// A user error: exit code 2, one line on stderr that contains `needle`, no panic.
fn assert_user_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "stderr: {err}\nstdout: {}",
        stdout(o)
    );
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// MNIST test digits `indices` as 8-bit grayscale images and their labels.
fn digits(indices: &[usize]) -> Vec<(image::GrayImage, usize)> {
    let mnist = Mnist::load_default().expect("MNIST in data/mnist");
    let split = mnist.test.subset(indices).expect("indices in range");
    let x = split.images_f32(Scaling::UnitInterval);
    let labels = split.labels_usize();
    (0..indices.len())
        .map(|i| {
            let img = image::GrayImage::from_fn(28, 28, |c, r| {
                image::Luma([(x[[i, 0, r as usize, c as usize]] * 255.0).round() as u8])
            });
            (img, labels[i])
        })
        .collect()
}

fn write_png(img: &image::GrayImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).expect("PNG written");
}

fn export(kind: ModelKind, dir: &Path) -> PathBuf {
    let net = load_pretrained(kind).expect("shipped weights in models/");
    let path = dir.join(format!("{}.onnx", kind.name()));
    save_onnx(&net, &path, &ExportOptions::default()).expect("ONNX export");
    path
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

// MNIST test images 2 and 3 are a 1 and a 0.
const ONE: usize = 2;
const ZERO: usize = 3;

#[test]
fn shap_explains_a_png_with_an_onnx_model() {
    let t = tempfile::tempdir().unwrap();
    let model = export(ModelKind::BinaryCnn, t.path());
    let d = digits(&[ZERO]);
    assert_eq!(d[0].1, 0);
    let png = t.path().join("zero.png");
    write_png(&d[0].0, &png);
    let out = t.path().join("out");
    let o = xai(&[
        "shap",
        "--model",
        s(&model),
        "--input",
        s(&png),
        "--out",
        s(&out),
        "--nsamples",
        "60",
        "--n-segments",
        "20",
        "--labels",
        "0,1",
        "--background",
        "0",
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("zero.png: class 0"), "{text}");
    for f in [
        "shap.png",
        "explanation.json",
        "attributions.npy",
        "segment_values.npy",
    ] {
        assert!(out.join("zero").join(f).is_file(), "{f} missing");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("zero/explanation.json")).unwrap())
            .unwrap();
    assert_eq!(json["meta"]["name"], "KernelShapImage");
    assert_eq!(json["data"]["labels"], serde_json::json!([0, 1]));
    let attributions: ndarray::ArrayD<f32> =
        ndarray_npy::read_npy(out.join("zero/attributions.npy")).unwrap();
    assert_eq!(attributions.shape(), &[2, 28, 28]);
}

#[test]
fn shap_on_a_folder_with_json_output_resizes_or_rejects() {
    let t = tempfile::tempdir().unwrap();
    let d = digits(&[ONE, ZERO]);
    let dir = t.path().join("imgs");
    write_png(&d[0].0, &dir.join("a_one.png"));
    // A 0 at 40 x 40 pixels: resized to the model's 28 x 28 by default.
    let big = image::imageops::resize(&d[1].0, 40, 40, image::imageops::FilterType::Triangle);
    write_png(&big, &dir.join("b_zero.png"));
    std::fs::write(dir.join("notes.txt"), "not an input").unwrap();
    let out = t.path().join("out");
    let args = |extra: &[&'static str]| {
        let mut v: Vec<String> = [
            "shap",
            "--model",
            "binary_cnn",
            "--input",
            s(&dir),
            "--out",
            s(&out),
            "--nsamples",
            "40",
            "--n-segments",
            "16",
            "--json",
            "--quiet",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let a = args(&[]);
    let o = xai(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&o);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["prediction"], 1);
    assert_eq!(lines[1]["prediction"], 0);
    assert_eq!(lines[1]["result"]["labels"], serde_json::json!([0, 1]));
    assert!(out.join("b_zero/shap.png").is_file());
    let a = args(&["--fit", "reject"]);
    let o = xai(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_user_error(&o, "the image is 40x40 pixels, the model takes 28x28");
}

#[test]
fn similarity_on_a_labelled_reference_folder() {
    let t = tempfile::tempdir().unwrap();
    let model = export(ModelKind::AlibiCnn, t.path());
    let refs = t.path().join("refs");
    let ref_digits = digits(&[0, 1, ONE, ZERO, 4, 5]);
    for (i, (img, label)) in ref_digits.iter().enumerate() {
        write_png(img, &refs.join(label.to_string()).join(format!("r{i}.png")));
    }
    let test = digits(&[10]);
    let png = t.path().join("test.png");
    write_png(&test[0].0, &png);
    let out = t.path().join("out");
    let o = xai(&[
        "similarity",
        "--model",
        s(&model),
        "--reference",
        s(&refs),
        "--input",
        s(&png),
        "--out",
        s(&out),
        "--n-similar",
        "3",
        "--sim-fn",
        "grad-cos",
        "--precompute-grads",
        "--json",
    ]);
    assert_ok(&o);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    let most = lines[0]["result"]["most_similar"].as_array().unwrap();
    assert_eq!(most.len(), 3);
    // Scores come sorted, most similar first, and cosines are at most 1.
    let scores: Vec<f64> = most.iter().map(|m| m["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] <= 1.0 + 1e-5,
        "{scores:?}"
    );
    // Each reference's class is its folder's name.
    for m in most {
        let source = m["source"].as_str().unwrap();
        let class = m["class"].as_u64().unwrap().to_string();
        assert!(
            source.contains(&format!("/{class}/")),
            "{source} vs {class}"
        );
    }
    for f in [
        "most_similar.png",
        "score_by_class.png",
        "explanation.json",
        "scores.npy",
    ] {
        assert!(out.join("test").join(f).is_file(), "{f} missing");
    }
}

#[test]
fn cem_with_a_shipped_model_and_autoencoder() {
    let t = tempfile::tempdir().unwrap();
    let d = digits(&[4]);
    let png = t.path().join("four.png");
    write_png(&d[0].0, &png);
    let out = t.path().join("out");
    let o = xai(&[
        "cem",
        "--model",
        "cem_cnn",
        "--autoencoder",
        "cem_autoencoder",
        "--input",
        s(&png),
        "--out",
        s(&out),
        "--c-steps",
        "1",
        "--max-iterations",
        "5",
        "--gamma",
        "100",
        "--c-init",
        "1",
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!("{}: class {}", png.display(), d[0].1)),
        "{text}"
    );
    for f in [
        "cem.png",
        "PN/explanation.json",
        "PP/explanation.json",
        "PN/X.npy",
    ] {
        assert!(out.join("four").join(f).is_file(), "{f} missing");
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("four/PN/explanation.json")).unwrap(),
    )
    .unwrap();
    // cem_cnn takes pixels in [-0.5, 0.5]: the feature range and "no information" value follow.
    assert_eq!(
        json["meta"]["params"]["feature_range"]["Global"]["min"],
        -0.5
    );
    assert_eq!(json["meta"]["params"]["c_steps"], 1);
}

#[test]
fn l2x_trains_saves_and_reloads_an_explainer() {
    let t = tempfile::tempdir().unwrap();
    let model = export(ModelKind::MnistNet, t.path());
    let train = t.path().join("train");
    for (i, (img, _)) in digits(&(20..36).collect::<Vec<_>>()).iter().enumerate() {
        write_png(img, &train.join(format!("t{i:02}.png")));
    }
    let d = digits(&[ONE]);
    let png = t.path().join("one.png");
    write_png(&d[0].0, &png);
    let out = t.path().join("out");
    let saved = t.path().join("explainer");
    let o = xai(&[
        "l2x",
        "--model",
        s(&model),
        "--reference",
        s(&train),
        "--input",
        s(&png),
        "--out",
        s(&out),
        "--num-epochs",
        "1",
        "--batch-size",
        "8",
        "--k",
        "4",
        "--save-explainer",
        s(&saved),
        "--json",
    ]);
    assert_ok(&o);
    let lines = json_lines(&o);
    assert_eq!(
        lines[0]["result"]["selected_patches"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    for f in ["l2x.png", "explanation.json", "mask.npy", "importance.npy"] {
        assert!(out.join("one").join(f).is_file(), "{f} missing");
    }
    let mask: ndarray::ArrayD<f32> = ndarray_npy::read_npy(out.join("one/mask.npy")).unwrap();
    assert_eq!(mask.shape(), &[1, 28, 28]);
    // The saved explainer explains the same selection without training.
    let out2 = t.path().join("out2");
    let o = xai(&[
        "l2x",
        "--model",
        s(&model),
        "--explainer",
        s(&saved),
        "--input",
        s(&png),
        "--out",
        s(&out2),
        "--k",
        "4",
        "--json",
    ]);
    assert_ok(&o);
    assert_eq!(
        json_lines(&o)[0]["result"]["selected_patches"],
        lines[0]["result"]["selected_patches"]
    );
}

#[test]
fn npy_inputs_are_taken_as_they_are() {
    let t = tempfile::tempdir().unwrap();
    let mnist = Mnist::load_default().unwrap();
    let x = mnist
        .test
        .subset(&[ONE, ZERO])
        .unwrap()
        .images_f32(Scaling::UnitInterval);
    let npy = t.path().join("batch.npy");
    ndarray_npy::write_npy(&npy, &x).unwrap();
    let out = t.path().join("out");
    let o = xai(&[
        "shap",
        "--model",
        "binary_cnn",
        "--input",
        s(&npy),
        "--out",
        s(&out),
        "--nsamples",
        "30",
        "--n-segments",
        "10",
        "--json",
    ]);
    assert_ok(&o);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (
            lines[0]["prediction"].as_u64(),
            lines[1]["prediction"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert!(out.join("batch_0/shap.png").is_file() && out.join("batch_1/shap.png").is_file());
    // A wrong sample shape is a user error.
    let bad = t.path().join("bad.npy");
    ndarray_npy::write_npy(&bad, &ndarray::Array3::<f32>::zeros((2, 28, 27))).unwrap();
    let o = xai(&[
        "shap",
        "--model",
        "binary_cnn",
        "--input",
        s(&bad),
        "--out",
        s(&out),
    ]);
    assert_user_error(&o, "does not fit the model");
}

#[test]
fn user_errors_are_one_line_with_exit_code_2() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let d = digits(&[ZERO]);
    let png = t.path().join("zero.png");
    write_png(&d[0].0, &png);
    let missing = t.path().join("missing.png");
    let o = xai(&[
        "shap",
        "--model",
        "binary_cnn",
        "--input",
        s(&missing),
        "--out",
        s(&out),
    ]);
    assert_user_error(&o, "no such file");

    let fake_png = t.path().join("fake.png");
    std::fs::write(&fake_png, "hello").unwrap();
    let o = xai(&[
        "shap",
        "--model",
        "binary_cnn",
        "--input",
        s(&fake_png),
        "--out",
        s(&out),
    ]);
    assert_user_error(&o, "not a PNG or JPEG image");

    let fake_onnx = t.path().join("fake.onnx");
    std::fs::write(&fake_onnx, "definitely not protobuf").unwrap();
    let o = xai(&[
        "shap",
        "--model",
        s(&fake_onnx),
        "--input",
        s(&png),
        "--out",
        s(&out),
    ]);
    assert_user_error(&o, "not an ONNX model");

    let o = xai(&[
        "shap",
        "--model",
        "no_such_net",
        "--input",
        s(&png),
        "--out",
        s(&out),
    ]);
    assert_user_error(&o, "not a shipped model");

    // Options out of range: from the parser, and from the library's checks.
    let o = xai(&[
        "shap",
        "--model",
        "binary_cnn",
        "--input",
        s(&png),
        "--out",
        s(&out),
        "--nsamples",
        "0",
    ]);
    assert_user_error(&o, "--nsamples");
    let o = xai(&[
        "shap",
        "--model",
        "binary_cnn",
        "--input",
        s(&png),
        "--out",
        s(&out),
        "--labels",
        "2",
    ]);
    assert_user_error(&o, "class 2 does not exist");
    let o = xai(&[
        "l2x",
        "--model",
        "mnist_net",
        "--reference",
        s(&png),
        "--input",
        s(&png),
        "--out",
        s(&out),
        "--tau",
        "0",
    ]);
    assert_user_error(&o, "tau");
    let o = xai(&["shap", "--model", "binary_cnn", "--input", s(&png)]);
    assert_user_error(&o, "--out");
    let o = xai(&[
        "shap",
        "--model",
        "binary_cnn",
        "--layout",
        "nhwc",
        "--input",
        s(&png),
        "--out",
        s(&out),
    ]);
    assert_user_error(&o, "only apply to ONNX models");

    // Gradient methods on a model tract runs.
    let model = export(ModelKind::BinaryCnn, t.path());
    let o = xai(&[
        "similarity",
        "--model",
        s(&model),
        "--backend",
        "tract",
        "--reference",
        s(&png),
        "--input",
        s(&png),
        "--out",
        s(&out),
    ]);
    assert_user_error(&o, "runs on tract");
}

#[test]
fn help_documents_the_defaults() {
    let o = xai(&["shap", "--help"]);
    assert_ok(&o);
    let h = stdout(&o);
    for needle in [
        "--nsamples",
        "[default: auto]",
        "--n-segments",
        "[default: 100]",
        "--input-scale",
    ] {
        assert!(h.contains(needle), "{needle} not in help:\n{h}");
    }
    let o = xai(&["cem", "--help"]);
    assert!(stdout(&o).contains("[default: 1000]"));
}
