//! Tests on the committed fixtures (`fixtures/make_fixtures.py`): ONNX files in the node patterns
//! of PyTorch and tf2onnx exports, with onnxruntime's outputs. The importer must take every one,
//! agree with onnxruntime and with tract, and give gradients that agree with finite differences.

use std::path::PathBuf;

use ndarray::{Array2, Array4, ArrayD, IxDyn};
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Predictor, Targets};

use crate::{to_onnx_bytes, Backend, Engine, ExportOptions, Layout, OnnxModel, OnnxOptions};

struct Fixture {
    name: &'static str,
    shape: [usize; 3],
    layout: Layout,
}

const FIXTURES: [Fixture; 5] = [
    Fixture {
        name: "pytorch_cnn",
        shape: [1, 12, 12],
        layout: Layout::Nchw,
    },
    Fixture {
        name: "resnet_block",
        shape: [3, 12, 12],
        layout: Layout::Nchw,
    },
    Fixture {
        name: "mobilenet_block",
        shape: [3, 11, 13],
        layout: Layout::Nchw,
    },
    Fixture {
        name: "keras_nhwc",
        shape: [1, 8, 8],
        layout: Layout::Nhwc,
    },
    Fixture {
        name: "opset9_clip",
        shape: [2, 7, 7],
        layout: Layout::Nchw,
    },
];

fn path(name: &str, ext: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("{name}.{ext}"))
}

/// The fixture's input (as NCHW) and onnxruntime's output.
fn io(f: &Fixture) -> (Array4<f32>, Array2<f32>) {
    let text = std::fs::read_to_string(path(f.name, "io.txt")).unwrap();
    let lines: Vec<Vec<f64>> = text
        .lines()
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    let dims = |l: &[f64]| l.iter().map(|&d| d as usize).collect::<Vec<_>>();
    let to_f32 = |l: &[f64]| l.iter().map(|&v| v as f32).collect::<Vec<_>>();
    let x = ArrayD::from_shape_vec(IxDyn(&dims(&lines[0])), to_f32(&lines[1])).unwrap();
    let x = match f.layout {
        Layout::Nchw => x,
        Layout::Nhwc => x
            .permuted_axes(IxDyn(&[0, 3, 1, 2]))
            .as_standard_layout()
            .to_owned(),
    };
    let x = x.into_dimensionality().unwrap();
    let yd = dims(&lines[2]);
    let y = Array2::from_shape_vec((yd[0], yd[1]), to_f32(&lines[3])).unwrap();
    (x, y)
}

fn load(f: &Fixture, backend: Backend) -> OnnxModel {
    OnnxOptions::new()
        .input_shape(f.shape)
        .layout(f.layout)
        .backend(backend)
        .check()
        .unwrap()
        .load(path(f.name, "onnx"))
        .unwrap_or_else(|e| panic!("{}: {e}", f.name))
}

fn assert_close(a: &Array2<f32>, b: &Array2<f32>, tol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: {x} vs {y}\n{a:?}\n{b:?}"
        );
    }
}

#[test]
fn fixtures_import_and_agree_with_onnxruntime_and_tract() {
    for f in &FIXTURES {
        let ours = load(f, Backend::Import);
        assert_eq!(ours.engine(), Engine::Imported, "{}", f.name);
        let tract = load(f, Backend::Tract);
        let (x, want) = io(f);
        let y = ours.predict(x.view().into_dyn()).unwrap();
        assert_close(&y, &want, 1e-5, &format!("{} vs onnxruntime", f.name));
        let yt = tract.predict(x.view().into_dyn()).unwrap();
        assert_close(&y, &yt, 1e-5, &format!("{} vs tract", f.name));
        // Auto picks the importer.
        let auto = load(f, Backend::Auto);
        assert_eq!(
            auto.engine(),
            Engine::Imported,
            "{:?}",
            auto.fallback_reason()
        );
    }
}

fn weighted(model: &OnnxModel, x: &Array4<f32>, w: &Array2<f32>) -> f64 {
    let y = model.predict(x.view().into_dyn()).unwrap();
    y.iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum()
}

