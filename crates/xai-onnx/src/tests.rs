//! Round trips: networks exported to ONNX, loaded back with both engines, checked against the
//! networks themselves; graph variants for the importer's other paths; the error cases.

use ndarray::{Array2, Array4, ArrayD, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{CoreError, DifferentiableModel, Loss, OutputKind as CoreOutput, ParamSelection};
use xai_core::{Predictor, Targets};
use xai_models::layers::{Conv2d, Dense, Layer, MaxPool2d, Padding};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_models::{NamedLayer, Network};

use crate::pb::tensor_proto::DataType;
use crate::pb::tensor_shape_proto::dimension;
use crate::pb::{type_proto, ModelProto, NodeProto, TensorProto};
use crate::*;

const TOL: f32 = 1e-5;

fn named(name: &str, layer: Layer) -> NamedLayer {
    NamedLayer {
        name: name.into(),
        layer,
    }
}

/// A small random network that exercises every exported layer: a padded strided conv with a
/// non-square kernel, a 'same' conv, a padded pool, flatten, two dense layers and a softmax.
fn tiny_net(seed: u64) -> Network {
    let mut r = StdRng::seed_from_u64(seed);
    let mut conv1 = Conv2d::new(
        1,
        3,
        (3, 2),
        (2, 1),
        Padding::Explicit {
            top: 1,
            bottom: 0,
            left: 1,
            right: 1,
        },
        &mut r,
    );
    conv1.bias = (0..3).map(|_| r.gen_range(-0.2..0.2)).collect();
    let mut conv2 = Conv2d::new(3, 4, (2, 2), (1, 1), Padding::Same, &mut r);
    conv2.bias = (0..4).map(|_| r.gen_range(-0.2..0.2)).collect();
    let layers = vec![
        named("conv1", Layer::Conv2d(conv1)),
        named("relu1", Layer::Relu),
        named("conv2", Layer::Conv2d(conv2)),
        named("relu2", Layer::Relu),
        named(
            "pool1",
            Layer::MaxPool2d(MaxPool2d {
                size: (2, 2),
                stride: (2, 2),
                padding: Padding::Same,
            }),
        ),
        named("dropout", Layer::Dropout(0.3)),
        named("flatten", Layer::Flatten),
        named("dense1", Layer::Dense(Dense::new(4 * 4 * 4, 8, &mut r))),
        named("relu3", Layer::Relu),
        named("dense2", Layer::Dense(Dense::new(8, 3, &mut r))),
        named("softmax", Layer::Softmax),
    ];
    let mut net = Network::new("tiny", [1, 14, 7], layers).unwrap();
    // Non-zero biases everywhere, so a permuted or dropped bias shows.
    for l in net.layers_mut() {
        if let Layer::Dense(d) = &mut l.layer {
            for b in &mut d.bias {
                *b = r.gen_range(-0.3..0.3);
            }
        }
    }
    net
}

fn images(n: usize, shape: [usize; 3], seed: u64) -> Array4<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    Array4::from_shape_fn((n, shape[0], shape[1], shape[2]), |_| r.gen_range(0.0..1.0))
}

fn options(shape: [usize; 3], backend: Backend) -> OnnxOptions {
    OnnxOptions::new()
        .input_shape(shape)
        .backend(backend)
        .tract_threads(1)
}

fn load(bytes: &[u8], opts: OnnxOptions) -> OnnxModel {
    opts.check().unwrap().load_bytes(bytes).unwrap()
}

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_close(a: &Array2<f32>, b: &Array2<f32>, tol: f32, what: &str) {
    let d = max_diff(&a.clone().into_dyn(), &b.clone().into_dyn());
    assert!(d <= tol, "{what}: max abs difference {d:e} > {tol:e}");
}

const ENGINES: [(Backend, Engine); 2] = [
    (Backend::Import, Engine::Imported),
    (Backend::Tract, Engine::Tract),
];

#[test]
fn tiny_network_round_trips_through_both_engines() {
    let net = tiny_net(1);
    let x = images(5, [1, 14, 7], 2);
    let expected = net.predict(x.view().into_dyn()).unwrap();
    let bytes = to_onnx_bytes(&net, &ExportOptions::new()).unwrap();
    for (backend, engine) in ENGINES {
        let m = load(&bytes, options([1, 14, 7], backend));
        assert_eq!(m.engine(), engine);
        assert_eq!(m.n_outputs(), 3);
        assert_eq!(m.output_kind(), OutputKind::Probabilities);
        let got = m.predict(x.view().into_dyn()).unwrap();
        assert_close(&got, &expected, TOL, &format!("{engine}"));
        // Batches of one and of zero work too.
        let one = m
            .predict(x.slice(ndarray::s![..1, .., .., ..]).into_dyn())
            .unwrap();
        assert_close(
            &one,
            &expected.slice(ndarray::s![..1, ..]).to_owned(),
            TOL,
            "n = 1",
        );
        let none = m
            .predict(x.slice(ndarray::s![..0, .., .., ..]).into_dyn())
            .unwrap();
        assert_eq!(none.shape(), &[0, 3]);
    }
    // Auto imports it.
    let auto = load(&bytes, options([1, 14, 7], Backend::Auto));
    assert_eq!(auto.engine(), Engine::Imported);
    assert!(auto.fallback_reason().is_none());
}

#[test]
fn imported_weights_equal_the_original_ones() {
    let net = tiny_net(3);
    let bytes = to_onnx_bytes(&net, &ExportOptions::new()).unwrap();
    let m = load(&bytes, options([1, 14, 7], Backend::Import));
    let imported = m.network().unwrap();
    assert_eq!(imported.param_slices(), net.param_slices());
    assert_eq!(imported.n_params(), net.n_params());
}

