//! A trained matcher on disk and in use: scores, style similarity, search, calibration and
//! evaluation.
//!
//! # Directory layout
//! ```text
//! matcher/
//!   encoder/                  the fine-tuned body as an HF / sentence-transformers directory
//!   head/config.json          HeadFile: head configuration, pooling, max_seq_length
//!   head/model.safetensors    head, pair head, topic head and score affine
//!   calibration.json          Platt temperature + bias, decision threshold (optional)
//!   style_calibration.json    isotonic cosine → style map (optional)
//!   eval/metrics.json         evaluation report (optional)
//! ```
//! Every file is written atomically; [`Matcher::load`] reads the calibrations when present.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use lexforge_data::Split;
use lexforge_nn::bert::{BertConfig, save_hf_dir};
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder, TOKENIZER_FILE};
use lexforge_nn::hf::{self, HfReader, HfWriter, WeightLayout};
use lexforge_nn::pooling::Pooling;
use serde::{Deserialize, Serialize};

use crate::calibration::{Calibration, StyleCalibration, ThresholdMetric};
use crate::cross::Teacher;
use crate::dataset::PreparedDataset;
use crate::error::{MatcherError, Result};
use crate::metrics::{
    BinaryMetrics, RetrievalMetrics, binary_metrics, expected_calibration_error, retrieval_metrics,
    roc_auc,
};
use crate::model::{BiEncoder, HeadConfig, TokenBatch};

/// `head/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadFile {
    /// Layout version of the matcher directory.
    pub format: u32,
    /// The head.
    pub head: HeadConfig,
    /// Pooling of the body (`mean`, `cls`, `max`, `mean_sqrt_len`).
    pub pooling: String,
    /// Longest token sequence per text (special tokens included); longer texts are truncated.
    pub max_seq_length: usize,
    /// Model id of the base encoder the matcher was trained from.
    pub base_model_id: String,
}

/// Layout version written by this build.
pub const MATCHER_FORMAT: u32 = 1;
const HEAD_DIR: &str = "head";
const ENCODER_DIR: &str = "encoder";
/// Where a matcher keeps its cross-encoder teacher.
pub const TEACHER_DIR: &str = "teacher";
/// Calibration file name.
pub const CALIBRATION_FILE: &str = "calibration.json";
/// Style calibration file name.
pub const STYLE_CALIBRATION_FILE: &str = "style_calibration.json";
/// Files of a sentence-transformers directory copied next to the fine-tuned weights.
const COPIED: [&str; 7] = [
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// What [`Matcher::score`] says about a pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairScore {
    /// Probability that both passages come from the same book (calibrated when the matcher
    /// has a `calibration.json`, else `sigmoid(logit)`).
    pub probability: f64,
    /// `probability >= threshold` (0.5 without calibration).
    pub same_book: bool,
    /// Cosine of the two embeddings.
    pub cosine: f64,
    /// The raw pair score before calibration.
    pub logit: f64,
}

/// One result of [`Matcher::search`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Book id.
    pub book: String,
    /// Cosine between the passage and the book's centroid.
    pub cosine: f64,
    /// The cross-encoder's best same-book logit between the passage and the book's closest
    /// passages, when the search reranked.
    pub rerank: Option<f64>,
}

/// How [`Matcher::search_with`] searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchOptions {
    /// Books to return.
    pub k: usize,
    /// Books kept by the bi-encoder stage for reranking (at least `k`).
    pub prefilter: usize,
    /// Rerank with the cross-encoder: `None` = when the matcher has a teacher.
    pub rerank: Option<bool>,
    /// Passages per candidate book scored by the cross-encoder (those closest to the query).
    pub passages_per_book: usize,
}

impl SearchOptions {
    /// The top `k`, reranking the top 20 with 3 passages each when a teacher is loaded.
    pub fn top(k: usize) -> Self {
        SearchOptions {
            k,
            prefilter: 20,
            rerank: None,
            passages_per_book: 3,
        }
    }
}

/// Book centroids to search: L2-normalized means of each book's passage embeddings.
#[derive(Debug, Clone)]
pub struct Library {
    books: Vec<String>,
    centroids: Vec<f32>,
    dim: usize,
    /// Each book's passages and their embeddings (rows × dim), for reranking.
    passages: Vec<(Vec<String>, Vec<f32>)>,
}

