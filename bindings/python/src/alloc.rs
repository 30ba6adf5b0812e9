//! The Python module's allocator: mimalloc, as in the CLI (see
//! `crates/lexforge-cli/src/alloc.rs` for why: burn's CPU backend allocates a buffer per op,
//! and glibc hands large freed buffers back to the OS, so each op page-faults them in again).
//! A file of its own rather than a `#[path]` include of the CLI's: the sdist ships only the
//! crates the module depends on.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
