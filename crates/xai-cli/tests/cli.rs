//! Runs the `xai` binary on files the tests write: MNIST digits as PNG files (one, a folder, a
//! folder of labelled subfolders) and as JPEG and RGB images, ONNX files exported from the
//! shipped networks and from small RGB networks built here, and broken files for the error
//! messages. Budgets are tiny (few samples, iterations, epochs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xai_datasets::{Mnist, Scaling};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_models::{Dense, Layer, NamedLayer, Network};
use xai_onnx::{save_onnx, ExportOptions, Layout};

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

/// `xai <method> --model <model> --input <input> --out <out> <extra>...`: the shape every
/// subcommand shares.
fn explain(method: &str, model: &str, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        method,
        "--model",
        model,
        "--input",
        s(input),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    xai(&args)
}

/// Asserts that each of `files` (relative to `dir`) was written.
fn assert_files(dir: &Path, files: &[&str]) {
    for f in files {
        assert!(dir.join(f).is_file(), "{} missing", dir.join(f).display());
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_array(path: &Path) -> ndarray::ArrayD<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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

fn write_png<P: image::PixelWithColorType>(
    img: &image::ImageBuffer<P, Vec<P::Subpixel>>,
    path: &Path,
) where
    [P::Subpixel]: image::EncodableLayout,
{
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).expect("PNG written");
}

/// MNIST test digit `index` written as a grayscale PNG at `path`; returns its label.
fn digit_png(index: usize, path: &Path) -> usize {
    let (img, label) = digits(&[index]).remove(0);
    write_png(&img, path);
    label
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

/// Small KernelSHAP budgets for the shipped binary_cnn (0 or 1).
const SHAP_QUICK: [&str; 4] = ["--nsamples", "40", "--n-segments", "16"];

#[test]
fn shap_explains_a_png_with_an_onnx_model() {
    let t = tempfile::tempdir().unwrap();
    let model = export(ModelKind::BinaryCnn, t.path());
    let png = t.path().join("zero.png");
    assert_eq!(digit_png(ZERO, &png), 0);
    let out = t.path().join("out");
    let o = explain(
        "shap",
        s(&model),
        &png,
        &out,
        &[
            "--nsamples",
            "60",
            "--n-segments",
            "20",
            "--labels",
            "0,1",
            "--background",
            "0",
        ],
    );
    assert_ok(&o);
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("zero.png: class 0"), "{text}");
    assert_files(
        &out.join("zero"),
        &[
            "shap.png",
            "explanation.json",
            "attributions.npy",
            "segment_values.npy",
        ],
    );
    let json = read_json(&out.join("zero/explanation.json"));
    assert_eq!(json["meta"]["name"], "KernelShapImage");
    assert_eq!(json["data"]["labels"], serde_json::json!([0, 1]));
    let attributions = read_array(&out.join("zero/attributions.npy"));
    assert_eq!(attributions.shape(), &[2, 28, 28]);
}

/// A shipped network that outputs logits (`mnist_net`) is explained on class probabilities, as
/// its ONNX export is (`OnnxOptions::probabilities`): both give the same KernelSHAP values.
#[test]
fn shipped_logits_models_are_explained_on_probabilities_like_their_onnx_export() {
    let t = tempfile::tempdir().unwrap();
    let model = export(ModelKind::MnistNet, t.path());
    let png = t.path().join("zero.png");
    assert_eq!(digit_png(ZERO, &png), 0);
    let quick = [
        "--nsamples",
        "60",
        "--n-segments",
        "20",
        "--json",
        "--quiet",
    ];
    let shipped_out = t.path().join("shipped");
    let o = explain("shap", "mnist_net", &png, &shipped_out, &quick);
    assert_ok(&o);
    let shipped = json_lines(&o).remove(0);
    let onnx_out = t.path().join("onnx");
    let o = explain("shap", s(&model), &png, &onnx_out, &quick);
    assert_ok(&o);
    let onnx = json_lines(&o).remove(0);
    assert_eq!(shipped["prediction"], 0);
    assert_eq!(onnx["prediction"], 0);
    let a = read_array(&shipped_out.join("zero/attributions.npy"));
    let b = read_array(&onnx_out.join("zero/attributions.npy"));
    assert_eq!(a.shape(), b.shape());
    let max_diff = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_diff < 1e-4,
        "shipped and ONNX attributions differ by {max_diff}"
    );
    // Probabilities: the predicted class's superpixel values add up to f(x) - f(background),
    // at most 1 in size (on logits they add up to ~30 for this digit).
    let v = read_array(&shipped_out.join("zero/segment_values.npy"));
    let total: f32 = v.index_axis(ndarray::Axis(0), 0).sum();
    assert!(
        total.abs() <= 1.0 + 1e-4,
        "superpixel values sum to {total}"
    );
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
    let shap = |extra: &[&str]| {
        let args = [&SHAP_QUICK[..], &["--json", "--quiet"], extra].concat();
        explain("shap", "binary_cnn", &dir, &out, &args)
    };
    let o = shap(&[]);
    assert_ok(&o);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["prediction"], 1);
    assert_eq!(lines[1]["prediction"], 0);
    // By default the predicted class only (--top-k 1).
    assert_eq!(lines[1]["result"]["labels"], serde_json::json!([0]));
    assert_eq!(lines[1]["top_k"][0]["class"], 0);
    assert!(out.join("b_zero/shap.png").is_file());
    let o = shap(&["--fit", "reject"]);
    assert_user_error(&o, "the image is 40x40 pixels, the model takes 28x28");
}

/// An 8-bit RGB JPEG (quality 95) of `img`.
fn write_jpeg(img: &image::RgbImage, path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 95)
        .encode_image(img)
        .expect("JPEG written");
}

/// The grayscale image `img` with each pixel `p` drawn as the colour `colour(p)`.
fn colour(img: &image::GrayImage, colour: impl Fn(u8) -> [u8; 3]) -> image::RgbImage {
    image::RgbImage::from_fn(img.width(), img.height(), |x, y| {
        image::Rgb(colour(img.get_pixel(x, y).0[0]))
    })
}

