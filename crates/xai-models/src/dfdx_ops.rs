//! dfdx bridge (in progress).
