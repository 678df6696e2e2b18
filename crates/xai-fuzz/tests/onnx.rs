//! Fuzz target: ONNX loading, through the importer (`Backend::Import`), the automatic choice
//! (`Backend::Auto`: the importer, tract when it declines) and tract alone (`Backend::Tract`),
//! then a prediction on a matching batch.
//!
//! Seeds are the fixtures in `crates/xai-onnx/fixtures` (PyTorch- and tf2onnx-style CNNs, a
//! residual block, a MobileNet block, an opset-9 Clip) decoded as `ModelProto`s. Mutations are
//! protobuf-aware: an attribute's integer(s) set to edge values (pads, strides, dilations,
//! group, kernel_shape, axis, perm, ...) or removed, float attributes set to NaN/inf, the
//! input's declared dimensions (batch included: 0, -1, 2^40, i64::MAX) or element type changed,
//! an initializer's dims set to edge values or its data shortened or retyped, a node removed,
//! duplicated or given another operator or another input, a `BatchNormalization`'s input or
//! statistics replaced by a tensor of rank 0, 1 or 2 (tract 0.23.9's own operator read a
//! low-rank input out of bounds), the opset changed; and byte edits of the encoded model.

use ndarray::Array4;
use prost::Message;
use rand::rngs::StdRng;
use rand::Rng;
use xai_core::Predictor;
use xai_fuzz::{fuzz, interesting_i64, mutate_bytes, Outcome};
use xai_onnx::pb::tensor_shape_proto::dimension;
use xai_onnx::pb::{type_proto, ModelProto};
use xai_onnx::{Backend, Layout, OnnxOptions};

#[global_allocator]
static ALLOC: xai_fuzz::LimitAlloc = xai_fuzz::LimitAlloc;

struct Seed {
    name: &'static str,
    proto: ModelProto,
    shape: [usize; 3],
    layout: Layout,
}

fn seeds() -> Vec<Seed> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../xai-onnx/fixtures");
    [
        ("pytorch_cnn", [1, 12, 12], Layout::Nchw),
        ("keras_nhwc", [1, 8, 8], Layout::Nhwc),
        ("resnet_block", [3, 12, 12], Layout::Nchw),
        ("mobilenet_block", [3, 11, 13], Layout::Nchw),
        ("opset9_clip", [2, 7, 7], Layout::Nchw),
    ]
    .into_iter()
    .map(|(name, shape, layout)| {
        let bytes = std::fs::read(format!("{dir}/{name}.onnx")).expect("the fixture exists");
        Seed {
            name,
            proto: ModelProto::decode(bytes.as_slice()).expect("a valid fixture"),
            shape,
            layout,
        }
    })
    .collect()
}

const OPS: [&str; 16] = [
    "Conv",
    "MaxPool",
    "AveragePool",
    "Relu",
    "Gemm",
    "Flatten",
    "Reshape",
    "Add",
    "Concat",
    "Transpose",
    "BatchNormalization",
    "GlobalAveragePool",
    "Softmax",
    "Clip",
    "MatMul",
    "LSTM",
];