#[test]
fn fixture_gradients_match_finite_differences_and_the_batch_sum() {
    for f in &FIXTURES {
        let model = load(f, Backend::Import);
        let (x, _) = io(f);
        let n = x.shape()[0];
        let k = model.n_outputs();
        let w = Array2::from_shape_fn((n, k), |(i, j)| ((i * 7 + j * 3) % 5) as f32 * 0.4 - 0.8);
        let g = model.input_gradient(x.view().into_dyn(), w.view()).unwrap();
        let h = 1e-3f32;
        let (mut ok, mut total) = (0, 0);
        // Every 3rd input value.
        for idx in (0..x.len()).step_by(3) {
            let mut xp = x.clone();
            let mut xm = x.clone();
            xp.as_slice_mut().unwrap()[idx] += h;
            xm.as_slice_mut().unwrap()[idx] -= h;
            let fd = (weighted(&model, &xp, &w) - weighted(&model, &xm, &w)) / (2.0 * h as f64);
            let an = g.as_slice().unwrap()[idx] as f64;
            total += 1;
            if (fd - an).abs() <= 1e-2 * (1.0 + fd.abs()) {
                ok += 1;
            }
        }
        assert!(ok as f64 >= 0.97 * total as f64, "{}: {ok}/{total}", f.name);
        // The pullback gives the same outputs and gradient.
        let (y, g2) = model
            .predict_and_input_gradient(x.view().into_dyn(), &mut |_| Ok(w.clone()))
            .unwrap();
        assert_close(
            &y,
            &model.predict(x.view().into_dyn()).unwrap(),
            1e-6,
            f.name,
        );
        for (a, b) in g.iter().zip(&g2) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{}: {a} vs {b}",
                f.name
            );
        }
        // Per-sample parameter gradients: each sample's row equals a batch of one, and rows sum
        // to the batch's gradient; a few entries against finite differences of the network.
        let net = model.network().unwrap();
        let targets = Targets::Classes((0..n).map(|i| i % k).collect());
        let loss = Loss::CrossEntropy(OutputKind::Logits);
        let psg = net
            .per_sample_grads(x.view().into_dyn(), &targets, &loss, &ParamSelection::All)
            .unwrap()
            .to_flat();
        assert_eq!(psg.ncols(), net.n_params());
        let trace = net.forward_trace(x.view(), None).unwrap();
        let out = net.predict(x.view().into_dyn()).unwrap();
        let (_, go) = loss.value_and_grad(out.view(), &targets).unwrap();
        let summed: Vec<f32> = net
            .backward(&trace, go.view(), false)
            .unwrap()
            .params
            .concat();
        for (col, want) in summed.iter().enumerate() {
            let got: f32 = psg.column(col).sum();
            assert!(
                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{}: {got} vs {want}",
                f.name
            );
        }
        let loss_of = |net: &xai_models::Network, s: usize| -> f64 {
            let xs = x.slice(ndarray::s![s..s + 1, .., .., ..]).to_owned();
            let o = net.predict(xs.view().into_dyn()).unwrap();
            loss.value_and_grad(o.view(), &targets.select(&[s]).unwrap())
                .unwrap()
                .0[0] as f64
        };
        let (mut ok, mut total) = (0, 0);
        let n_params = net.param_slices().len();
        for p in 0..n_params {
            let len = net.param_slices()[p].len();
            let offset: usize = net.param_slices()[..p].iter().map(|v| v.len()).sum();
            for j in [0, len / 2, len - 1] {
                for s in 0..n {
                    let mut np = net.clone();
                    np.param_slices_mut()[p][j] += h;
                    let mut nm = net.clone();
                    nm.param_slices_mut()[p][j] -= h;
                    let fd = (loss_of(&np, s) - loss_of(&nm, s)) / (2.0 * h as f64);
                    total += 1;
                    if (fd - psg[[s, offset + j]] as f64).abs() <= 1e-2 * (1.0 + fd.abs()) {
                        ok += 1;
                    }
                }
            }
        }
        assert!(
            ok as f64 >= 0.95 * total as f64,
            "{}: params {ok}/{total}",
            f.name
        );
    }
}

#[test]
fn imported_graphs_round_trip_through_export() {
    for f in &FIXTURES {
        let model = load(f, Backend::Import);
        let net = model.network().unwrap();
        let bytes = to_onnx_bytes(net, &ExportOptions::new()).unwrap();
        for backend in [Backend::Import, Backend::Tract] {
            let back = OnnxOptions::new()
                .input_shape(f.shape)
                .backend(backend)
                .check()
                .unwrap()
                .load_bytes(&bytes)
                .unwrap_or_else(|e| panic!("{}: {e}", f.name));
            let (x, _) = io(f);
            let a = net.predict(x.view().into_dyn()).unwrap();
            let b = back.predict(x.view().into_dyn()).unwrap();
            assert_close(
                &a,
                &b,
                1e-5,
                &format!("{} round trip ({backend:?})", f.name),
            );
            if backend == Backend::Import {
                assert_eq!(back.network().unwrap().n_params(), net.n_params());
            }
        }
    }
}

