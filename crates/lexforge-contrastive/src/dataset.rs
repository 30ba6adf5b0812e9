//! Reading a prepared dataset directory (written by `lexforge_data::prepare`) and turning its
//! pairs into training batches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lexforge_core::verify_run_dir;
use lexforge_data::{DATASET_FORMAT, DATASET_KIND, Pair, Split, read_jsonl};
use lexforge_train::{BatchSource, BoxError};
use serde::Deserialize;

use crate::error::{MatcherError, Result};
use crate::model::TokenBatch;

/// A book of the dataset (`books.jsonl`).
#[derive(Debug, Clone, Deserialize)]
pub struct BookEntry {
    /// `author/title`.
    pub id: String,
    /// Its author, when known.
    pub author: Option<String>,
    /// Its split.
    pub split: Split,
    /// Its nearest other books of the same split by centroid cosine, best first.
    #[serde(default)]
    pub neighbours: Vec<Neighbour>,
}

/// One neighbour of a book.
#[derive(Debug, Clone, Deserialize)]
pub struct Neighbour {
    /// The neighbour's id.
    pub book: String,
    /// Centroid cosine.
    pub score: f32,
}

/// A chunk of the dataset (`chunks.jsonl`).
#[derive(Debug, Clone, Deserialize)]
pub struct ChunkEntry {
    /// Its book.
    pub book: String,
    /// Its index within the book.
    pub index: u32,
    /// Its book's split.
    pub split: Split,
    /// Its topic cluster.
    pub topic: u32,
    /// The text.
    pub text: String,
}

/// A prepared dataset, verified (manifest checksums, kind and format) and read.
#[derive(Debug, Clone)]
pub struct PreparedDataset {
    /// The directory.
    pub dir: PathBuf,
    /// Every book.
    pub books: Vec<BookEntry>,
    /// Every chunk.
    pub chunks: Vec<ChunkEntry>,
    /// Pairs per split.
    pub pairs: BTreeMap<Split, Vec<Pair>>,
    /// Model id of the encoder that mined its neighbours and topics.
    pub encoder_id: Option<String>,
}

impl PreparedDataset {
    /// Opens `dir`.
    ///
    /// # Errors
    /// [`MatcherError::Core`] for a damaged manifest or artifact (missing file, checksum, size,
    /// future manifest schema), [`MatcherError::Dataset`] for another kind of directory or a
    /// dataset format this build does not read, [`MatcherError::Data`] for a row that does not
    /// parse (naming file and line).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let manifest = verify_run_dir(dir)?;
        let refuse = |reason: String| MatcherError::Dataset {
            path: dir.to_path_buf(),
            reason,
        };
        if manifest.kind != DATASET_KIND {
            return Err(refuse(format!(
                "a `{}` directory, not a prepared dataset (`lexforge prepare` writes one)",
                manifest.kind
            )));
        }
        let format = manifest.config.get("format").and_then(|v| v.as_u64());
        if format != Some(u64::from(DATASET_FORMAT)) {
            return Err(refuse(format!(
                "dataset format {}, this build reads format {DATASET_FORMAT}; prepare it again \
                 with this version",
                format.map_or_else(|| "missing".to_owned(), |f| f.to_string())
            )));
        }
        let encoder_id = manifest
            .config
            .pointer("/encoder/model_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let mut pairs = BTreeMap::new();
        for split in Split::ALL {
            let path = dir.join(format!("{}.jsonl", split.name()));
            pairs.insert(split, read_jsonl::<Pair>(&path)?);
        }
        Ok(PreparedDataset {
            dir: dir.to_path_buf(),
            books: read_jsonl(&dir.join("books.jsonl"))?,
            chunks: read_jsonl(&dir.join("chunks.jsonl"))?,
            pairs,
            encoder_id,
        })
    }

    /// The pairs of `split`.
    pub fn pairs(&self, split: Split) -> &[Pair] {
        self.pairs.get(&split).map_or(&[], Vec::as_slice)
    }

    /// The chunks of `split`.
    pub fn chunks(&self, split: Split) -> impl Iterator<Item = &ChunkEntry> {
        self.chunks.iter().filter(move |c| c.split == split)
    }

    /// Number of topic clusters (one more than the largest topic id).
    pub fn topics(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.topic as usize + 1)
            .max()
            .unwrap_or(0)
    }
}

/// A batch of labelled pairs, all on the host (tensors are made by the model).
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// First texts then second texts: `2n` rows.
    pub texts: TokenBatch,
    /// Same book, per pair.
    pub labels: Vec<bool>,
    /// Book index of each of the `2n` rows.
    pub books: Vec<u32>,
    /// Topic of each of the `2n` rows.
    pub topics: Vec<u32>,
    /// The teacher's logit per pair, when distilling.
    pub teacher: Option<Vec<f32>>,
}

