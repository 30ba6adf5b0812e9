//! `lexforge._native` semantic-ID functions and the `SemanticEncoder` class (wrapped by
//! `lexforge.semantic`).

use std::path::PathBuf;
use std::sync::Mutex;

use lexforge::data::BookDirectory;
use lexforge::nn::encoder::{BertSentenceEncoder, EncoderOptions};
use lexforge::semantic::{
    BookWords, BookWordsConfig, CorpusGenerator, CorpusLabels, CorpusSet, GENERATOR_DIR,
    GeneratorChoice, GuidedConfig, PipelineConfig, PipelineError, SemanticEncoder, SemanticError,
    SemanticTrainConfig, TrainReport, WordFrequencies, WordGenerator, WordGeneratorConfig,
    build_corpora, build_guided_generator, train_word_generator,
};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::errors::{parse_json, to_json, to_py};
use crate::jobs::{drive_on, resolve};

fn parse<T: serde::de::DeserializeOwned>(
    py: Python<'_>,
    json: &str,
    what: &'static str,
) -> PyResult<T> {
    parse_json(py, json, |reason| SemanticError::InvalidParameter {
        parameter: what,
        reason,
    })
}

/// The wordfreq table at `wordfreq` (default: the installed package's), or none.
fn frequencies(
    wordfreq: Option<PathBuf>,
    corpus_frequencies: bool,
) -> Result<Option<WordFrequencies>, SemanticError> {
    if corpus_frequencies {
        return Ok(None);
    }
    WordFrequencies::open(
        wordfreq.as_deref(),
        "pip install wordfreq, pass wordfreq=PATH, or frequencies='corpus'",
    )
    .map(Some)
}

/// Corpora from books with a catalogue, as the corpora JSON.
#[pyfunction]
#[pyo3(signature = (books_dir, metadata, words_per_corpus, config_json, wordfreq=None, corpus_frequencies=false))]
fn semantic_book_corpora(
    py: Python<'_>,
    books_dir: PathBuf,
    metadata: PathBuf,
    words_per_corpus: usize,
    config_json: &str,
    wordfreq: Option<PathBuf>,
    corpus_frequencies: bool,
) -> PyResult<String> {
    let config: BookWordsConfig = parse(py, config_json, "config")?;
    let set = crate::threads::compute(py, || -> Result<CorpusSet, SemanticError> {
        let freq = frequencies(wordfreq, corpus_frequencies)?;
        let provider = BookDirectory::new(books_dir).with_metadata(metadata);
        BookWords::new(&provider, freq.as_ref(), &config)?.build(words_per_corpus)
    })
    .map_err(|e| to_py(py, e))?;
    to_json(py, &set, "corpora")
}

/// A Python callable `(labels: dict, n: int) -> list[str]` as a corpus generator.
struct PyGenerator {
    name: String,
    callable: Py<PyAny>,
}

impl CorpusGenerator for PyGenerator {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn words(&self, labels: &CorpusLabels, n: usize) -> lexforge::semantic::Result<Vec<String>> {
        Python::attach(|py| -> PyResult<Vec<String>> {
            let dict = pyo3::types::PyDict::new(py);
            dict.set_item("style", &labels.style)?;
            dict.set_item("complexity", &labels.complexity)?;
            dict.set_item("era", &labels.era)?;
            dict.set_item("variation", labels.variation)?;
            self.callable.call1(py, (dict, n))?.extract(py)
        })
        .map_err(|e| SemanticError::InvalidInput {
            reason: format!("the generator raised: {e}"),
        })
    }
}

/// Corpora from a Python callable for each planned label set, as the corpora JSON.
#[pyfunction]
fn semantic_generated_corpora(
    py: Python<'_>,
    generator: Py<PyAny>,
    name: String,
    plan_json: &str,
    words_per_corpus: usize,
) -> PyResult<String> {
    let plan: Vec<CorpusLabels> = parse(py, plan_json, "plan")?;
    let g = PyGenerator {
        name,
        callable: generator,
    };
    let set = build_corpora(&g, &plan, words_per_corpus).map_err(|e| to_py(py, e))?;
    to_json(py, &set, "corpora")
}

