//! The Python module's allocator: mimalloc, as in the CLI (see
//! `crates/lexforge-cli/src/alloc.rs` for why: burn's CPU backend allocates a buffer per op,
//! and glibc hands large freed buffers back to the OS, so each op page-faults them in again).
//! A file of its own rather than a `#[path]` include of the CLI's: the sdist ships only the
//! crates the module depends on.

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
