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

/// Keeps freed memory for 10 s before mimalloc returns it to the OS (its default is 1 s), and
/// memory of its arenas for 100 s.
///
/// A training step frees and allocates the same large buffers every few hundred milliseconds;
/// once purged, each comes back as fresh pages that the kernel zeroes on first touch.
/// `lm-bench lstm-train 128 512 2 128 16 100 6` at 2 threads: 196,000 page faults and
/// 5,700 tokens/s with the default, 470 and 7,000-7,400 with 10 s (the same as never purging).
/// An arena purges everything freed since its first free once that free's delay expires, so
/// with 10 s the buffers of a running GPT-2 step were purged every 10 s as well
/// (`lm-bench gpt2-train 6 6 384 256 8 8000 8`: 9,900-13,000 page faults, 935 with 100 s;
/// mimalloc's `MIMALLOC_SHOW_STATS=1` reports the purges).
pub fn keep_freed_memory() {
    // `mi_option_purge_delay` and `mi_option_arena_purge_mult` of mimalloc 3's `mi_option_e`
    // (libmimalloc-sys does not name them).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const ARENA_PURGE_MULT: libmimalloc_sys::mi_option_t = 24;
    #[allow(unsafe_code)]
    // SAFETY: sets two plain integer options; called once at start-up, before other threads
    // run.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 10_000);
        libmimalloc_sys::mi_option_set(ARENA_PURGE_MULT, 10);
    }
}
