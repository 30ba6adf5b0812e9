//! Devices and run directories.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::to_py;

/// Every backend lexforge knows, as a list of dicts with keys `name`, `feature`, `compiled`,
/// `usable`, `detail`, `auto`, `auto_reason` (why `auto` picks it or not), `precisions`.
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let reports = py.detach(lexforge::backend_reports);
    reports
        .into_iter()
        .map(|r| {
            let d = PyDict::new(py);
            d.set_item("name", r.name)?;
            d.set_item("feature", r.feature)?;
            d.set_item("compiled", r.compiled)?;
            d.set_item("usable", r.usable)?;
            d.set_item("detail", r.detail)?;
            d.set_item("auto", r.auto)?;
            d.set_item("auto_reason", r.auto_reason)?;
            let precisions: Vec<String> = r.precisions.iter().map(|p| p.to_string()).collect();
            d.set_item("precisions", precisions)?;
            Ok(d)
        })
        .collect()
}

/// Checks a device string (`auto`, `cpu`, `flex`, `ndarray`, `wgpu`, `cuda`, `cuda:N`) and
/// returns its canonical form; raises `InvalidInputError` if it does not parse and
/// `DeviceError` if its backend is not compiled in or has no device.
#[pyfunction]
fn resolve_device(py: Python<'_>, spec: &str) -> PyResult<String> {
    let parsed: lexforge::DeviceSpec = spec.parse().map_err(|e| to_py(py, e))?;
    py.detach(|| parsed.resolve().map(|_| parsed.to_string()))
        .map_err(|e| to_py(py, e))
}

/// Makes `spec`'s device compute in `precision` (`auto`, `f32`, `f16`, `bf16`) for the rest of
/// this process and returns the concrete precision. Must come before anything runs on that
/// device (burn fixes a device's float type at first use).
#[pyfunction]
fn configure_device(py: Python<'_>, spec: &str, precision: &str) -> PyResult<String> {
    let parsed: lexforge::DeviceSpec = spec.parse().map_err(|e| to_py(py, e))?;
    let precision: lexforge::Precision = precision.parse().map_err(|e| to_py(py, e))?;
    py.detach(|| {
        let mut device = parsed.resolve()?;
        precision.apply(&mut device)
    })
    .map(|p| p.to_string())
    .map_err(|e| to_py(py, e))
}

/// Verifies a run directory (every listed file present with its size and sha256) and returns
/// its manifest as a JSON string.
#[pyfunction]
fn verify_run_dir(py: Python<'_>, run_dir: PathBuf) -> PyResult<String> {
    let manifest = py
        .detach(|| lexforge::verify_run_dir(&run_dir))
        .map_err(|e| to_py(py, e))?;
    serde_json::to_string(&manifest).map_err(|source| {
        to_py(
            py,
            lexforge::Error::Serialize {
                what: "manifest",
                source,
            },
        )
    })
}

/// Writes a run directory with the given files (name -> bytes) and a manifest, atomically,
/// and returns its path. Used for manifest round-trips from Python and by tests.
#[pyfunction]
#[pyo3(signature = (root, run_id, kind, files, config_json=None))]
fn write_run_dir(
    py: Python<'_>,
    root: PathBuf,
    run_id: String,
    kind: String,
    files: Vec<(String, Vec<u8>)>,
    config_json: Option<String>,
) -> PyResult<PathBuf> {
    let config = match config_json {
        Some(text) => serde_json::from_str(&text).map_err(|source| {
            to_py(
                py,
                lexforge::Error::Json {
                    path: PathBuf::from("<config_json>"),
                    source,
                },
            )
        })?,
        None => serde_json::Value::Null,
    };
    py.detach(move || {
        let mut run = lexforge::RunDir::create(&root, &run_id, &kind, lexforge::StageMode::Staged)?;
        run.manifest_mut().config = config;
        for (name, bytes) in &files {
            run.write_artifact(name, bytes)?;
        }
        run.finish(lexforge::RunStatus::Completed)
    })
    .map_err(|e| to_py(py, e))
}

/// The defaults the CLI, Python and Rust share (`lexforge::api_defaults`), as JSON.
#[pyfunction]
fn api_defaults(py: Python<'_>) -> PyResult<String> {
    crate::errors::to_json(py, &lexforge::api_defaults(), "defaults")
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(api_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_device, m)?)?;
    m.add_function(wrap_pyfunction!(configure_device, m)?)?;
    m.add_function(wrap_pyfunction!(verify_run_dir, m)?)?;
    m.add_function(wrap_pyfunction!(write_run_dir, m)?)?;
    Ok(())
}
