//! # xai-grad-sim
//!
//! Gradient similarity explanations, after alibi's `GradientSimilarity`: a model's prediction
//! on an instance `z = (x, y)` is explained by the reference (e.g. training) instances `z'`
//! whose loss gradients `∇_θ L(f_θ(x'), y')` are most similar to the instance's
//! `∇_θ L(f_θ(x), y)` (Charpiat, Girard, Felardos and Tarabalka, "Input Similarity from the
//! Neural Network Perspective", NeurIPS 2019). Three kernels ([`SimilarityFn`]): `grad_dot`,
//! `grad_cos` and `grad_asym_dot`; Hanawa, Yokoi, Hara and Inui ("Evaluation of
//! Similarity-based Explanations", ICLR 2021) show that `grad_cos` passes their identical class
//! test where the others often fail ([`identical_class_test`]).
//!
//! What differs from alibi, which loops over instances one at a time because its backends only
//! give whole-batch gradients:
//!
//! * per-sample gradients come for a whole batch from [`xai_core::DifferentiableModel`], in the
//!   model's compact form ([`xai_core::PerSampleGrads`]: dense layers as factored outer
//!   products), and all kernels are computed from block-wise inner products and norms without
//!   expanding them;
//! * with `precompute_grads`, the stored reference gradients keep that compact form;
//! * `keep_scores(false)` keeps only the running top-k / bottom-k per test instance while the
//!   reference gradients are recomputed chunk by chunk, so neither gradients nor scores need
//!   memory that grows with the reference set;
//! * the gradients can be restricted to some parameter groups ([`xai_core::ParamSelection`]).
//!
//! Memory with alibi's MNIST CNN (412,778 parameters): its dense layers come factored, so one
//! reference's stored gradient is 10,901 floats (43.6 kB) instead of 412,778 (1.65 MB); 60,000
//! precomputed references take 2.6 GB instead of 99 GB (measured with `examples/scale.rs`: fit
//! 190 s, explain 1.2 s, peak RSS 3.3 GB on 2 cores). Restricting the gradients to the dense
//! layers (`ParamSelection::Groups`) brings a reference down to 2,357 floats; `keep_scores(false)`
//! without `precompute_grads` stores no gradients at all.
//!
//! The naive path ([`naive::naive_scores`]: one instance at a time, flattened gradients) is kept
//! as the reference the fast path is tested and benchmarked against.
//!
//! ```
//! use ndarray::Axis;
//! use xai_core::{Loss, OutputKind, Targets};
//! use xai_testkit::grad_sim_toy::{gaussian_blobs, OutputActivation, TwoLayerMlp};
//! use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};
//!
//! // A small classifier with a softmax output, like alibi's MNIST example.
//! let (x, labels) = gaussian_blobs(10, 3, 4, 3.0, 0.3, 7);
//! let model = TwoLayerMlp::new_random(vec![4], 8, 3, OutputActivation::Softmax, 1).unwrap();
//! let loss = Loss::CrossEntropy(OutputKind::Probabilities);
//!
//! let params = GradSimParams::new(loss)
//!     .sim_fn(SimilarityFn::GradCos)
//!     .precompute_grads(true)
//!     .n_similar(3)
//!     .check()
//!     .unwrap();
//! let explainer = GradientSimilarity::new(&model, params).unwrap();
//! let fitted = explainer.fit(x.clone(), Targets::Classes(labels.clone())).unwrap();
//!
//! // Explain the first two instances with their labels (without targets, the model's
//! // predicted classes are used).
//! let test = x.slice_axis(Axis(0), (0..2).into()).into_dyn();
//! let y = Targets::Classes(labels[..2].to_vec());
//! let explanation = fitted.explain(test, Some(&y)).unwrap();
//! let data = &explanation.data;
//! assert_eq!(data.scores.as_ref().unwrap().dim(), (2, 30));
//! assert_eq!(data.most_similar.shape(), &[2, 3, 4]);
//! // With grad_cos an instance is its own most similar reference.
//! assert_eq!(data.most_similar_indices[[0, 0]], 0);
//! assert_eq!(explanation.meta.params["sim_fn"], "grad_cos");
//! ```

mod algorithm;
mod error;
mod explanation;
mod gradients;
mod hyperparams;
mod identical_class;
mod merge;
pub mod naive;
mod ranking;
mod similarity;

pub use algorithm::{FittedGradientSimilarity, GradientSimilarity, Progress, Stage, METHOD_NAME};
pub use error::{GradSimError, Result};
pub use explanation::SimilarityData;
pub use hyperparams::{
    GradSimParams, GradSimValidParams, Task, DEFAULT_BATCH_SIZE, DEFAULT_EPS, DEFAULT_N_SIMILAR,
};
pub use identical_class::{
    identical_class_test, one_hot, IdenticalClassReport, IdenticalClassResult,
};
pub use merge::{merge_reference_blocks, ReferenceBlock};
pub use similarity::SimilarityFn;
