//! Configuration files as the CLI reads them: Python's `lexforge.config` classes convert
//! through here, so a config saved from Python is parsed by the same serde types and the same
//! `toml` crate as `lexforge ... --config FILE.toml`.

use lexforge::data::{DataError, PrepareConfig};
use lexforge::lm::{LmError, LmRunConfig};
use lexforge::matcher::{MatcherError, MatcherTrainConfig};
use lexforge::semantic::{SemanticError, SemanticTrainConfig, WordGeneratorConfig};
use pyo3::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::errors::{Classified, to_json, to_py};

/// What to do with a config of one kind.
#[derive(Clone, Copy)]
enum Op<'a> {
    /// Parse JSON, return it as JSON again: defaults filled in, unknown keys refused.
    Normalize(&'a str),
    /// Parse JSON, return TOML.
    ToToml(&'a str),
    /// Parse TOML, return JSON.
    FromToml(&'a str),
}

fn run<T, E>(py: Python<'_>, op: Op<'_>, invalid: impl Fn(String) -> E) -> PyResult<String>
where
    T: Serialize + DeserializeOwned,
    E: Classified,
{
    let value: T = match op {
        Op::Normalize(json) | Op::ToToml(json) => {
            serde_json::from_str(json).map_err(|e| to_py(py, invalid(e.to_string())))?
        }
        Op::FromToml(text) => {
            toml::from_str(text).map_err(|e| to_py(py, invalid(e.to_string())))?
        }
    };
    match op {
        Op::ToToml(_) => {
            let text =
                toml::to_string_pretty(&value).map_err(|e| to_py(py, invalid(e.to_string())))?;
            // TOML has no null: a `None` whose field defaults to something else would read
            // back differently. Refuse to write such a file rather than write a lie.
            let back: T = toml::from_str(&text).map_err(|e| to_py(py, invalid(e.to_string())))?;
            let (want, got) = (json_value(py, &value)?, json_value(py, &back)?);
            if let Some((field, was, reads)) = first_difference(&want, &got, String::new()) {
                return Err(to_py(
                    py,
                    invalid(format!(
                        "field `{field}` is {was}, which TOML cannot express (the file would read \
                         back as {reads}); save the config as .json, which the CLI also reads"
                    )),
                ));
            }
            Ok(text)
        }
        _ => to_json(py, &value, "config"),
    }
}

fn json_value<T: Serialize>(py: Python<'_>, value: &T) -> PyResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|source| {
        to_py(
            py,
            lexforge::Error::Serialize {
                what: "config",
                source,
            },
        )
    })
}

/// The first leaf where `a` and `b` differ: `(dotted path, a's value, b's value)`.
fn first_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: String,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.iter().find_map(|(k, va)| {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match y.get(k) {
                Some(vb) => first_difference(va, vb, sub),
                None => Some((sub, va.to_string(), "missing".into())),
            }
        }),
        _ if a == b => None,
        _ => Some((path, a.to_string(), b.to_string())),
    }
}

/// Dispatches `op` on the config type named `kind`.
fn dispatch(py: Python<'_>, kind: &str, op: Op<'_>) -> PyResult<String> {
    match kind {
        "lm" => run::<LmRunConfig, _>(py, op, |reason| LmError::InvalidConfig {
            field: "value".into(),
            reason,
        }),
        "data" => run::<PrepareConfig, _>(py, op, |reason| DataError::InvalidParameter {
            parameter: "config",
            reason,
        }),
        "matcher" => {
            run::<MatcherTrainConfig, _>(py, op, |reason| MatcherError::InvalidParameter {
                parameter: "config",
                reason,
            })
        }
        "semantic" => {
            run::<SemanticTrainConfig, _>(py, op, |reason| SemanticError::InvalidParameter {
                parameter: "config",
                reason,
            })
        }
        "generator" => {
            run::<WordGeneratorConfig, _>(py, op, |reason| SemanticError::InvalidParameter {
                parameter: "generator config",
                reason,
            })
        }
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "unknown config kind {other:?}: expected lm, data, matcher, semantic or generator"
        ))),
    }
}

/// `json` parsed as config `kind` and serialized again (defaults filled in).
#[pyfunction]
fn config_normalize(py: Python<'_>, kind: &str, json: &str) -> PyResult<String> {
    dispatch(py, kind, Op::Normalize(json))
}

/// `json` parsed as config `kind`, as the TOML the CLI reads.
#[pyfunction]
fn config_to_toml(py: Python<'_>, kind: &str, json: &str) -> PyResult<String> {
    dispatch(py, kind, Op::ToToml(json))
}

/// TOML parsed as the CLI parses it into config `kind`, as JSON.
#[pyfunction]
fn config_from_toml(py: Python<'_>, kind: &str, text: &str) -> PyResult<String> {
    dispatch(py, kind, Op::FromToml(text))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(config_normalize, m)?)?;
    m.add_function(wrap_pyfunction!(config_to_toml, m)?)?;
    m.add_function(wrap_pyfunction!(config_from_toml, m)?)?;
    Ok(())
}