/// An MNIST model (one channel) takes JPEG and RGB images as their luma (ITU-R BT.709
/// weights, the `image` crate's): the explanations match those of the grayscale images the
/// test converts itself, to the bit.
#[test]
fn jpeg_and_rgb_images_become_grayscale_for_an_mnist_model() {
    let t = tempfile::tempdir().unwrap();
    let (gray, label) = digits(&[ZERO]).remove(0);
    assert_eq!(label, 0);
    let dir = t.path().join("imgs");
    write_png(&gray, &dir.join("gray.png"));
    // A white digit on black, as RGB: its luma is the digit itself.
    write_png(&colour(&gray, |p| [p, p, p]), &dir.join("rgb.png"));
    // A green digit: luma 0.7152 p. Taking the red channel would give a black image, the
    // channel mean 0.33 p.
    let green = colour(&gray, |p| [0, p, 0]);
    write_png(&green, &dir.join("green.png"));
    let green_luma = image::DynamicImage::ImageRgb8(green.clone()).to_luma8();
    assert_ne!(green_luma, gray);
    write_png(&green_luma, &dir.join("green_luma.png"));
    // A JPEG (colour, lossy) with an upper-case extension, and its decoded luma as a PNG.
    let jpeg = dir.join("zero.JPG");
    write_jpeg(&colour(&gray, |p| [p, p, p / 2]), &jpeg);
    let decoded = image::open(&jpeg).expect("the JPEG decodes").to_luma8();
    write_png(&decoded, &dir.join("zero_jpg_luma.png"));

    let out = t.path().join("out");
    let args = [&SHAP_QUICK[..], &["--json", "--labels", "0,1"]].concat();
    let o = explain("shap", "binary_cnn", &dir, &out, &args);
    assert_ok(&o);
    let lines = json_lines(&o);
    let inputs: Vec<&str> = lines.iter().map(|l| l["input"].as_str().unwrap()).collect();
    assert_eq!(inputs.len(), 6, "{inputs:?}");
    assert!(inputs.iter().any(|i| i.ends_with("zero.JPG")), "{inputs:?}");
    let result = |name: &str| {
        let line = lines
            .iter()
            .find(|l| {
                l["out_dir"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{name}"))
            })
            .unwrap_or_else(|| panic!("no line for {name}"));
        assert_files(
            &out.join(name),
            &["shap.png", "explanation.json", "attributions.npy"],
        );
        (
            line["prediction"].as_u64().unwrap(),
            line["result"]["instance_values"].clone(),
            read_array(&out.join(name).join("attributions.npy")),
        )
    };
    let (gray_pred, gray_values, gray_attr) = result("gray");
    assert_eq!(gray_pred, 0);
    // The same pixels give the same explanation (the sampling is seeded).
    for (converted, reference) in [
        ("rgb", "gray"),
        ("green", "green_luma"),
        ("zero", "zero_jpg_luma"),
    ] {
        let (p, values, attr) = result(converted);
        let (rp, rvalues, rattr) = result(reference);
        assert_eq!((p, &values), (rp, &rvalues), "{converted} vs {reference}");
        assert_eq!(attr, rattr, "{converted} vs {reference}");
    }
    // Converted, the images are still the digit: a 0, with outputs close to the original's.
    let (jpeg_pred, jpeg_values, _) = result("zero");
    assert_eq!(jpeg_pred, 0);
    let close = |a: &serde_json::Value, b: &serde_json::Value| {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        a.iter()
            .zip(b)
            .all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 0.05)
    };
    assert!(
        close(&jpeg_values, &gray_values),
        "{jpeg_values} vs {gray_values}"
    );
    assert_ne!(result("green").2, gray_attr);
}

/// A network over `[c, h, w]` inputs whose outputs are the channel means (global average
/// pooling, then the identity), exported to ONNX with `layout`.
fn channel_means_onnx(c: usize, h: usize, w: usize, layout: Layout, path: &Path) {
    let mut identity = vec![0.0; c * c];
    for k in 0..c {
        identity[k * c + k] = 1.0;
    }
    let named = |name: &str, layer| NamedLayer {
        name: name.into(),
        layer,
    };
    let net = Network::new(
        "channel_means",
        [c, h, w],
        vec![
            named("gap", Layer::GlobalAvgPool),
            named("flatten", Layer::Flatten),
            named(
                "identity",
                Layer::Dense(Dense {
                    in_features: c,
                    out_features: c,
                    weight: identity,
                    bias: vec![0.0; c],
                }),
            ),
        ],
    )
    .expect("a valid network");
    save_onnx(&net, path, &ExportOptions::new().layout(layout)).expect("ONNX export");
}

/// An RGB model (three channels, NCHW or NHWC) gets an RGB image's channels in R, G, B order
/// and a grayscale image's intensity in all three; an image of another size is resized
/// (bilinear, aspect ratio not kept) or, with `--fit reject`, rejected. The model outputs its
/// channel means, which KernelSHAP reports as `instance_values`.
#[test]
fn rgb_models_keep_the_channels_and_gray_images_fill_them() {
    let t = tempfile::tempdir().unwrap();
    let (h, w) = (6u32, 8u32);
    let dir = t.path().join("imgs");
    // A pattern with different means per channel (the model's size).
    let pattern = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (30 * x) as u8,
            (40 * y) as u8,
            250 - (20 * x + 10 * y) as u8,
        ])
    });
    write_png(&pattern, &dir.join("a_pattern.png"));
    // Constant images keep their value under any resizing.
    write_png(
        &image::GrayImage::from_pixel(w, h, image::Luma([120])),
        &dir.join("b_gray.png"),
    );
    write_png(
        &image::RgbImage::from_pixel(15, 9, image::Rgb([10, 20, 30])),
        &dir.join("c_big.png"),
    );
    let mut means = [0.0f64; 3];
    for p in pattern.pixels() {
        for k in 0..3 {
            means[k] += p.0[k] as f64 / 255.0 / (h * w) as f64;
        }
    }
    let expected = [
        means.to_vec(),
        vec![120.0 / 255.0; 3],
        vec![10.0 / 255.0, 20.0 / 255.0, 30.0 / 255.0],
    ];
    for (layout, name) in [(Layout::Nchw, "nchw"), (Layout::Nhwc, "nhwc")] {
        let model = t.path().join(format!("means_{name}.onnx"));
        channel_means_onnx(3, h as usize, w as usize, layout, &model);
        let out = t.path().join(format!("out_{name}"));
        let shap = |extra: &[&str]| {
            let mut args = vec![
                "--layout",
                name,
                "--output",
                "probabilities",
                "--labels",
                "0,1,2",
                "--nsamples",
                "20",
                "--n-segments",
                "4",
                "--json",
            ];
            args.extend_from_slice(extra);
            explain("shap", s(&model), &dir, &out, &args)
        };
        let o = shap(&[]);
        assert_ok(&o);
        let lines = json_lines(&o);
        assert_eq!(lines.len(), 3);
        for (line, want) in lines.iter().zip(&expected) {
            let got: Vec<f64> = line["result"]["instance_values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert!(
                got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-5),
                "{name} {}: channel means {got:?}, expected {want:?}",
                line["input"]
            );
        }
        for sample in ["a_pattern", "b_gray", "c_big"] {
            assert_files(
                &out.join(sample),
                &["shap.png", "explanation.json", "attributions.npy"],
            );
            let attributions = read_array(&out.join(sample).join("attributions.npy"));
            assert_eq!(attributions.shape(), &[3, h as usize, w as usize]);
        }
        let o = shap(&["--fit", "reject"]);
        assert_user_error(
            &o,
            "c_big.png: the image is 15x9 pixels, the model takes 8x6 (use --fit resize",
        );
    }
}

