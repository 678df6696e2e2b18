//! Fuzz target: `Network::new` / `Network::graph` with arbitrary layer specs, then every pass on
//! a matching input (predict, input gradient, per-sample gradients), and the network's JSON
//! round trip.
//!
//! Layer specs are drawn to fit the layer before them most of the time (so that construction
//! succeeds and the passes run), with edge values mixed in: zero or huge kernels, strides,
//! pools, paddings and upsampling factors, wrong channel counts, weight and bias vectors one too
//! long or short, non-finite dropout rates and clip bounds, graph inputs that read later nodes
//! or mismatched shapes. An accepted network must produce outputs of the shape it declares.

use ndarray::{Array2, Array4};
use rand::rngs::StdRng;
use rand::Rng;
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Predictor, Targets};
use xai_fuzz::{fuzz, interesting_u64, Outcome};
use xai_models::layers::{Conv2d, Dense, Dims, Layer, MaxPool2d, Padding};
use xai_models::ops::{AvgPool2d, BatchNorm, BinaryOp, GroupConv2d};
use xai_models::{NamedLayer, Network};

#[global_allocator]
static ALLOC: xai_fuzz::LimitAlloc = xai_fuzz::LimitAlloc;

/// Passes run only on networks whose activations stay this small (per sample, all layers).
const MAX_WORK: usize = 1 << 16;

/// A size: usually small, sometimes an edge value.
fn size(rng: &mut StdRng, lo: usize, hi: usize) -> usize {
    if rng.gen_range(0..25) == 0 {
        interesting_u64(rng).min(usize::MAX as u64) as usize
    } else {
        rng.gen_range(lo..=hi)
    }
}

fn pair(rng: &mut StdRng, lo: usize, hi: usize) -> (usize, usize) {
    if rng.gen() {
        let s = size(rng, lo, hi);
        (s, s)
    } else {
        (size(rng, lo, hi), size(rng, lo, hi))
    }
}

fn padding(rng: &mut StdRng) -> Padding {
    match rng.gen_range(0..3) {
        0 => Padding::Valid,
        1 => Padding::Same,
        _ => Padding::Explicit {
            top: size(rng, 0, 2),
            bottom: size(rng, 0, 2),
            left: size(rng, 0, 2),
            right: size(rng, 0, 2),
        },
    }
}

fn f32_edge(rng: &mut StdRng) -> f32 {
    match rng.gen_range(0..12) {
        0 => f32::NAN,
        1 => f32::INFINITY,
        2 => -1.0,
        3 => 0.0,
        4 => 1.0,
        5 => 1e30,
        _ => rng.gen_range(-1.0..1.0),
    }
}

/// `len` values, sometimes one too many or too few.
fn vals(rng: &mut StdRng, len: usize) -> Vec<f32> {
    let len = match rng.gen_range(0..30) {
        0 => len.saturating_add(1),
        1 => len.saturating_sub(1),
        _ => len,
    };
    (0..len.min(1 << 16))
        .map(|_| rng.gen_range(-0.5..0.5))
        .collect()
}