impl Library {
    /// Book ids, in row order.
    pub fn books(&self) -> &[String] {
        &self.books
    }

    /// Number of books.
    pub fn len(&self) -> usize {
        self.books.len()
    }

    /// Whether there are no books.
    pub fn is_empty(&self) -> bool {
        self.books.is_empty()
    }
}

/// Evaluation of a matcher on one split (`eval/metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The split.
    pub split: Split,
    /// Pairs scored.
    pub pairs: usize,
    /// Positive pairs among them.
    pub positives: usize,
    /// ROC-AUC of the raw pair score.
    pub roc_auc: Option<f64>,
    /// ROC-AUC of the plain cosine.
    pub roc_auc_cosine: Option<f64>,
    /// Accuracy, precision, recall, F1 at the calibrated threshold (0.5 on `sigmoid(logit)`
    /// without calibration).
    pub classification: BinaryMetrics,
    /// Expected calibration error (15 bins) of `sigmoid(logit)`.
    pub ece_before: f64,
    /// Expected calibration error of the calibrated probability (`None` without calibration).
    pub ece_after: Option<f64>,
    /// Passage → book retrieval over the split's books (leave-one-out centroids).
    pub retrieval: Option<RetrievalMetrics>,
}

/// A bi-encoder matcher ready for inference on one device.
pub struct Matcher {
    tokenizer: BertSentenceEncoder,
    model: BiEncoder,
    bert_config: BertConfig,
    head: HeadFile,
    calibration: Option<Calibration>,
    style: Option<StyleCalibration>,
    teacher: Option<Teacher>,
    device: Device,
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("dir", &self.dir)
            .field("dim", &self.model.dim())
            .field("head", &self.head)
            .field("calibrated", &self.calibration.is_some())
            .field("style_calibrated", &self.style.is_some())
            .field("teacher", &self.teacher)
            .field("device", &self.device)
            .finish()
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn host(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|e| MatcherError::InvalidInput {
            reason: format!("cannot read a tensor back: {e:?}"),
        })
}

impl Matcher {
    /// A matcher from a base encoder directory with a fresh `head` and no calibration: what
    /// training starts from, and the baseline it is compared with.
    ///
    /// # Errors
    /// Errors of [`BertSentenceEncoder::load`] and [`BiEncoder::new`].
    pub fn from_base(
        base: &Path,
        head: &HeadConfig,
        max_seq_length: Option<usize>,
        device: &Device,
    ) -> Result<Self> {
        let tokenizer = BertSentenceEncoder::load(
            base,
            device,
            &EncoderOptions {
                max_seq_length,
                ..EncoderOptions::default()
            },
        )?;
        let model = BiEncoder::new(tokenizer.model().clone(), tokenizer.pooling(), head, device)?;
        let head = HeadFile {
            format: MATCHER_FORMAT,
            head: head.clone(),
            pooling: tokenizer.pooling().as_str().to_owned(),
            max_seq_length: tokenizer.max_seq_length(),
            base_model_id: tokenizer.model_id().to_owned(),
        };
        Ok(Matcher {
            bert_config: tokenizer.config().clone(),
            tokenizer,
            model,
            head,
            calibration: None,
            style: None,
            teacher: None,
            device: device.clone(),
            dir: None,
        })
    }

    /// Replaces the bi-encoder (after training; same head configuration) and the
    /// configuration of its body.
    pub fn with_model(mut self, model: BiEncoder, bert_config: BertConfig) -> Self {
        self.model = model;
        self.bert_config = bert_config;
        self
    }

    /// Configuration of the body.
    pub fn bert_config(&self) -> &BertConfig {
        &self.bert_config
    }