#[test]
fn out_of_range_attributes_are_typed_errors() {
    use tract_onnx::pb::ModelProto;
    let bytes = std::fs::read(path("opset9_clip", "onnx")).unwrap();
    let proto: ModelProto = prost::Message::decode(bytes.as_slice()).unwrap();
    let opts = OnnxOptions::new()
        .input_shape([2, 7, 7])
        .backend(Backend::Import)
        .check()
        .unwrap();
    let cases = [
        ("pads", 1i64 << 60),
        ("pads", i64::MAX),
        ("pads", i64::MIN),
        ("pads", -1),
        ("strides", 0),
        ("strides", 1 << 40),
        ("dilations", 0),
        ("dilations", i64::MAX),
        ("group", 1 << 40),
        ("group", 0),
        ("group", 3),
    ];
    for (attr, value) in cases {
        let mut p = proto.clone();
        let g = p.graph.as_mut().unwrap();
        let conv = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
        let a = conv.attribute.iter_mut().find(|a| a.name == attr).unwrap();
        if a.ints.is_empty() {
            a.i = value;
        } else {
            a.ints[0] = value;
        }
        let err = opts
            .load_bytes(&prost::Message::encode_to_vec(&p))
            .expect_err("out of range");
        let msg = err.to_string();
        assert!(
            matches!(err, crate::OnnxError::UnsupportedOp { .. }),
            "{attr} = {value}: {msg}"
        );
    }
}

/// A declared fixed batch that is huge (2^40, i64::MAX) or too large for one batch of values
/// used to abort the process in tract's padded batches; it is a typed error on every path,
/// before anything is allocated for it. A modest fixed batch still loads.
#[test]
fn huge_declared_batch_is_a_typed_error_on_every_path() {
    use crate::pb::tensor_shape_proto::dimension;
    use crate::pb::{type_proto, ModelProto};
    let bytes = std::fs::read(path("pytorch_cnn", "onnx")).unwrap();
    let proto: ModelProto = prost::Message::decode(bytes.as_slice()).unwrap();
    let with_batch = |b: i64| {
        let mut p = proto.clone();
        let input = &mut p.graph.as_mut().unwrap().input[0];
        if let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape.as_mut().unwrap().dim[0].value = Some(dimension::Value::DimValue(b));
        }
        prost::Message::encode_to_vec(&p)
    };
    let per_sample = 12 * 12;
    let too_many_values = (crate::MAX_FIXED_BATCH_VALUES / per_sample + 1) as i64;
    for backend in [Backend::Import, Backend::Auto, Backend::Tract] {
        let opts = OnnxOptions::new()
            .input_shape([1, 12, 12])
            .backend(backend)
            .check()
            .unwrap();
        for b in [
            1i64 << 40,
            i64::MAX,
            crate::MAX_FIXED_BATCH as i64 + 1,
            too_many_values,
        ] {
            let err = opts.load_bytes(&with_batch(b)).expect_err("a huge batch");
            let msg = err.to_string();
            assert!(
                matches!(err, crate::OnnxError::Unsupported(_)) && msg.contains("fixed batch"),
                "{backend:?}, batch {b}: {msg}"
            );
        }
        let m = opts.load_bytes(&with_batch(3)).unwrap();
        let x = ndarray::Array4::<f32>::zeros((5, 1, 12, 12));
        assert_eq!(
            m.predict(x.view().into_dyn()).unwrap().dim(),
            (5, m.n_outputs())
        );
    }
}