#[test]
fn images_cannot_feed_a_model_of_two_channels() {
    let t = tempfile::tempdir().unwrap();
    let model = t.path().join("two.onnx");
    channel_means_onnx(2, 4, 4, Layout::Nchw, &model);
    let png = t.path().join("zero.png");
    digit_png(ZERO, &png);
    let o = explain("shap", s(&model), &png, &t.path().join("out"), &[]);
    assert_user_error(&o, "the model takes 2 channels per pixel");
    // .npy arrays of the model's shape do.
    let npy = t.path().join("x.npy");
    ndarray_npy::write_npy(&npy, &ndarray::Array3::<f32>::from_elem((2, 4, 4), 0.5)).unwrap();
    let o = explain(
        "shap",
        s(&model),
        &npy,
        &t.path().join("out"),
        &[
            "--output",
            "probabilities",
            "--nsamples",
            "10",
            "--json",
            "--top-k",
            "2",
        ],
    );
    assert_ok(&o);
    assert_eq!(
        json_lines(&o)[0]["result"]["instance_values"],
        serde_json::json!([0.5, 0.5])
    );
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
    let png = t.path().join("test.png");
    digit_png(10, &png);
    let out = t.path().join("out");
    let o = explain(
        "similarity",
        s(&model),
        &png,
        &out,
        &[
            "--reference",
            s(&refs),
            "--n-similar",
            "3",
            "--sim-fn",
            "grad-cos",
            "--precompute-grads",
            "--json",
        ],
    );
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
    assert_files(
        &out.join("test"),
        &[
            "most_similar.png",
            "score_by_class.png",
            "explanation.json",
            "scores.npy",
        ],
    );
    // The classifier head's gradients only, with the memory estimate on stderr; a pattern that
    // matches no group is a one-line error listing the groups.
    let head = |params: &[&str]| {
        let args = [
            &["--reference", s(&refs), "--precompute-grads", "--json"][..],
            params,
        ]
        .concat();
        explain("similarity", s(&model), &png, &out, &args)
    };
    let o = head(&["--last-layers", "1"]);
    assert_ok(&o);
    assert!(stderr(&o).contains("gradients over "), "{}", stderr(&o));
    let all_params = stderr(&o);
    let o = head(&["--params", "*"]);
    assert_ok(&o);
    assert_ne!(
        stderr(&o),
        all_params,
        "the head is a part of the parameters"
    );
    assert_user_error(
        &head(&["--params", "no_such_layer.*"]),
        "matches no parameter group",
    );
}

#[test]
fn cem_with_a_shipped_model_and_autoencoder() {
    let t = tempfile::tempdir().unwrap();
    let png = t.path().join("four.png");
    let label = digit_png(4, &png);
    let out = t.path().join("out");
    let o = explain(
        "cem",
        "cem_cnn",
        &png,
        &out,
        &[
            "--autoencoder",
            "cem_autoencoder",
            "--c-steps",
            "1",
            "--max-iterations",
            "5",
            "--gamma",
            "100",
            "--c-init",
            "1",
        ],
    );
    assert_ok(&o);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!("{}: class {label}", png.display())),
        "{text}"
    );
    assert_files(
        &out.join("four"),
        &[
            "cem.png",
            "PN/explanation.json",
            "PP/explanation.json",
            "PN/X.npy",
        ],
    );
    let json = read_json(&out.join("four/PN/explanation.json"));
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
    let png = t.path().join("one.png");
    digit_png(ONE, &png);
    let out = t.path().join("out");
    let saved = t.path().join("explainer");
    let o = explain(
        "l2x",
        s(&model),
        &png,
        &out,
        &[
            "--reference",
            s(&train),
            "--num-epochs",
            "1",
            "--batch-size",
            "8",
            "--k",
            "4",
            "--save-explainer",
            s(&saved),
            "--json",
        ],
    );
    assert_ok(&o);
    let lines = json_lines(&o);
    assert_eq!(
        lines[0]["result"]["selected_patches"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_files(
        &out.join("one"),
        &["l2x.png", "explanation.json", "mask.npy", "importance.npy"],
    );
    let mask = read_array(&out.join("one/mask.npy"));
    assert_eq!(mask.shape(), &[1, 28, 28]);
    // The saved explainer explains the same selection without training.
    let o = explain(
        "l2x",
        s(&model),
        &png,
        &t.path().join("out2"),
        &["--explainer", s(&saved), "--k", "4", "--json"],
    );
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
    let o = explain(
        "shap",
        "binary_cnn",
        &npy,
        &out,
        &["--nsamples", "30", "--n-segments", "10", "--json"],
    );
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
    let o = explain("shap", "binary_cnn", &bad, &out, &[]);
    assert_user_error(&o, "does not fit the model");
}

#[test]
fn user_errors_are_one_line_with_exit_code_2() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let png = t.path().join("zero.png");
    digit_png(ZERO, &png);
    let shap =
        |model: &str, input: &Path, extra: &[&str]| explain("shap", model, input, &out, extra);
    let o = shap("binary_cnn", &t.path().join("missing.png"), &[]);
    assert_user_error(&o, "no such file");

    let fake_png = t.path().join("fake.png");
    std::fs::write(&fake_png, "hello").unwrap();
    let o = shap("binary_cnn", &fake_png, &[]);
    assert_user_error(&o, "not a PNG or JPEG image");

    let fake_onnx = t.path().join("fake.onnx");
    std::fs::write(&fake_onnx, "definitely not protobuf").unwrap();
    let o = shap(s(&fake_onnx), &png, &[]);
    assert_user_error(&o, "not an ONNX model");

    let o = shap("no_such_net", &png, &[]);
    assert_user_error(&o, "not a shipped model");

    // Options out of range: from the parser, and from the library's checks.
    let o = shap("binary_cnn", &png, &["--nsamples", "0"]);
    assert_user_error(&o, "--nsamples");
    let o = shap("binary_cnn", &png, &["--labels", "2"]);
    assert_user_error(&o, "class 2 does not exist");
    let o = explain(
        "l2x",
        "mnist_net",
        &png,
        &out,
        &["--reference", s(&png), "--tau", "0"],
    );
    assert_user_error(&o, "tau");
    let o = xai(&["shap", "--model", "binary_cnn", "--input", s(&png)]);
    assert_user_error(&o, "--out");
    let o = shap("binary_cnn", &png, &["--layout", "nhwc"]);
    assert_user_error(&o, "only apply to ONNX models");

    // Gradient methods on a model tract runs.
    let model = export(ModelKind::BinaryCnn, t.path());
    let o = explain(
        "similarity",
        s(&model),
        &png,
        &out,
        &["--backend", "tract", "--reference", s(&png)],
    );
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
        "--fit <FIT>",
        "[default: resize]",
    ] {
        assert!(h.contains(needle), "{needle} not in help:\n{h}");
    }
    let o = xai(&["cem", "--help"]);
    assert!(stdout(&o).contains("[default: 1000]"));
}