/// Turns a list of texts into token ids (special tokens added, truncated).
pub type Tokenize<'a> = dyn Fn(&[&str]) -> Result<Vec<Vec<u32>>> + 'a;

/// Tokenized pairs of one split, batched by index for the training engine.
#[derive(Debug, Clone)]
pub struct PairItems {
    ids: Vec<(Vec<u32>, Vec<u32>)>,
    style: Option<Vec<(Vec<f32>, Vec<f32>)>>,
    labels: Vec<bool>,
    books: Vec<(u32, u32)>,
    topics: Vec<(u32, u32)>,
    teacher: Option<Vec<f32>>,
}

impl PairItems {
    /// Items of `pairs`, tokenized by `tokenize` (a whole list of texts at a time), with style
    /// features when `style` is set; book ids are numbered through `book_index` (new books get
    /// the next number).
    ///
    /// # Errors
    /// Errors of `tokenize`; [`MatcherError::InvalidInput`] when there are no pairs.
    pub fn new(
        pairs: &[Pair],
        tokenize: &Tokenize<'_>,
        style: bool,
        book_index: &mut BTreeMap<String, u32>,
    ) -> Result<Self> {
        if pairs.is_empty() {
            return Err(MatcherError::InvalidInput {
                reason: "no pairs to train or evaluate on".into(),
            });
        }
        let first: Vec<&str> = pairs.iter().map(|p| p.text1.as_str()).collect();
        let second: Vec<&str> = pairs.iter().map(|p| p.text2.as_str()).collect();
        let a = tokenize(&first)?;
        let b = tokenize(&second)?;
        let style = style.then(|| {
            pairs
                .iter()
                .map(|p| {
                    (
                        crate::style::style_features(&p.text1).to_vec(),
                        crate::style::style_features(&p.text2).to_vec(),
                    )
                })
                .collect()
        });
        let mut number = |book: &str| {
            let next = book_index.len() as u32;
            *book_index.entry(book.to_owned()).or_insert(next)
        };
        let books = pairs
            .iter()
            .map(|p| (number(&p.book1), number(&p.book2)))
            .collect();
        Ok(PairItems {
            ids: a.into_iter().zip(b).collect(),
            style,
            labels: pairs.iter().map(|p| p.label == 1).collect(),
            books,
            topics: pairs.iter().map(|p| (p.topic1, p.topic2)).collect(),
            teacher: None,
        })
    }

    /// Attaches the teacher's logit for every pair (distillation).
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] when the count differs from the number of pairs.
    pub fn with_teacher(mut self, logits: Vec<f32>) -> Result<Self> {
        if logits.len() != self.ids.len() {
            return Err(MatcherError::InvalidInput {
                reason: format!(
                    "{} teacher scores for {} pairs",
                    logits.len(),
                    self.ids.len()
                ),
            });
        }
        self.teacher = Some(logits);
        Ok(self)
    }

    /// Labels of all pairs.
    pub fn labels(&self) -> &[bool] {
        &self.labels
    }

    /// The batch of pairs `indices` (host data only).
    pub fn make_batch(&self, indices: &[usize]) -> PairBatch {
        let mut ids = Vec::with_capacity(2 * indices.len());
        let mut books = Vec::with_capacity(2 * indices.len());
        let mut topics = Vec::with_capacity(2 * indices.len());
        for side in 0..2 {
            for &i in indices {
                let (a, b) = &self.ids[i];
                ids.push(if side == 0 { a.clone() } else { b.clone() });
                books.push(if side == 0 {
                    self.books[i].0
                } else {
                    self.books[i].1
                });
                topics.push(if side == 0 {
                    self.topics[i].0
                } else {
                    self.topics[i].1
                });
            }
        }
        let style = self.style.as_ref().map(|s| {
            let mut out = Vec::new();
            for side in 0..2 {
                for &i in indices {
                    out.extend_from_slice(if side == 0 { &s[i].0 } else { &s[i].1 });
                }
            }
            out
        });
        PairBatch {
            texts: TokenBatch { ids, style },
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            books,
            topics,
            teacher: self
                .teacher
                .as_ref()
                .map(|t| indices.iter().map(|&i| t[i]).collect()),
        }
    }
}

impl BatchSource<PairBatch> for PairItems {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn batch(
        &self,
        indices: &[usize],
        _device: &Device,
    ) -> std::result::Result<PairBatch, BoxError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.ids.len()) {
            return Err(Box::new(MatcherError::InvalidInput {
                reason: format!("pair index {bad} out of {}", self.ids.len()),
            }));
        }
        Ok(self.make_batch(indices))
    }
}