/// tract 0.23 loops (allocating until the process aborts) on a `Transpose` whose `perm` is not
/// a permutation, and panics on some malformed attributes: both are `OnnxError::Tract`.
#[test]
fn graphs_that_break_tract_are_typed_errors() {
    use crate::pb::{AttributeProto, ModelProto, NodeProto};
    let bytes = std::fs::read(path("keras_nhwc", "onnx")).unwrap();
    let proto: ModelProto = prost::Message::decode(bytes.as_slice()).unwrap();
    let opts = OnnxOptions::new()
        .input_shape([1, 8, 8])
        .layout(Layout::Nhwc)
        .backend(Backend::Tract)
        .check()
        .unwrap();
    let mut p = proto.clone();
    let g = p.graph.as_mut().unwrap();
    let t: &mut NodeProto = g
        .node
        .iter_mut()
        .find(|n| n.op_type == "Transpose")
        .expect("the Keras fixture transposes its input");
    let perm: &mut AttributeProto = t.attribute.iter_mut().find(|a| a.name == "perm").unwrap();
    perm.ints = vec![0, 3, 3, 1];
    let err = opts
        .load_bytes(&prost::Message::encode_to_vec(&p))
        .expect_err("a bad perm");
    assert!(
        matches!(&err, crate::OnnxError::Tract { message, .. } if message.contains("permutation")),
        "{err}"
    );
    // A `pads` attribute of the wrong length makes tract index out of bounds (a panic inside
    // tract, caught and reported).
    let mut p = proto;
    let g = p.graph.as_mut().unwrap();
    let conv = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
    match conv.attribute.iter_mut().find(|a| a.name == "pads") {
        Some(a) => a.ints = vec![1],
        None => conv.attribute.push(AttributeProto {
            name: "pads".into(),
            r#type: 7,
            ints: vec![1],
            ..Default::default()
        }),
    }
    let err = opts
        .load_bytes(&prost::Message::encode_to_vec(&p))
        .expect_err("pads of the wrong length");
    assert!(matches!(err, crate::OnnxError::Tract { .. }), "{err}");
}

/// Models as a new user's exporters write them (`fixtures/make_torch_fixtures.py`, issue 25):
/// torch's default (dynamo) export with its weights in `<name>.onnx.data` and a symbolic
/// `batch`; a torch export with symbolic batch, height and width (and `value_info` in those
/// symbols); an input declared `[-1, 3, ?, <unset>]` (paddle2onnx's form).
const EXPORTED: [Fixture; 3] = [
    Fixture {
        name: "torch_dynamo_cnn",
        shape: [3, 24, 24],
        layout: Layout::Nchw,
    },
    Fixture {
        name: "torch_dynamic_hw",
        shape: [3, 13, 17],
        layout: Layout::Nchw,
    },
    Fixture {
        name: "paddle_dynamic",
        shape: [3, 16, 40],
        layout: Layout::Nchw,
    },
];

#[test]
fn exported_models_with_external_data_and_dynamic_dims_agree_with_onnxruntime() {
    for f in &EXPORTED {
        let (x, want) = io(f);
        for backend in [Backend::Auto, Backend::Tract] {
            let model = load(f, backend);
            let y = model.predict(x.view().into_dyn()).unwrap();
            assert_close(
                &y,
                &want,
                1e-4,
                &format!("{} on {} vs onnxruntime", f.name, model.engine()),
            );
            // One sample and an odd batch: the batch is symbolic whatever its name.
            let one = x.slice(ndarray::s![..1, .., .., ..]).to_owned();
            let y1 = model.predict(one.view().into_dyn()).unwrap();
            assert_close(
                &y1,
                &want.slice(ndarray::s![..1, ..]).to_owned(),
                1e-4,
                f.name,
            );
        }
    }
    // The torch export is read by the importer (its external weights inlined), the paddle2onnx
    // form too.
    for name in ["torch_dynamo_cnn", "paddle_dynamic"] {
        let f = EXPORTED.iter().find(|f| f.name == name).unwrap();
        let m = load(f, Backend::Auto);
        assert_eq!(
            m.engine(),
            Engine::Imported,
            "{name}: {:?}",
            m.fallback_reason()
        );
    }
}

#[test]
fn dynamic_height_and_width_take_the_callers_shape() {
    // The same files at other image sizes than their io.txt's (both engines), batch of 2.
    for (f, hw) in [(&EXPORTED[1], [20, 9]), (&EXPORTED[2], [48, 192])] {
        for backend in [Backend::Auto, Backend::Tract] {
            let g = Fixture {
                name: f.name,
                shape: [3, hw[0], hw[1]],
                layout: Layout::Nchw,
            };
            let model = load(&g, backend);
            let x = Array4::<f32>::from_elem((2, 3, hw[0], hw[1]), 0.25);
            let y = model.predict(x.view().into_dyn()).unwrap();
            assert_eq!(y.nrows(), 2, "{}", f.name);
            assert!(y.iter().all(|v| v.is_finite()), "{}", f.name);
        }
    }
    // A fixed sample dimension must still match: torch_dynamo_cnn is 3 x 24 x 24.
    let e = OnnxOptions::new()
        .input_shape([3, 24, 25])
        .check()
        .unwrap()
        .load(path("torch_dynamo_cnn", "onnx"))
        .unwrap_err();
    assert!(
        matches!(e, crate::OnnxError::InputShapeMismatch { .. }),
        "{e}"
    );
}