/// A random layer for an input of `d` (usually one that fits).
fn layer(rng: &mut StdRng, d: Dims) -> Layer {
    let c = if rng.gen_range(0..20) == 0 {
        size(rng, 0, 4)
    } else {
        d.c
    };
    match rng.gen_range(0..22) {
        0 | 1 => {
            let out = size(rng, 1, 4);
            let kernel = pair(rng, 1, 3);
            let wl = kernel
                .0
                .checked_mul(kernel.1)
                .and_then(|k| k.checked_mul(c))
                .and_then(|k| k.checked_mul(out))
                .unwrap_or(0);
            Layer::Conv2d(Conv2d {
                in_channels: c,
                out_channels: out,
                kernel,
                stride: pair(rng, 1, 2),
                padding: padding(rng),
                weight: vals(rng, wl),
                bias: vals(rng, out),
            })
        }
        2 => Layer::MaxPool2d(MaxPool2d {
            size: pair(rng, 1, 3),
            stride: pair(rng, 1, 3),
            padding: padding(rng),
        }),
        3 => Layer::AvgPool2d(AvgPool2d {
            size: pair(rng, 1, 3),
            stride: pair(rng, 1, 3),
            padding: padding(rng),
            count_include_pad: rng.gen(),
        }),
        4 | 5 => {
            let inf = if rng.gen_range(0..10) == 0 {
                size(rng, 0, 8)
            } else {
                d.len()
            };
            let out = size(rng, 1, 5);
            Layer::Dense(Dense {
                in_features: inf,
                out_features: out,
                weight: vals(rng, inf.saturating_mul(out)),
                bias: vals(rng, out),
            })
        }
        6 => {
            let groups = *[1, 2, 3, c.max(1), 0][..].get(rng.gen_range(0..5)).unwrap();
            let out = groups.max(1).saturating_mul(size(rng, 1, 2));
            let kernel = pair(rng, 1, 3);
            let wl = kernel
                .0
                .checked_mul(kernel.1)
                .and_then(|k| k.checked_mul(c / groups.max(1)))
                .and_then(|k| k.checked_mul(out))
                .unwrap_or(0);
            Layer::GroupConv2d(GroupConv2d {
                in_channels: c,
                out_channels: out,
                kernel,
                stride: pair(rng, 1, 2),
                dilation: pair(rng, 1, 2),
                groups,
                padding: padding(rng),
                weight: vals(rng, wl),
                bias: vals(rng, out),
            })
        }
        7 => Layer::BatchNorm(BatchNorm {
            gamma: vals(rng, c),
            beta: vals(rng, c),
            mean: vals(rng, c),
            var: vals(rng, c).iter().map(|v| v.abs()).collect(),
            eps: if rng.gen() { 1e-5 } else { f32_edge(rng) },
        }),
        8 => Layer::Upsample2d(size(rng, 1, 2)),
        9 => Layer::Dropout(f32_edge(rng)),
        10 => Layer::Flatten,
        11 => Layer::Softmax,
        12 => Layer::GlobalAvgPool,
        13 => Layer::Sigmoid,
        14 => Layer::Tanh,
        15 => Layer::LeakyRelu(f32_edge(rng)),
        16 => Layer::Clip {
            min: f32_edge(rng),
            max: f32_edge(rng),
        },
        17 => Layer::HardSigmoid {
            alpha: f32_edge(rng),
            beta: f32_edge(rng),
        },
        18 => Layer::HardSwish,
        19 => Layer::LogSoftmax,
        20 => Layer::Binary(
            [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div][rng.gen_range(0..4)],
        ),
        _ => Layer::Relu,
    }
}

/// A random network spec: input shape, layers, and graph inputs (`None` for a chain).
fn spec(rng: &mut StdRng) -> ([usize; 3], Vec<NamedLayer>, Option<Vec<Vec<usize>>>) {
    let shape = [size(rng, 1, 3), size(rng, 1, 9), size(rng, 1, 9)];
    let graph = rng.gen_range(0..3) == 0;
    let n_layers = rng.gen_range(1..=6);
    let mut node_dims = vec![Dims::new(shape[1], shape[2], shape[0])];
    let mut layers = Vec::new();
    let mut inputs = Vec::new();
    for i in 0..n_layers {
        let reads: Vec<usize> = if graph {
            match rng.gen_range(0..5) {
                0 => vec![rng.gen_range(0..=i), i],
                1 => (0..rng.gen_range(1..=3))
                    .map(|_| {
                        let ahead = usize::from(rng.gen_range(0..20) == 0);
                        rng.gen_range(0..=i + ahead)
                    })
                    .collect(),
                _ => vec![i],
            }
        } else {
            vec![i]
        };
        let d = node_dims[reads[0].min(i)];
        let mut l = layer(rng, d);
        if graph && reads.len() >= 2 && rng.gen() {
            l = if reads.len() == 2 && rng.gen() {
                Layer::Binary(BinaryOp::Add)
            } else {
                Layer::Concat
            };
        }
        let ins: Vec<Dims> = reads
            .iter()
            .map(|&j| node_dims.get(j).copied().unwrap_or(d))
            .collect();
        let out = l.output_dims_multi(&ins).unwrap_or(d);
        node_dims.push(out);
        // Names are unique except, rarely, a repeated one.
        let name = if i > 0 && rng.gen_range(0..50) == 0 {
            "l0".to_string()
        } else {
            format!("l{i}")
        };
        layers.push(NamedLayer { name, layer: l });
        inputs.push(reads);
    }
    (shape, layers, graph.then_some(inputs))
}