/// Reads and validates a corpora file, as JSON.
#[pyfunction]
fn semantic_load_corpora(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    let set = crate::threads::compute(py, || CorpusSet::load(&path)).map_err(|e| to_py(py, e))?;
    to_json(py, &set, "corpora")
}

/// Validates corpora JSON and writes it atomically.
#[pyfunction]
fn semantic_save_corpora(py: Python<'_>, corpora_json: &str, path: PathBuf) -> PyResult<()> {
    let set: CorpusSet = parse(py, corpora_json, "corpora")?;
    crate::threads::compute(py, || {
        set.validate()?;
        set.save(&path)
    })
    .map_err(|e| to_py(py, e))
}

/// The default training configuration, as JSON.
#[pyfunction]
fn semantic_default_config(py: Python<'_>) -> PyResult<String> {
    to_json(py, &SemanticTrainConfig::default(), "config")
}

/// The default word-generator configuration, as JSON.
#[pyfunction]
fn semantic_default_generator_config(py: Python<'_>) -> PyResult<String> {
    to_json(py, &WordGeneratorConfig::default(), "config")
}

/// Trains a semantic encoder into the new directory `run_dir` on a worker thread; returns
/// `(report_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (corpora_json, run_dir, config_json, device="cpu", precision=None, callback=None))]
fn semantic_train(
    py: Python<'_>,
    corpora_json: &str,
    run_dir: PathBuf,
    config_json: &str,
    device: &str,
    precision: Option<&str>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    let set: CorpusSet = parse(py, corpora_json, "corpora")?;
    let config: SemanticTrainConfig = parse(py, config_json, "config")?;
    drive_on::<TrainReport, SemanticError>(
        py,
        device,
        precision,
        callback,
        move |d, sink, cancel| lexforge::semantic::train(&config, &set, &run_dir, d, sink, cancel),
    )
}

/// Resumes the encoder training in `run_dir`; returns `(report_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (run_dir, max_steps=None, device="cpu", precision=None, callback=None))]
fn semantic_resume(
    py: Python<'_>,
    run_dir: PathBuf,
    max_steps: Option<u64>,
    device: &str,
    precision: Option<&str>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    drive_on::<TrainReport, SemanticError>(
        py,
        device,
        precision,
        callback,
        move |d, sink, cancel| lexforge::semantic::resume(&run_dir, d, max_steps, sink, cancel),
    )
}

/// The quantizer preset `name` (`fsq`, `residual_fsq`, `residual_vq`) as JSON.
#[pyfunction]
fn semantic_quantizer_preset(py: Python<'_>, name: &str) -> PyResult<String> {
    let q = lexforge::semantic::QuantizerConfig::preset(name).map_err(|e| to_py(py, e))?;
    to_json(py, &q, "quantizer")
}

/// The default pipeline configuration, as JSON.
#[pyfunction]
fn semantic_default_pipeline_config(py: Python<'_>) -> PyResult<String> {
    to_json(py, &PipelineConfig::default(), "config")
}

/// Books → corpora → encoder → word generator into `run_dir`; returns
/// `(report_json, interrupted)`. `generator`: `None` (the config's), `"guided"`, `"lora"` or
/// `"none"`; `base_lm` with `"lora"`.
#[pyfunction]
#[pyo3(signature = (books_dir, metadata, run_dir, config_json, generator=None, base_lm=None, device="cpu", precision=None, callback=None))]
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the Python keyword arguments"
)]
fn semantic_pipeline(
    py: Python<'_>,
    books_dir: PathBuf,
    metadata: PathBuf,
    run_dir: PathBuf,
    config_json: &str,
    generator: Option<&str>,
    base_lm: Option<PathBuf>,
    device: &str,
    precision: Option<&str>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    let config: PipelineConfig = parse(py, config_json, "config")?;
    let choice = match (generator, base_lm) {
        (Some("guided"), None) => GeneratorChoice::Guided,
        (Some("lora"), base) | (None, base @ Some(_)) => GeneratorChoice::Lora(base),
        (Some("none"), None) => GeneratorChoice::None,
        (None, None) => GeneratorChoice::FromConfig,
        (g, b) => {
            return Err(to_py(
                py,
                SemanticError::InvalidParameter {
                    parameter: "generator",
                    reason: format!(
                        "{g:?} with base_lm {b:?}: give guided, lora (base_lm optional) or none"
                    ),
                },
            ));
        }
    };
    drive_on::<_, PipelineError>(py, device, precision, callback, move |d, sink, cancel| {
        lexforge::semantic::pipeline(
            &config, &books_dir, &metadata, &run_dir, &choice, d, sink, cancel,
        )
    })
}

