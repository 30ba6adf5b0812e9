//! `lexforge._native.Tokenizer`: train, load, save, encode, decode (wrapped by
//! `lexforge.Tokenizer` in Python).

use std::path::PathBuf;

use lexforge::tokenizers::{
    Normalization, Tokenizer, TokenizerConfig, TokenizerError, TokenizerMethod, TokenizerOptions,
    TokenizerTrainRequest,
};
use lexforge::{EventRecord, EventSink, InMemoryCorpus, MultiSink, ProgressBarSink, TextFiles};
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::errors::to_py;

/// Token ids with their `(start, end)` byte offsets.
type IdsAndOffsets = (Vec<u32>, Vec<(usize, usize)>);

/// Concatenated ids and row starts.
type FlatIds<'py> = (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<i64>>);

/// Sends each event to a Python callable as a dict (the JSON form of the event).
struct PyCallbackSink {
    callback: Py<PyAny>,
}

impl EventSink for PyCallbackSink {
    fn emit(&self, record: &EventRecord) -> lexforge::Result<()> {
        let text = serde_json::to_string(record).map_err(|source| lexforge::Error::Serialize {
            what: "event",
            source,
        })?;
        Python::attach(|py| {
            let result = py
                .import("json")
                .and_then(|json| json.call_method1("loads", (text,)))
                .and_then(|event| self.callback.call1(py, (event,)));
            if let Err(e) = result {
                // A failing progress callback must not lose the training run.
                tracing::warn!(error = %e, "the progress callback raised; ignoring it");
            }
        });
        Ok(())
    }
}

fn serialize<T: serde::Serialize>(
    py: Python<'_>,
    value: &T,
    what: &'static str,
) -> PyResult<String> {
    serde_json::to_string(value)
        .map_err(|source| to_py(py, lexforge::Error::Serialize { what, source }))
}

/// A tokenizer (see `lexforge.Tokenizer` for the documented Python API).
#[pyclass(name = "Tokenizer", module = "lexforge._native", frozen)]
pub struct PyTokenizer {
    inner: Tokenizer,
}

