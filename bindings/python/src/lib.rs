//! `lexforge._native`: the Python extension module. It converts arguments, calls one Rust
//! function with the GIL released, and converts the result; domain logic lives in the crates.

// pyo3's macros expand to code the workspace's `unsafe_code = "deny"` would reject.
#![allow(unsafe_code)]

use pyo3::prelude::*;

mod alloc;
mod config;
mod core;
mod data;
mod encoder;
mod errors;
mod jobs;
mod lm;
mod logging;
mod matcher;
mod semantic;
mod threads;
mod tokenizers;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    alloc::keep_freed_memory();
    logging::init();
    logging::register(m)?;
    m.add("__version__", lexforge::VERSION)?;
    m.add("BURN_VERSION", lexforge::BURN_VERSION)?;
    core::register(m)?;
    config::register(m)?;
    tokenizers::register(m)?;
    lm::register(m)?;
    encoder::register(m)?;
    data::register(m)?;
    matcher::register(m)?;
    semantic::register(m)?;
    threads::register(m)?;
    Ok(())
}
