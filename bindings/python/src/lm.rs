//! `lexforge._native` language-model functions: train and resume runs on a worker thread
//! (events to a Python callback, Ctrl-C cancels), and `LanguageModel` (wrapped by
//! `lexforge.LanguageModel` in Python).

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use lexforge::lm::{LanguageModel, LmError, LmRunConfig, LmRunReport, resume_run, train_run};
use lexforge::nn::generate::GenerateConfig;
use lexforge::{CancelToken, ChannelSink, DeviceSpec, EventRecord, EventSink};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;

use crate::errors::to_py;

fn json<T: serde::Serialize>(py: Python<'_>, value: &T, what: &'static str) -> PyResult<String> {
    serde_json::to_string(value)
        .map_err(|source| to_py(py, lexforge::Error::Serialize { what, source }))
}

/// A long job for [`drive`]: it reports through the sink and stops when the token is cancelled.
pub(crate) type Job<T, E> = Box<dyn FnOnce(&dyn EventSink, &CancelToken) -> Result<T, E> + Send>;

/// Runs `job` on a worker thread. Meanwhile, on the calling thread: each event goes to
/// `callback` as a dict, and a pending KeyboardInterrupt (Ctrl-C, a notebook's interrupt)
/// cancels the job, which stops at its next check (training: after the current step, with a
/// checkpoint). Returns the report as JSON and whether an interrupt happened.
pub(crate) fn drive<T, E>(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
    job: Job<T, E>,
) -> PyResult<(String, bool)>
where
    T: serde::Serialize + Send + 'static,
    E: crate::errors::Classified + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<EventRecord>();
    let cancel = CancelToken::new();
    let worker_cancel = cancel.clone();
    // The job computes on the calling thread's pool (`lexforge.set_num_threads`).
    let pool = crate::threads::current_pool()?;
    let handle = std::thread::Builder::new()
        .name("lexforge-job".into())
        .spawn(move || {
            let sink = ChannelSink::new(tx);
            crate::threads::within(pool.as_deref(), || job(&sink, &worker_cancel))
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the training thread: {e}")))?;
    // `Receiver` is not `Sync`; the mutex lets the GIL-free wait borrow it.
    let rx = Mutex::new(rx);
    let loads = py.import("json")?.getattr("loads")?;
    let mut interrupted = false;
    loop {
        let next = py.detach(|| {
            rx.lock()
                .unwrap_or_else(|p| p.into_inner())
                .recv_timeout(Duration::from_millis(100))
        });
        match next {
            Ok(record) => {
                if let Some(cb) = &callback {
                    let text = json(py, &record, "event")?;
                    // Ctrl-C lands in whatever Python code runs: decoding the event or the
                    // callback itself. Either way it is the same clean stop.
                    match loads
                        .call1((text,))
                        .and_then(|event| cb.call1(py, (event,)))
                    {
                        Ok(_) => {}
                        Err(e) if e.is_instance_of::<PyKeyboardInterrupt>(py) => {
                            if !interrupted {
                                interrupted = true;
                                cancel.cancel();
                            }
                        }
                        // A failing progress callback must not lose the run.
                        Err(e) => {
                            tracing::warn!(error = %e, "the progress callback raised; ignoring it")
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if !interrupted && py.check_signals().is_err() {
            interrupted = true;
            cancel.cancel();
        }
    }
    let result = py
        .detach(|| handle.join())
        .map_err(|_| PyRuntimeError::new_err("the training thread panicked"))?;
    let report = result.map_err(|e| to_py(py, e))?;
    Ok((json(py, &report, "run report")?, interrupted))
}

/// Trains a run from its JSON config; returns `(report_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (config_json, callback=None))]
fn lm_train(
    py: Python<'_>,
    config_json: &str,
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
    drive::<LmRunReport, LmError>(
        py,
        callback,
        Box::new(move |sink, cancel| train_run(&config, sink, cancel)),
    )
}

/// Resumes the run in `run_dir`; returns `(report_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (run_dir, max_steps=None, callback=None))]
fn lm_resume(
    py: Python<'_>,
    run_dir: PathBuf,
    max_steps: Option<u64>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    drive::<LmRunReport, LmError>(
        py,
        callback,
        Box::new(move |sink, cancel| resume_run(&run_dir, max_steps, sink, cancel)),
    )
}

/// Recomputes a run's validation metrics; returns them as JSON.
#[pyfunction]
#[pyo3(signature = (run_dir, device="cpu"))]
fn lm_evaluate_run(py: Python<'_>, run_dir: PathBuf, device: &str) -> PyResult<String> {
    let device = resolve(py, device)?;
    let metrics = crate::threads::compute(py, || lexforge::lm::evaluate_run(&run_dir, &device))
        .map_err(|e| to_py(py, e))?;
    json(py, &metrics, "metrics")
}

pub(crate) fn resolve(py: Python<'_>, spec: &str) -> PyResult<lexforge::Device> {
    spec.parse::<DeviceSpec>()
        .and_then(|s| s.resolve())
        .map_err(|e| to_py(py, e))
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
    #[pyo3(signature = (path, device="cpu"))]
    fn load(py: Python<'_>, path: PathBuf, device: &str) -> PyResult<Self> {
        let device = resolve(py, device)?;
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

    /// Loss over texts; returns the JSON EvalReport.
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
    m.add_function(wrap_pyfunction!(lm_evaluate_run, m)?)?;
    Ok(())
}
