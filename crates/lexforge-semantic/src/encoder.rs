//! Using a trained semantic encoder: words or vectors → IDs, IDs → vectors, nearest known
//! corpora, collisions.
//!
//! [`SemanticEncoder::load`] opens a semantic-encoder directory (its layout: `artifacts.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder};
use serde::{Deserialize, Serialize};

use crate::artifacts::{CONFIG_FILE, CORPORA_FILE, IDS_FILE, WEIGHTS_FILE, read_json};
use crate::corpus::{COMPONENTS, CorpusSet, clean_word};
use crate::embeddings::mean_vector;
use crate::error::{Result, SemanticError};
use crate::model::{SemanticConfig, SemanticModel, matrix};
use crate::quantize::{Quantizer, check_codes, host};
use crate::report::CollisionReport;

/// One known corpus close to a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarCorpus {
    /// Its id.
    pub corpus: String,
    /// Its ID.
    pub id: Vec<u32>,
    /// Cosine between the query's decoded vector and the corpus's.
    pub score: f64,
    /// Leading ID components it shares with the query.
    pub shared_prefix: usize,
}

/// A trained semantic encoder, ready for inference.
pub struct SemanticEncoder {
    model: SemanticModel,
    ids: BTreeMap<String, Vec<u32>>,
    corpora: CorpusSet,
    embedder: Option<Box<dyn SentenceEncoder>>,
    device: Device,
    dir: PathBuf,
}

impl std::fmt::Debug for SemanticEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticEncoder")
            .field("dir", &self.dir)
            .field("quantizer", &self.model.quantizer.name())
            .field("codebooks", &self.model.quantizer.codebook_sizes())
            .field("input_dim", &self.model.config().input_dim)
            .field("embedding_model", &self.model.config().embedding_model)
            .field("corpora", &self.ids.len())
            .finish()
    }
}