fn mutate_proto(rng: &mut StdRng, m: &mut ModelProto) {
    let Some(g) = m.graph.as_mut() else {
        return;
    };
    match rng.gen_range(0..11) {
        // An attribute (most mutations: this is where the layer geometry comes from).
        0..=3 => {
            let with_attrs: Vec<usize> = (0..g.node.len())
                .filter(|&i| !g.node[i].attribute.is_empty())
                .collect();
            if with_attrs.is_empty() {
                return;
            }
            let node = &mut g.node[with_attrs[rng.gen_range(0..with_attrs.len())]];
            let k = rng.gen_range(0..node.attribute.len());
            let a = &mut node.attribute[k];
            match rng.gen_range(0..6) {
                0 | 1 if !a.ints.is_empty() => {
                    let i = rng.gen_range(0..a.ints.len());
                    a.ints[i] = if rng.gen() {
                        interesting_i64(rng)
                    } else {
                        a.ints[i].wrapping_add(rng.gen_range(-2..=2))
                    };
                }
                2 if !a.ints.is_empty() => {
                    if rng.gen() {
                        a.ints.pop();
                    } else {
                        a.ints.push(interesting_i64(rng));
                    }
                }
                3 => {
                    a.i = interesting_i64(rng);
                    a.f = [f32::NAN, f32::INFINITY, -1.0, 0.0, 1e30][rng.gen_range(0..5)];
                }
                4 => {
                    node.attribute.remove(k);
                }
                _ => {
                    a.name = ["pads", "strides", "group", "axis", "perm", "dilations"]
                        [rng.gen_range(0..6)]
                    .into()
                }
            }
        }
        // The input's declared shape or type.
        4 => {
            let Some(input) = g.input.first_mut() else {
                return;
            };
            if let Some(type_proto::Value::TensorType(t)) =
                input.r#type.as_mut().and_then(|t| t.value.as_mut())
            {
                if rng.gen_range(0..6) == 0 {
                    t.elem_type = rng.gen_range(0..17);
                    return;
                }
                let Some(shape) = t.shape.as_mut() else {
                    return;
                };
                if shape.dim.is_empty() || rng.gen_range(0..8) == 0 {
                    shape.dim.pop();
                    return;
                }
                // The batch dimension half of the time.
                let i = if rng.gen() {
                    0
                } else {
                    rng.gen_range(0..shape.dim.len())
                };
                shape.dim[i].value = Some(if rng.gen_range(0..4) == 0 {
                    dimension::Value::DimParam("n".into())
                } else {
                    dimension::Value::DimValue(
                        [0, -1, 1, 2, 3, 1 << 20, 1 << 40, i64::MAX][rng.gen_range(0..8)],
                    )
                });
            }
        }
        // An initializer's dims, data or type.
        5 | 6 => {
            if g.initializer.is_empty() {
                return;
            }
            let k = rng.gen_range(0..g.initializer.len());
            let t = &mut g.initializer[k];
            match rng.gen_range(0..5) {
                0 | 1 if !t.dims.is_empty() => {
                    let i = rng.gen_range(0..t.dims.len());
                    t.dims[i] = if rng.gen() {
                        interesting_i64(rng)
                    } else {
                        t.dims[i].wrapping_add(rng.gen_range(-1..=1))
                    };
                }
                2 => {
                    let keep = rng.gen_range(0..=t.raw_data.len());
                    t.raw_data.truncate(keep);
                    let keep = rng.gen_range(0..=t.float_data.len());
                    t.float_data.truncate(keep);
                }
                3 => t.data_type = rng.gen_range(0..17),
                _ => {
                    if t.raw_data.len() >= 4 {
                        let i = rng.gen_range(0..t.raw_data.len() / 4) * 4;
                        t.raw_data[i..i + 4].copy_from_slice(&f32::NAN.to_le_bytes());
                    }
                    if rng.gen() {
                        t.dims.push(rng.gen_range(0..3));
                    }
                }
            }
        }
        // A node: removed, duplicated, another operator, another input.
        7 => {
            if g.node.is_empty() {
                return;
            }
            let k = rng.gen_range(0..g.node.len());
            match rng.gen_range(0..4) {
                0 => {
                    g.node.remove(k);
                }
                1 => {
                    let n = g.node[k].clone();
                    g.node.insert(k, n);
                }
                2 => g.node[k].op_type = OPS[rng.gen_range(0..OPS.len())].into(),
                _ => {
                    let names: Vec<String> = g
                        .node
                        .iter()
                        .flat_map(|n| n.output.clone())
                        .chain(g.initializer.iter().map(|t| t.name.clone()))
                        .collect();
                    let node = &mut g.node[k];
                    if !node.input.is_empty() && !names.is_empty() {
                        let i = rng.gen_range(0..node.input.len());
                        node.input[i] = names[rng.gen_range(0..names.len())].clone();
                    }
                }
            }
        }
        // A BatchNormalization's data input replaced by a tensor of rank 0 or 1 (an initializer
        // or a new one), or its statistics by an initializer of another shape: tract 0.23.9's
        // own operator read such an input out of bounds (xai-onnx replaces it).
        9 => {
            let bns: Vec<usize> = (0..g.node.len())
                .filter(|&i| g.node[i].op_type == "BatchNormalization")
                .collect();
            if bns.is_empty() {
                return;
            }
            let k = bns[rng.gen_range(0..bns.len())];
            let slot = if rng.gen_range(0..3) == 0 {
                rng.gen_range(1..5)
            } else {
                0
            };
            let low_rank: Vec<String> = g
                .initializer
                .iter()
                .filter(|t| t.dims.len() <= 1)
                .map(|t| t.name.clone())
                .collect();
            let name = if low_rank.is_empty() || rng.gen() {
                let name = format!("fuzz_low_rank_{}", g.initializer.len());
                let dims: Vec<i64> = match rng.gen_range(0..3) {
                    0 => vec![],
                    1 => vec![rng.gen_range(1..4)],
                    _ => vec![rng.gen_range(1..4), 1],
                };
                let n = dims.iter().product::<i64>().max(1) as usize;
                g.initializer.push(xai_onnx::pb::TensorProto {
                    name: name.clone(),
                    dims,
                    data_type: 1,
                    float_data: vec![0.5; n],
                    ..Default::default()
                });
                name
            } else {
                low_rank[rng.gen_range(0..low_rank.len())].clone()
            };
            if let Some(input) = g.node[k].input.get_mut(slot) {
                *input = name;
            }
        }
        // The opset.
        8 => {
            if let Some(o) = m.opset_import.first_mut() {
                o.version = [1, 7, 9, 11, 13, 17, 21, 99, -1][rng.gen_range(0..9)];
            }
        }
        _ => {}
    }
}

