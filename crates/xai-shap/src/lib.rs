//! xai-shap (work in progress)