/// Photo preprocessing on a model whose outputs are its input's channel means: `--crop` keeps
/// the centre, `--resize` the shorter side, `--channel-order bgr` swaps the channels, `--mean`
/// and `--std` normalize inside the model (the attributions stay on the cropped pixels),
/// `--class-names` reads a file, and `--top-k` picks the classes KernelSHAP explains and the
/// JSON reports.
#[test]
fn photo_preprocessing_crops_normalizes_and_reports_top_classes() {
    let t = tempfile::tempdir().unwrap();
    let model = t.path().join("means.onnx");
    channel_means_onnx(3, 4, 6, Layout::Nchw, &model);
    let (a, b, c) = ([250u8, 0, 0], [40u8, 120, 200], [0u8, 0, 250]);
    // 10 x 4: columns 0-1 are a, 2-7 b, 8-9 c; the centre 4 x 6 crop is b only.
    let striped = image::RgbImage::from_fn(10, 4, |x, _| {
        image::Rgb(if x < 2 {
            a
        } else if x < 8 {
            b
        } else {
            c
        })
    });
    let photo = t.path().join("photo.png");
    write_png(&striped, &photo);
    let names = t.path().join("labels.txt");
    std::fs::write(&names, "red\ngreen\nblue\n").unwrap();
    let (mean, std) = ([0.1f64, 0.2, 0.3], [0.5f64, 0.25, 2.0]);
    let out = t.path().join("out");
    let run = |input: &Path, extra: &[&str]| {
        let mut args = vec![
            "--output",
            "probabilities",
            "--nsamples",
            "20",
            "--n-segments",
            "4",
            "--mean",
            "0.1,0.2,0.3",
            "--std",
            "0.5,0.25,2",
            "--class-names",
            s(&names),
            "--json",
        ];
        args.extend_from_slice(extra);
        explain("shap", s(&model), input, &out, &args)
    };
    let values = |o: &Output| -> Vec<f64> {
        assert_ok(o);
        json_lines(o)[0]["result"]["instance_values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let normalized = |rgb: [u8; 3], order: [usize; 3]| -> Vec<f64> {
        (0..3)
            .map(|k| (rgb[order[k]] as f64 / 255.0 - mean[k]) / std[k])
            .collect()
    };
    let close = |got: &[f64], want: &[f64]| {
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-5),
            "{got:?} vs {want:?}"
        );
    };
    let all = ["--labels", "0,1,2"];
    let o = run(&photo, &[&all[..], &["--crop", "4x6"]].concat());
    close(&values(&o), &normalized(b, [0, 1, 2]));
    assert_eq!(
        read_array(&out.join("photo").join("attributions.npy")).shape(),
        &[3, 4, 6],
        "three classes' maps on the 4 x 6 crop"
    );
    let o = run(
        &photo,
        &[&all[..], &["--crop", "4x6", "--channel-order", "bgr"]].concat(),
    );
    close(&values(&o), &normalized(b, [2, 1, 0]));
    // A constant 20 x 8 photo: resized to 10 x 4, cropped to 6 x 4, still constant.
    let big = t.path().join("big.png");
    write_png(&image::RgbImage::from_pixel(20, 8, image::Rgb(b)), &big);
    let o = run(
        &big,
        &[&all[..], &["--resize", "4", "--crop", "4x6"]].concat(),
    );
    close(&values(&o), &normalized(b, [0, 1, 2]));
    // Without --labels: the top 2 classes, by name.
    let o = run(&photo, &["--crop", "4x6", "--top-k", "2"]);
    assert_ok(&o);
    let line = &json_lines(&o)[0];
    let top: Vec<(u64, String)> = line["top_k"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["class"].as_u64().unwrap(),
                t["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want_norm = normalized(b, [0, 1, 2]);
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| want_norm[j].total_cmp(&want_norm[i]));
    let label_names = ["red", "green", "blue"];
    assert_eq!(
        top,
        order[..2]
            .iter()
            .map(|&k| (k as u64, label_names[k].to_string()))
            .collect::<Vec<_>>()
    );
    let labels: Vec<u64> = line["result"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        labels,
        order[..2].iter().map(|&k| k as u64).collect::<Vec<_>>()
    );
    // One-line errors: a labels file of the wrong length, a crop larger than the image, a
    // preset's normalization on a shipped network.
    std::fs::write(&names, "red\ngreen\n").unwrap();
    assert_user_error(
        &run(&photo, &["--crop", "4x6"]),
        "has 2 class names, the model has 3",
    );
    std::fs::write(&names, "red\ngreen\nblue\n").unwrap();
    assert_user_error(
        &run(&photo, &["--crop", "5x5"]),
        "smaller than the 5x5 crop",
    );
    let digit = t.path().join("digit.png");
    digit_png(ONE, &digit);
    assert_user_error(
        &explain(
            "shap",
            "binary_cnn",
            &digit,
            &out,
            &["--preset", "imagenet"],
        ),
        "only apply to ONNX models",
    );
}