#[test]
fn fuzz_onnx_loading() {
    xai_fuzz::configure_alloc_limit();
    let seeds = seeds();
    fuzz("onnx", 2000, |rng| {
        let seed = &seeds[rng.gen_range(0..seeds.len())];
        let mut proto = seed.proto.clone();
        let unchanged = rng.gen_range(0..25) == 0;
        let bytes = if unchanged {
            proto.encode_to_vec()
        } else {
            let ops = rng.gen_range(1..=3);
            for _ in 0..ops {
                mutate_proto(rng, &mut proto);
            }
            let mut b = proto.encode_to_vec();
            if rng.gen_range(0..8) == 0 {
                let ops = rng.gen_range(1..4);
                mutate_bytes(rng, &mut b, ops);
            }
            b
        };
        // tract (unoptimised in test builds) is slow: the importer takes most cases.
        let backend = match rng.gen_range(0..20) {
            0..=12 => Backend::Import,
            13..=17 => Backend::Auto,
            _ => Backend::Tract,
        };
        let options = OnnxOptions::new()
            .input_shape(seed.shape)
            .layout(seed.layout)
            .backend(backend)
            .check()
            .map_err(|e| e.to_string())?;
        match options.load_bytes(&bytes) {
            Ok(model) => {
                let [c, h, w] = seed.shape;
                let x = Array4::<f32>::from_elem((2, c, h, w), 0.5);
                // A model that loads may still fail to run (tract checks shapes late): an error
                // is fine, a wrongly shaped result is not.
                if let Ok(y) = model.predict(x.view().into_dyn()) {
                    if y.dim() != (2, model.n_outputs()) {
                        return Err(format!(
                            "{}: predict gave {:?} for {} outputs",
                            seed.name,
                            y.dim(),
                            model.n_outputs()
                        ));
                    }
                }
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                if unchanged {
                    return Err(format!("{}: the valid fixture was refused: {e}", seed.name));
                }
                Ok(Outcome::Rejected)
            }
        }
    });
}