#[pymethods]
impl PyTokenizer {
    /// Trains a tokenizer on `paths` (files / directories) or, when `texts` is given, on those
    /// texts (one document each).
    #[staticmethod]
    #[pyo3(signature = (
        paths, texts, method, vocab_size, min_frequency, normalization, lowercase,
        special_tokens, byte_fallback, holdout, seed, threads, progress, callback
    ))]
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the Python keyword arguments"
    )]
    fn train(
        py: Python<'_>,
        paths: Vec<PathBuf>,
        texts: Option<Vec<String>>,
        method: &str,
        vocab_size: usize,
        min_frequency: Option<u64>,
        normalization: Option<&str>,
        lowercase: Option<bool>,
        special_tokens: Option<Vec<String>>,
        byte_fallback: Option<bool>,
        holdout: f64,
        seed: u64,
        threads: Option<usize>,
        progress: bool,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let method: TokenizerMethod = method.parse().map_err(|e| to_py(py, e))?;
        let normalization: Option<Normalization> = normalization
            .map(str::parse)
            .transpose()
            .map_err(|e: TokenizerError| to_py(py, e))?;
        let config = TokenizerConfig::new(method, vocab_size).with_options(&TokenizerOptions {
            min_frequency,
            normalization,
            lowercase,
            special_tokens,
            byte_fallback,
        });
        let mut request = match texts {
            Some(texts) => TokenizerTrainRequest::new(InMemoryCorpus::from_texts(texts)),
            None => TokenizerTrainRequest::new(TextFiles::new(paths)),
        }
        .with_holdout(holdout)
        .with_seed(seed)
        .with_threads(threads);
        request.show_progress = progress;
        let mut sink = MultiSink::new();
        if progress {
            sink.push(Box::new(ProgressBarSink::new()));
        }
        if let Some(callback) = callback {
            sink.push(Box::new(PyCallbackSink { callback }));
        }
        let inner = crate::threads::compute(py, || Tokenizer::train(&config, &request, &sink))
            .map_err(|e| to_py(py, e))?;
        Ok(PyTokenizer { inner })
    }

    /// Loads an artifact directory, an HF model folder or a `tokenizer.json`.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner =
            crate::threads::compute(py, || Tokenizer::load(&path)).map_err(|e| to_py(py, e))?;
        Ok(PyTokenizer { inner })
    }

    /// Writes the artifact directory; returns its path.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<PathBuf> {
        crate::threads::compute(py, || self.inner.save(&path)).map_err(|e| to_py(py, e))
    }

    /// Ids of `text`.
    fn encode(&self, py: Python<'_>, text: String, add_special_tokens: bool) -> PyResult<Vec<u32>> {
        crate::threads::compute(py, || {
            if add_special_tokens {
                self.inner.encode_with_offsets(&text, true).map(|e| e.ids)
            } else {
                self.inner.encode(&text)
            }
        })
        .map_err(|e| to_py(py, e))
    }

    /// Ids and byte offsets of `text`.
    fn encode_with_offsets(
        &self,
        py: Python<'_>,
        text: String,
        add_special_tokens: bool,
    ) -> PyResult<IdsAndOffsets> {
        crate::threads::compute(py, || {
            self.inner.encode_with_offsets(&text, add_special_tokens)
        })
        .map(|e| (e.ids, e.offsets))
        .map_err(|e| to_py(py, e))
    }

    /// Ids of each text (in parallel, GIL released), as lists or as uint32 numpy arrays.
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        add_special_tokens: bool,
        as_numpy: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let ids = crate::threads::compute(py, || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.inner.encode_batch(&refs, add_special_tokens)
        })
        .map_err(|e| to_py(py, e))?;
        if as_numpy {
            let arrays: Vec<Bound<'py, PyArray1<u32>>> =
                ids.into_iter().map(|v| v.into_pyarray(py)).collect();
            PyList::new(py, arrays)
        } else {
            PyList::new(py, ids)
        }
    }

    /// Ids of every text concatenated into one uint32 array, with an int64 array of `n + 1`
    /// row starts (text `i` is `ids[starts[i]:starts[i + 1]]`): two numpy arrays, no
    /// per-text Python objects.
    fn encode_batch_flat<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        add_special_tokens: bool,
    ) -> PyResult<FlatIds<'py>> {
        let (ids, starts) = crate::threads::compute(py, || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let batch = self.inner.encode_batch(&refs, add_special_tokens)?;
            let mut ids = Vec::with_capacity(batch.iter().map(Vec::len).sum());
            let mut starts = Vec::with_capacity(batch.len() + 1);
            starts.push(0i64);
            for row in batch {
                ids.extend_from_slice(&row);
                starts.push(ids.len() as i64);
            }
            Ok::<_, TokenizerError>((ids, starts))
        })
        .map_err(|e| to_py(py, e))?;
        Ok((ids.into_pyarray(py), starts.into_pyarray(py)))
    }

    /// Text of `ids`.
    fn decode(&self, py: Python<'_>, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
        crate::threads::compute(py, || self.inner.decode(&ids, skip_special_tokens))
            .map_err(|e| to_py(py, e))
    }

    /// Texts of many id sequences (in parallel, GIL released).
    fn decode_batch(
        &self,
        py: Python<'_>,
        ids: Vec<Vec<u32>>,
        skip_special_tokens: bool,
    ) -> PyResult<Vec<String>> {
        crate::threads::compute(py, || {
            let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
            self.inner.decode_batch(&refs, skip_special_tokens)
        })
        .map_err(|e| to_py(py, e))
    }

    /// Coverage of `texts` as JSON.
    fn evaluate_json(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<String> {
        let coverage = crate::threads::compute(py, || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.inner.evaluate(&refs)
        })
        .map_err(|e| to_py(py, e))?;
        serialize(py, &coverage, "coverage")
    }

    /// Method, vocabulary, special tokens, config, training and stats as JSON.
    fn info_json(&self, py: Python<'_>) -> PyResult<String> {
        serialize(py, &self.inner.info(), "tokenizer info")
    }

    /// The `tokenizer.json` text.
    fn to_json(&self, py: Python<'_>) -> PyResult<String> {
        self.inner.to_json().map_err(|e| to_py(py, e))
    }

    /// Vocabulary size.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The method name, if known.
    #[getter]
    fn method(&self) -> Option<&'static str> {
        self.inner.method().map(TokenizerMethod::as_str)
    }

    /// Id of a token.
    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token of an id.
    fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenizer>()?;
    Ok(())
}