/// xai-onnx's fixture of torch's dynamo exporter (`[batch, 3, h, w]`, weights in
/// `torch_dynamic_hw.onnx.data`) copied into `dir`; returns the model's path.
fn dynamo_export(dir: &Path) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../xai-onnx/fixtures");
    for ext in ["onnx", "onnx.data"] {
        std::fs::copy(
            fixtures.join(format!("torch_dynamic_hw.{ext}")),
            dir.join(format!("torch_dynamic_hw.{ext}")),
        )
        .unwrap();
    }
    dir.join("torch_dynamic_hw.onnx")
}

/// A model with dynamic height and width (a dynamo export, `[batch, 3, h, w]`) takes the crop's
/// size, or the image's own without a crop.
#[test]
fn dynamic_height_and_width_take_the_crop_or_the_images_size() {
    let t = tempfile::tempdir().unwrap();
    let model = dynamo_export(t.path());
    let photo = t.path().join("p.png");
    write_png(
        &image::RgbImage::from_fn(21, 15, |x, y| {
            image::Rgb([(9 * x) as u8, (13 * y) as u8, 77])
        }),
        &photo,
    );
    let out = t.path().join("out");
    let quick = ["--nsamples", "10", "--n-segments", "4"];
    let o = explain(
        "shap",
        s(&model),
        &photo,
        &out,
        &[&quick[..], &["--crop", "12x16"]].concat(),
    );
    assert_ok(&o);
    assert_eq!(
        read_array(&out.join("p").join("attributions.npy")).shape(),
        &[1, 12, 16],
        "one map (the predicted class) at the crop's size"
    );
    let o = explain("shap", s(&model), &photo, &out, &quick);
    assert_ok(&o);
    assert_eq!(
        read_array(&out.join("p").join("attributions.npy")).shape(),
        &[1, 15, 21],
        "one map at the image's own size"
    );
    // Gradients of the dynamo export on the graph engine (--backend graph): saliency scored by
    // xai eval.
    let o = explain(
        "eval",
        s(&model),
        &photo,
        &out.join("eval"),
        &[
            "--backend",
            "graph",
            "--crop",
            "12x16",
            "--methods",
            "saliency",
            "--metrics",
            "deletion_auc",
            "--steps",
            "8",
        ],
    );
    assert_ok(&o);
    assert_eq!(
        read_array(&out.join("eval").join("p").join("maps.npy")).shape(),
        &[2, 12, 16]
    );
    // --preset imagenet: the shorter side to 256, the centre 224 x 224, ImageNet's mean/std.
    let wide = t.path().join("wide.png");
    write_png(
        &image::RgbImage::from_fn(300, 240, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 9])
        }),
        &wide,
    );
    let o = explain(
        "shap",
        s(&model),
        &wide,
        &out,
        &[&quick[..], &["--preset", "imagenet", "--json"]].concat(),
    );
    assert_ok(&o);
    assert_eq!(
        read_array(&out.join("wide").join("attributions.npy")).shape(),
        &[1, 224, 224]
    );
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    files
}

