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
