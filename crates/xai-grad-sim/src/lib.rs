//! xai-grad-sim (work in progress)