/// Trains the word generator of an encoder directory (`generator/`) on a worker thread;
/// returns `(report_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (encoder_dir, base_lm, config_json, device="cpu", precision=None, callback=None))]
fn semantic_train_generator(
    py: Python<'_>,
    encoder_dir: PathBuf,
    base_lm: PathBuf,
    config_json: &str,
    device: &str,
    precision: Option<&str>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    let config: WordGeneratorConfig = parse(py, config_json, "config")?;
    drive_on::<_, SemanticError>(py, device, precision, callback, move |d, sink, cancel| {
        let enc = SemanticEncoder::load(&encoder_dir, d)?;
        train_word_generator(
            &config,
            &base_lm,
            enc.corpora(),
            enc.ids(),
            &encoder_dir.join(GENERATOR_DIR),
            d,
            sink,
            cancel,
        )
    })
}

/// The default guided-generator configuration, as JSON.
#[pyfunction]
fn semantic_default_guided_config(py: Python<'_>) -> PyResult<String> {
    to_json(py, &GuidedConfig::default(), "config")
}

/// Builds the vocabulary-guided word generator of an encoder directory (`generator/`);
/// returns the report as JSON.
#[pyfunction]
#[pyo3(signature = (encoder_dir, config_json, device="cpu", wordfreq=None, corpus_frequencies=false))]
fn semantic_build_guided(
    py: Python<'_>,
    encoder_dir: PathBuf,
    config_json: &str,
    device: &str,
    wordfreq: Option<PathBuf>,
    corpus_frequencies: bool,
) -> PyResult<String> {
    let config: GuidedConfig = parse(py, config_json, "config")?;
    let device = resolve(py, device, None)?;
    let report = crate::threads::compute(py, || -> Result<_, SemanticError> {
        let freq = frequencies(wordfreq, corpus_frequencies)?;
        let enc = SemanticEncoder::load(&encoder_dir, &device)?;
        build_guided_generator(
            &config,
            &enc,
            freq.as_ref(),
            &encoder_dir.join(GENERATOR_DIR),
        )
    })
    .map_err(|e| to_py(py, e))?;
    to_json(py, &report, "report")
}

/// A trained semantic encoder (and its word generator, loaded on first use).
#[pyclass(name = "SemanticEncoder", module = "lexforge._native", frozen)]
pub struct PySemanticEncoder {
    inner: SemanticEncoder,
    generator: Mutex<Option<WordGenerator>>,
    device: lexforge::Device,
    info: String,
}

