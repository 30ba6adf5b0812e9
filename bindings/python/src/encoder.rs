//! `lexforge._native.SentenceEncoder`: a BERT-family model directory as a sentence encoder
//! (see `lexforge.SentenceEncoder` for the documented Python API).

use std::path::PathBuf;
use std::sync::Arc;

use lexforge::nn::NnError;
use lexforge::nn::cache::{CachedEncoder, EmbeddingCache};
use lexforge::nn::encoder::{BertSentenceEncoder, Embeddings, EncoderOptions, SentenceEncoder};
use lexforge::nn::pooling::Pooling;
use numpy::{IntoPyArray, PyArray2};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;

use crate::errors::to_py;
use crate::jobs::resolve;

/// The encoder, with or without an on-disk cache in front.
enum Inner {
    Plain(BertSentenceEncoder),
    Cached(CachedEncoder<BertSentenceEncoder>),
}

impl Inner {
    fn base(&self) -> &BertSentenceEncoder {
        match self {
            Inner::Plain(e) => e,
            Inner::Cached(c) => c.inner(),
        }
    }
}

/// A sentence encoder.
#[pyclass(name = "SentenceEncoder", module = "lexforge._native", frozen)]
pub struct PySentenceEncoder {
    inner: Arc<Inner>,
    info: String,
    model_id: String,
    dim: usize,
}

impl PySentenceEncoder {
    /// A handle other Rust code (the data pipeline on a worker thread) can encode through.
    pub(crate) fn shared(&self) -> SharedEncoder {
        SharedEncoder {
            inner: Arc::clone(&self.inner),
            model_id: self.model_id.clone(),
            dim: self.dim,
        }
    }
}

/// A [`PySentenceEncoder`]'s model, shared, as a [`SentenceEncoder`].
pub(crate) struct SharedEncoder {
    inner: Arc<Inner>,
    model_id: String,
    dim: usize,
}

impl SentenceEncoder for SharedEncoder {
    fn encode(&self, texts: &[&str], batch_size: usize) -> Result<Embeddings, NnError> {
        match &*self.inner {
            Inner::Plain(e) => e.encode(texts, batch_size),
            Inner::Cached(c) => c.encode(texts, batch_size),
        }
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }
}

#[pymethods]
impl PySentenceEncoder {
    /// Loads a model directory on `device`.
    #[staticmethod]
    #[pyo3(signature = (path, device="cpu", pooling=None, truncate_dim=None, normalize=None, max_seq_length=None, cache_dir=None))]
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the Python keyword arguments"
    )]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        pooling: Option<String>,
        truncate_dim: Option<usize>,
        normalize: Option<bool>,
        max_seq_length: Option<usize>,
        cache_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let device = resolve(py, device, None)?;
        let pooling = pooling
            .map(|p| p.parse::<Pooling>())
            .transpose()
            .map_err(|e| to_py(py, e))?;
        let options = EncoderOptions {
            pooling,
            truncate_dim,
            normalize,
            max_seq_length,
        };
        let inner = crate::threads::compute(py, || -> Result<Inner, NnError> {
            let enc = BertSentenceEncoder::load(&path, &device, &options)?;
            Ok(match cache_dir {
                Some(dir) => Inner::Cached(CachedEncoder::new(enc, EmbeddingCache::open(dir)?)),
                None => Inner::Plain(enc),
            })
        })
        .map_err(|e| to_py(py, e))?;
        let base = inner.base();
        let (model_id, dim) = (base.model_id().to_owned(), base.dim());
        let info = serde_json::json!({
            "model_id": base.model_id(),
            "model_type": base.config().model_type,
            "dim": base.dim(),
            "hidden_size": base.config().hidden_size,
            "num_layers": base.config().num_hidden_layers,
            "pooling": base.pooling().as_str(),
            "max_seq_length": base.max_seq_length(),
            "device": format!("{:?}", base.device()),
            "path": base.dir().display().to_string(),
            "cache_dir": match &inner {
                Inner::Cached(c) => Some(c.cache().dir().display().to_string()),
                Inner::Plain(_) => None,
            },
        })
        .to_string();
        Ok(PySentenceEncoder {
            inner: Arc::new(inner),
            info,
            model_id,
            dim,
        })
    }

    /// `[n, dim]` float32 vectors of `texts` (GIL released); `progress(done, total)` is called
    /// after each batch when given.
    #[pyo3(signature = (texts, batch_size=32, progress=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        batch_size: usize,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let embeddings = crate::threads::compute(py, || -> Result<Embeddings, NnError> {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let mut report = |done: usize, total: usize| {
                if let Some(cb) = &progress {
                    Python::attach(|py| {
                        if let Err(e) = cb.call1(py, (done, total)) {
                            tracing::warn!(error = %e, "the progress callback raised; ignoring it");
                        }
                    });
                }
            };
            match &*self.inner {
                Inner::Plain(e) => e.encode_with_progress(&refs, batch_size, &mut report),
                Inner::Cached(c) => {
                    let out = c.encode(&refs, batch_size)?;
                    report(refs.len(), refs.len());
                    Ok(out)
                }
            }
        })
        .map_err(|e| to_py(py, e))?;
        let (rows, dim) = (embeddings.rows(), embeddings.dim());
        let flat: Bound<'py, PyArray1<f32>> = embeddings.into_vec().into_pyarray(py);
        flat.reshape([rows, dim])
    }

    /// `(hits, misses)` of the embedding cache (`None` without one).
    fn cache_stats(&self) -> Option<(u64, u64)> {
        match &*self.inner {
            Inner::Cached(c) => {
                let s = c.cache().stats();
                Some((s.hits, s.misses))
            }
            Inner::Plain(_) => None,
        }
    }

    /// Token ids of each text as the model sees them (special tokens, truncation).
    fn tokenize(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Vec<Vec<u32>>> {
        crate::threads::compute(py, || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.inner.base().tokenize(&refs)
        })
        .map_err(|e| to_py(py, e))
    }

    /// What the encoder is, as JSON.
    fn info_json(&self) -> String {
        self.info.clone()
    }
}

/// The all-MiniLM-L6-v2 directory Rust finds without Python: `$LEXFORGE_MINILM_DIR`, the
/// Hugging Face cache, the active virtual environment's package files; `None` otherwise.
#[pyfunction]
fn find_minilm() -> Option<PathBuf> {
    lexforge::nn::encoder::find_minilm()
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySentenceEncoder>()?;
    m.add_function(wrap_pyfunction!(find_minilm, m)?)
}