#[test]
fn nhwc_and_raw_pixel_variants_agree() {
    let net = tiny_net(4);
    let x = images(4, [1, 14, 7], 5);
    let expected = net.predict(x.view().into_dyn()).unwrap();
    let variants = [
        (ExportOptions::new().layout(Layout::Nhwc), Layout::Nhwc, 1.0),
        (ExportOptions::new().input_scale(255.0), Layout::Nchw, 255.0),
        (
            ExportOptions::new().layout(Layout::Nhwc).input_scale(255.0),
            Layout::Nhwc,
            255.0,
        ),
    ];
    for (export, layout, scale) in variants {
        let bytes = to_onnx_bytes(&net, &export).unwrap();
        for (backend, engine) in ENGINES {
            let m = load(
                &bytes,
                options([1, 14, 7], backend)
                    .layout(layout)
                    .input_scale(scale),
            );
            assert_eq!(m.engine(), engine);
            let got = m.predict(x.view().into_dyn()).unwrap();
            assert_close(
                &got,
                &expected,
                TOL,
                &format!("{layout}, x{scale}, {engine}"),
            );
        }
        // Without the scale option the raw-pixel model sees values 255 times too small.
        if scale != 1.0 {
            let m = load(&bytes, options([1, 14, 7], Backend::Import).layout(layout));
            let got = m.predict(x.view().into_dyn()).unwrap();
            assert!(max_diff(&got.into_dyn(), &expected.clone().into_dyn()) > 1e-3);
        }
    }
}

#[test]
fn three_channel_nhwc_transposes_the_batch() {
    // With one channel NCHW and NHWC share the memory order; with three they do not.
    let mut r = StdRng::seed_from_u64(6);
    let layers = vec![
        named(
            "conv",
            Layer::Conv2d(Conv2d::new(3, 2, (3, 3), (1, 1), Padding::Valid, &mut r)),
        ),
        named("relu", Layer::Relu),
        named("flatten", Layer::Flatten),
        named("dense", Layer::Dense(Dense::new(2 * 3 * 4, 4, &mut r))),
    ];
    let net = Network::new("rgb", [3, 5, 6], layers).unwrap();
    let x = images(3, [3, 5, 6], 7);
    let expected = net.predict(x.view().into_dyn()).unwrap();
    let bytes = to_onnx_bytes(&net, &ExportOptions::new().layout(Layout::Nhwc)).unwrap();
    for (backend, _) in ENGINES {
        let m = load(&bytes, options([3, 5, 6], backend).layout(Layout::Nhwc));
        assert_eq!(m.output_kind(), OutputKind::Logits);
        let got = m.predict(x.view().into_dyn()).unwrap();
        assert_close(&got, &expected, TOL, &format!("{backend}"));
    }
}

#[test]
fn output_kinds_and_conversion_to_probabilities() {
    let net = tiny_net(8);
    let x = images(4, [1, 14, 7], 9);
    let probs = net.predict(x.view().into_dyn()).unwrap();
    for kind in [OutputKind::Logits, OutputKind::LogProbabilities] {
        let bytes = to_onnx_bytes(&net, &ExportOptions::new().output(kind)).unwrap();
        for (backend, engine) in ENGINES {
            let raw = load(&bytes, options([1, 14, 7], backend));
            assert_eq!(raw.model_output_kind(), kind, "detected from the graph");
            assert_eq!(raw.output_kind(), kind);
            let out = raw.predict(x.view().into_dyn()).unwrap();
            if kind == OutputKind::LogProbabilities {
                assert_close(&out, &probs.mapv(f32::ln), 1e-4, "log-probabilities");
            }
            let converted = load(&bytes, options([1, 14, 7], backend).probabilities(true));
            assert_eq!(converted.output_kind(), OutputKind::Probabilities);
            let p = converted.predict(x.view().into_dyn()).unwrap();
            assert_close(
                &p,
                &probs,
                TOL,
                &format!("{kind} -> probabilities, {engine}"),
            );
        }
    }
    // A stated kind that contradicts a final Softmax is an error.
    let bytes = to_onnx_bytes(&net, &ExportOptions::new()).unwrap();
    let e = options([1, 14, 7], Backend::Import)
        .output_kind(OutputKind::Logits)
        .check()
        .unwrap()
        .load_bytes(&bytes)
        .unwrap_err();
    assert!(e.to_string().contains("ends in Softmax"), "{e}");
}

#[test]
fn imported_gradients_match_the_network() {
    let net = tiny_net(10);
    let x = images(3, [1, 14, 7], 11);
    let mut r = StdRng::seed_from_u64(12);
    let w = Array2::from_shape_fn((3, 3), |_| r.gen_range(-1.0..1.0));
    let expected = net.input_gradient(x.view().into_dyn(), w.view()).unwrap();
    // Same graph, and the raw-pixel variant (the scale and the graph's division cancel).
    for export in [
        ExportOptions::new(),
        ExportOptions::new().input_scale(255.0),
    ] {
        let scale = if export == ExportOptions::new() {
            1.0
        } else {
            255.0
        };
        let bytes = to_onnx_bytes(&net, &export).unwrap();
        let m = load(
            &bytes,
            options([1, 14, 7], Backend::Import).input_scale(scale),
        );
        let g = m.input_gradient(x.view().into_dyn(), w.view()).unwrap();
        assert!(max_diff(&g, &expected) < 1e-5, "scale {scale}");
        let (_, g) = m
            .predict_and_input_gradient(x.view().into_dyn(), &mut |_| Ok(w.clone()))
            .unwrap();
        assert!(max_diff(&g, &expected) < 1e-5, "pullback, scale {scale}");
    }
    // A LogSoftmax head: d(Σ w log p)/dx = the network's vjp with weights w / p.
    let bytes = to_onnx_bytes(
        &net,
        &ExportOptions::new().output(OutputKind::LogProbabilities),
    )
    .unwrap();
    let m = load(&bytes, options([1, 14, 7], Backend::Import));
    let p = net.predict(x.view().into_dyn()).unwrap();
    let expected_log = net
        .input_gradient(x.view().into_dyn(), (&w / &p).view())
        .unwrap();
    let g = m.input_gradient(x.view().into_dyn(), w.view()).unwrap();
    let scale = expected_log.iter().fold(0.0f32, |a, b| a.max(b.abs()));
    assert!(max_diff(&g, &expected_log) < 1e-4 * scale.max(1.0));
    // The fused pullback gives the same outputs and gradient, with weights seen on the
    // log-probabilities.
    let (out, g2) = m
        .predict_and_input_gradient(x.view().into_dyn(), &mut |y| {
            assert_close(&y.to_owned(), &p.mapv(f32::ln), 1e-4, "pullback outputs");
            Ok(w.clone())
        })
        .unwrap();
    assert_close(&out, &p.mapv(f32::ln), 1e-4, "outputs");
    assert!(max_diff(&g2, &expected_log) < 1e-4 * scale.max(1.0));
}