    /// Loads a matcher directory written by [`Matcher::save`] onto `device`.
    ///
    /// # Errors
    /// [`MatcherError::Artifact`] for a missing head or a foreign layout version, errors of
    /// the encoder directory (naming the file), [`MatcherError::Calibration`] for a damaged
    /// calibration file.
    /// A directory whose training run has not finished (its manifest says `running`,
    /// `failed` or `cancelled`) is `lexforge_core::Error::RunNotFinished` naming `manifest.json`: its
    /// files may be half rewritten. Rerunning `lexforge matcher train` resumes it.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        lexforge_core::verify_completed_run(
            dir,
            "rerun `lexforge matcher train` with the same --out to resume it",
        )?;
        Self::load_unfinished(dir, device)
    }

    /// [`Matcher::load`] without the finished-run check: for the trainer, which loads what it
    /// has just written before it finishes the run.
    pub(crate) fn load_unfinished(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        if dir.join(lexforge_core::MANIFEST_FILE).is_file() {
            lexforge_core::verify_run_dir(dir)?;
        }
        let head_dir = dir.join(HEAD_DIR);
        let config_path = head_dir.join(hf::CONFIG_FILE);
        if !config_path.is_file() {
            return Err(MatcherError::Artifact {
                path: config_path,
                reason: "missing; is this a matcher directory (`lexforge matcher train`)?".into(),
            });
        }
        let value: serde_json::Value = hf::read_json(&config_path, "read matcher head config")?;
        let format = value.get("format").and_then(serde_json::Value::as_u64);
        if format != Some(u64::from(MATCHER_FORMAT)) {
            return Err(MatcherError::Artifact {
                path: config_path,
                reason: format!(
                    "matcher format {format:?}, this build reads {MATCHER_FORMAT}; retrain or \
                     upgrade lexforge"
                ),
            });
        }
        let head: HeadFile = serde_json::from_value(value).map_err(|e| MatcherError::Artifact {
            path: config_path.clone(),
            reason: e.to_string(),
        })?;
        let pooling: Pooling = head.pooling.parse()?;
        let tokenizer = BertSentenceEncoder::load(
            dir.join(ENCODER_DIR),
            device,
            &EncoderOptions {
                pooling: Some(pooling),
                max_seq_length: Some(head.max_seq_length),
                ..EncoderOptions::default()
            },
        )?;
        let mut model = BiEncoder::new(tokenizer.model().clone(), pooling, &head.head, device)?;
        let weights_path = head_dir.join(hf::WEIGHTS_FILE);
        let bytes = std::fs::read(&weights_path)
            .map_err(|e| lexforge_core::Error::io("read matcher head", &weights_path, e))?;
        let st = hf::parse(&weights_path, &bytes)?;
        let r = HfReader::new(&weights_path, &st, "", device);
        let hidden = model.bert.hidden_size();
        let dim = model.dim();
        let input = hidden
            + if head.head.style_features {
                crate::style::STYLE_DIM
            } else {
                0
            };
        let content = model.content_dim();
        if let Some(lin) = model.head.as_mut() {
            r.linear(lin, "head", WeightLayout::InOut, input, content)?;
        }
        if let Some(lin) = model.pair_head.as_mut() {
            r.linear(lin, "pair_head", WeightLayout::InOut, 2 * dim, 1)?;
        }
        if let (Some(lin), Some(k)) = (model.topic_head.as_mut(), head.head.topics) {
            r.linear(lin, "topic_head", WeightLayout::InOut, dim, k)?;
        }
        model.score_affine = Param::from_tensor(r.get("score_affine", [2])?);
        if let (Some(channel), Some(c)) = (model.style_channel.as_mut(), &head.head.style_channel) {
            channel.table = Param::from_tensor(r.get("style_channel.table", [c.buckets, c.dim])?);
            r.linear(
                &mut channel.style_head,
                "style_channel.style_head",
                WeightLayout::InOut,
                c.dim,
                c.dim,
            )?;
            channel.mix = Param::from_tensor(r.get("style_channel.mix", [2])?);
            let idf = r
                .get_data("style_channel.idf", [c.buckets])?
                .convert::<f32>()
                .try_into_vec_as::<f32>()
                .map_err(|e| MatcherError::Artifact {
                    path: weights_path.clone(),
                    reason: format!("style_channel.idf: {e:?}"),
                })?;
            channel.set_idf(idf).map_err(|e| MatcherError::Artifact {
                path: weights_path.clone(),
                reason: e.to_string(),
            })?;
        }
        let calibration = dir.join(CALIBRATION_FILE);
        let calibration = calibration
            .is_file()
            .then(|| Calibration::load(&calibration))
            .transpose()?;
        let style = dir.join(STYLE_CALIBRATION_FILE);
        let style = style
            .is_file()
            .then(|| StyleCalibration::load(&style))
            .transpose()?;
        let teacher_dir = dir.join(TEACHER_DIR);
        let teacher = teacher_dir
            .join("head")
            .join(hf::CONFIG_FILE)
            .is_file()
            .then(|| Teacher::load(&teacher_dir, device))
            .transpose()?;
        Ok(Matcher {
            bert_config: tokenizer.config().clone(),
            tokenizer,
            model,
            head,
            calibration,
            style,
            teacher,
            device: device.clone(),
            dir: Some(dir.to_path_buf()),
        })
    }

    /// Writes the encoder, the head and the calibrations (when fitted) into `dir`, each file
    /// atomically; `base` is the directory the tokenizer and sentence-transformers files are
    /// copied from.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_encoder_dir(
            &self.model.bert,
            &self.bert_config,
            self.tokenizer.dir(),
            &dir.join(ENCODER_DIR),
        )?;
        let mut w = HfWriter::new();
        if let Some(lin) = &self.model.head {
            w.linear("head", lin, WeightLayout::InOut)?;
        }
        if let Some(lin) = &self.model.pair_head {
            w.linear("pair_head", lin, WeightLayout::InOut)?;
        }
        if let Some(lin) = &self.model.topic_head {
            w.linear("topic_head", lin, WeightLayout::InOut)?;
        }
        w.put("score_affine", self.model.score_affine.val())?;
        if let Some(channel) = &self.model.style_channel {
            w.put("style_channel.table", channel.table.val())?;
            w.linear(
                "style_channel.style_head",
                &channel.style_head,
                WeightLayout::InOut,
            )?;
            w.put("style_channel.mix", channel.mix.val())?;
            let idf = channel.hasher().idf().to_vec();
            let n = idf.len();
            w.put(
                "style_channel.idf",
                Tensor::<1>::from_data(TensorData::new(idf, [n]), &self.device),
            )?;
        }
        w.write(&dir.join(HEAD_DIR), &self.head)?;
        if let Some(c) = &self.calibration {
            write_json(&dir.join(CALIBRATION_FILE), c)?;
        }
        if let Some(s) = &self.style {
            write_json(&dir.join(STYLE_CALIBRATION_FILE), s)?;
        }
        Ok(())
    }

    /// The bi-encoder.
    pub fn model(&self) -> &BiEncoder {
        &self.model
    }

    /// The bi-encoder, mutably (e.g. to set the style channel's IDF before training).
    pub fn model_mut(&mut self) -> &mut BiEncoder {
        &mut self.model
    }

    /// Every input the model reads for `texts`: token ids, style features and n-grams as the
    /// head needs them, and, when `pooled`, the body's pooled output (computed here,
    /// `batch_size` texts at a time, longest first), so that a frozen body runs once per text.
    ///
    /// # Errors
    /// As [`Matcher::embed`].
    pub fn featurize(&self, texts: &[&str], pooled: bool, batch_size: usize) -> Result<TokenBatch> {
        if batch_size == 0 {
            return Err(MatcherError::InvalidParameter {
                parameter: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        let ids = self.tokenize(texts)?;
        let mut batch = TokenBatch::new(ids, self.head.head.style_features.then_some(texts))
            .with_ngrams(self.model.ngram_features(texts));
        if pooled && !batch.is_empty() {
            let hidden = self.model.bert.hidden_size();
            let mut order: Vec<usize> = (0..batch.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(batch.ids[i].len()));
            let mut out = vec![0.0f32; batch.len() * hidden];
            for chunk in order.chunks(batch_size) {
                let part = TokenBatch {
                    ids: chunk.iter().map(|&i| batch.ids[i].clone()).collect(),
                    ..TokenBatch::default()
                };
                let rows = host(self.model.pooled(&part)?)?;
                for (k, &i) in chunk.iter().enumerate() {
                    out[i * hidden..(i + 1) * hidden]
                        .copy_from_slice(&rows[k * hidden..(k + 1) * hidden]);
                }
            }
            batch.pooled = Some(out);
        }
        Ok(batch)
    }

    /// The head file (configuration of the matcher).
    pub fn head(&self) -> &HeadFile {
        &self.head
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.model.dim()
    }

    /// The cross-encoder teacher, if the matcher has one.
    pub fn teacher(&self) -> Option<&Teacher> {
        self.teacher.as_ref()
    }

    /// The fitted calibration, if any.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// The fitted style calibration, if any.
    pub fn style_calibration(&self) -> Option<&StyleCalibration> {
        self.style.as_ref()
    }

    /// Token ids of `texts`, truncated to `max_seq_length` (see [`Matcher::truncated`]).
    ///
    /// # Errors
    /// [`MatcherError::Nn`] for an empty text.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        Ok(self.tokenizer.tokenize(texts)?)
    }

    /// Whether `text` is longer than the model reads (it is then truncated to its first
    /// `max_seq_length` tokens).
    ///
    /// # Errors
    /// As [`Matcher::tokenize`].
    pub fn truncated(&self, text: &str) -> Result<bool> {
        let ids = self.tokenize(&[text])?;
        Ok(ids[0].len() >= self.head.max_seq_length)
    }

    /// Unit embeddings of `texts`, `batch_size` at a time, sorted by length to cut padding;
    /// rows in input order.
    ///
    /// # Shapes
    /// → `texts.len() × dim` row-major.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for an empty text or `batch_size == 0`.
    pub fn embed(&self, texts: &[&str], batch_size: usize) -> Result<Vec<f32>> {
        if batch_size == 0 {
            return Err(MatcherError::InvalidParameter {
                parameter: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(MatcherError::InvalidInput {
                reason: format!("text {i} is empty; an empty passage cannot be matched"),
            });
        }
        let ids = self.tokenize(texts)?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let dim = self.dim();
        let mut out = vec![0.0f32; texts.len() * dim];
        for chunk in order.chunks(batch_size) {
            let batch_texts: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let batch = TokenBatch::new(
                chunk.iter().map(|&i| ids[i].clone()).collect(),
                self.head.head.style_features.then_some(&batch_texts[..]),
            )
            .with_ngrams(self.model.ngram_features(&batch_texts));
            let rows = host(self.model.embed(&batch)?)?;
            for (k, &i) in chunk.iter().enumerate() {
                out[i * dim..(i + 1) * dim].copy_from_slice(&rows[k * dim..(k + 1) * dim]);
            }
        }
        Ok(out)
    }

    /// Raw pair scores and cosines of pairs given as embeddings.
    fn logits_of(&self, u: &[f32], v: &[f32]) -> Result<(Vec<f64>, Vec<f64>)> {
        let dim = self.dim();
        let n = u.len() / dim;
        if n == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let tu = Tensor::<2>::from_data(TensorData::new(u.to_vec(), [n, dim]), &self.device);
        let tv = Tensor::<2>::from_data(TensorData::new(v.to_vec(), [n, dim]), &self.device);
        let logits = host(self.model.pair_logits(tu, tv))?;
        let cos = u
            .chunks_exact(dim)
            .zip(v.chunks_exact(dim))
            .map(|(a, b)| f64::from(a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()))
            .collect();
        Ok((logits.into_iter().map(f64::from).collect(), cos))
    }

    /// Raw scores and cosines of many pairs.
    ///
    /// # Errors
    /// As [`Matcher::embed`].
    pub fn raw_scores(
        &self,
        pairs: &[(&str, &str)],
        batch_size: usize,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let first: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        let second: Vec<&str> = pairs.iter().map(|p| p.1).collect();
        let u = self.embed(&first, batch_size)?;
        let v = self.embed(&second, batch_size)?;
        self.logits_of(&u, &v)
    }

    fn pair_score(&self, logit: f64, cosine: f64) -> PairScore {
        let (probability, same_book) = match &self.calibration {
            Some(c) => (c.probability(logit), c.same_book(logit)),
            None => {
                let p = sigmoid(logit);
                (p, p >= 0.5)
            }
        };
        PairScore {
            probability,
            same_book,
            cosine,
            logit,
        }
    }

    /// Whether `text1` and `text2` come from the same book.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for an empty text.
    pub fn score(&self, text1: &str, text2: &str) -> Result<PairScore> {
        Ok(self.score_many(&[(text1, text2)], 32)?[0])
    }

    /// [`Matcher::score`] for many pairs, batched.
    ///
    /// # Errors
    /// As [`Matcher::score`].
    pub fn score_many(&self, pairs: &[(&str, &str)], batch_size: usize) -> Result<Vec<PairScore>> {
        let (logits, cos) = self.raw_scores(pairs, batch_size)?;
        Ok(logits
            .iter()
            .zip(&cos)
            .map(|(&l, &c)| self.pair_score(l, c))
            .collect())
    }

    /// How close `text1` and `text2` are in style, in [0, 1]: the isotonic map of their
    /// cosine when the matcher has a `style_calibration.json`, else `(cosine + 1) / 2`.
    ///
    /// # Errors
    /// As [`Matcher::score`].
    pub fn style_similarity(&self, text1: &str, text2: &str) -> Result<f64> {
        let cosine = self.score(text1, text2)?.cosine;
        Ok(match &self.style {
            Some(s) => s.score(cosine),
            None => ((cosine + 1.0) / 2.0).clamp(0.0, 1.0),
        })
    }

    /// A library of books from their passages: each book's centroid is the L2-normalized
    /// mean of its passages' embeddings.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for a book without passages or an empty passage.
    pub fn library(&self, books: &[(String, Vec<String>)], batch_size: usize) -> Result<Library> {
        let dim = self.dim();
        let mut centroids = Vec::with_capacity(books.len() * dim);
        let mut stored = Vec::with_capacity(books.len());
        for (id, passages) in books {
            if passages.is_empty() {
                return Err(MatcherError::InvalidInput {
                    reason: format!("book {id} has no passages"),
                });
            }
            let texts: Vec<&str> = passages.iter().map(String::as_str).collect();
            let e = self.embed(&texts, batch_size)?;
            let mut c = vec![0.0f32; dim];
            for row in e.chunks_exact(dim) {
                for (a, b) in c.iter_mut().zip(row) {
                    *a += b;
                }
            }
            normalize(&mut c);
            centroids.extend(c);
            stored.push((passages.clone(), e));
        }
        Ok(Library {
            books: books.iter().map(|b| b.0.clone()).collect(),
            centroids,
            dim,
            passages: stored,
        })
    }

    /// The `k` books of `library` whose centroids are closest to `passage`, best first,
    /// reranked by the cross-encoder when the matcher has one ([`SearchOptions::top`]).
    ///
    /// # Errors
    /// As [`Matcher::search_with`].
    pub fn search(&self, passage: &str, library: &Library, k: usize) -> Result<Vec<SearchHit>> {
        self.search_with(passage, library, &SearchOptions::top(k))
    }

    /// Two-stage search: the bi-encoder ranks every book by centroid cosine and keeps
    /// `prefilter`; the cross-encoder (when reranking) scores the passage against each
    /// candidate's `passages_per_book` closest passages and ranks by the best logit.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for an empty passage, a library built by a matcher of
    /// another dimension, or `rerank: Some(true)` without a teacher.
    pub fn search_with(
        &self,
        passage: &str,
        library: &Library,
        options: &SearchOptions,
    ) -> Result<Vec<SearchHit>> {
        if library.dim != self.dim() {
            return Err(MatcherError::InvalidInput {
                reason: format!(
                    "library of dimension {}, matcher of {}",
                    library.dim,
                    self.dim()
                ),
            });
        }
        let rerank = match (options.rerank, &self.teacher) {
            (Some(true), None) => {
                return Err(MatcherError::InvalidInput {
                    reason: "reranking needs a cross-encoder teacher (train with distill > 0, \
                             or put one in the matcher's teacher/ directory)"
                        .into(),
                });
            }
            (Some(false), _) | (None, None) => None,
            (_, Some(t)) => Some(t),
        };
        let q = self.embed(&[passage], 1)?;
        let dot = |row: &[f32]| row.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>();
        let mut scored: Vec<(usize, f32)> = library
            .centroids
            .chunks_exact(library.dim)
            .map(dot)
            .enumerate()
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let Some(teacher) = rerank else {
            return Ok(scored
                .into_iter()
                .take(options.k)
                .map(|(i, s)| SearchHit {
                    book: library.books[i].clone(),
                    cosine: f64::from(s),
                    rerank: None,
                })
                .collect());
        };
        let keep = options.prefilter.max(options.k);
        let mut hits = Vec::with_capacity(keep);
        for (i, s) in scored.into_iter().take(keep) {
            let (texts, rows) = &library.passages[i];
            let mut near: Vec<(usize, f32)> = rows
                .chunks_exact(library.dim)
                .map(dot)
                .enumerate()
                .collect();
            near.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let pairs: Vec<(&str, &str)> = near
                .iter()
                .take(options.passages_per_book.max(1))
                .map(|&(j, _)| (passage, texts[j].as_str()))
                .collect();
            let best = teacher
                .logits(&pairs, 16)?
                .into_iter()
                .fold(f64::NEG_INFINITY, f64::max);
            hits.push(SearchHit {
                book: library.books[i].clone(),
                cosine: f64::from(s),
                rerank: Some(best),
            });
        }
        hits.sort_by(|a, b| {
            b.rerank
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&a.rerank.unwrap_or(f64::NEG_INFINITY))
                .then(b.cosine.total_cmp(&a.cosine))
        });
        hits.truncate(options.k);
        Ok(hits)
    }

    /// How well a linear probe recovers the topic cluster of a chunk from its embedding:
    /// fitted on (at most `max_rows`, evenly spaced) chunks of `fit_split`, scored on the chunks
    /// of `score_split`. Lower is better when topic is a shortcut to remove.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] when a split has no chunks.
    pub fn topic_probe(
        &self,
        dataset: &PreparedDataset,
        fit_split: Split,
        score_split: Split,
        max_rows: usize,
        batch_size: usize,
    ) -> Result<crate::probe::ProbeReport> {
        let pick = |split: Split| -> (Vec<&str>, Vec<u32>) {
            let chunks: Vec<_> = dataset.chunks(split).collect();
            let step = chunks.len().div_ceil(max_rows.max(1)).max(1);
            chunks
                .iter()
                .step_by(step)
                .map(|c| (c.text.as_str(), c.topic))
                .unzip()
        };
        let (fit_texts, fit_topics) = pick(fit_split);
        let (score_texts, score_topics) = pick(score_split);
        if fit_texts.is_empty() || score_texts.is_empty() {
            return Err(MatcherError::InvalidInput {
                reason: "the topic probe needs chunks in both splits".into(),
            });
        }
        let fit = self.embed(&fit_texts, batch_size)?;
        let score = self.embed(&score_texts, batch_size)?;
        crate::probe::linear_probe(&fit, &fit_topics, &score, &score_topics, self.dim())
    }

    /// Fits the calibration (Platt temperature + bias on the raw pair score, threshold for
    /// `metric`) and the isotonic style map on `split` of `dataset`, keeps them in the
    /// matcher, and writes them into its directory when it has one.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] when the split has no pairs of one class or the scores
    /// rank the pairs backwards; I/O errors.
    pub fn calibrate(
        &mut self,
        dataset: &PreparedDataset,
        split: Split,
        metric: ThresholdMetric,
        batch_size: usize,
    ) -> Result<(Calibration, StyleCalibration)> {
        let pairs = dataset.pairs(split);
        let texts: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.text1.as_str(), p.text2.as_str()))
            .collect();
        let labels: Vec<bool> = pairs.iter().map(|p| p.label == 1).collect();
        let (logits, cos) = self.raw_scores(&texts, batch_size)?;
        let calibration = Calibration::fit(&logits, &labels, metric)?;
        let style = StyleCalibration::fit(&cos, &labels)?;
        self.calibration = Some(calibration.clone());
        self.style = Some(style.clone());
        if let Some(dir) = &self.dir {
            if dir.join(lexforge_core::MANIFEST_FILE).is_file() {
                // Verified before anything changes; the new files are recorded in it.
                let mut run = lexforge_core::RunDir::open(dir)?;
                run.write_artifact(CALIBRATION_FILE, &json_bytes(&calibration)?)?;
                run.write_artifact(STYLE_CALIBRATION_FILE, &json_bytes(&style)?)?;
                run.save_manifest()?;
            } else {
                write_json(&dir.join(CALIBRATION_FILE), &calibration)?;
                write_json(&dir.join(STYLE_CALIBRATION_FILE), &style)?;
            }
        }
        Ok((calibration, style))
    }

    /// Evaluates on `split` of `dataset`: pair classification, calibration error before and
    /// after calibration, and passage → book retrieval (each chunk of the split against the
    /// split's book centroids, its own chunk left out of its book's centroid).
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] when the split has no pairs.
    pub fn evaluate(
        &self,
        dataset: &PreparedDataset,
        split: Split,
        batch_size: usize,
    ) -> Result<EvalReport> {
        let pairs = dataset.pairs(split);
        if pairs.is_empty() {
            return Err(MatcherError::InvalidInput {
                reason: format!("the {} split has no pairs", split.name()),
            });
        }
        let texts: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.text1.as_str(), p.text2.as_str()))
            .collect();
        let labels: Vec<bool> = pairs.iter().map(|p| p.label == 1).collect();
        let (logits, cos) = self.raw_scores(&texts, batch_size)?;
        let raw_p: Vec<f64> = logits.iter().map(|&l| sigmoid(l)).collect();
        let (probs, threshold) = match &self.calibration {
            Some(c) => (
                logits.iter().map(|&l| c.probability(l)).collect::<Vec<_>>(),
                c.threshold,
            ),
            None => (raw_p.clone(), 0.5),
        };
        let retrieval = self.retrieval(dataset, split, batch_size)?;
        Ok(EvalReport {
            split,
            pairs: pairs.len(),
            positives: labels.iter().filter(|&&l| l).count(),
            roc_auc: roc_auc(&logits, &labels),
            roc_auc_cosine: roc_auc(&cos, &labels),
            classification: binary_metrics(&probs, &labels, threshold),
            ece_before: expected_calibration_error(&raw_p, &labels, 15),
            ece_after: self
                .calibration
                .as_ref()
                .map(|_| expected_calibration_error(&probs, &labels, 15)),
            retrieval,
        })
    }

    fn retrieval(
        &self,
        dataset: &PreparedDataset,
        split: Split,
        batch_size: usize,
    ) -> Result<Option<RetrievalMetrics>> {
        let chunks: Vec<_> = dataset.chunks(split).collect();
        let mut book_of: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &chunks {
            let next = book_of.len();
            book_of.entry(c.book.as_str()).or_insert(next);
        }
        if book_of.len() < 2 {
            return Ok(None);
        }
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        let e = self.embed(&texts, batch_size)?;
        let dim = self.dim();
        let nb = book_of.len();
        let mut sums = vec![0.0f32; nb * dim];
        let mut counts = vec![0usize; nb];
        for (c, row) in chunks.iter().zip(e.chunks_exact(dim)) {
            let b = book_of[c.book.as_str()];
            counts[b] += 1;
            for (s, x) in sums[b * dim..(b + 1) * dim].iter_mut().zip(row) {
                *s += x;
            }
        }
        let mut ranks = Vec::new();
        for (c, row) in chunks.iter().zip(e.chunks_exact(dim)) {
            let own = book_of[c.book.as_str()];
            if counts[own] < 2 {
                continue;
            }
            let score = |b: usize| -> f32 {
                let mut centroid: Vec<f32> = sums[b * dim..(b + 1) * dim].to_vec();
                if b == own {
                    for (s, x) in centroid.iter_mut().zip(row) {
                        *s -= x;
                    }
                }
                normalize(&mut centroid);
                centroid.iter().zip(row).map(|(a, b)| a * b).sum()
            };
            let mine = score(own);
            let better = (0..nb).filter(|&b| b != own && score(b) > mine).count();
            ranks.push(Some(better + 1));
        }
        Ok((!ranks.is_empty()).then(|| retrieval_metrics(&ranks)))
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= n;
    }
}

/// Writes `bert` as an HF / sentence-transformers directory `dir`: `config.json` +
/// `model.safetensors`, and the tokenizer and pooling files copied from `base`. Atomic per file.
///
/// # Errors
/// I/O errors naming the file.
pub(crate) fn save_encoder_dir(
    bert: &lexforge_nn::bert::BertModel,
    config: &BertConfig,
    base: &Path,
    dir: &Path,
) -> Result<()> {
    save_hf_dir(bert, config, dir)?;
    for name in COPIED {
        let from = base.join(name);
        if from.is_file() {
            let bytes =
                std::fs::read(&from).map_err(|e| lexforge_core::Error::io("read", &from, e))?;
            let to = dir.join(name);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| lexforge_core::Error::io("create directory", parent, e))?;
            }
            lexforge_core::atomic_write(&to, &bytes)?;
        }
    }
    Ok(())
}

fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(
        serde_json::to_vec_pretty(value).map_err(|source| lexforge_core::Error::Serialize {
            what: "matcher file",
            source,
        })?,
    )
}

/// Writes `value` as pretty JSON, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| lexforge_core::Error::io("create directory", parent, e))?;
    }
    Ok(lexforge_core::atomic_write(path, &json_bytes(value)?)?)
}
