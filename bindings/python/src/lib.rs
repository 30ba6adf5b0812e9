//! `lexforge._native`: the Python extension module. It converts arguments, calls one Rust
//! function with the GIL released, and converts the result; domain logic lives in the crates.

// pyo3's macros expand to code the workspace's `unsafe_code = "deny"` would reject.
#![allow(unsafe_code)]

use pyo3::prelude::*;

#[path = "../../../crates/lexforge-cli/src/alloc.rs"]
mod alloc;
mod core;
mod data;
mod encoder;
mod errors;
mod lm;
mod matcher;
mod semantic;
mod tokenizers;

/// Routes the crates' `tracing` logs to stderr, filtered by `LEXFORGE_LOG` (default `warn`).
/// Installed once, at import; a host application that installed its own subscriber keeps it.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEXFORGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    m.add("__version__", lexforge::VERSION)?;
    m.add("BURN_VERSION", lexforge::BURN_VERSION)?;
    core::register(m)?;
    tokenizers::register(m)?;
    lm::register(m)?;
    encoder::register(m)?;
    data::register(m)?;
    matcher::register(m)?;
    semantic::register(m)?;
    Ok(())
}
