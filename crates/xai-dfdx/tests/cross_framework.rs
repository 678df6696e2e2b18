//! The same weights in `xai-models` and in a dfdx module (moved through safetensors) give the
//! same predictions, input gradients, gradient-similarity scores, KernelSHAP values and CEM
//! pertinent negative.

#[path = "common/cross.rs"]
mod cross;

use std::collections::HashMap;

use dfdx::prelude::*;
use xai_dfdx::conv::FlattenTo;
use xai_dfdx::io::{read_safetensors, transpose};
use xai_dfdx::{load_named, DfdxModel};

type Mlp = (
    FlattenTo<784>,
    dfdx::nn::modules::Linear<784, { cross::HIDDEN }, f32, Cpu>,
    ReLU,
    dfdx::nn::modules::Linear<{ cross::HIDDEN }, 10, f32, Cpu>,
    Softmax,
);

#[test]
fn dfdx_copy_of_an_xai_models_mlp_explains_the_same() {
    let r = cross::trained_mlp();
    let dev: Cpu = Default::default();
    let (l1, _, l2) = dev.build_module::<(
        Linear<784, { cross::HIDDEN }>,
        ReLU,
        Linear<{ cross::HIDDEN }, 10>,
    ), f32>();
    let mut module: Mlp = (FlattenTo, l1, ReLU, l2, Softmax);
    // xai-models names and [in, out] weights -> dfdx names and [out, in] weights.
    let file = read_safetensors(&r.safetensors).unwrap();
    let mut values = HashMap::new();
    for (from, to) in [("dense1", "1"), ("dense2", "3")] {
        let (shape, w) = &file[&format!("{from}.weight")];
        values.insert(
            format!("{to}.weight"),
            transpose(shape[0], shape[1], w).unwrap(),
        );
        values.insert(
            format!("{to}.bias"),
            file[&format!("{from}.bias")].1.clone(),
        );
    }
    load_named(&mut module, &values).unwrap();
    // A missing tensor is an error naming it.
    let mut partial = values.clone();
    partial.remove("3.bias");
    let err = load_named(&mut module.clone(), &partial).unwrap_err();
    assert!(err.to_string().contains("3.bias"), "{err}");

    let rows = DfdxModel::<_, Rank3<1, 28, 28>>::new(module.clone(), &dev).unwrap();
    cross::assert_same_explanations(&r, &rows);
    let factored = DfdxModel::<_, Rank3<1, 28, 28>>::with_factored_linear(module, &dev).unwrap();
    cross::assert_same_explanations(&r, &factored);
}