impl PySemanticEncoder {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&SemanticEncoder) -> Result<T, SemanticError> + Send,
    ) -> PyResult<T> {
        crate::threads::compute(py, || f(&self.inner)).map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl PySemanticEncoder {
    /// Loads an encoder directory on `device` (with `embedding_model` instead of the recorded
    /// one, when given).
    #[staticmethod]
    #[pyo3(signature = (path, device="cpu", embedding_model=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        embedding_model: Option<PathBuf>,
    ) -> PyResult<Self> {
        let device = resolve(py, device, None)?;
        let inner = crate::threads::compute(py, || -> Result<SemanticEncoder, SemanticError> {
            let enc = SemanticEncoder::load(&path, &device)?;
            match embedding_model {
                Some(p) => {
                    let e = BertSentenceEncoder::load(&p, &device, &EncoderOptions::default())?;
                    enc.with_embedder(Box::new(e))
                }
                None => Ok(enc),
            }
        })
        .map_err(|e| to_py(py, e))?;
        let c = inner.config();
        let info = serde_json::json!({
            "path": path.display().to_string(),
            "quantizer": c.quantizer,
            "codebook_sizes": inner.codebook_sizes(),
            "input_dim": c.input_dim,
            "embedding_model": c.embedding_model,
            "heads": c.heads,
            "corpora": inner.ids().len(),
            "generator": WordGenerator::kind_in(&path.join(GENERATOR_DIR)),
            "device": format!("{device:?}"),
        })
        .to_string();
        Ok(PySemanticEncoder {
            inner,
            generator: Mutex::new(None),
            device,
            info,
        })
    }

    /// The ID of a collection of words.
    fn encode_words(&self, py: Python<'_>, words: Vec<String>) -> PyResult<Vec<u32>> {
        self.with(py, |e| {
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            e.encode_words(&refs)
        })
    }

    /// The ID of a text (its words).
    fn encode_text(&self, py: Python<'_>, text: String) -> PyResult<Vec<u32>> {
        self.with(py, |e| e.encode_text(&text))
    }

    /// The ID of a corpus vector.
    fn encode_vector(
        &self,
        py: Python<'_>,
        vector: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<Vec<u32>> {
        let v = vector.as_slice()?.to_vec();
        self.with(py, |e| e.encode_vector(&v))
    }

    /// The normalized embedding-space vector of an ID.
    fn decode<'py>(&self, py: Python<'py>, id: Vec<u32>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let v = self.with(py, |e| e.decode(&id))?;
        Ok(v.into_pyarray(py))
    }

    /// The `k` known corpora closest to an ID, as JSON.
    fn similar(&self, py: Python<'_>, id: Vec<u32>, k: usize) -> PyResult<String> {
        let hits = self.with(py, |e| e.similar(&id, k))?;
        to_json(py, &hits, "similar")
    }

    /// The `k` known corpora closest to words, as JSON.
    fn similar_words(&self, py: Python<'_>, words: Vec<String>, k: usize) -> PyResult<String> {
        let hits = self.with(py, |e| {
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            e.similar_words(&refs, k)
        })?;
        to_json(py, &hits, "similar")
    }

    /// Labels read back from an ID by the supervised heads, as JSON.
    fn labels(&self, py: Python<'_>, id: Vec<u32>) -> PyResult<String> {
        let labels = self.with(py, |e| e.labels(&id))?;
        to_json(py, &labels, "labels")
    }

    /// Exact collisions and prefix occupancy of the known IDs, as JSON.
    fn collisions(&self, py: Python<'_>) -> PyResult<String> {
        to_json(py, &self.inner.collisions(), "collisions")
    }

    /// Corpus id → ID, as JSON.
    fn ids_json(&self, py: Python<'_>) -> PyResult<String> {
        to_json(py, self.inner.ids(), "ids")
    }

    /// The corpora trained on, as JSON.
    fn corpora_json(&self, py: Python<'_>) -> PyResult<String> {
        to_json(py, self.inner.corpora(), "corpora")
    }

    /// Up to `n` words for an ID from the word generator.
    #[pyo3(signature = (id, n, seed))]
    fn generate_words(
        &self,
        py: Python<'_>,
        id: Vec<u32>,
        n: usize,
        seed: u64,
    ) -> PyResult<Vec<String>> {
        crate::threads::compute(py, || -> Result<Vec<String>, SemanticError> {
            self.inner.check_id(&id)?;
            let mut guard = self.generator.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(WordGenerator::of_encoder(&self.inner, &self.device)?);
            }
            match guard.as_ref() {
                Some(g) => g.generate_words(&self.inner, &id, n, seed),
                None => Ok(Vec::new()),
            }
        })
        .map_err(|e| to_py(py, e))
    }

    /// What the encoder is, as JSON.
    fn info_json(&self) -> String {
        self.info.clone()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(semantic_book_corpora, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_generated_corpora, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_load_corpora, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_save_corpora, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_default_config, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_default_generator_config, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_train, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_resume, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_quantizer_preset, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_pipeline, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_default_pipeline_config, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_train_generator, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_default_guided_config, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_build_guided, m)?)?;
    m.add_class::<PySemanticEncoder>()
}
