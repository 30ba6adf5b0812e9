//! `lexforge._native` data-preparation functions (wrapped by `lexforge.data`): text tools, and
//! the prepare / shard / merge pipeline on a worker thread.

use std::path::PathBuf;

use lexforge::Seed;
use lexforge::data::{
    BookDirectory, ChunkConfig, DataError, Decoding, PrepareConfig, ShardPart, StandardizeConfig,
    chunk_book, merge_shards, prepare, prepare_shard, read_shard, sentence_spans, standardize,
};
use lexforge::nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder};
use pyo3::prelude::*;

use crate::encoder::PySentenceEncoder;
use crate::errors::{parse_json, to_json, to_py};
use crate::jobs::drive;

fn parse<T: serde::de::DeserializeOwned>(
    py: Python<'_>,
    json: &str,
    what: &'static str,
) -> PyResult<T> {
    parse_json(py, json, |reason| DataError::InvalidParameter {
        parameter: what,
        reason,
    })
}

fn decoding(py: Python<'_>, s: &str) -> PyResult<Decoding> {
    parse(py, &format!("{s:?}"), "decoding")
}

/// Standardizes `text`; returns `(text, boilerplate_report_json)`.
#[pyfunction]
#[pyo3(signature = (text, config_json="{}"))]
fn data_standardize(py: Python<'_>, text: &str, config_json: &str) -> PyResult<(String, String)> {
    let config: StandardizeConfig = parse(py, config_json, "standardize")?;
    let out = crate::threads::compute(py, || standardize(text, &config));
    Ok((
        out.text,
        to_json(py, &out.boilerplate, "boilerplate report")?,
    ))
}

/// Sentence spans of `text` in characters (Python string indices).
#[pyfunction]
fn data_sentence_spans(py: Python<'_>, text: &str) -> Vec<(usize, usize)> {
    crate::threads::compute(py, || {
        let spans = sentence_spans(text);
        let mut out = Vec::with_capacity(spans.len());
        let (mut byte, mut chars) = (0usize, 0usize);
        for s in spans {
            chars += text[byte..s.start].chars().count();
            let start = chars;
            chars += text[s.start..s.end].chars().count();
            byte = s.end;
            out.push((start, chars));
        }
        out
    })
}

/// Chunks of one standardized text; returns JSON `[{book, index, start, end, text}]`.
#[pyfunction]
#[pyo3(signature = (text, book, config_json, seed))]
fn data_chunk(
    py: Python<'_>,
    text: &str,
    book: &str,
    config_json: &str,
    seed: u64,
) -> PyResult<String> {
    let config: ChunkConfig = parse(py, config_json, "chunk")?;
    let (chunks, _) = crate::threads::compute(py, || chunk_book(book, text, &config, Seed(seed)))
        .map_err(|e| to_py(py, e))?;
    to_json(py, &chunks, "chunks")
}

fn books(dir: PathBuf, metadata: Option<PathBuf>, decoding: Decoding) -> BookDirectory {
    let b = BookDirectory::new(dir).with_decoding(decoding);
    match metadata {
        Some(csv) => b.with_metadata(csv),
        None => b,
    }
}

/// The encoder for a job: a loaded `SentenceEncoder`, or a model directory to load on the
/// worker thread.
enum EncoderArg {
    Loaded(crate::encoder::SharedEncoder),
    Path(PathBuf, Option<usize>),
}

impl EncoderArg {
    fn from_py(encoder: &Bound<'_, PyAny>, max_seq_length: Option<usize>) -> PyResult<Self> {
        if let Ok(e) = encoder.cast::<PySentenceEncoder>() {
            return Ok(EncoderArg::Loaded(e.get().shared()));
        }
        Ok(EncoderArg::Path(encoder.extract()?, max_seq_length))
    }

    fn open(self, device: &lexforge::Device) -> Result<Box<dyn SentenceEncoder>, DataError> {
        Ok(match self {
            EncoderArg::Loaded(e) => Box::new(e),
            EncoderArg::Path(p, max_seq_length) => Box::new(BertSentenceEncoder::load(
                p,
                device,
                &EncoderOptions {
                    max_seq_length,
                    ..EncoderOptions::default()
                },
            )?),
        })
    }
}

