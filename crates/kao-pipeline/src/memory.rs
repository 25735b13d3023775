//! Process-wide memory settings for the stage binaries.

/// Tunes glibc's malloc for frame-sized buffers. Call it first thing in `main`; other C
/// libraries do nothing, and a setting given in the environment (`MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`) is left to glibc.
///
/// - Two arenas. By default glibc gives busy threads arenas of their own (up to 8 per core)
///   and each keeps the memory its thread freed; with the detection workers, the embedding
///   threads and the decoder all allocating frame- and batch-sized buffers, that held about
///   120 MB more at the peak of a 1080p run (568 MB against 450 MB with two arenas,
///   measured with `kao-bench extract`), at the same speed.
/// - Frames from the heap. A 720p frame (2.7 MB) is above glibc's mmap threshold, so each
///   one was a fresh mapping whose pages the kernel zeroed and faulted in, then unmapped:
///   ~2 s of system time of a 25-second 720p clip (11 % of kao-extract's CPU, perf's
///   `clear_page_erms`). Served from the heap (threshold 64 MB, trimmed above 256 MB free)
///   the freed frames are reused: system time 2.1 → 0.2 s, the same peak memory.
///
/// The crate's one `unsafe` (docs/architecture.md, "Unsafe code"): glibc has no other way
/// to set these from inside the process, and `libc` exposes `mallopt` only as the raw C
/// function.
#[allow(unsafe_code)]
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 64 << 20),
        ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 256 << 20),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only sets an allocator parameter; it is called before the
            // process starts other threads, and each value is in its parameter's range.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }
}
