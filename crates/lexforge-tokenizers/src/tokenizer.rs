//! [`Tokenizer`]: the type users hold. Train, load, save, inspect, encode, decode.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lexforge_core::{
    Error as CoreError, Event, EventSink, MANIFEST_FILE, RunDir, RunStatus, StageMode,
    verify_run_dir,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backend::{Encoding, TextTokenizer, TokenClass, TrainingText};
use crate::config::{TokenizerConfig, TokenizerTrainRequest};
use crate::error::{Result, TokenizerError};
use crate::method::TokenizerMethod;
use crate::registry::{backend_for, backends};
use crate::stats::{Coverage, TokenizerStats, measure};
use crate::stream::StreamedSplit;

/// The file name of the tokenizer in an artifact directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The version of the HF `tokenizers` engine compiled in (recorded in manifests).
pub const HF_TOKENIZERS_VERSION: &str = "0.23.2";

/// How a tokenizer was trained (stored in the manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// The corpus, as its provider describes it.
    pub corpus: String,
    /// Holdout share asked for.
    pub holdout: f64,
    /// Split seed.
    pub seed: u64,
    /// Seconds spent in the engine's trainer.
    pub train_seconds: f64,
    /// Ids of the held-out documents (empty for a line split), so the holdout can be
    /// re-created and inspected.
    #[serde(default)]
    pub holdout_documents: Vec<String>,
}

/// What `lexforge tokenizer inspect` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    /// The method, when known.
    pub method: Option<TokenizerMethod>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Special tokens and their ids.
    pub special_tokens: BTreeMap<String, u32>,
    /// The unknown token, if any.
    pub unk_token: Option<String>,
    /// The training config, for tokenizers trained by lexforge.
    pub config: Option<TokenizerConfig>,
    /// How it was trained.
    pub training: Option<TrainingInfo>,
    /// Holdout statistics.
    pub stats: Option<TokenizerStats>,
    /// Where it was loaded from.
    pub source: Option<PathBuf>,
}

/// A tokenizer: trained here or loaded from a `tokenizer.json` / artifact directory.
///
/// Cheap to clone (the model is shared) and safe to use from many threads.
///
/// ```
/// use lexforge_tokenizers::{Tokenizer, TokenizerConfig, TokenizerMethod, TokenizerTrainRequest};
/// use lexforge_core::NoopSink;
///
/// let config = TokenizerConfig::new(TokenizerMethod::Bpe, 300);
/// let request = TokenizerTrainRequest::from_texts(["the cat sat on the mat\n"; 20])
///     .with_holdout(0.0);
/// let tok = Tokenizer::train(&config, &request, &NoopSink)?;
/// let ids = tok.encode("the cat")?;
/// assert_eq!(tok.decode(&ids, true)?, "the cat");
/// # Ok::<(), lexforge_tokenizers::TokenizerError>(())
/// ```
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<dyn TextTokenizer>,
    config: Option<TokenizerConfig>,
    training: Option<TrainingInfo>,
    stats: Option<TokenizerStats>,
    source: Option<PathBuf>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("method", &self.method())
            .field("vocab_size", &self.vocab_size())
            .field("source", &self.source)
            .finish()
    }
}

fn with_pool<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T> {
    match threads {
        None => Ok(f()),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| TokenizerError::invalid("threads", e.to_string()))?;
            Ok(pool.install(f))
        }
    }
}

impl Tokenizer {
    /// Wraps any [`TextTokenizer`].
    pub fn from_model(model: impl TextTokenizer + 'static) -> Self {
        Tokenizer {
            inner: Arc::new(model),
            config: None,
            training: None,
            stats: None,
            source: None,
        }
    }

    /// Trains a tokenizer: reads the corpus, splits off the holdout (by document, else by
    /// line; deterministic for the seed), trains on the rest, measures [`TokenizerStats`] on
    /// the holdout. Nothing is written; call [`Tokenizer::save`].
    ///
    /// Events: `Started`, one `Progress` after reading (step 1), training (2) and measuring
    /// (3), then `Completed` with the metrics, or `Failed`.
    pub fn train(
        config: &TokenizerConfig,
        request: &TokenizerTrainRequest,
        events: &dyn EventSink,
    ) -> Result<Tokenizer> {
        let result = Self::train_inner(config, request, events);
        match &result {
            Ok(tok) => {
                let metrics = tok.stats.as_ref().map(|s| s.metrics()).unwrap_or_default();
                events.send(Event::Completed { metrics })?;
            }
            Err(e) => {
                events.send(Event::Failed {
                    step: None,
                    error: e.to_string(),
                })?;
            }
        }
        events.flush()?;
        result
    }