/// The opsets of `fixtures/make_torch_fixtures.py`'s `opset<N>` models: one CNN written in each
/// opset's forms of `BatchNormalization`, `Clip`, `Dropout`, `Slice`, `Squeeze`, `Unsqueeze`
/// and `Softmax` (attributes that became inputs, changed defaults).
const OPSETS: [&str; 9] = [
    "opset7", "opset9", "opset10", "opset11", "opset12", "opset13", "opset17", "opset21", "opset23",
];

#[test]
fn every_opset_form_imports_and_agrees_with_onnxruntime() {
    for name in OPSETS {
        let f = Fixture {
            name,
            shape: [2, 8, 8],
            layout: Layout::Nchw,
        };
        let (x, want) = io(&f);
        let ours = load(&f, Backend::Import);
        assert_eq!(ours.engine(), Engine::Imported, "{name}");
        let y = ours.predict(x.view().into_dyn()).unwrap();
        assert_close(&y, &want, 1e-5, &format!("{name} imported vs onnxruntime"));
        let tract = load(&f, Backend::Tract);
        let yt = tract.predict(x.view().into_dyn()).unwrap();
        assert_close(&yt, &want, 1e-5, &format!("{name} on tract vs onnxruntime"));
    }
}

/// Per-channel normalization ([`OnnxOptions::normalize`]) on every engine: predictions on pixels
/// `x` equal the plain model's on `(x * scale + offset - mean) / std`, and input gradients are
/// the plain model's gradient divided by the channel's std (times the scale).
#[test]
fn per_channel_normalization_is_the_models_input_transform_on_every_engine() {
    let mean = [0.485f32, 0.456, 0.406];
    let std = [0.229f32, 0.224, 0.225];
    let (scale, offset) = (2.0f32, -0.25f32);
    for f in [&FIXTURES[1], &FIXTURES[2]] {
        let (x, _) = io(f);
        let normalized = {
            let mut z = x.clone();
            for (c, mut plane) in z.axis_iter_mut(ndarray::Axis(1)).enumerate() {
                plane.mapv_inplace(|v| (v * scale + offset - mean[c]) / std[c]);
            }
            z
        };
        for backend in [Backend::Import, Backend::Graph, Backend::Tract] {
            let plain = load(f, backend);
            let with = OnnxOptions::new()
                .input_shape(f.shape)
                .backend(backend)
                .input_scale(scale)
                .input_offset(offset)
                .normalize(mean, std)
                .check()
                .unwrap()
                .load(path(f.name, "onnx"))
                .unwrap();
            assert!(
                with.describe().contains("normalized"),
                "{}",
                with.describe()
            );
            let y = with.predict(x.view().into_dyn()).unwrap();
            let want = plain.predict(normalized.view().into_dyn()).unwrap();
            assert_close(&y, &want, 1e-5, &format!("{} on {backend:?}", f.name));
            if backend == Backend::Tract {
                continue;
            }
            let w = Array2::from_shape_fn(y.raw_dim(), |(i, j)| (i + 2 * j) as f32 - 1.5);
            let g = with.input_gradient(x.view().into_dyn(), w.view()).unwrap();
            let mut g_plain = plain
                .input_gradient(normalized.view().into_dyn(), w.view())
                .unwrap();
            for (c, mut plane) in g_plain.axis_iter_mut(ndarray::Axis(1)).enumerate() {
                plane.mapv_inplace(|v| v * scale / std[c]);
            }
            for (a, b) in g.iter().zip(&g_plain) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{}: {a} vs {b}",
                    f.name
                );
            }
        }
    }
    // One value per channel, finite, std > 0; images only.
    let bad = |o: OnnxOptions| o.check().unwrap_err().to_string();
    let shaped = OnnxOptions::new().input_shape([3, 4, 4]);
    assert!(bad(shaped.clone().normalize([0.5, 0.5], std)).contains("one value per channel"));
    assert!(bad(shaped.clone().normalize(mean, [0.2, 0.0, 0.2])).contains("greater than 0"));
    assert!(bad(shaped.clone().normalize([f32::NAN, 0.0, 0.0], std)).contains("finite"));
    assert!(bad(OnnxOptions::new().input_features(3).normalize(mean, std)).contains("features"));
    assert!(shaped.imagenet_normalization().check().is_ok());
}
