//! `lexforge._native` language-model functions: train and resume runs on a worker thread
//! (events to a Python callback, Ctrl-C cancels), and `LanguageModel` (wrapped by
//! `lexforge.LanguageModel` in Python).

use std::path::PathBuf;
use std::sync::Mutex;

use lexforge::lm::{LanguageModel, LmError, LmRunConfig, TrainReport};
use lexforge::nn::generate::GenerateConfig;
use pyo3::prelude::*;

use crate::errors::to_py;
use crate::jobs::{drive_on, json, resolve};

/// Trains a run from its JSON config into the new directory `run_dir`; returns
/// `(report_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (config_json, run_dir, device="cpu", precision=None, callback=None))]
fn lm_train(
    py: Python<'_>,
    config_json: &str,
    run_dir: PathBuf,
    device: &str,
    precision: Option<&str>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    let config: LmRunConfig = serde_json::from_str(config_json).map_err(|e| {
        to_py(
            py,
            LmError::InvalidConfig {
                field: "config".into(),
                reason: e.to_string(),
            },
        )
    })?;
    drive_on::<TrainReport, LmError>(py, device, precision, callback, move |d, sink, cancel| {
        lexforge::lm::train(&config, &run_dir, d, sink, cancel)
    })
}

/// Resumes the run in `run_dir`; returns `(report_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (run_dir, max_steps=None, device="cpu", precision=None, callback=None))]
fn lm_resume(
    py: Python<'_>,
    run_dir: PathBuf,
    max_steps: Option<u64>,
    device: &str,
    precision: Option<&str>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    drive_on::<TrainReport, LmError>(py, device, precision, callback, move |d, sink, cancel| {
        lexforge::lm::resume(&run_dir, d, max_steps, sink, cancel)
    })
}

/// Recomputes a run's validation metrics; returns them as JSON.
#[pyfunction]
#[pyo3(signature = (run_dir, device="cpu", precision=None))]
fn lm_evaluate(
    py: Python<'_>,
    run_dir: PathBuf,
    device: &str,
    precision: Option<&str>,
) -> PyResult<String> {
    let device = resolve(py, device, precision)?;
    let metrics = crate::threads::compute(py, || lexforge::lm::evaluate(&run_dir, &device))
        .map_err(|e| to_py(py, e))?;
    json(py, &metrics, "metrics")
}

/// A trained language model with its tokenizer.
#[pyclass(name = "LanguageModel", module = "lexforge._native", frozen)]
pub struct PyLanguageModel {
    /// Behind a lock: the model is `Send` but not `Sync` (calls on one model take turns;
    /// separate models run in parallel).
    inner: Mutex<LanguageModel>,
    /// The device it computes on, as loaded (`Cpu`, `Cuda(0)`, ...).
    device: String,
}

impl PyLanguageModel {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&LanguageModel) -> Result<T, LmError> + Send,
    ) -> PyResult<T> {
        crate::threads::compute(py, || {
            let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard)
        })
        .map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl PyLanguageModel {
    /// Loads a run or model directory on `device`.
    #[staticmethod]
    #[pyo3(signature = (path, device="cpu", precision=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        precision: Option<&str>,
    ) -> PyResult<Self> {
        let device = resolve(py, device, precision)?;
        let lm = crate::threads::compute(py, || LanguageModel::load(&path, &device))
            .map_err(|e| to_py(py, e))?;
        Ok(PyLanguageModel {
            inner: Mutex::new(lm),
            device: format!("{device:?}"),
        })
    }

    /// Generates; returns a JSON list of generations.
    #[pyo3(signature = (
        prompt, max_new_tokens, temperature, top_k, top_p, stop_on_eos, stop_sequences, seed,
        num_return_sequences
    ))]
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the Python keyword arguments"
    )]
    fn generate(
        &self,
        py: Python<'_>,
        prompt: String,
        max_new_tokens: usize,
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
        stop_on_eos: bool,
        stop_sequences: Vec<String>,
        seed: u64,
        num_return_sequences: usize,
    ) -> PyResult<String> {
        let config = GenerateConfig {
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            stop_on_eos,
            stop_sequences,
            seed,
            num_return_sequences,
            ..GenerateConfig::default()
        };
        let out = self.with(py, |lm| lm.generate(&prompt, &config))?;
        json(py, &out, "generations")
    }

    /// Scores `text`; returns the JSON TextScore.
    fn score(&self, py: Python<'_>, text: String, top_k: usize) -> PyResult<String> {
        let out = self.with(py, |lm| lm.score(&text, top_k))?;
        json(py, &out, "score")
    }

    /// Loss over texts; returns the JSON TextEvaluation.
    fn evaluate(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<String> {
        let out = self.with(py, |lm| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            lm.evaluate(&refs)
        })?;
        json(py, &out, "evaluation")
    }

    /// Backend, sizes and config as JSON.
    fn info_json(&self, py: Python<'_>) -> PyResult<String> {
        let lm = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let m = lm.model();
        let info = serde_json::json!({
            "backend": m.backend(),
            "vocab_size": m.vocab_size(),
            "context": m.context(),
            "num_params": m.num_params(),
            "dir": lm.dir(),
            "eos_token_id": lm.eos_token_id(),
            "config": m.config_json(),
            "device": self.device,
        });
        json(py, &info, "model info")
    }

    /// Token ids of `text` with this model's tokenizer.
    fn encode(&self, py: Python<'_>, text: String) -> PyResult<Vec<u32>> {
        self.with(py, |lm| Ok(lm.tokenizer().encode(&text)?))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLanguageModel>()?;
    m.add_function(wrap_pyfunction!(lm_train, m)?)?;
    m.add_function(wrap_pyfunction!(lm_resume, m)?)?;
    m.add_function(wrap_pyfunction!(lm_evaluate, m)?)?;
    Ok(())
}
