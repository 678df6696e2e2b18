//! Runtime CPU dispatch for the layers' own hot loops.
//!
//! A crate that depends on `xai-models` is compiled for the x86-64 baseline (SSE2) unless it sets
//! `-C target-cpu` itself, and LLVM can then neither use 8-wide vectors nor fused multiply-adds
//! in our loops. So each hot kernel is written once as an `#[inline(always)]` function generic
//! over an instruction-set token ([`Isa`]) and compiled twice by [`dispatched!`]: inside a
//! `#[target_feature(enable = "avx2,fma")]` wrapper, called when the CPU has AVX2 and FMA, and
//! plainly ([`Portable`]) otherwise and on other architectures. The direct convolution's
//! channel blocks have a third compilation, for AVX-512F ([`Avx512`]), with 32-channel blocks
//! and explicit 512-bit intrinsics (`direct::avx512`).
//!
//! Detection is `is_x86_feature_detected!`, which the standard library caches (one relaxed
//! atomic load per call after the first) and which is a compile-time `true` when the build
//! already targets AVX2 + FMA (the workspace's `.cargo/config.toml`). Kernels are dispatched once
//! per sample or per matrix product, never per element.
//!
//! Results do not depend on the build's flags on a given CPU: the multiply-add choice
//! ([`Isa::FUSED`], see [`fma`]) follows the path taken at run time, and every compilation of a
//! kernel performs the same operations in the same order (the AVX2 and AVX-512 paths, both
//! fused, give the same bits).

/// An instruction set a kernel is compiled for. A value is a token: [`Avx2Fma`] exists only
/// where the CPU has been found to support it.
pub(crate) trait Isa: Copy + Send + Sync {
    /// Whether [`fma`] rounds once (a fused multiply-add instruction) or twice (a multiply and
    /// an add, where fusing would be a slow library call).
    const FUSED: bool;
    /// Whether the kernel may use the AVX2 + FMA intrinsics of `std::arch::x86_64`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    const AVX2_FMA: bool;
    /// Whether the kernel may also use the AVX-512F intrinsics (only [`Avx512`]).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    const AVX512: bool = false;
}

/// Whatever the build targets: SSE2 on a default x86-64 build, NEON on aarch64. Multiply-adds
/// fuse where the build has FMA instructions (always on aarch64).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

impl Isa for Portable {
    const FUSED: bool = cfg!(any(target_feature = "fma", target_arch = "aarch64"));
    const AVX2_FMA: bool = false;
}

/// AVX2 and FMA, detected at run time. Only [`Avx2Fma::detect`] makes one, so holding a value
/// proves the CPU runs these instructions.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2Fma(());

#[cfg(target_arch = "x86_64")]
impl Avx2Fma {
    /// The token, if this CPU has AVX2 and FMA.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Self(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2Fma {
    const FUSED: bool = true;
    const AVX2_FMA: bool = true;
}