#[test]
fn per_sample_gradients_through_a_log_softmax_head() {
    // Cross-entropy on log-probabilities (as logits) equals cross-entropy on the probabilities.
    let net = tiny_net(13);
    let x = images(4, [1, 14, 7], 14);
    let targets = Targets::Classes(vec![0, 2, 1, 2]);
    let sel = ParamSelection::All;
    let expected = net
        .per_sample_grads(
            x.view().into_dyn(),
            &targets,
            &Loss::CrossEntropy(CoreOutput::Probabilities),
            &sel,
        )
        .unwrap()
        .to_flat();
    let bytes = to_onnx_bytes(
        &net,
        &ExportOptions::new().output(OutputKind::LogProbabilities),
    )
    .unwrap();
    let m = load(&bytes, options([1, 14, 7], Backend::Import));
    assert_eq!(m.parameter_groups(), net.parameter_groups());
    let got = m
        .per_sample_grads(
            x.view().into_dyn(),
            &targets,
            &Loss::CrossEntropy(CoreOutput::Logits),
            &sel,
        )
        .unwrap()
        .to_flat();
    let d = max_diff(&got.clone().into_dyn(), &expected.clone().into_dyn());
    let scale = expected.iter().fold(0.0f32, |a, b| a.max(b.abs()));
    assert!(
        d < 1e-4 * scale.max(1.0),
        "difference {d:e} at scale {scale}"
    );
}

/// The trained binary CNN, exported and read back, on MNIST test digits 0 and 1.
#[test]
fn trained_binary_cnn_agrees_with_onnx() {
    let net = load_pretrained(ModelKind::BinaryCnn).unwrap();
    let mnist = xai_datasets::Mnist::load_default().unwrap();
    let test = mnist.test.binary_subset(0, 1).head(24);
    let x = test.images_f32(ModelKind::BinaryCnn.scaling());
    let expected = net.predict(x.view().into_dyn()).unwrap();
    let accuracy = xai_core::argmax_rows(expected.view())
        .iter()
        .zip(test.labels_usize())
        .filter(|(p, l)| **p == *l)
        .count();
    assert!(accuracy >= 23, "the shipped model classifies {accuracy}/24");
    for export in [
        ExportOptions::new(),
        ExportOptions::new().layout(Layout::Nhwc).input_scale(255.0),
    ] {
        let bytes = to_onnx_bytes(&net, &export).unwrap();
        let nhwc = export != ExportOptions::new();
        for (backend, engine) in ENGINES {
            let mut opts = options([1, 28, 28], backend);
            if nhwc {
                opts = opts.layout(Layout::Nhwc).input_scale(255.0);
            }
            let m = load(&bytes, opts);
            assert_eq!(m.engine(), engine);
            let got = m.predict(x.view().into_dyn()).unwrap();
            assert_close(
                &got,
                &expected,
                TOL,
                &format!("binary_cnn, {engine}, nhwc {nhwc}"),
            );
        }
    }
}

// ---- graph surgery: the importer's other paths ----

fn model_of(net: &Network, export: &ExportOptions) -> ModelProto {
    to_onnx(net, export).unwrap()
}

fn encode(m: &ModelProto) -> Vec<u8> {
    use prost::Message;
    m.encode_to_vec()
}

fn graph_mut(m: &mut ModelProto) -> &mut crate::pb::GraphProto {
    m.graph.as_mut().unwrap()
}

fn node_index(m: &ModelProto, op: &str) -> usize {
    m.graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .position(|n| n.op_type == op)
        .unwrap()
}

