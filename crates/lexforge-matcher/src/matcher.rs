//! A trained matcher on one device: loading and saving its directory (the layout is in
//! `artifacts.rs`), embeddings, pair scores and style similarity. Library search is in
//! `search.rs`; calibration and evaluation on a dataset split in `evaluate.rs`.
//!
//! Every file is written atomically; [`Matcher::load`] reads the calibrations when present.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use lexforge_nn::bert::BertConfig;
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder};
use lexforge_nn::hf::{self, HfReader, HfWriter, WeightLayout};
use lexforge_nn::pooling::Pooling;
use serde::{Deserialize, Serialize};

use crate::artifacts::{
    CALIBRATION_FILE, ENCODER_DIR, HEAD_DIR, MATCHER_FORMAT, STYLE_CALIBRATION_FILE, TEACHER_DIR,
    save_encoder_dir, write_json,
};
use crate::calibration::{Calibration, StyleCalibration};
use crate::cross::Teacher;
use crate::error::{MatcherError, Result};
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
    /// How close the two passages are in style, in [0, 1]: the isotonic map of `cosine` when
    /// the matcher has a `style_calibration.json`, else `(cosine + 1) / 2`.
    pub style_similarity: f64,
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
    /// Which weights embed: the encoder's content id plus a digest of the head's weight file,
    /// or, for a matcher not (yet) saved, an id of this instance alone.
    model_id: String,
}

/// An id for a matcher whose weights exist only in memory: unique in the process, so its
/// libraries match it and nothing else.
fn unsaved_id(encoder: &BertSentenceEncoder) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}+unsaved-{}-{n}", encoder.model_id(), std::process::id())
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

/// The logistic function.
pub(crate) fn sigmoid(z: f64) -> f64 {
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
    /// Texts per forward pass unless told otherwise (scoring, evaluation, calibration,
    /// libraries): the default of the CLI and of Python.
    pub const BATCH_SIZE: usize = lexforge_nn::encoder::BATCH_SIZE;
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
            model_id: unsaved_id(&tokenizer),
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
        self.model_id = unsaved_id(&self.tokenizer);
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
        let head = read_head_file(&head_dir.join(hf::CONFIG_FILE))?;
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
        let head_weights = head_dir.join(hf::WEIGHTS_FILE);
        read_head_weights(&mut model, &head.head, &head_weights, device)?;
        let head_digest = if head_weights.is_file() {
            lexforge_core::sha256_file(&head_weights)?.0
        } else {
            "none".to_owned()
        };
        let model_id = format!(
            "{}+head@{}",
            tokenizer.model_id(),
            &head_digest[..16.min(head_digest.len())]
        );
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
            model_id,
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

    /// What identifies the weights that embed: the encoder's content id (a digest of its
    /// whole weight file) and a digest of the head's weights. A [`crate::Library`] records it,
    /// and searching a library built by another model is refused.
    pub fn model_id(&self) -> &str {
        &self.model_id
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

    /// The directory the matcher was loaded from, if any.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Replaces the calibrations (after fitting them).
    pub(crate) fn set_calibrations(&mut self, calibration: Calibration, style: StyleCalibration) {
        self.calibration = Some(calibration);
        self.style = Some(style);
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
        let style_similarity = match &self.style {
            Some(s) => s.score(cosine),
            None => ((cosine + 1.0) / 2.0).clamp(0.0, 1.0),
        };
        PairScore {
            probability,
            same_book,
            cosine,
            logit,
            style_similarity,
        }
    }

    /// Whether `text1` and `text2` come from the same book.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for an empty text.
    pub fn score(&self, text1: &str, text2: &str) -> Result<PairScore> {
        Ok(self.score_many(&[(text1, text2)], Self::BATCH_SIZE)?[0])
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
        Ok(self.score(text1, text2)?.style_similarity)
    }
}

/// Scales `v` to unit L2 norm (a zero vector stays zero).
pub(crate) fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= n;
    }
}

/// Reads and checks `head/config.json` at `path`.
///
/// # Errors
/// [`MatcherError::Artifact`] for a missing file, a foreign layout version or a bad field.
fn read_head_file(path: &Path) -> Result<HeadFile> {
    if !path.is_file() {
        return Err(MatcherError::Artifact {
            path: path.to_path_buf(),
            reason: "missing; is this a matcher directory (`lexforge matcher train`)?".into(),
        });
    }
    let value: serde_json::Value = hf::read_json(path, "read matcher head config")?;
    let format = value.get("format").and_then(serde_json::Value::as_u64);
    if format != Some(u64::from(MATCHER_FORMAT)) {
        return Err(MatcherError::Artifact {
            path: path.to_path_buf(),
            reason: format!(
                "matcher format {format:?}, this build reads {MATCHER_FORMAT}; retrain or \
                 upgrade lexforge"
            ),
        });
    }
    serde_json::from_value(value).map_err(|e| MatcherError::Artifact {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads the head's weights (head, pair head, topic head, score affine, style channel) from
/// `head/model.safetensors` at `weights_path` into `model`, whose head is configured by `head`.
///
/// # Errors
/// I/O errors naming the file; [`MatcherError::Artifact`] for a missing or misshapen tensor.
fn read_head_weights(
    model: &mut BiEncoder,
    head: &HeadConfig,
    weights_path: &Path,
    device: &Device,
) -> Result<()> {
    let bytes = std::fs::read(weights_path)
        .map_err(|e| lexforge_core::Error::io("read matcher head", weights_path, e))?;
    let st = hf::parse(weights_path, &bytes)?;
    let r = HfReader::new(weights_path, &st, "", device);
    let hidden = model.bert.hidden_size();
    let dim = model.dim();
    let input = hidden
        + if head.style_features {
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
    if let (Some(lin), Some(k)) = (model.topic_head.as_mut(), head.topics) {
        r.linear(lin, "topic_head", WeightLayout::InOut, dim, k)?;
    }
    model.score_affine = Param::from_tensor(r.get("score_affine", [2])?);
    if let (Some(channel), Some(c)) = (model.style_channel.as_mut(), &head.style_channel) {
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
                path: weights_path.to_path_buf(),
                reason: format!("style_channel.idf: {e:?}"),
            })?;
        channel.set_idf(idf).map_err(|e| MatcherError::Artifact {
            path: weights_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}