    fn train_inner(
        config: &TokenizerConfig,
        request: &TokenizerTrainRequest,
        events: &dyn EventSink,
    ) -> Result<Tokenizer> {
        config.validate()?;
        request.validate()?;
        events.send(Event::Started {
            run_id: "tokenizer".to_owned(),
            kind: "tokenizer".to_owned(),
            total: Some(3),
        })?;
        let corpus = request.corpus.describe();
        let _span =
            tracing::info_span!("train_tokenizer", method = %config.method, %corpus).entered();
        // Streamed in passes (see `stream`): memory holds one document per reader and the
        // held-out text, not the corpus.
        let split = StreamedSplit::new(request.corpus.as_ref(), request.holdout, request.seed)?;
        if split.training_is_blank() {
            return Err(TokenizerError::NoTrainingText {
                reason: format!(
                    "after holding out {} of {}, the training side is blank",
                    request.holdout, corpus
                ),
            });
        }
        let (train_bytes, holdout_bytes) = split.bytes();
        tracing::info!(train_bytes, holdout_bytes, "corpus split");
        events.send(Event::Progress {
            step: 1,
            total: Some(3),
            metrics: BTreeMap::from([
                ("train_bytes".to_owned(), train_bytes as f64),
                ("holdout_bytes".to_owned(), holdout_bytes as f64),
            ]),
        })?;
        let backend = backend_for(config.method);
        let source = || split.pass();
        let text = TrainingText::new(&source, request.show_progress);
        let holdout_lines: Vec<&str> = split.holdout.iter().map(String::as_str).collect();
        let (model, train_seconds, holdout) = with_pool(request.threads, || {
            let start = Instant::now();
            let model = backend.train(config, text);
            // A read error in a pass ends it early: report that rather than what it caused.
            split.finish()?;
            let model = model?;
            let train_seconds = start.elapsed().as_secs_f64();
            let holdout = if holdout_lines.is_empty() {
                None
            } else {
                Some(measure(model.as_ref(), &holdout_lines)?)
            };
            Ok::<_, TokenizerError>((model, train_seconds, holdout))
        })??;
        let sizes = split.finish()?;
        let holdout_documents = split.holdout_ids.clone();
        tracing::info!(
            train_docs = sizes.train_documents,
            holdout_docs = sizes.holdout_documents,
            unit = ?sizes.split_unit,
            "corpus read and split"
        );
        events.send(Event::Progress {
            step: 2,
            total: Some(3),
            metrics: BTreeMap::from([
                ("train_seconds".to_owned(), train_seconds),
                ("vocab_size".to_owned(), model.vocab_size() as f64),
            ]),
        })?;
        tracing::info!(
            vocab = model.vocab_size(),
            train_seconds,
            "tokenizer trained"
        );
        let stats = TokenizerStats {
            corpus: sizes,
            holdout,
        };
        events.send(Event::Progress {
            step: 3,
            total: Some(3),
            metrics: stats.metrics(),
        })?;
        Ok(Tokenizer {
            inner: Arc::from(model),
            config: Some(config.clone()),
            training: Some(TrainingInfo {
                corpus,
                holdout: request.holdout,
                seed: request.seed,
                train_seconds,
                holdout_documents,
            }),
            stats: Some(stats),
            source: None,
        })
    }

