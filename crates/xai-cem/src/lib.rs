//! xai-cem (work in progress)
