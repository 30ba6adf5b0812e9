//! `lexforge._native` book-matcher functions and the `Matcher` class (wrapped by
//! `lexforge.matcher`).

use std::path::PathBuf;
use std::sync::Mutex;

use lexforge::data::Split;
use lexforge::matcher::{
    Library, Matcher, MatcherError, MatcherTrainConfig, PipelineConfig, PreparedDataset,
    SearchOptions, ThresholdMetric,
};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;

use crate::errors::{parse_json, to_json, to_py};
use crate::jobs::{drive_on, resolve};

fn parse<T: serde::de::DeserializeOwned>(
    py: Python<'_>,
    json: &str,
    what: &'static str,
) -> PyResult<T> {
    parse_json(py, json, |reason| MatcherError::InvalidParameter {
        parameter: what,
        reason,
    })
}

fn split(py: Python<'_>, s: &str) -> PyResult<Split> {
    parse(py, &format!("{s:?}"), "split")
}

/// Trains a matcher into the new directory `run_dir` on a worker thread; returns
/// `(report_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (dataset_dir, run_dir, config_json, device="cpu", precision=None, callback=None))]
fn matcher_train(
    py: Python<'_>,
    dataset_dir: PathBuf,
    run_dir: PathBuf,
    config_json: &str,
    device: &str,
    precision: Option<&str>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    let config: MatcherTrainConfig = parse(py, config_json, "config")?;
    drive_on::<_, MatcherError>(py, device, precision, callback, move |d, sink, cancel| {
        lexforge::matcher::train(&config, &dataset_dir, &run_dir, d, sink, cancel)
    })
}

/// Resumes the matcher run in `run_dir`; returns `(report_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (run_dir, max_steps=None, device="cpu", precision=None, callback=None))]
fn matcher_resume(
    py: Python<'_>,
    run_dir: PathBuf,
    max_steps: Option<u64>,
    device: &str,
    precision: Option<&str>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    drive_on::<_, MatcherError>(py, device, precision, callback, move |d, sink, cancel| {
        lexforge::matcher::resume(&run_dir, d, max_steps, sink, cancel)
    })
}

/// Books → dataset → matcher into `run_dir`; returns `(report_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (books_dir, run_dir, config_json, metadata=None, device="cpu", precision=None, callback=None))]
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the Python keyword arguments"
)]
fn matcher_pipeline(
    py: Python<'_>,
    books_dir: PathBuf,
    run_dir: PathBuf,
    config_json: &str,
    metadata: Option<PathBuf>,
    device: &str,
    precision: Option<&str>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    let config: PipelineConfig = parse(py, config_json, "config")?;
    drive_on::<_, MatcherError>(py, device, precision, callback, move |d, sink, cancel| {
        lexforge::matcher::pipeline(
            &config,
            &books_dir,
            metadata.as_deref(),
            &run_dir,
            d,
            sink,
            cancel,
        )
    })
}

/// The default pipeline configuration (`prepare` and `matcher` tables), as JSON.
#[pyfunction]
fn matcher_default_pipeline_config(py: Python<'_>) -> PyResult<String> {
    to_json(py, &PipelineConfig::default(), "config")
}

/// The default training configuration, as JSON.
#[pyfunction]
fn matcher_default_config(py: Python<'_>) -> PyResult<String> {
    to_json(py, &MatcherTrainConfig::default(), "config")
}

/// Book centroids to search.
#[pyclass(name = "Library", module = "lexforge._native", frozen)]
pub struct PyLibrary {
    inner: Library,
}

#[pymethods]
impl PyLibrary {
    /// Book ids, in row order.
    #[getter]
    fn books(&self) -> Vec<String> {
        self.inner.books().to_vec()
    }

