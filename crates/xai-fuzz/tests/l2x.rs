//! Fuzz target: L2X save/load (`xai_l2x::L2x::load`), then an explanation with the loaded
//! explainer.
//!
//! The seed is a small explainer (16x16 toy images, one training epoch) saved with
//! `L2x::save`. Each case copies the folder and mutates it: `l2x.json` structure-aware (input
//! shape, number of outputs, patch grid and every parameter nudged or set to edge values, keys
//! removed, types changed) or byte-wise, or one of the two safetensors files (header length,
//! shapes, byte edits), or a file removed. An accepted folder must give an explainer that
//! explains a batch of the saved shape.

use rand::rngs::StdRng;
use rand::Rng;
use xai_fuzz::{fuzz, interesting_u64, mutate_bytes, mutate_json, Outcome};
use xai_l2x::{L2x, L2xParams};
use xai_testkit::l2x_toy as toy;

#[global_allocator]
static ALLOC: xai_fuzz::LimitAlloc = xai_fuzz::LimitAlloc;

const FILES: [&str; 3] = [
    "l2x.json",
    "selection.safetensors",
    "prediction.safetensors",
];

fn mutate_dir(rng: &mut StdRng, files: &mut [Vec<u8>; 3], present: &mut [bool; 3]) {
    match rng.gen_range(0..10) {
        0..=5 => {
            let mut v: serde_json::Value = serde_json::from_slice(&files[0]).unwrap();
            if rng.gen_range(0..3) == 0 {
                // The sizes the models are built from.
                let key = ["input_shape", "n_outputs", "patch_grid"][rng.gen_range(0..3)];
                match v.get_mut(key) {
                    Some(serde_json::Value::Array(a)) if !a.is_empty() => {
                        let i = rng.gen_range(0..a.len());
                        a[i] = interesting_u64(rng).into();
                    }
                    Some(x) => *x = interesting_u64(rng).into(),
                    None => {}
                }
            } else {
                let ops = rng.gen_range(1..4);
                mutate_json(rng, &mut v, ops);
            }
            files[0] = serde_json::to_vec(&v).unwrap();
        }
        6 => {
            let ops = rng.gen_range(1..4);
            mutate_bytes(rng, &mut files[0], ops);
        }
        7 | 8 => {
            let f = rng.gen_range(1..3);
            if rng.gen() {
                files[f][..8].copy_from_slice(&interesting_u64(rng).to_le_bytes());
            } else {
                let ops = rng.gen_range(1..4);
                mutate_bytes(rng, &mut files[f], ops);
            }
        }
        _ => present[rng.gen_range(0..3)] = false,
    }
}

#[test]
fn fuzz_l2x_save_load() {
    xai_fuzz::configure_alloc_limit();
    let (x, _) = toy::square_images(16, 16, 0).unwrap();
    let bb = toy::QuadrantClassifier::new(16, 2.0);
    let l2x = L2xParams::new()
        .k(3)
        .num_epochs(1)
        .batch_size(Some(16))
        .progress(false)
        .check()
        .unwrap()
        .fit(x.view(), &bb)
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let saved = root.path().join("saved");
    l2x.save(&saved).unwrap();
    let seed: [Vec<u8>; 3] = FILES.map(|f| std::fs::read(saved.join(f)).unwrap());
    let case_dir = root.path().join("case");
    let batch = x.slice(ndarray::s![..2, .., .., ..]).to_owned();
    fuzz("l2x", 1500, |rng| {
        let mut files = seed.clone();
        let mut present = [true; 3];
        let unchanged = rng.gen_range(0..25) == 0;
        if !unchanged {
            mutate_dir(rng, &mut files, &mut present);
        }
        std::fs::create_dir_all(&case_dir).map_err(|e| e.to_string())?;
        for ((name, bytes), here) in FILES.iter().zip(&files).zip(present) {
            let p = case_dir.join(name);
            if here {
                std::fs::write(&p, bytes).map_err(|e| e.to_string())?;
            } else {
                std::fs::remove_file(&p).ok();
            }
        }
        match L2x::load(&case_dir) {
            Ok(loaded) => {
                // Explaining needs the saved input shape and number of outputs; a loaded
                // explainer whose mutated (but consistent) parameters do not suit the black box
                // answers with an error, never a panic.
                if loaded.input_shape() == [1, 16, 16] && loaded.n_outputs() == 4 {
                    let e = loaded.explain(&bb, batch.view());
                    if unchanged {
                        let e = e.map_err(|e| format!("the saved explainer failed: {e}"))?;
                        if e.data != l2x.explain(&bb, batch.view()).unwrap().data {
                            return Err("the saved explainer explains differently".into());
                        }
                    }
                }
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                if unchanged {
                    return Err(format!("the saved explainer was refused: {e}"));
                }
                Ok(Outcome::Rejected)
            }
        }
    });
}