/// For every subcommand: a run in 3 shards (run in reverse order) merged with `xai merge` is
/// byte for byte the unsharded run's folder; a shard run again writes the same bytes; missing,
/// duplicate and mismatched shards are one-line errors, and nothing is overwritten.
#[test]
fn sharded_runs_merge_into_the_unsharded_output() {
    let t = tempfile::tempdir().unwrap();
    let inputs = t.path().join("inputs");
    for (i, (img, _)) in digits(&[0, 1, ONE, ZERO, 4]).iter().enumerate() {
        write_png(img, &inputs.join(format!("d{i}.png")));
    }
    let refs = t.path().join("refs");
    for (i, (img, label)) in digits(&[5, 6, 7, 8]).iter().enumerate() {
        write_png(img, &refs.join(label.to_string()).join(format!("r{i}.png")));
    }
    let train = t.path().join("train");
    for (i, (img, _)) in digits(&(20..36).collect::<Vec<_>>()).iter().enumerate() {
        write_png(img, &train.join(format!("t{i:02}.png")));
    }
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        ("shap", "binary_cnn", SHAP_QUICK.to_vec()),
        (
            "similarity",
            "alibi_cnn",
            vec!["--reference", s(&refs), "--n-similar", "2"],
        ),
        (
            "cem",
            "cem_cnn",
            vec!["--c-steps", "1", "--max-iterations", "3"],
        ),
        (
            "l2x",
            "mnist_net",
            vec![
                "--reference",
                s(&train),
                "--num-epochs",
                "1",
                "--batch-size",
                "8",
                "--k",
                "4",
            ],
        ),
        ("saliency", "binary_cnn", vec!["--times-input"]),
        (
            "ig",
            "binary_cnn",
            vec!["--n-steps", "8", "--internal-batch-size", "4"],
        ),
        (
            "smoothgrad",
            "binary_cnn",
            vec!["--nt-samples", "3", "--stdevs", "0.1"],
        ),
        (
            "gradient-shap",
            "binary_cnn",
            vec!["--reference", s(&train), "--n-samples", "3"],
        ),
        ("gradcam", "binary_cnn", vec!["--layer", "conv2"]),
        (
            "occlusion",
            "binary_cnn",
            vec!["--window", "7x7", "--strides", "7x7"],
        ),
        (
            "eval",
            "binary_cnn",
            vec![
                "--methods",
                "saliency,smoothgrad",
                "--metrics",
                "deletion_auc,insertion_auc",
                "--steps",
                "10",
            ],
        ),
    ];
    for (method, model, extra) in &cases {
        let dir = t.path().join(method);
        let run = |out: &str, shard: Option<&str>| {
            let mut args = extra.clone();
            args.push("--quiet");
            if let Some(sh) = shard {
                args.extend(["--shard", sh]);
            }
            explain(method, model, &inputs, &dir.join(out), &args)
        };
        assert_ok(&run("whole", None));
        for i in (0..3).rev() {
            assert_ok(&run(&format!("s{i}"), Some(&format!("{i}/3"))));
        }
        let shard_dirs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("s{i}"))).collect();
        let merge = |out: &Path, dirs: &[PathBuf]| {
            let mut args = vec!["merge"];
            args.extend(dirs.iter().map(|d| s(d)));
            args.extend(["--out", s(out)]);
            xai(&args)
        };
        let mut reversed = shard_dirs.clone();
        reversed.reverse();
        assert_ok(&merge(&dir.join("merged"), &reversed));
        let (whole, merged) = (tree(&dir.join("whole")), tree(&dir.join("merged")));
        assert_eq!(
            whole.keys().collect::<Vec<_>>(),
            merged.keys().collect::<Vec<_>>(),
            "{method}"
        );
        for (path, bytes) in &whole {
            assert!(
                merged[path] == *bytes,
                "{method}: {} differs",
                path.display()
            );
        }
        // A shard run again gives the same bytes (a crashed shard can be rerun alone).
        assert_ok(&run("s1_again", Some("1/3")));
        assert_eq!(
            tree(&dir.join("s1")),
            tree(&dir.join("s1_again")),
            "{method}"
        );
        if *method == "shap" {
            assert_user_error(
                &merge(&dir.join("m2"), &shard_dirs[..2]),
                "shard 2/3 is missing",
            );
            assert_user_error(
                &merge(
                    &dir.join("m3"),
                    &[
                        shard_dirs[0].clone(),
                        shard_dirs[1].clone(),
                        dir.join("s1_again"),
                    ],
                ),
                "are both shard 1/3",
            );
            assert_user_error(
                &merge(&dir.join("merged"), &shard_dirs),
                "already holds a run's results",
            );
            // A shard with another seed does not merge.
            let mut args = extra.clone();
            args.extend(["--quiet", "--shard", "2/3", "--seed", "7"]);
            assert_ok(&explain(
                method,
                model,
                &inputs,
                &dir.join("s2_seed"),
                &args,
            ));
            assert_user_error(
                &merge(
                    &dir.join("m4"),
                    &[
                        shard_dirs[0].clone(),
                        shard_dirs[1].clone(),
                        dir.join("s2_seed"),
                    ],
                ),
                "different parameters, seeds or inputs",
            );
            assert_user_error(
                &explain(
                    method,
                    model,
                    &inputs,
                    &dir.join("x"),
                    &["--shard", "auto/3"],
                ),
                "neither JOB_COMPLETION_INDEX",
            );
            let o = Command::new(env!("CARGO_BIN_EXE_xai"))
                .args(["shap", "--model", model, "--input", s(&inputs), "--out"])
                .arg(dir.join("auto2"))
                .args(SHAP_QUICK)
                .args(["--quiet", "--shard", "auto/3"])
                .env("SLURM_ARRAY_TASK_ID", "2")
                .output()
                .unwrap();
            assert_ok(&o);
            assert_eq!(tree(&dir.join("auto2")), tree(&shard_dirs[2]));
        }
    }
}