impl SemanticEncoder {
    /// Loads a semantic-encoder directory onto `device`, verifying the manifest's checksums,
    /// and opens the embedding model recorded in its config (when that directory exists; see
    /// [`SemanticEncoder::with_embedder`] to give one).
    ///
    /// # Errors
    /// [`SemanticError::Artifact`] for a missing or damaged file (checksum, JSON, weights that
    /// do not fit the config), core errors from the manifest, and
    /// [`SemanticError::EmbeddingMismatch`] when the recorded embedding model loads as a
    /// different model.
    ///
    /// A directory whose training run has not finished (its manifest says `running`,
    /// `failed` or `cancelled`) is `lexforge_core::Error::RunNotFinished` naming `manifest.json`: its
    /// files may be half rewritten. Rerunning `lexforge semantic train` resumes it.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        lexforge_core::verify_completed_run(
            dir,
            "rerun `lexforge semantic train` with the same --out to resume it",
        )?;
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(SemanticError::Artifact {
                path: config_path,
                reason: "missing; is this a semantic-encoder directory (`lexforge semantic \
                         train`)?"
                    .into(),
            });
        }
        let config: SemanticConfig = read_json(&config_path)?;
        config.validate().map_err(|e| SemanticError::Artifact {
            path: config_path.clone(),
            reason: e.to_string(),
        })?;
        let mut model = SemanticModel::new(&config, device)?;
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(SemanticError::Artifact {
                path: weights,
                reason: "missing".into(),
            });
        }
        let applied = model
            .load_from(&mut SafetensorsStore::from_file(&weights))
            .map_err(|e| SemanticError::Artifact {
                path: weights.clone(),
                reason: format!("weights do not fit the config: {e}"),
            })?;
        if !applied.errors.is_empty() || !applied.missing.is_empty() {
            return Err(SemanticError::Artifact {
                path: weights,
                reason: format!(
                    "weights do not fit the config: {} missing, {} errors",
                    applied.missing.len(),
                    applied.errors.len()
                ),
            });
        }
        // burn's store keeps the file's f32; compute in the device's precision.
        let model = lexforge_train::cast_params(model, device.settings().float_dtype, true);
        let ids: BTreeMap<String, Vec<u32>> = read_json(&dir.join(IDS_FILE))?;
        let sizes = model.quantizer.codebook_sizes();
        for (name, id) in &ids {
            if id.len() != sizes.len() || check_codes(id, &sizes).is_err() {
                return Err(SemanticError::Artifact {
                    path: dir.join(IDS_FILE),
                    reason: format!("ID {id:?} of {name:?} does not fit the codebooks {sizes:?}"),
                });
            }
        }
        let corpora = CorpusSet::load(&dir.join(CORPORA_FILE))?;
        let mut encoder = SemanticEncoder {
            model,
            ids,
            corpora,
            embedder: None,
            device: device.clone(),
            dir: dir.to_path_buf(),
        };
        if let Some(path) = encoder.model.config().embedding_model_path.clone()
            && path.join(lexforge_nn::hf::CONFIG_FILE).is_file()
        {
            let e = BertSentenceEncoder::load(&path, device, &EncoderOptions::default())?;
            encoder = encoder.with_embedder(Box::new(e))?;
        }
        Ok(encoder)
    }

    /// Uses `embedder` for words and text.
    ///
    /// # Errors
    /// [`SemanticError::EmbeddingMismatch`] when its model id or dimension differs from the
    /// one the encoder was trained on.
    pub fn with_embedder(mut self, embedder: Box<dyn SentenceEncoder>) -> Result<Self> {
        let c = self.model.config();
        if embedder.model_id() != c.embedding_model || embedder.dim() != c.input_dim {
            return Err(SemanticError::EmbeddingMismatch {
                expected: c.embedding_model.clone(),
                expected_dim: c.input_dim,
                found: embedder.model_id().to_owned(),
                found_dim: embedder.dim(),
            });
        }
        self.embedder = Some(embedder);
        Ok(self)
    }

    /// The config.
    pub fn config(&self) -> &SemanticConfig {
        self.model.config()
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Corpus id → ID of the corpora it was trained on.
    pub fn ids(&self) -> &BTreeMap<String, Vec<u32>> {
        &self.ids
    }

    /// The corpora it was trained on.
    pub fn corpora(&self) -> &CorpusSet {
        &self.corpora
    }

    /// Codebook size of each component.
    pub fn codebook_sizes(&self) -> Vec<usize> {
        self.model.quantizer.codebook_sizes()
    }

    /// The model.
    pub fn model(&self) -> &SemanticModel {
        &self.model
    }

    fn embedder(&self) -> Result<&dyn SentenceEncoder> {
        self.embedder.as_deref().ok_or_else(|| {
            SemanticError::input(format!(
                "no embedding model attached: the encoder was trained on {:?}; load it and pass \
                 it with with_embedder",
                self.config().embedding_model
            ))
        })
    }

    /// The corpus vector of `words`: the L2-normalized mean of their embeddings (words are
    /// cleaned as corpora are; duplicates count once).
    ///
    /// # Errors
    /// [`SemanticError::InvalidInput`] when no embedding model is attached or no usable word
    /// is left.
    pub fn embed_words(&self, words: &[&str]) -> Result<Vec<f32>> {
        let embedder = self.embedder()?;
        let mut seen = std::collections::BTreeSet::new();
        let cleaned: Vec<String> = words
            .iter()
            .filter_map(|w| clean_word(w))
            .filter(|w| seen.insert(w.clone()))
            .collect();
        if cleaned.is_empty() {
            return Err(SemanticError::input(
                "no usable word (3 to 24 ASCII letters, not a stop word) in the input",
            ));
        }
        let refs: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        let emb = embedder.encode(&refs, 128)?;
        Ok(mean_vector(emb.as_slice(), emb.dim()))
    }

    /// The embedding of each of `words` as given (no cleaning), L2-normalized: `[words.len() *
    /// input_dim]`, row-major.
    ///
    /// # Errors
    /// [`SemanticError::InvalidInput`] when no embedding model is attached; embedding errors.
    pub fn embed_each(&self, words: &[&str]) -> Result<Vec<f32>> {
        let embedder = self.embedder()?;
        let d = embedder.dim();
        let mut out = embedder.encode(words, 128)?.as_slice().to_vec();
        for row in out.chunks_mut(d) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|x| *x /= norm);
        }
        Ok(out)
    }

    /// The ID of a corpus vector `[input_dim]`.
    ///
    /// # Errors
    /// [`SemanticError::InvalidInput`] for a wrong width or non-finite values.
    pub fn encode_vector(&self, vector: &[f32]) -> Result<Vec<u32>> {
        let d = self.config().input_dim;
        if vector.len() != d {
            return Err(SemanticError::input(format!(
                "a vector of {} values; the encoder takes {d} ({})",
                vector.len(),
                self.config().embedding_model
            )));
        }
        if vector.iter().any(|v| !v.is_finite()) {
            return Err(SemanticError::input(
                "the vector has NaN or infinite values",
            ));
        }
        self.model
            .codes(matrix(vector.to_vec(), 1, d, &self.device))
    }

    /// The ID of a collection of words.
    ///
    /// # Errors
    /// As [`SemanticEncoder::embed_words`].
    pub fn encode_words(&self, words: &[&str]) -> Result<Vec<u32>> {
        self.encode_vector(&self.embed_words(words)?)
    }

    /// The ID of a text: its words (split on anything but letters and apostrophes).
    ///
    /// # Errors
    /// As [`SemanticEncoder::embed_words`].
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        let words: Vec<&str> = text
            .split(|c: char| !(c.is_alphabetic() || c == '\''))
            .filter(|w| !w.is_empty())
            .collect();
        self.encode_words(&words)
    }

    /// The embedding-space vector of `id` (codebook lookup, then the decoder), L2-normalized.
    ///
    /// # Errors
    /// [`SemanticError::IdLength`] / [`SemanticError::IdOutOfRange`].
    pub fn decode(&self, id: &[u32]) -> Result<Vec<f32>> {
        self.check_id(id)?;
        host(self.model.decode_codes(id, &self.device)?)
    }

    /// Checks that `id` has one code per component, each inside its codebook.
    ///
    /// # Errors
    /// [`SemanticError::IdLength`] / [`SemanticError::IdOutOfRange`].
    pub fn check_id(&self, id: &[u32]) -> Result<()> {
        let sizes = self.codebook_sizes();
        if id.len() != sizes.len() {
            return Err(SemanticError::IdLength {
                expected: sizes.len(),
                found: id.len(),
            });
        }
        check_codes(id, &sizes)
    }

    /// Corpora [`SemanticEncoder::similar`] returns unless told otherwise.
    pub const SIMILAR_K: usize = 5;

    /// The `k` known corpora closest to `id`: cosine between decoded vectors, ties broken by
    /// shared leading components, then corpus id.
    ///
    /// # Errors
    /// As [`SemanticEncoder::decode`].
    pub fn similar(&self, id: &[u32], k: usize) -> Result<Vec<SimilarCorpus>> {
        let query = self.decode(id)?;
        self.rank(&query, Some(id), k)
    }

    /// The `k` known corpora closest to a collection of words (their corpus vector against
    /// the decoded vectors of the known IDs).
    ///
    /// # Errors
    /// As [`SemanticEncoder::embed_words`].
    pub fn similar_words(&self, words: &[&str], k: usize) -> Result<Vec<SimilarCorpus>> {
        let v = self.embed_words(words)?;
        let id = self.encode_vector(&v)?;
        self.rank(&v, Some(&id), k)
    }

    fn rank(&self, query: &[f32], id: Option<&[u32]>, k: usize) -> Result<Vec<SimilarCorpus>> {
        let names: Vec<&String> = self.ids.keys().collect();
        if names.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let codes: Vec<u32> = self.ids.values().flatten().copied().collect();
        let decoded = host(self.model.decode_codes(&codes, &self.device)?)?;
        let d = self.config().input_dim;
        let mut out: Vec<SimilarCorpus> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let known = &self.ids[*name];
                let score: f32 = decoded[i * d..(i + 1) * d]
                    .iter()
                    .zip(query)
                    .map(|(a, b)| a * b)
                    .sum();
                let shared_prefix = id.map_or(0, |q| {
                    q.iter().zip(known).take_while(|(a, b)| a == b).count()
                });
                SimilarCorpus {
                    corpus: (*name).clone(),
                    id: known.clone(),
                    score: f64::from(score),
                    shared_prefix,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.shared_prefix.cmp(&a.shared_prefix))
                .then(a.corpus.cmp(&b.corpus))
        });
        out.truncate(k);
        Ok(out)
    }

    /// Exact collisions and prefix occupancy of the known corpora's IDs.
    pub fn collisions(&self) -> CollisionReport {
        CollisionReport::of(&self.ids)
    }

    /// Predicted labels of `id` from the supervised heads (component name → label), empty
    /// without heads.
    ///
    /// # Errors
    /// As [`SemanticEncoder::decode`].
    pub fn labels(&self, id: &[u32]) -> Result<BTreeMap<String, String>> {
        self.check_id(id)?;
        let pred = self.model.predict_labels(id, &self.device)?;
        Ok(self
            .config()
            .heads
            .iter()
            .zip(pred)
            .map(|(h, p)| (COMPONENTS[h.component].to_owned(), h.classes[p[0]].clone()))
            .collect())
    }
}
