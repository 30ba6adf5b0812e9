//! Rust errors → Python exceptions.
//!
//! The hierarchy is defined once, in `lexforge/exceptions.py`, because its classes also derive
//! from builtins (`InvalidInputError` is a `ValueError`, `LexforgeNotFoundError` a
//! `FileNotFoundError`), which pyo3's `create_exception!` cannot express. This module maps each
//! error family ([`lexforge::ErrorKind`]) onto one of those classes by name.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use lexforge::ErrorKind;
use lexforge::tokenizers::TokenizerError;

/// A Rust error with a family: what [`to_py`] accepts.
pub(crate) trait Classified: std::fmt::Display {
    /// The error family.
    fn family(&self) -> ErrorKind;
}

/// Each crate's error reports its family with `kind()`.
macro_rules! classified {
    ($($error:ty),+ $(,)?) => {
        $(impl Classified for $error {
            fn family(&self) -> ErrorKind {
                self.kind()
            }
        })+
    };
}

classified!(
    lexforge::Error,
    TokenizerError,
    lexforge::lm::LmError,
    lexforge::data::DataError,
    lexforge::matcher::MatcherError,
    lexforge::semantic::SemanticError,
    lexforge::semantic::PipelineError,
    lexforge::nn::NnError,
);

static EXCEPTIONS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The Python class name for an error family.
fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "LexforgeNotFoundError",
        ErrorKind::Io => "LexforgeIOError",
        ErrorKind::InvalidInput => "InvalidInputError",
        ErrorKind::Device => "DeviceError",
        ErrorKind::Artifact => "ArtifactError",
        ErrorKind::Cancelled => "CancelledError",
        _ => "LexforgeError",
    }
}

/// Parses a JSON argument; a value that does not parse becomes the error `invalid` builds from
/// serde's message (the crate's own "invalid parameter" error, so Python sees
/// `InvalidInputError`).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned, E: Classified>(
    py: Python<'_>,
    json: &str,
    invalid: impl FnOnce(String) -> E,
) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| to_py(py, invalid(e.to_string())))
}

/// Serializes a result for Python (`what` names it in the error).
pub(crate) fn to_json<T: serde::Serialize>(
    py: Python<'_>,
    v: &T,
    what: &'static str,
) -> PyResult<String> {
    serde_json::to_string(v)
        .map_err(|source| to_py(py, lexforge::Error::Serialize { what, source }))
}

/// Converts a lexforge error into the Python exception of its family, keeping the message.
pub(crate) fn to_py(py: Python<'_>, err: impl Classified) -> PyErr {
    let msg = err.to_string();
    let module =
        EXCEPTIONS.get_or_try_init(py, || py.import("lexforge.exceptions").map(|m| m.unbind()));
    let instance = module
        .and_then(|m| m.bind(py).getattr(class_name(err.family())))
        .and_then(|class| class.call1((msg.as_str(),)));
    match instance {
        Ok(instance) => PyErr::from_value(instance),
        Err(import_error) => {
            let e = PyRuntimeError::new_err(msg);
            e.set_cause(py, Some(import_error));
            e
        }
    }
}
