//! # xai-testkit
//!
//! Dev-only helpers shared by the workspace's tests, examples, benches and `xtask` — kept out of
//! the method crates so that their public APIs hold their method and nothing else (the linfa
//! rule). Not published.
//!
//! * toy models and synthetic data: [`grad_sim_toy`] (a two-layer perceptron with factored
//!   per-sample gradients, Gaussian blobs), [`cem_toy`] (a two-layer net, bar images, a trained
//!   autoencoder), [`l2x_toy`] (square images and a quadrant classifier);
//! * measurements: [`grad_sim_report`] (fit + explain + identical class test with timings, and
//!   memory at scale), [`cem_quality`] (found rates and perturbation sizes),
//!   [`shap_quality`] (error curves of KernelSHAP estimators against exact values);
//! * MNIST set-ups: [`l2x_mnist`] (omnixai's L2X example and its fidelity table);
//! * runs that write files: [`cem_runs`] (alibi's CEM example settings, explanations as JSON
//!   and `.npy`), [`shap_runs`] (dianna's KernelSHAP tutorial with its figure) — what
//!   `cargo xtask demo` and the examples call.

pub mod cem_quality;
pub mod cem_runs;
pub mod cem_toy;
pub mod grad_sim_report;
pub mod grad_sim_toy;
pub mod l2x_mnist;
pub mod l2x_toy;
pub mod shap_quality;
pub mod shap_runs;