    /// Loads a tokenizer from an artifact directory (its `manifest.json` is verified first
    /// when present, and supplies config and stats), from a directory holding a
    /// `tokenizer.json` (e.g. an HF model folder), or from a `tokenizer.json` file.
    pub fn load(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| CoreError::io("open tokenizer", path, e))?;
        let (file, manifest) = if meta.is_dir() {
            let manifest = if path.join(MANIFEST_FILE).exists() {
                Some(verify_run_dir(path)?)
            } else {
                None
            };
            (path.join(TOKENIZER_FILE), manifest)
        } else {
            (path.to_path_buf(), None)
        };
        let bytes = std::fs::read(&file).map_err(|e| CoreError::io("read tokenizer", &file, e))?;
        let text = String::from_utf8(bytes).map_err(|e| TokenizerError::Load {
            path: file.clone(),
            reason: format!(
                "not UTF-8 JSON (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        let mut model = None;
        for backend in backends() {
            match backend.load_json(&text) {
                Ok(Some(m)) => {
                    model = Some(m);
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(TokenizerError::Load {
                        path: file.clone(),
                        reason: match e {
                            TokenizerError::Engine { source, .. } => source.to_string(),
                            other => other.to_string(),
                        },
                    });
                }
            }
        }
        let model = model.ok_or_else(|| TokenizerError::Load {
            path: file.clone(),
            reason: "no backend recognises it".to_owned(),
        })?;
        let mut tok = Tokenizer {
            inner: Arc::from(model),
            config: None,
            training: None,
            stats: None,
            source: Some(path.to_path_buf()),
        };
        if let Some(m) = manifest {
            let field = |name: &str| m.config.get(name).cloned().unwrap_or_default();
            let bad = |what: &str, e: serde_json::Error| TokenizerError::Load {
                path: path.join(MANIFEST_FILE),
                reason: format!("its {what} does not parse: {e}"),
            };
            tok.config = serde_json::from_value(field("tokenizer"))
                .map_err(|e| bad("config.tokenizer", e))?;
            tok.training =
                serde_json::from_value(field("training")).map_err(|e| bad("config.training", e))?;
            tok.stats =
                serde_json::from_value(field("stats")).map_err(|e| bad("config.stats", e))?;
        }
        Ok(tok)
    }

    /// Writes the artifact directory `dir` (`tokenizer.json` + `manifest.json`) atomically:
    /// it is built under a temporary name beside `dir` and renamed into place, so a failure
    /// leaves nothing. `dir` must not exist yet. Returns the final path.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<PathBuf> {
        let dir = dir.as_ref();
        let name = dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            TokenizerError::invalid(
                "path",
                format!("{} has no usable directory name", dir.display()),
            )
        })?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut run = RunDir::create(parent, name, "tokenizer", StageMode::Staged)?;
        let json = self.inner.to_json()?;
        run.write_artifact(TOKENIZER_FILE, json.as_bytes())?;
        let m = run.manifest_mut();
        m.config = json!({
            "tokenizer": self.config,
            "method": self.method(),
            "vocab_size": self.vocab_size(),
            "training": self.training,
            "stats": self.stats,
        });
        m.seed = self.training.as_ref().map(|t| t.seed);
        m.metrics = self.stats.as_ref().map(|s| s.metrics()).unwrap_or_default();
        m.versions
            .extra
            .insert("tokenizers".to_owned(), HF_TOKENIZERS_VERSION.to_owned());
        Ok(run.finish(RunStatus::Completed)?)
    }

    /// Coverage and compression of this tokenizer on `texts` (e.g. another corpus).
    pub fn evaluate(&self, texts: &[&str]) -> Result<Coverage> {
        measure(self.inner.as_ref(), texts)
    }

    /// Encodes `text` to ids, without post-processor special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode_ids(text, false)
    }

    /// Encodes `text` with byte offsets; `add_special_tokens` runs the post-processor.
    pub fn encode_with_offsets(&self, text: &str, add_special_tokens: bool) -> Result<Encoding> {
        self.inner.encode(text, add_special_tokens)
    }

    /// Encodes many texts in parallel.
    pub fn encode_batch(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Vec<u32>>> {
        self.inner.encode_batch_ids(texts, add_special_tokens)
    }

    /// Decodes ids; `skip_special_tokens` drops special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens)
    }

    /// Decodes many id sequences in parallel.
    pub fn decode_batch(&self, ids: &[&[u32]], skip_special_tokens: bool) -> Result<Vec<String>> {
        self.inner.decode_batch(ids, skip_special_tokens)
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The id of a token.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The method, when known.
    pub fn method(&self) -> Option<TokenizerMethod> {
        self.config
            .as_ref()
            .map(|c| c.method)
            .or_else(|| self.inner.method())
    }

    /// The training config (tokenizers trained by lexforge).
    pub fn config(&self) -> Option<&TokenizerConfig> {
        self.config.as_ref()
    }

    /// Holdout statistics (tokenizers trained by lexforge).
    pub fn stats(&self) -> Option<&TokenizerStats> {
        self.stats.as_ref()
    }

    /// The underlying model.
    pub fn model(&self) -> &dyn TextTokenizer {
        self.inner.as_ref()
    }

    /// The `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_json()
    }

    /// A summary for display.
    pub fn info(&self) -> TokenizerInfo {
        let mut special_tokens = BTreeMap::new();
        let mut unk_token = None;
        for id in 0..self.vocab_size() as u32 {
            match self.inner.token_class(id) {
                TokenClass::Special => {
                    if let Some(t) = self.inner.id_to_token(id) {
                        special_tokens.insert(t, id);
                    }
                }
                TokenClass::Unknown => {
                    if let Some(t) = self.inner.id_to_token(id) {
                        special_tokens.insert(t.clone(), id);
                        unk_token = Some(t);
                    }
                }
                _ => {}
            }
        }
        TokenizerInfo {
            method: self.method(),
            vocab_size: self.vocab_size(),
            special_tokens,
            unk_token,
            config: self.config.clone(),
            training: self.training.clone(),
            stats: self.stats.clone(),
            source: self.source.clone(),
        }
    }
}
