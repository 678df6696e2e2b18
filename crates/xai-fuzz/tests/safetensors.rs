//! Fuzz target: safetensors weight loading (`xai_models::load_weights_from_bytes`, and
//! `load_weights` on a file for some cases).
//!
//! The seed is the weights file of a small conv + dense network written by `save_weights`.
//! Mutations: the 8-byte header length set to edge values, the JSON header mutated
//! structure-aware (dtypes, shapes set to huge or wrong values, data offsets swapped, reversed,
//! out of range or overlapping, tensors removed, renamed or added, metadata changed), the data
//! section's values set to NaN/inf, and plain byte edits. An accepted file must leave the
//! network predicting finite outputs of the right shape.

use std::collections::HashMap;

use ndarray::Array4;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use xai_core::Predictor;
use xai_fuzz::{fuzz, interesting_u64, mutate_bytes, mutate_json, Outcome};
use xai_models::layers::{Conv2d, Dense, Layer, Padding};
use xai_models::{load_weights, load_weights_from_bytes, save_weights, NamedLayer, Network};

#[global_allocator]
static ALLOC: xai_fuzz::LimitAlloc = xai_fuzz::LimitAlloc;

fn net() -> Network {
    let mut r = StdRng::seed_from_u64(1);
    let layers = vec![
        NamedLayer {
            name: "conv".into(),
            layer: Layer::Conv2d(Conv2d::new(1, 2, (3, 3), (1, 1), Padding::Valid, &mut r)),
        },
        NamedLayer {
            name: "relu".into(),
            layer: Layer::Relu,
        },
        NamedLayer {
            name: "flatten".into(),
            layer: Layer::Flatten,
        },
        NamedLayer {
            name: "dense".into(),
            layer: Layer::Dense(Dense::new(2 * 4 * 4, 3, &mut r)),
        },
    ];
    Network::new("fuzz", [1, 6, 6], layers).unwrap()
}

/// Splits a safetensors file into its JSON header and its data section.
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn mutate_file(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let (mut header, mut data) = split(seed);
    match rng.gen_range(0..8) {
        // Header fields, structure-aware.
        0..=2 => {
            let ops = rng.gen_range(1..4);
            mutate_json(rng, &mut header, ops);
            join(&header, &data)
        }
        // A tensor's shape or offsets set to edge values.
        3 => {
            let names: Vec<String> = header
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "__metadata__")
                .cloned()
                .collect();
            let name = &names[rng.gen_range(0..names.len())];
            let t = &mut header[name];
            let field = if rng.gen() { "shape" } else { "data_offsets" };
            if let Some(a) = t[field].as_array_mut() {
                if !a.is_empty() {
                    let i = rng.gen_range(0..a.len());
                    a[i] = Value::from(interesting_u64(rng));
                }
            }
            if rng.gen_range(0..4) == 0 {
                t["dtype"] =
                    Value::from(["F16", "F64", "I64", "U8", "BOOL", "X"][rng.gen_range(0..6)]);
            }
            join(&header, &data)
        }
        // Non-finite values in the data.
        4 => {
            let k = data.len() / 4;
            if k > 0 {
                let i = rng.gen_range(0..k);
                let v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX][rng.gen_range(0..4)];
                data[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
            }
            join(&header, &data)
        }
        // The header length.
        5 => {
            let mut b = seed.to_vec();
            b[..8].copy_from_slice(&interesting_u64(rng).to_le_bytes());
            b
        }
        // Data section shortened or extended.
        6 => {
            if rng.gen() {
                data.truncate(rng.gen_range(0..=data.len()));
            } else {
                data.extend(std::iter::repeat_n(0u8, rng.gen_range(1..64)));
            }
            join(&header, &data)
        }
        _ => {
            let mut b = seed.to_vec();
            let ops = rng.gen_range(1..4);
            mutate_bytes(rng, &mut b, ops);
            b
        }
    }
}

#[test]
fn fuzz_safetensors_weights() {
    xai_fuzz::configure_alloc_limit();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let original = net();
    save_weights(&original, &path, HashMap::from([("k".into(), "v".into())])).unwrap();
    let seed = std::fs::read(&path).unwrap();
    let case_path = dir.path().join("case.safetensors");
    let x = Array4::<f32>::from_shape_fn((2, 1, 6, 6), |(n, _, i, j)| (n + i * j) as f32 / 10.0);
    fuzz("safetensors", 6000, |rng| {
        let unchanged = rng.gen_range(0..20) == 0;
        let bytes = if unchanged {
            seed.clone()
        } else {
            mutate_file(rng, &seed)
        };
        let mut target = net();
        // Scramble the target's weights so that an accepted load visibly replaces them.
        for l in target.layers_mut() {
            if let Some((w, _)) = l.layer.params_mut() {
                w.iter_mut().for_each(|v| *v = 9.0);
            }
        }
        let result = if rng.gen_range(0..16) == 0 {
            std::fs::write(&case_path, &bytes).map_err(|e| e.to_string())?;
            load_weights(&mut target, &case_path)
        } else {
            load_weights_from_bytes(&mut target, &bytes)
        };
        match result {
            Ok(_meta) => {
                let y = target
                    .predict(x.view().into_dyn())
                    .map_err(|e| format!("predict after an accepted load: {e}"))?;
                // Finite weights may still overflow to infinite outputs (f32::MAX); the shape
                // must be right.
                if y.dim() != (2, 3) {
                    return Err(format!("accepted weights predict {y:?}"));
                }
                if unchanged && target != original {
                    return Err("the valid file loaded different weights".into());
                }
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                if unchanged {
                    return Err(format!("the valid file was refused: {e}"));
                }
                Ok(Outcome::Rejected)
            }
        }
    });
}
