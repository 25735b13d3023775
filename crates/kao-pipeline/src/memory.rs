//! Process-wide memory settings for the stage binaries.

/// Caps glibc's malloc at two arenas. By default glibc gives busy threads arenas of their
/// own (up to 8 per core) and each keeps the memory its thread freed; with the detection
/// workers, the embedding threads and the decoder all allocating frame- and batch-sized
/// buffers, that held about 120 MB more at the peak of a 1080p run (568 MB against
/// 450 MB with two arenas, measured with `kao-bench extract`), at the same speed. Call it
/// first thing in `main`; other C libraries do nothing, and so does a `MALLOC_ARENA_MAX`
/// set in the environment (glibc's own setting wins).
///
/// The crate's one `unsafe` (docs/architecture.md, "Unsafe code"): glibc has no other way
/// to set this from inside the process, and `libc` exposes `mallopt` only as the raw C
/// function.
#[allow(unsafe_code)]
pub fn cap_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before the process
    // starts other threads, and M_ARENA_MAX takes any positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