/// `xai similarity --shard i/n --shard-references`: each shard scores every input against its
/// block of the references; `xai merge` ranks them into the unsharded run's bytes (labelled and
/// unlabelled references, shards in any order, more shards than chunks of references); a shard
/// rerun gives the same bytes; shards of the inputs and of the references do not mix; a missing
/// block is an error.
#[test]
fn similarity_shards_of_the_references_merge_into_the_unsharded_output() {
    let t = tempfile::tempdir().unwrap();
    let inputs = t.path().join("inputs");
    for (i, (img, _)) in digits(&[0, ONE, 4]).iter().enumerate() {
        write_png(img, &inputs.join(format!("d{i}.png")));
    }
    let labelled = t.path().join("labelled");
    let flat = t.path().join("flat");
    for (i, (img, label)) in digits(&(40..51).collect::<Vec<_>>()).iter().enumerate() {
        write_png(
            img,
            &labelled
                .join(label.to_string())
                .join(format!("r{i:02}.png")),
        );
        write_png(img, &flat.join(format!("r{i:02}.png")));
    }
    let merge = |out: &Path, dirs: &[PathBuf]| {
        let mut args = vec!["merge"];
        args.extend(dirs.iter().map(|d| s(d)));
        args.extend(["--out", s(out)]);
        xai(&args)
    };
    // 11 references in chunks of 3: 4 chunks, so 3 shards get blocks of 3, 3 and 5
    // references, and 5 shards leave one shard without any.
    for (refs, n_shards, sim_fn) in [(&labelled, 3, "grad-dot"), (&flat, 5, "grad-cos")] {
        let dir = t.path().join(format!("{n_shards}"));
        let extra = [
            "--reference",
            s(refs),
            "--n-similar",
            "2",
            "--batch-size",
            "3",
            "--sim-fn",
            sim_fn,
            "--quiet",
        ];
        let run = |out: &str, shard: Option<String>| {
            let mut args = extra.to_vec();
            let shard = shard.unwrap_or_default();
            if !shard.is_empty() {
                args.extend(["--shard", &shard, "--shard-references"]);
            }
            explain("similarity", "alibi_cnn", &inputs, &dir.join(out), &args)
        };
        assert_ok(&run("whole", None));
        let shard_dirs: Vec<PathBuf> = (0..n_shards).map(|i| dir.join(format!("s{i}"))).collect();
        for i in (0..n_shards).rev() {
            let o = run(&format!("s{i}"), Some(format!("{i}/{n_shards}")));
            assert_ok(&o);
            assert!(
                stdout(&o).contains("scored against references"),
                "{}",
                stdout(&o)
            );
        }
        let mut reversed = shard_dirs.clone();
        reversed.reverse();
        assert_ok(&merge(&dir.join("merged"), &reversed));
        let (whole, merged) = (tree(&dir.join("whole")), tree(&dir.join("merged")));
        assert_eq!(
            whole.keys().collect::<Vec<_>>(),
            merged.keys().collect::<Vec<_>>()
        );
        for (path, bytes) in &whole {
            assert!(merged[path] == *bytes, "{} differs", path.display());
        }
        assert_ok(&run("s1_again", Some(format!("1/{n_shards}"))));
        assert_eq!(tree(&dir.join("s1")), tree(&dir.join("s1_again")));
        assert_user_error(
            &merge(&dir.join("m1"), &shard_dirs[1..]),
            &format!("shard 0/{n_shards} is missing"),
        );
    }
    // Shards of the inputs and of the references of one command line do not merge.
    let dir = t.path().join("mixed");
    let base = [
        "--reference",
        s(&labelled),
        "--n-similar",
        "2",
        "--batch-size",
        "3",
        "--quiet",
    ];
    let mut by_refs = base.to_vec();
    by_refs.extend(["--shard", "0/2", "--shard-references"]);
    assert_ok(&explain(
        "similarity",
        "alibi_cnn",
        &inputs,
        &dir.join("a"),
        &by_refs,
    ));
    let mut by_inputs = base.to_vec();
    by_inputs.extend(["--shard", "1/2"]);
    assert_ok(&explain(
        "similarity",
        "alibi_cnn",
        &inputs,
        &dir.join("b"),
        &by_inputs,
    ));
    assert_user_error(
        &merge(&dir.join("m"), &[dir.join("a"), dir.join("b")]),
        "do not merge",
    );
    // The README's form: the references as images.npy with labels.npy (what `cargo xtask
    // mnist-npy` writes), in 2 shards.
    let npy = t.path().join("npy");
    std::fs::create_dir_all(&npy).unwrap();
    let split = Mnist::load_default()
        .unwrap()
        .train
        .subset(&(0..10).collect::<Vec<_>>())
        .unwrap();
    xai_core::write_npy(
        npy.join("images.npy"),
        &split.images_f32(Scaling::UnitInterval).into_dyn(),
    )
    .unwrap();
    let labels: Vec<f32> = split.labels_usize().iter().map(|&l| l as f32).collect();
    xai_core::write_npy(
        npy.join("labels.npy"),
        &ndarray::ArrayD::from_shape_vec(vec![10], labels).unwrap(),
    )
    .unwrap();
    let images = npy.join("images.npy");
    let labels = npy.join("labels.npy");
    let npy_args = |extra: &[&'static str]| {
        let mut a = vec![
            "--reference",
            s(&images),
            "--reference-labels",
            s(&labels),
            "--batch-size",
            "4",
            "--quiet",
        ];
        a.extend_from_slice(extra);
        a
    };
    assert_ok(&explain(
        "similarity",
        "alibi_cnn",
        &inputs,
        &npy.join("whole"),
        &npy_args(&[]),
    ));
    for (i, shard) in ["0/2", "1/2"].iter().enumerate() {
        assert_ok(&explain(
            "similarity",
            "alibi_cnn",
            &inputs,
            &npy.join(format!("s{i}")),
            &npy_args(&["--shard", shard, "--shard-references"]),
        ));
    }
    assert_ok(&merge(
        &npy.join("merged"),
        &[npy.join("s0"), npy.join("s1")],
    ));
    assert_eq!(tree(&npy.join("whole")), tree(&npy.join("merged")));
    // --shard-references needs --shard.
    assert_user_error(
        &explain(
            "similarity",
            "alibi_cnn",
            &inputs,
            &dir.join("c"),
            &["--reference", s(&labelled), "--shard-references"],
        ),
        "--shard",
    );
}