/// Both stages on a worker thread; returns `(summary_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (books_dir, out_dir, config_json, encoder, device="cpu", metadata=None, decoding="strict", max_seq_length=None, callback=None))]
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the Python keyword arguments"
)]
fn data_prepare(
    py: Python<'_>,
    books_dir: PathBuf,
    out_dir: PathBuf,
    config_json: &str,
    encoder: &Bound<'_, PyAny>,
    device: &str,
    metadata: Option<PathBuf>,
    decoding: &str,
    max_seq_length: Option<usize>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    let config: PrepareConfig = parse(py, config_json, "config")?;
    let decoding = self::decoding(py, decoding)?;
    let device = crate::jobs::resolve(py, device, None)?;
    let encoder = EncoderArg::from_py(encoder, max_seq_length)?;
    drive::<_, DataError>(
        py,
        callback,
        Box::new(move |sink, cancel| {
            let enc = encoder.open(&device)?;
            prepare(
                &books(books_dir, metadata, decoding),
                enc.as_ref(),
                &device,
                &config,
                &out_dir,
                sink,
                cancel,
            )
        }),
    )
}

/// Stage A on shard `index` of `count` on a worker thread (chunks, vectors, signatures,
/// centroids); returns `(shard_summary_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (books_dir, out_dir, index, count, config_json, encoder, device="cpu", metadata=None, decoding="strict", max_seq_length=None, callback=None))]
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the Python keyword arguments"
)]
fn data_prepare_shard(
    py: Python<'_>,
    books_dir: PathBuf,
    out_dir: PathBuf,
    index: usize,
    count: usize,
    config_json: &str,
    encoder: &Bound<'_, PyAny>,
    device: &str,
    metadata: Option<PathBuf>,
    decoding: &str,
    max_seq_length: Option<usize>,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    let config: PrepareConfig = parse(py, config_json, "config")?;
    let decoding = self::decoding(py, decoding)?;
    let device = crate::jobs::resolve(py, device, None)?;
    let encoder = EncoderArg::from_py(encoder, max_seq_length)?;
    drive::<_, DataError>(
        py,
        callback,
        Box::new(move |sink, cancel| {
            let provider = books(books_dir, metadata, decoding).with_shard(index, count)?;
            let enc = encoder.open(&device)?;
            prepare_shard(
                &provider,
                enc.as_ref(),
                &config,
                ShardPart { index, count },
                &out_dir,
                sink,
                cancel,
            )
        }),
    )
}

/// Verifies a shard directory; returns its `ShardInfo` as JSON.
#[pyfunction]
fn data_read_shard(py: Python<'_>, shard_dir: PathBuf, config_json: &str) -> PyResult<String> {
    let config: PrepareConfig = parse(py, config_json, "config")?;
    let info = crate::threads::compute(py, || read_shard(&shard_dir, &config))
        .map_err(|e| to_py(py, e))?;
    to_json(py, &info, "shard info")
}

/// Stage B over shard directories on a worker thread (never loads an encoder); returns
/// `(summary_json, interrupted)`.
#[pyfunction]
#[pyo3(signature = (shard_dirs, out_dir, config_json, device="cpu", callback=None))]
fn data_merge_shards(
    py: Python<'_>,
    shard_dirs: Vec<PathBuf>,
    out_dir: PathBuf,
    config_json: &str,
    device: &str,
    callback: Option<Py<PyAny>>,
) -> PyResult<(String, bool)> {
    let config: PrepareConfig = parse(py, config_json, "config")?;
    let device = crate::jobs::resolve(py, device, None)?;
    drive::<_, DataError>(
        py,
        callback,
        Box::new(move |sink, cancel| {
            merge_shards(&shard_dirs, &device, &config, &out_dir, sink, cancel)
        }),
    )
}

/// The default parameters, as JSON.
#[pyfunction]
fn data_default_config(py: Python<'_>) -> PyResult<String> {
    to_json(py, &PrepareConfig::default(), "config")
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(data_standardize, m)?)?;
    m.add_function(wrap_pyfunction!(data_sentence_spans, m)?)?;
    m.add_function(wrap_pyfunction!(data_chunk, m)?)?;
    m.add_function(wrap_pyfunction!(data_prepare, m)?)?;
    m.add_function(wrap_pyfunction!(data_prepare_shard, m)?)?;
    m.add_function(wrap_pyfunction!(data_read_shard, m)?)?;
    m.add_function(wrap_pyfunction!(data_merge_shards, m)?)?;
    m.add_function(wrap_pyfunction!(data_default_config, m)?)?;
    Ok(())
}
