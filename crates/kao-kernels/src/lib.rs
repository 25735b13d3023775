//! kao's CPU compute kernels: every SIMD and `unsafe` line of the native networks
//! (`kao_networks::NativeResNet`, `kao_networks::NativeBlazeFace`), behind a safe API. Every other
//! crate of the workspace forbids `unsafe` (but for two FFI calls argued in
//! docs/architecture.md).
//!
//! * [`CpuLevel`]: the instructions the kernels run on, `scalar`, `avx2` or `avx512`,
//!   detected once when a model is loaded (or named by `KAO_CPU`) and kept in the model.
//!   A level is proof that the CPU has its instructions, so the kernels taking one are
//!   safe to call.
//! * [`Direct`]: direct convolutions summed in registers (AVX2 assembly, AVX-512
//!   intrinsics); at the scalar level they decline and the caller uses im2col and
//!   [`matmul_add`].
//! * [`Depthwise`]: depthwise convolutions, one generic source compiled per level.
//! * [`matmul_add`]: the `gemm` crate's matrix product (gemm picks its own instructions).
//! * The safe helpers the kernels and the executors share: [`Pool`] (buffers kept per
//!   thread), [`Window`] geometry, pooling and element-wise loops.

mod cpu;
mod depthwise;
mod direct;
mod level;

pub use cpu::{
    POOL, Pool, Window, add, inside, matmul_add, max_pool, max_pool_plane, prefetch, relu_in_place,
    source,
};
pub use depthwise::Depthwise;
pub use direct::{After, Direct, Planes};
pub use level::{CpuLevel, CpuLevelError, ENV};