    /// The model that embedded the library.
    #[getter]
    fn model_id(&self) -> String {
        self.inner.model_id().to_owned()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// A trained book matcher.
#[pyclass(name = "Matcher", module = "lexforge._native", frozen)]
pub struct PyMatcher {
    inner: Mutex<Matcher>,
    info: String,
}

impl PyMatcher {
    fn with<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Matcher) -> Result<T, MatcherError> + Send,
    ) -> PyResult<T>
    where
        T: Send,
    {
        crate::threads::compute(py, || {
            let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl PyMatcher {
    /// Loads a matcher directory on `device`.
    #[staticmethod]
    #[pyo3(signature = (path, device="cpu", precision=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        precision: Option<&str>,
    ) -> PyResult<Self> {
        let device = resolve(py, device, precision)?;
        let m = crate::threads::compute(py, || Matcher::load(&path, &device))
            .map_err(|e| to_py(py, e))?;
        let info = serde_json::json!({
            "path": path.display().to_string(),
            "dim": m.dim(),
            "model_id": m.model_id(),
            "head": m.head(),
            "calibrated": m.calibration().is_some(),
            "style_calibrated": m.style_calibration().is_some(),
            "teacher": m.teacher().is_some(),
            "device": format!("{device:?}"),
        })
        .to_string();
        Ok(PyMatcher {
            inner: Mutex::new(m),
            info,
        })
    }

    /// Scores of pairs as JSON `[{probability, same_book, cosine, logit}]`.
    #[pyo3(signature = (pairs, batch_size))]
    fn score_many(
        &self,
        py: Python<'_>,
        pairs: Vec<(String, String)>,
        batch_size: usize,
    ) -> PyResult<String> {
        let scores = self.with(py, |m| {
            let refs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            m.score_many(&refs, batch_size)
        })?;
        to_json(py, &scores, "scores")
    }

    /// Style similarity in [0, 1].
    fn style_similarity(&self, py: Python<'_>, text1: String, text2: String) -> PyResult<f64> {
        self.with(py, |m| m.style_similarity(&text1, &text2))
    }

    /// Whether `text` is longer than the model reads (it is then truncated).
    fn truncated(&self, py: Python<'_>, text: String) -> PyResult<bool> {
        self.with(py, |m| m.truncated(&text))
    }

    /// `[n, dim]` float32 unit embeddings.
    #[pyo3(signature = (texts, batch_size))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (flat, dim) = self.with(py, |m| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            Ok((m.embed(&refs, batch_size)?, m.dim()))
        })?;
        let rows = flat.len() / dim.max(1);
        let flat: Bound<'py, PyArray1<f32>> = flat.into_pyarray(py);
        flat.reshape([rows, dim])
    }

    /// A library from `[(book_id, [passages])]`.
    #[pyo3(signature = (books, batch_size))]
    fn library(
        &self,
        py: Python<'_>,
        books: Vec<(String, Vec<String>)>,
        batch_size: usize,
    ) -> PyResult<PyLibrary> {
        let inner = self.with(py, |m| m.library(&books, batch_size))?;
        Ok(PyLibrary { inner })
    }

    /// The library of a prepared dataset's books (only `split`'s when given).
    #[pyo3(signature = (dataset_dir, split, batch_size))]
    fn library_of_dataset(
        &self,
        py: Python<'_>,
        dataset_dir: PathBuf,
        split: Option<&str>,
        batch_size: usize,
    ) -> PyResult<PyLibrary> {
        let split = split.map(|s| self::split(py, s)).transpose()?;
        let inner = self.with(py, |m| {
            let data = PreparedDataset::open(&dataset_dir)?;
            m.library_of_dataset(&data, split, batch_size)
        })?;
        Ok(PyLibrary { inner })
    }

    /// The `k` closest books, as JSON `[{book, cosine, rerank}]`.
    #[pyo3(signature = (passage, library, k, rerank, prefilter, passages_per_book))]
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the Python keyword arguments"
    )]
    fn search(
        &self,
        py: Python<'_>,
        passage: String,
        library: &PyLibrary,
        k: usize,
        rerank: Option<bool>,
        prefilter: usize,
        passages_per_book: usize,
    ) -> PyResult<String> {
        let options = SearchOptions {
            k,
            prefilter,
            rerank,
            passages_per_book,
        };
        let hits = self.with(py, |m| m.search_with(&passage, &library.inner, &options))?;
        to_json(py, &hits, "hits")
    }

    /// Evaluation on a dataset split, as JSON.
    #[pyo3(signature = (dataset_dir, split, batch_size))]
    fn evaluate(
        &self,
        py: Python<'_>,
        dataset_dir: PathBuf,
        split: &str,
        batch_size: usize,
    ) -> PyResult<String> {
        let split = self::split(py, split)?;
        let report = self.with(py, |m| {
            let data = PreparedDataset::open(&dataset_dir)?;
            m.evaluate(&data, split, batch_size)
        })?;
        to_json(py, &report, "evaluation")
    }

    /// Fits and saves the calibrations on a dataset split; returns the calibration as JSON.
    #[pyo3(signature = (dataset_dir, split, metric, batch_size))]
    fn calibrate(
        &self,
        py: Python<'_>,
        dataset_dir: PathBuf,
        split: &str,
        metric: &str,
        batch_size: usize,
    ) -> PyResult<String> {
        let split = self::split(py, split)?;
        let metric: ThresholdMetric = parse(py, &format!("{metric:?}"), "metric")?;
        let (c, _) = self.with(py, |m| {
            let data = PreparedDataset::open(&dataset_dir)?;
            m.calibrate(&data, split, metric, batch_size)
        })?;
        to_json(py, &c, "calibration")
    }

    /// What the matcher is, as JSON.
    fn info_json(&self) -> String {
        self.info.clone()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(matcher_train, m)?)?;
    m.add_function(wrap_pyfunction!(matcher_resume, m)?)?;
    m.add_function(wrap_pyfunction!(matcher_pipeline, m)?)?;
    m.add_function(wrap_pyfunction!(matcher_default_pipeline_config, m)?)?;
    m.add_function(wrap_pyfunction!(matcher_default_config, m)?)?;
    m.add_class::<PyLibrary>()?;
    m.add_class::<PyMatcher>()
}