fn int64_constant(output: &str, values: &[i64]) -> NodeProto {
    NodeProto {
        output: vec![output.into()],
        name: format!("{output}_const"),
        op_type: "Constant".into(),
        attribute: vec![crate::pb::AttributeProto {
            name: "value".into(),
            r#type: crate::pb::attribute_proto::AttributeType::Tensor as i32,
            t: Some(TensorProto {
                dims: vec![values.len() as i64],
                data_type: DataType::Int64 as i32,
                int64_data: values.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn reshape_matmul_add_and_fixed_batch_variants_import() {
    let net = tiny_net(15);
    let x = images(3, [1, 14, 7], 16);
    let expected = net.predict(x.view().into_dyn()).unwrap();
    let mut m = model_of(&net, &ExportOptions::new());
    {
        let g = graph_mut(&mut m);
        // Flatten -> Reshape(x, Constant [0, -1]).
        let fi = g.node.iter().position(|n| n.op_type == "Flatten").unwrap();
        g.node[fi].op_type = "Reshape".into();
        g.node[fi].attribute.clear();
        g.node[fi].input.push("flat_shape".into());
        g.node.insert(fi, int64_constant("flat_shape", &[0, -1]));
        // The first Gemm (transB = 1) -> MatMul by the transposed weight, then Add of the bias.
        let gi = g.node.iter().position(|n| n.op_type == "Gemm").unwrap();
        let (wname, bname) = (g.node[gi].input[1].clone(), g.node[gi].input[2].clone());
        let wt = g.initializer.iter_mut().find(|t| t.name == wname).unwrap();
        let (o, k) = (wt.dims[0] as usize, wt.dims[1] as usize);
        let w = crate::proto::tensor_f32(wt).unwrap();
        let mut t = vec![0.0f32; o * k];
        for oi in 0..o {
            for ki in 0..k {
                t[ki * o + oi] = w[oi * k + ki];
            }
        }
        wt.dims = vec![k as i64, o as i64];
        wt.raw_data = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        let out = g.node[gi].output[0].clone();
        g.node[gi].op_type = "MatMul".into();
        g.node[gi].attribute.clear();
        g.node[gi].input.truncate(2);
        g.node[gi].output = vec!["matmul_out".into()];
        g.node.insert(
            gi + 1,
            NodeProto {
                input: vec!["matmul_out".into(), bname],
                output: vec![out],
                name: "bias_add".into(),
                op_type: "Add".into(),
                ..Default::default()
            },
        );
    }
    let bytes = encode(&m);
    for (backend, _) in ENGINES {
        let got = load(&bytes, options([1, 14, 7], backend))
            .predict(x.view().into_dyn())
            .unwrap();
        assert_close(&got, &expected, TOL, &format!("reshape/matmul, {backend}"));
    }
    // A fixed batch of 2: tract runs chunks of 2 (the last one padded), the importer any batch.
    let input = &mut graph_mut(&mut m).input[0];
    if let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.shape.as_mut().unwrap().dim[0].value = Some(dimension::Value::DimValue(2));
    }
    // Reshape [0, -1] is fine with a fixed batch; so is [2, -1].
    let bytes = encode(&m);
    for (backend, _) in ENGINES {
        let got = load(&bytes, options([1, 14, 7], backend))
            .predict(x.view().into_dyn())
            .unwrap();
        assert_close(&got, &expected, TOL, &format!("fixed batch, {backend}"));
    }
}

#[test]
fn unsupported_graphs_fall_back_to_tract_and_have_no_gradients() {
    let net = tiny_net(17);
    let x = images(2, [1, 14, 7], 18);
    let mut m = model_of(&net, &ExportOptions::new());
    let ri = node_index(&m, "Relu");
    // Erf: the importer declines it, the graph engine runs it (differentiable).
    graph_mut(&mut m).node[ri].op_type = "Erf".into();
    let erf = encode(&m);
    let on_graph = load(&erf, options([1, 14, 7], Backend::Auto));
    assert_eq!(on_graph.engine(), Engine::Graph);
    assert!(on_graph.fallback_reason().unwrap().contains("Erf"));
    let w = Array2::ones((2, 3));
    assert_eq!(
        on_graph
            .input_gradient(x.view().into_dyn(), w.view())
            .unwrap()
            .shape(),
        &[2, 1, 14, 7]
    );
    assert!(!on_graph.parameter_groups().is_empty());
    // Softsign: neither the importer nor the graph engine reads it; tract runs it.
    graph_mut(&mut m).node[ri].op_type = "Softsign".into();
    let bytes = encode(&m);
    let e = options([1, 14, 7], Backend::Import)
        .check()
        .unwrap()
        .load_bytes(&bytes)
        .unwrap_err();
    assert!(
        matches!(&e, OnnxError::UnsupportedOp { op, .. } if op == "Softsign"),
        "{e}"
    );
    assert!(e.to_string().contains("Softsign"), "{e}");
    let auto = load(&bytes, options([1, 14, 7], Backend::Auto));
    assert_eq!(auto.engine(), Engine::Tract);
    let reason = auto.fallback_reason().unwrap();
    assert!(
        reason.contains("the importer")
            && reason.contains("the graph engine")
            && reason.contains("Softsign"),
        "{reason}"
    );
    assert!(auto.describe().contains("tract"));
    let p = auto.predict(x.view().into_dyn()).unwrap();
    for row in p.axis_iter(Axis(0)) {
        assert!((row.sum() - 1.0).abs() < 1e-5);
    }
    let w = Array2::ones((2, 3));
    let e = auto
        .input_gradient(x.view().into_dyn(), w.view())
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("tract") && msg.contains("Softsign"), "{msg}");
    assert!(auto.parameter_groups().is_empty());
    assert!(auto
        .predict_and_input_gradient(x.view().into_dyn(), &mut |y| Ok(y.to_owned()))
        .is_err());
    assert!(auto
        .per_sample_grads(
            x.view().into_dyn(),
            &Targets::Classes(vec![0, 1]),
            &Loss::CrossEntropy(CoreOutput::Probabilities),
            &ParamSelection::All,
        )
        .is_err());
}

#[test]
fn branches_that_do_not_fit_are_typed_errors() {
    let net = tiny_net(19);
    let mut m = model_of(&net, &ExportOptions::new());
    // conv2 reads the graph input (1 channel) instead of relu1's output (3 channels).
    let g = graph_mut(&mut m);
    let ci = g.node.iter().rposition(|n| n.op_type == "Conv").unwrap();
    g.node[ci].input[0] = "input".into();
    let e = options([1, 14, 7], Backend::Import)
        .check()
        .unwrap()
        .load_bytes(&encode(&m))
        .unwrap_err();
    assert!(matches!(e, OnnxError::UnsupportedOp { .. }), "{e}");
    assert!(e.to_string().contains("channels"), "{e}");
}

// ---- errors ----

#[test]
fn missing_garbage_and_mismatched_files_are_typed_errors() {
    let dir = std::env::temp_dir().join(format!("xai-onnx-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = OnnxOptions::new().check().unwrap();

    let missing = opts.load(dir.join("nope.onnx")).unwrap_err();
    assert!(
        matches!(missing, OnnxError::FileNotFound { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("nope.onnx"));

    let garbage = dir.join("garbage.onnx");
    std::fs::write(
        &garbage,
        b"this is certainly not a protobuf \xff\xfe\x00\x01",
    )
    .unwrap();
    let e = opts.load(&garbage).unwrap_err();
    assert!(matches!(e, OnnxError::NotOnnx { .. }), "{e}");
    std::fs::write(&garbage, b"").unwrap();
    let e = opts.load(&garbage).unwrap_err();
    assert!(matches!(e, OnnxError::NotOnnx { .. }), "{e}");
    // Valid protobuf, but no graph.
    assert!(matches!(
        opts.load_bytes(&[0x08, 0x07]).unwrap_err(),
        OnnxError::NotOnnx { .. }
    ));

    // An NCHW [N, 1, 28, 28] model loaded as NHWC, or for 32x32 images.
    let net = ModelKind::BinaryCnn.build(0);
    let path = dir.join("binary.onnx");
    save_onnx(&net, &path, &ExportOptions::new()).unwrap();
    for bad in [
        OnnxOptions::new().layout(Layout::Nhwc),
        OnnxOptions::new().input_shape([1, 32, 32]),
    ] {
        for backend in [Backend::Auto, Backend::Tract] {
            let e = bad
                .clone()
                .backend(backend)
                .check()
                .unwrap()
                .load(&path)
                .unwrap_err();
            assert!(matches!(e, OnnxError::InputShapeMismatch { .. }), "{e}");
            assert!(e.to_string().contains("[N, 1, 28, 28]"), "{e}");
        }
    }

    // A batch of the wrong shape at predict time.
    let m = opts.load(&path).unwrap();
    let e = m
        .predict(Array4::<f32>::zeros((2, 1, 27, 28)).view().into_dyn())
        .unwrap_err();
    assert!(matches!(e, CoreError::ShapeMismatch { .. }), "{e}");
    let tract = OnnxOptions::new()
        .backend(Backend::Tract)
        .check()
        .unwrap()
        .load(&path)
        .unwrap();
    assert!(tract
        .predict(Array4::<f32>::zeros((1, 28, 28, 1)).view().into_dyn())
        .is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn export_rejects_what_it_cannot_write() {
    let ae = ModelKind::CemAutoencoder.build(0);
    let e = to_onnx(&ae, &ExportOptions::new()).unwrap_err();
    assert!(matches!(e, OnnxError::Export { .. }), "{e}");
    assert!(e.to_string().contains("upsampling"), "{e}");
    assert!(to_onnx(&tiny_net(0), &ExportOptions::new().input_scale(0.0)).is_err());
}

/// A tabular MLP exported as PyTorch or sklearn-onnx write one: input `[N, n_features]`, Gemm,
/// Relu, Gemm, Softmax, no Flatten.
fn tabular_mlp(n_features: usize, seed: u64) -> (Network, Vec<u8>) {
    let mut r = StdRng::seed_from_u64(seed);
    let mut d1 = Dense::new(n_features, 8, &mut r);
    d1.bias = (0..8).map(|_| r.gen_range(-0.3..0.3)).collect();
    let layers = vec![
        named("flatten", Layer::Flatten),
        named("dense1", Layer::Dense(d1)),
        named("relu", Layer::Relu),
        named("dense2", Layer::Dense(Dense::new(8, 3, &mut r))),
        named("softmax", Layer::Softmax),
    ];
    let net = Network::new("mlp", [n_features, 1, 1], layers).unwrap();
    let mut m = model_of(&net, &ExportOptions::new());
    let g = graph_mut(&mut m);
    // Drop the Flatten: the first Gemm reads the graph input, declared [N, n_features].
    let fi = g.node.iter().position(|n| n.op_type == "Flatten").unwrap();
    let flat = g.node.remove(fi);
    for n in &mut g.node {
        for i in &mut n.input {
            if *i == flat.output[0] {
                *i = flat.input[0].clone();
            }
        }
    }
    if let Some(type_proto::Value::TensorType(t)) =
        g.input[0].r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.shape.as_mut().unwrap().dim.truncate(2);
    }
    (net, encode(&m))
}

#[test]
fn tabular_models_on_rows_of_features() {
    let f = 5;
    let (net, bytes) = tabular_mlp(f, 40);
    let mut r = StdRng::seed_from_u64(41);
    let rows = Array2::from_shape_fn((4, f), |_| r.gen_range(-2.0..2.0));
    let as_images = rows.clone().into_shape_with_order((4, f, 1, 1)).unwrap();
    let expected = net.predict(as_images.view().into_dyn()).unwrap();
    let tabular = |backend| {
        OnnxOptions::new()
            .input_features(f)
            .backend(backend)
            .tract_threads(1)
    };
    for (backend, engine) in ENGINES {
        let m = load(&bytes, tabular(backend));
        assert_eq!(m.engine(), engine);
        assert_eq!(m.input_shape(), &[f]);
        let got = m.predict(rows.view().into_dyn()).unwrap();
        assert_close(&got, &expected, TOL, &format!("tabular, {backend}"));
        // An image-shaped batch is a shape error, not a panic.
        let e = m.predict(as_images.view().into_dyn()).unwrap_err();
        assert!(matches!(e, CoreError::ShapeMismatch { .. }), "{e}");
    }
    // Gradients come back in the rows' shape and equal the network's.
    let m = load(&bytes, tabular(Backend::Import));
    let w = Array2::from_shape_fn((4, 3), |_| r.gen_range(-1.0..1.0));
    let want = net
        .input_gradient(as_images.view().into_dyn(), w.view())
        .unwrap()
        .into_shape_with_order((4, f))
        .unwrap()
        .into_dyn();
    let g = m.input_gradient(rows.view().into_dyn(), w.view()).unwrap();
    assert_eq!(g.shape(), &[4, f]);
    assert!(max_diff(&g, &want) < 1e-5);
    let (out, g2) = m
        .predict_and_input_gradient(rows.view().into_dyn(), &mut |_| Ok(w.clone()))
        .unwrap();
    assert_close(&out, &expected, TOL, "pullback outputs");
    assert!(max_diff(&g2, &want) < 1e-5);
    let t = Targets::Classes(vec![0, 1, 2, 1]);
    let loss = Loss::CrossEntropy(CoreOutput::Probabilities);
    let a = m
        .per_sample_grads(rows.view().into_dyn(), &t, &loss, &ParamSelection::All)
        .unwrap()
        .to_flat();
    let b = net
        .per_sample_grads(as_images.view().into_dyn(), &t, &loss, &ParamSelection::All)
        .unwrap()
        .to_flat();
    assert!(max_diff(&a.into_dyn(), &b.into_dyn()) < 1e-5);
    // The wrong number of features, or image options, name the declared input.
    for opts in [
        OnnxOptions::new().input_features(f + 1),
        OnnxOptions::new().input_shape([f, 1, 1]),
    ] {
        let e = opts.check().unwrap().load_bytes(&bytes).unwrap_err();
        assert!(matches!(e, OnnxError::InputShapeMismatch { .. }), "{e}");
    }
}

#[test]
fn declared_input_reads_the_files_own_shape() {
    let bytes = to_onnx_bytes(&tiny_net(50), &ExportOptions::new()).unwrap();
    let d = declared_input(&bytes).unwrap();
    assert_eq!(d.dims, Some(vec![None, Some(1), Some(14), Some(7)]));
    assert_eq!(d.image_shape(Layout::Nchw), Some([1, 14, 7]));
    assert_eq!(d.image_shape(Layout::Nhwc), Some([7, 1, 14]));
    let (_, tabular) = tabular_mlp(4, 51);
    let d = declared_input(&tabular).unwrap();
    assert_eq!(d.dims, Some(vec![None, Some(4)]));
    assert_eq!(d.image_shape(Layout::Nchw), None);
    assert!(matches!(
        declared_input(b"not a model"),
        Err(OnnxError::NotOnnx { .. })
    ));
}

/// A float initializer.
fn f32_initializer(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

/// What a test `BatchNormalization` reads.
#[derive(Debug, Clone, Copy)]
enum BnInput<'a> {
    /// The graph input, `[N, f]`.
    Rows,
    /// The graph input reshaped to this shape (and its output reshaped back to `[N, f]`).
    Reshaped(&'a [i64]),
    /// A constant of these dims (its output reshaped to `[N, f]`).
    Constant(&'a [i64]),
}

/// The tabular MLP with a `BatchNormalization` (over the `f` features, as channels) inserted
/// before its first Gemm, reading `x`; `stats_dims` are the dims of its four statistics.
/// Returns the network, the per-feature `(slope, intercept)` of the normalisation and the file.
fn tabular_with_batch_norm(
    f: usize,
    x: BnInput,
    stats_dims: &[i64],
) -> (Network, Vec<(f32, f32)>, Vec<u8>) {
    use prost::Message;
    let (net, bytes) = tabular_mlp(f, 60);
    let mut m = ModelProto::decode(bytes.as_slice()).unwrap();
    let g = graph_mut(&mut m);
    let gi = g.node.iter().position(|n| n.op_type == "Gemm").unwrap();
    let input = g.node[gi].input[0].clone();
    // scale, B, mean, var.
    let len = stats_dims.iter().product::<i64>() as usize;
    let stats: Vec<Vec<f32>> = (0..4)
        .map(|k| {
            (0..len)
                .map(|i| 0.5 + 0.25 * (k * len + i) as f32)
                .collect()
        })
        .collect();
    for (name, values) in ["bn_scale", "bn_b", "bn_mean", "bn_var"].iter().zip(&stats) {
        g.initializer
            .push(f32_initializer(name, stats_dims, values));
    }
    let mut nodes = Vec::new();
    let bn_x = match x {
        BnInput::Rows => input,
        BnInput::Reshaped(shape) => {
            nodes.push(int64_constant("bn_in_shape", shape));
            nodes.push(NodeProto {
                input: vec![input, "bn_in_shape".into()],
                output: vec!["bn_in".into()],
                name: "reshape_in".into(),
                op_type: "Reshape".into(),
                ..Default::default()
            });
            "bn_in".into()
        }
        BnInput::Constant(dims) => {
            let len = dims.iter().product::<i64>() as usize;
            g.initializer
                .push(f32_initializer("bn_const", dims, &vec![1.0; len]));
            "bn_const".into()
        }
    };
    nodes.push(NodeProto {
        input: vec![
            bn_x,
            "bn_scale".into(),
            "bn_b".into(),
            "bn_mean".into(),
            "bn_var".into(),
        ],
        output: vec!["bn_out".into()],
        name: "bn".into(),
        op_type: "BatchNormalization".into(),
        ..Default::default()
    });
    let mut out = "bn_out".to_string();
    if !matches!(x, BnInput::Rows) {
        nodes.push(int64_constant("bn_out_shape", &[-1, f as i64]));
        nodes.push(NodeProto {
            input: vec![out, "bn_out_shape".into()],
            output: vec!["bn_back".into()],
            name: "reshape_out".into(),
            op_type: "Reshape".into(),
            ..Default::default()
        });
        out = "bn_back".into();
    }
    g.node[gi].input[0] = out;
    g.node.splice(gi..gi, nodes);
    // The expected per-feature affine map (epsilon 1e-5, ONNX's default).
    let affine = (0..f.min(len))
        .map(|i| {
            let slope = stats[0][i] / (stats[3][i] + 1e-5).sqrt();
            (slope, stats[1][i] - stats[2][i] * slope)
        })
        .collect();
    (net, affine, encode(&m))
}

/// tract 0.23.9's own `BatchNormalization` reads its input's dimension 1 unchecked: an input of
/// rank 0 or 1 read out of bounds (an abort in debug builds, undefined behaviour in release
/// builds). Its replacement (`tract_ops`) refuses it, and statistics that are not 1-D of length
/// C, with errors that say so, on every path; a valid rank-2 input still runs.
#[test]
fn batch_norm_inputs_of_too_low_a_rank_are_typed_errors() {
    let f = 4;
    let fi = f as i64;
    let opts = |backend| {
        OnnxOptions::new()
            .input_features(f)
            .backend(backend)
            .tract_threads(1)
            .check()
            .unwrap()
    };
    const ALL: [Backend; 3] = [Backend::Import, Backend::Auto, Backend::Tract];
    // Rank 2 ([N, C]) is a valid batch norm: tract runs it (the importer may decline it).
    let (net, affine, bytes) = tabular_with_batch_norm(f, BnInput::Rows, &[fi]);
    let mut r = StdRng::seed_from_u64(61);
    let rows = Array2::from_shape_fn((3, f), |_| r.gen_range(-2.0..2.0));
    let normalised = Array4::from_shape_fn((3, f, 1, 1), |(n, i, _, _)| {
        rows[[n, i]] * affine[i].0 + affine[i].1
    });
    let expected = net.predict(normalised.view().into_dyn()).unwrap();
    for backend in [Backend::Auto, Backend::Tract] {
        let m = opts(backend).load_bytes(&bytes).unwrap();
        let got = m.predict(rows.view().into_dyn()).unwrap();
        assert_close(
            &got,
            &expected,
            1e-5,
            &format!("rank-2 batch norm, {backend}"),
        );
    }
    // Inputs of rank 1 (the batch flattened, a constant) and 0 (a constant) are refused on every
    // path, tract's with the rank.
    for (x, rank) in [
        (BnInput::Reshaped(&[-1]), 1),
        (BnInput::Constant(&[fi]), 1),
        (BnInput::Constant(&[]), 0),
    ] {
        let (_, _, bytes) = tabular_with_batch_norm(f, x, &[fi]);
        for backend in ALL {
            let e = opts(backend).load_bytes(&bytes).unwrap_err();
            let msg = e.to_string();
            if backend == Backend::Import {
                assert!(matches!(e, OnnxError::UnsupportedOp { .. }), "{x:?}: {msg}");
                continue;
            }
            // Auto: one line with every engine's reason, tract's included.
            assert!(
                matches!(e, OnnxError::Tract { .. })
                    || (backend == Backend::Auto
                        && matches!(&e, OnnxError::Unsupported(m) if m.contains("the graph engine"))),
                "{x:?}, {backend}: {msg}"
            );
            assert!(
                msg.contains(&format!("node `bn` (BatchNormalization) has an input of rank {rank}, expected rank >= 2")),
                "{x:?}, {backend}: {msg}"
            );
        }
    }
    // Statistics of shape [C, 1] are read as C values, as the importer reads them.
    let (_, _, bytes) = tabular_with_batch_norm(f, BnInput::Rows, &[fi, 1]);
    for backend in ALL {
        let m = opts(backend).load_bytes(&bytes).unwrap();
        let got = m.predict(rows.view().into_dyn()).unwrap();
        assert_close(
            &got,
            &expected,
            1e-5,
            &format!("[C, 1] statistics, {backend}"),
        );
    }
    // Statistics of the wrong length, or scalars, are refused.
    for dims in [&[fi + 1][..], &[fi - 1], &[]] {
        let (_, _, bytes) = tabular_with_batch_norm(f, BnInput::Rows, dims);
        for backend in ALL {
            let e = opts(backend).load_bytes(&bytes).unwrap_err();
            let msg = e.to_string();
            if backend == Backend::Tract {
                assert!(
                    matches!(e, OnnxError::Tract { .. }),
                    "{dims:?}, {backend}: {msg}"
                );
            }
            if backend == Backend::Auto {
                assert!(
                    matches!(&e, OnnxError::Unsupported(m) if m.contains("the importer") && m.contains("the graph engine") && m.contains("tract")),
                    "{dims:?}, {backend}: {msg}"
                );
            }
            assert!(msg.contains("bn"), "{dims:?}, {backend}: {msg}");
        }
    }
}

/// torch's exporter (2.15, TorchScript path) writes `Identity` nodes on shared weights: the
/// importer folds an Identity of a constant into the constant, so such a model still runs on the
/// importer's layers, with the same outputs.
#[test]
fn identity_of_a_weight_is_folded_by_the_importer() {
    let net = tiny_net(21);
    let x = images(3, [1, 14, 7], 22);
    let expected = net.predict(x.view().into_dyn()).unwrap();
    let mut m = model_of(&net, &ExportOptions::new());
    {
        let g = graph_mut(&mut m);
        let ci = g.node.iter().position(|n| n.op_type == "Conv").unwrap();
        let w = g.node[ci].input[1].clone();
        g.node[ci].input[1] = "w_identity".into();
        g.node.insert(
            ci,
            NodeProto {
                input: vec![w],
                output: vec!["w_identity".into()],
                name: "Identity_0".into(),
                op_type: "Identity".into(),
                ..Default::default()
            },
        );
    }
    let model = load(&encode(&m), options([1, 14, 7], Backend::Import));
    assert_eq!(model.engine(), Engine::Imported);
    let got = model.predict(x.view().into_dyn()).unwrap();
    assert_close(&got, &expected, TOL, "identity of a weight");
}

/// torch's dynamo exporter writes global average pooling as `ReduceMean` over axes 2 and 3 (axes
/// as an attribute before opset 18, as an input from 18 on; `keepdims` 1, or 0 for
/// `x.mean((2, 3))`): the importer reads each as the pool, with the network's outputs; other
/// axes are a typed refusal, and `Backend::Auto` then runs the model on the graph engine.
#[test]
fn reduce_mean_over_height_and_width_is_a_global_average_pool() {
    let net = ModelKind::ResnetBn.build(3);
    let x = images(2, [1, 28, 28], 23);
    let expected = net.predict(x.view().into_dyn()).unwrap();
    for (axes_as_input, keepdims, axes) in [
        (false, 1, vec![2, 3]),
        (true, 1, vec![-1, -2]),
        (true, 0, vec![2, 3]),
    ] {
        let mut m = model_of(&net, &ExportOptions::new());
        {
            let g = graph_mut(&mut m);
            let gi = g
                .node
                .iter()
                .position(|n| n.op_type == "GlobalAveragePool")
                .unwrap();
            let node = &mut g.node[gi];
            node.op_type = "ReduceMean".into();
            node.attribute = vec![crate::pb::AttributeProto {
                name: "keepdims".into(),
                r#type: crate::pb::attribute_proto::AttributeType::Int as i32,
                i: keepdims,
                ..Default::default()
            }];
            if axes_as_input {
                node.input.push("rm_axes".into());
                g.node.insert(gi, int64_constant("rm_axes", &axes));
            } else {
                node.attribute.push(crate::pb::AttributeProto {
                    name: "axes".into(),
                    r#type: crate::pb::attribute_proto::AttributeType::Ints as i32,
                    ints: axes.clone(),
                    ..Default::default()
                });
            }
        }
        let what = format!("axes {axes:?} (input: {axes_as_input}), keepdims {keepdims}");
        let model = load(&encode(&m), options([1, 28, 28], Backend::Import));
        assert_eq!(model.engine(), Engine::Imported, "{what}");
        let got = model.predict(x.view().into_dyn()).unwrap();
        assert_close(&got, &expected, TOL, &what);
        // Its input gradient is the network's.
        let w = Array2::from_shape_fn((2, net.n_outputs()), |(i, j)| (i + 2 * j) as f32 * 0.1);
        let g = model.input_gradient(x.view().into_dyn(), w.view()).unwrap();
        let g_net = net.input_gradient(x.view().into_dyn(), w.view()).unwrap();
        let scale = g_net.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            scale > 0.0 && max_diff(&g, &g_net) <= 1e-4 * scale,
            "input gradient, {what}"
        );
    }
    // The mean over the channels is not a pool: refused by the importer.
    let mut m = model_of(&net, &ExportOptions::new());
    {
        let g = graph_mut(&mut m);
        let gi = g
            .node
            .iter()
            .position(|n| n.op_type == "GlobalAveragePool")
            .unwrap();
        g.node[gi].op_type = "ReduceMean".into();
        g.node[gi].attribute = vec![crate::pb::AttributeProto {
            name: "axes".into(),
            r#type: crate::pb::attribute_proto::AttributeType::Ints as i32,
            ints: vec![1],
            ..Default::default()
        }];
    }
    let Err(err) = options([1, 28, 28], Backend::Import)
        .check()
        .unwrap()
        .load_bytes(&encode(&m))
    else {
        panic!("a ReduceMean over the channels was imported");
    };
    assert!(
        err.to_string().contains("ReduceMean over axes [1]"),
        "{err}"
    );
}

/// Layers of an imported model by ONNX name: the activation and gradient of a convolution's
/// output (by value and by node name) equal the graph engine's for the same file, through a
/// softmax head; the names are the graph's values; an unknown name lists them.
#[test]
fn imported_layers_by_onnx_name_match_the_graph_engine() {
    use xai_core::LayerModel;
    let net = ModelKind::MnistNet.build(5);
    let mut m = model_of(&net, &ExportOptions::new());
    let conv = {
        let g = graph_mut(&mut m);
        let convs: Vec<usize> = (0..g.node.len())
            .filter(|&i| g.node[i].op_type == "Conv")
            .collect();
        let last = *convs.last().unwrap();
        if g.node[last].name.is_empty() {
            g.node[last].name = "the_conv".into();
        }
        g.node[last].clone()
    };
    let bytes = encode(&m);
    let opts = |b| options([1, 28, 28], b).probabilities(true);
    let imported = load(&bytes, opts(Backend::Import));
    let graph = load(&bytes, opts(Backend::Graph));
    assert_eq!(imported.engine(), Engine::Imported);
    let names = imported.layer_names();
    assert!(names.contains(&conv.output[0]), "{names:?}");
    let x = images(3, [1, 28, 28], 6);
    let mut w = Array2::zeros((3, 10));
    for i in 0..3 {
        w[[i, (i * 3) % 10]] = 1.0;
    }
    let (a_g, g_g) = graph
        .layer_activation_and_gradient(x.view().into_dyn(), &conv.output[0], w.view())
        .unwrap();
    for name in [&conv.output[0], &conv.name] {
        let (a, g) = imported
            .layer_activation_and_gradient(x.view().into_dyn(), name, w.view())
            .unwrap();
        assert_eq!(a.shape(), a_g.shape(), "{name}");
        let scale = |v: &ArrayD<f32>| v.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        assert!(
            max_diff(&a, &a_g) <= 1e-4 * scale(&a_g),
            "activation by {name}"
        );
        assert!(
            max_diff(&g, &g_g) <= 1e-4 * scale(&g_g),
            "gradient by {name}"
        );
    }
    let err = imported
        .layer_activation_and_gradient(x.view().into_dyn(), "nope", w.view())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&conv.output[0]), "{err}");
}