fn random_input(rng: &mut StdRng, n: usize, shape: [usize; 3]) -> Array4<f32> {
    Array4::from_shape_simple_fn((n, shape[0], shape[1], shape[2]), || {
        rng.gen_range(-1.0..1.0)
    })
}

/// Runs every pass of an accepted network and checks the shapes it returns.
fn exercise(rng: &mut StdRng, net: &Network) -> Result<(), String> {
    let work: usize = net
        .dims()
        .iter()
        .map(|d| d.h.saturating_mul(d.w).saturating_mul(d.c))
        .fold(0usize, |a, b| a.saturating_add(b));
    let shape = [
        net.input_shape()[0],
        net.input_shape()[1],
        net.input_shape()[2],
    ];
    if work > MAX_WORK || net.n_params() > MAX_WORK {
        return Ok(());
    }
    let n = rng.gen_range(1..=3);
    let x = random_input(rng, n, shape);
    let k = net.n_outputs();
    let y = net
        .predict(x.view().into_dyn())
        .map_err(|e| e.to_string())?;
    if y.dim() != (n, k) {
        return Err(format!(
            "predict returned {:?}, expected ({n}, {k})",
            y.dim()
        ));
    }
    let w = Array2::from_shape_simple_fn((n, k), || rng.gen_range(-1.0..1.0f32));
    let g = net
        .input_gradient(x.view().into_dyn(), w.view())
        .map_err(|e| format!("input_gradient: {e}"))?;
    if g.shape() != x.shape() {
        return Err(format!("input gradient of shape {:?}", g.shape()));
    }
    // A wrongly shaped batch is a typed error.
    let bad = random_input(rng, 1, [shape[0] + 1, shape[1], shape[2]]);
    if net.predict(bad.view().into_dyn()).is_ok() {
        return Err("a batch of the wrong shape was accepted".into());
    }
    if k > 0 {
        let targets = Targets::Classes((0..n).map(|_| rng.gen_range(0..k)).collect());
        let loss = if rng.gen() {
            Loss::CrossEntropy(OutputKind::Logits)
        } else {
            Loss::MeanSquaredError
        };
        let loss_targets = match loss {
            Loss::MeanSquaredError => {
                Targets::Values(Array2::from_shape_simple_fn((n, k), || rng.gen()))
            }
            _ => targets,
        };
        let grads = net
            .per_sample_grads(
                x.view().into_dyn(),
                &loss_targets,
                &loss,
                &ParamSelection::All,
            )
            .map_err(|e| format!("per_sample_grads: {e}"))?;
        let _ = grads;
    }
    // The network's JSON round trip gives the same network (JSON has no infinities: a clip
    // bound or a BatchNorm epsilon of ±inf is written as null, which does not read back).
    let json = serde_json::to_string(net).map_err(|e| e.to_string())?;
    if json.contains("null") {
        return Ok(());
    }
    let back: Network = serde_json::from_str(&json).map_err(|e| format!("reload: {e}"))?;
    if &back != net {
        return Err("the JSON round trip changed the network".into());
    }
    Ok(())
}

#[test]
fn fuzz_network_construction() {
    xai_fuzz::configure_alloc_limit();
    fuzz("network", 4000, |rng| {
        let (shape, layers, inputs) = spec(rng);
        if std::env::var_os("XAI_FUZZ_PRINT").is_some() {
            eprintln!("input {shape:?}, graph inputs {inputs:?}, layers {layers:?}");
        }
        let built = match inputs {
            Some(inputs) => Network::graph("fuzz", shape, layers, inputs),
            None => Network::new("fuzz", shape, layers),
        };
        match built {
            Ok(net) => {
                exercise(rng, &net)?;
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                if e.to_string().is_empty() {
                    return Err("an empty error message".into());
                }
                Ok(Outcome::Rejected)
            }
        }
    });
}
