//! The process allocator of lexforge's executables (the CLI, the Python module, the benches):
//! mimalloc.
//!
//! burn's CPU backend allocates a fresh buffer for every tensor op. glibc's allocator returns
//! large freed buffers to the OS, so the next op page-faults them back in: a
//! `[2048, 64] x [64, 2048]` matmul spent about half its time in page faults (24 GFLOP/s with
//! glibc, 45-60 with mimalloc, which keeps freed pages for a while before purging them;
//! `lm-bench matmul`, docs/benchmarks.md). Libraries never set a global allocator; only these
//! executables do: the benches include this file (`#[path]`); the Python module has its own
//! copy (`bindings/python/src/alloc.rs`), since its sdist does not ship the CLI.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps freed memory for 10 s before mimalloc returns it to the OS (its default is 10 ms).
///
/// A training step frees and allocates the same large buffers every few hundred milliseconds;
/// purged after 10 ms, each comes back as fresh pages that the kernel zeroes on first touch.
/// `lm-bench lstm-train 128 512 2 128 16 100 6` at 2 threads: 196,000 page faults and
/// 5,700 tokens/s with the default, 470 and 7,000-7,400 with 10 s (the same as never purging).
pub fn keep_freed_memory() {
    // `mi_option_purge_delay` of mimalloc 2's `mi_option_e` (libmimalloc-sys does not name it).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    #[allow(unsafe_code)]
    // SAFETY: sets a plain integer option; called once at start-up, before other threads run.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 10_000);
    }
}
