//! The process allocator of lexforge's executables (the CLI, the Python module, the benches):
//! mimalloc.
//!
//! burn's CPU backend allocates a fresh buffer for every tensor op. glibc's allocator returns
//! large freed buffers to the OS, so the next op page-faults them back in: a
//! `[2048, 64] x [64, 2048]` matmul spent about half its time in page faults (24 GFLOP/s with
//! glibc, 45-60 with mimalloc, which keeps freed pages for a while before purging them;
//! `lm-bench matmul`, docs/benchmarks.md). Libraries never set a global allocator; only these
//! executables do, by including this file (`#[path]` from the binding and the benches).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