/// AVX-512F besides AVX2 and FMA, detected at run time: the direct convolution's 32-channel
/// blocks (`direct::channel_blocks`) use 512-bit multiply-adds on it. Only
/// [`Avx512::detect`] makes one.
///
/// Setting the environment variable `XAI_MAX_CPU_ISA=avx2` (read once per process) makes
/// `detect` answer `None`, so that the AVX2 path can be measured against this one on the same
/// machine, as oneDNN's `ONEDNN_MAX_CPU_ISA` does. Both paths give bit-identical results: the
/// same multiply-adds, fused, in the same order for every output value.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(());

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    /// The token, if this CPU has AVX-512F, AVX2 and FMA and `XAI_MAX_CPU_ISA` does not cap the
    /// instruction set at AVX2.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        static CAPPED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let capped = *CAPPED.get_or_init(|| {
            std::env::var("XAI_MAX_CPU_ISA").is_ok_and(|v| v.eq_ignore_ascii_case("avx2"))
        });
        (!capped
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma"))
        .then_some(Self(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Isa for Avx512 {
    const FUSED: bool = true;
    const AVX2_FMA: bool = true;
    const AVX512: bool = true;
}

/// `a * b + c` with one rounding where `I` fuses multiply-adds, two otherwise. Rust never fuses
/// `a * b + c` by itself, and `mul_add` without the instructions would be a library call.
#[inline(always)]
pub(crate) fn fma<I: Isa>(_: I, a: f32, b: f32, c: f32) -> f32 {
    if I::FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Defines `fn $name(args) -> R` that runs the `#[inline(always)]` kernel
/// `$kernel(isa, args) -> R` (generic over `I: Isa`) compiled for AVX2 + FMA when this CPU has
/// them, and for [`Portable`] otherwise. Argument types must not name generic parameters.
macro_rules! dispatched {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $kernel:path;
    ) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if let Some(isa) = $crate::cpu::Avx2Fma::detect() {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2_fma(isa: $crate::cpu::Avx2Fma, $($arg: $ty),*) $(-> $ret)? {
                    $kernel(isa, $($arg),*)
                }
                // SAFETY: `avx2_fma` only enables AVX2 and FMA, and the `Avx2Fma` token exists
                // because `detect` found both on this CPU.
                return unsafe { avx2_fma(isa, $($arg),*) };
            }
            $kernel($crate::cpu::Portable, $($arg),*)
        }
    };
}

pub(crate) use dispatched;

/// As [`dispatched!`], with a third path first: the kernel compiled for AVX-512F (with AVX2 and
/// FMA) and called with the [`Avx512`] token where [`Avx512::detect`] finds it (the direct
/// convolution's channel blocks and the Winograd transforms).
macro_rules! dispatched_avx512 {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $kernel:path;
    ) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if let Some(isa) = $crate::cpu::Avx512::detect() {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512(isa: $crate::cpu::Avx512, $($arg: $ty),*) $(-> $ret)? {
                    $kernel(isa, $($arg),*)
                }
                // SAFETY: `avx512` only enables AVX-512F, AVX2 and FMA, and the `Avx512` token
                // exists because `detect` found all three on this CPU.
                return unsafe { avx512(isa, $($arg),*) };
            }
            $crate::cpu::dispatched! {
                fn avx2_or_portable($($arg: $ty),*) $(-> $ret)? = $kernel;
            }
            avx2_or_portable($($arg),*)
        }
    };
}

pub(crate) use dispatched_avx512;

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(always)]
    fn axpy<I: Isa>(isa: I, a: f32, x: &[f32], y: &mut [f32]) {
        for (yv, xv) in y.iter_mut().zip(x) {
            *yv = fma(isa, a, *xv, *yv);
        }
    }

    dispatched! {
        /// `y += a x`, dispatched.
        fn axpy_dispatched(a: f32, x: &[f32], y: &mut [f32]) = axpy;
    }

    #[test]
    fn dispatched_kernel_follows_the_detected_path() {
        // (1 + e)(1 - e) - 1 = -e^2 exactly: a fused multiply-add keeps it, while a rounded
        // product is 1 (e^2 is far below half an ulp) and the sum 0. So the result shows
        // which path ran.
        let e = f32::EPSILON;
        let x = vec![1.0 - e; 16];
        let mut y = vec![-1.0f32; 16];
        axpy_dispatched(1.0 + e, &x, &mut y);
        let fused = -e * e;
        let unfused = 0.0;
        #[cfg(target_arch = "x86_64")]
        let want_fused = Avx2Fma::detect().is_some() || Portable::FUSED;
        #[cfg(not(target_arch = "x86_64"))]
        let want_fused = Portable::FUSED;
        let want = if want_fused { fused } else { unfused };
        assert!(y.iter().all(|v| *v == want), "{y:?} vs {want}");
        let mut p = vec![-1.0f32; 16];
        axpy(Portable, 1.0 + e, &x, &mut p);
        let want_p = if Portable::FUSED { fused } else { unfused };
        assert!(p.iter().all(|v| *v == want_p), "{p:?} vs {want_p}");
    }
}
