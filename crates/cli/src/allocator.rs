//! glibc malloc settings for a daemon that runs for months.
//!
//! With glibc's defaults, `serve`'s RSS crept up for as long as it ran under the chaos
//! soak, far above the heap actually in use: glibc's mmap threshold rises once the first
//! large buffer (sled's log buffers, lapin's frame buffers) is freed, so that later ones
//! fragment the heap instead of going back to the kernel. Fixed 128 KiB mmap and trim
//! thresholds bound it. The arenas keep glibc's default (eight per core): with fewer,
//! the threads that allocate per delivery (the tokio worker, lapin's I/O thread, the
//! store writers) queue on the arenas' locks, which cost `serve` a tenth of its CPU per
//! delivery (docs/history.md, "Memory").
//!
//! An operator's own `MALLOC_*` environment variables win.

/// Applies the settings. Call it first thing in `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune() {
    const SETTINGS: [(libc::c_int, &str, libc::c_int); 2] = [
        (libc::M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", 128 * 1024),
        (libc::M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", 128 * 1024),
    ];
    for (param, env, value) in SETTINGS {
        if std::env::var_os(env).is_none() {
            // SAFETY: mallopt only sets allocator parameters, and no other thread exists
            // yet to race with it.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}

/// Other C libraries keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