/// `xai eval`: one row per input x method x metric (the random map always among the methods),
/// CSV and JSON, a figure and the maps per input; a good map beats the random one on the
/// saliency of a model whose output is a weighted sum of its pixels; unknown metrics are
/// one-line errors.
#[test]
fn eval_scores_every_method_with_every_metric() {
    let t = tempfile::tempdir().unwrap();
    let inputs = t.path().join("inputs");
    for (i, (img, _)) in digits(&[ONE, ZERO]).iter().enumerate() {
        write_png(img, &inputs.join(format!("d{i}.png")));
    }
    let out = t.path().join("out");
    let o = explain(
        "eval",
        "binary_cnn",
        &inputs,
        &out,
        &[
            "--methods",
            "saliency,input-x-gradient,ig,smoothgrad,occlusion",
            "--metrics",
            "deletion_auc,insertion_auc,pixel_flipping_morf",
            "--steps",
            "20",
            "--json",
        ],
    );
    assert_ok(&o);
    let csv = std::fs::read_to_string(out.join("eval.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "input,method,metric,value");
    // 2 inputs x 6 methods (random added) x 3 metrics.
    assert_eq!(lines.len(), 1 + 2 * 6 * 3, "{csv}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("d1,random,insertion_auc,")));
    let rows = read_json(&out.join("eval.json"));
    assert_eq!(rows.as_array().unwrap().len(), 36);
    assert_eq!(rows[0]["better"], "lower", "deletion: lower is better");
    for d in ["d0", "d1"] {
        assert_files(&out.join(d), &["eval.png", "eval.json", "maps.npy"]);
        assert_eq!(
            read_array(&out.join(d).join("maps.npy")).shape(),
            &[6, 28, 28]
        );
        // Gradient maps of the model's own prediction delete it faster than a random map.
        let v = read_json(&out.join(d).join("eval.json"));
        let value = |method: &str, metric: &str| {
            v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["method"] == method && r["metric"] == metric)
                .unwrap()["value"]
                .as_f64()
                .unwrap()
        };
        assert!(
            value("input-x-gradient", "deletion_auc") < value("random", "deletion_auc"),
            "{d}: {v}"
        );
    }
    assert_user_error(
        &explain(
            "eval",
            "binary_cnn",
            &inputs,
            &out,
            &["--metrics", "accuracy"],
        ),
        "`accuracy` is not a metric",
    );
}

/// The attribution subcommands (captum's methods): per input `attributions.npy` `[k, c, h, w]`,
/// `explanation.json` with the parameters and classes (IG with a convergence delta that is
/// small), the figure; Grad-CAM on the graph engine by node name; a one-line error for an
/// unknown layer.
#[test]
fn attribution_subcommands_write_maps_and_deltas() {
    let t = tempfile::tempdir().unwrap();
    let png = t.path().join("one.png");
    digit_png(ONE, &png);
    let refs = t.path().join("refs");
    for (i, (img, _)) in digits(&[5, 6, 7]).iter().enumerate() {
        write_png(img, &refs.join(format!("r{i}.png")));
    }
    let out = t.path().join("out");
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("saliency", vec![]),
        ("saliency", vec!["--times-input", "--signed"]),
        (
            "ig",
            vec![
                "--n-steps",
                "32",
                "--method",
                "riemann-trapezoid",
                "--internal-batch-size",
                "8",
            ],
        ),
        (
            "smoothgrad",
            vec![
                "--nt-samples",
                "3",
                "--stdevs",
                "0.1",
                "--nt-type",
                "vargrad",
            ],
        ),
        (
            "gradient-shap",
            vec!["--reference", s(&refs), "--n-samples", "3"],
        ),
        (
            "occlusion",
            vec!["--window", "7x7", "--strides", "7x7", "--top-k", "2"],
        ),
    ];
    for (method, extra) in &runs {
        let dir = out.join(format!("{method}{}", extra.len()));
        let mut args = extra.clone();
        args.push("--json");
        let o = explain(method, "binary_cnn", &png, &dir, &args);
        assert_ok(&o);
        assert_files(
            &dir.join("one"),
            &["attributions.npy", "explanation.json", "attributions.png"],
        );
        let k = if *method == "occlusion" { 2 } else { 1 };
        assert_eq!(
            read_array(&dir.join("one").join("attributions.npy")).shape(),
            &[k, 1, 28, 28],
            "{method}"
        );
        let line = &json_lines(&o)[0];
        assert_eq!(line["result"]["classes"].as_array().unwrap().len(), k);
        if *method == "ig" {
            let delta = line["result"]["convergence_delta"][0].as_f64().unwrap();
            assert!(delta.abs() < 0.05, "IG's completeness error {delta}");
        }
    }
    // Grad-CAM: a node of the dynamo export on the graph engine.
    let model = dynamo_export(t.path());
    let photo = t.path().join("p.png");
    write_png(
        &image::RgbImage::from_fn(16, 12, |x, y| {
            image::Rgb([(9 * x) as u8, (13 * y) as u8, 77])
        }),
        &photo,
    );
    let gc = |extra: &[&str]| {
        let args = [&["--backend", "graph", "--crop", "12x16"][..], extra].concat();
        explain("gradcam", s(&model), &photo, &out.join("gc"), &args)
    };
    assert_ok(&gc(&["--layer", "relu_1"]));
    assert_eq!(
        read_array(&out.join("gc").join("p").join("attributions.npy")).shape(),
        &[1, 3, 12, 16]
    );
    assert_user_error(
        &gc(&["--layer", "nope"]),
        "expected one of the model's layers",
    );
}

/// `xai gradcam` on a shipped network's convolution (`mnist_net`'s logits, as captum explains a
/// network without a softmax): the map upsampled to the digit, and without the ReLU the same as
/// Grad-CAM of the network's ONNX export on the graph engine (the export names its `Conv` node
/// after the layer); an unknown layer is a one-line usage error listing the layers.
#[test]
fn gradcam_on_a_shipped_network_layer() {
    let t = tempfile::tempdir().unwrap();
    let png = t.path().join("one.png");
    digit_png(ONE, &png);
    let out = t.path().join("out");
    let gradcam = |model: &str, dir: &str, extra: &[&str]| {
        let args = [
            &["--layer", "conv2", "--labels", "1,7", "--logits"][..],
            extra,
        ]
        .concat();
        let o = explain("gradcam", model, &png, &out.join(dir), &args);
        assert_ok(&o);
        assert_files(
            &out.join(dir).join("one"),
            &["attributions.npy", "explanation.json", "attributions.png"],
        );
        read_array(&out.join(dir).join("one").join("attributions.npy"))
    };
    let shipped = gradcam("mnist_net", "shipped", &[]);
    assert_eq!(shipped.shape(), &[2, 1, 28, 28]);
    assert!(shipped.iter().all(|v| *v >= 0.0 && v.is_finite()));
    assert!(shipped.iter().any(|v| *v > 0.0), "an all-zero map");
    let json = read_json(&out.join("shipped").join("one").join("explanation.json"));
    assert_eq!(json["meta"]["params"]["layer"], "conv2", "{json}");
    // Without the ReLU (nothing clipped), against the ONNX export on the graph engine.
    let signed = gradcam("mnist_net", "signed", &["--no-relu"]);
    assert!(
        signed.iter().any(|v| *v < 0.0),
        "nothing negative without the ReLU"
    );
    let model = export(ModelKind::MnistNet, t.path());
    let onnx = gradcam(s(&model), "onnx", &["--no-relu", "--backend", "graph"]);
    // The same file on the importer: its layers by ONNX name.
    let imported = gradcam(
        s(&model),
        "onnx_import",
        &["--no-relu", "--backend", "import"],
    );
    assert_eq!(onnx.shape(), signed.shape());
    for (k, other) in [(0, &onnx), (1, &onnx), (0, &imported), (1, &imported)] {
        let (a, b) = (
            signed.index_axis(ndarray::Axis(0), k),
            other.index_axis(ndarray::Axis(0), k),
        );
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let max_diff = a
            .iter()
            .zip(b.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            scale > 1e-3 && max_diff <= 1e-4 * scale,
            "class {k}: shipped and ONNX Grad-CAM differ by {max_diff} (largest value {scale})"
        );
    }
    assert_user_error(
        &explain(
            "gradcam",
            "mnist_net",
            &png,
            &out.join("bad"),
            &["--layer", "conv9"],
        ),
        "`conv9` is invalid: expected one of the model's layers: conv1, pool1, relu1, conv2",
    );
}
