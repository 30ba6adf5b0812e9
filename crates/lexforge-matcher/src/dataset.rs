//! Reading a prepared dataset directory (written by `lexforge_data::prepare`) and turning its
//! pairs into training batches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lexforge_core::verify_run_dir;
use lexforge_data::{DATASET_FORMAT, DATASET_KIND, Pair, Split, read_jsonl, read_pairs};
use lexforge_train::{BatchSource, BoxError};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

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
    /// The preparation parameters the manifest records (`config.prepare`).
    pub prepare: Option<serde_json::Value>,
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
            pairs.insert(split, read_pairs(dir, split)?);
        }
        Ok(PreparedDataset {
            dir: dir.to_path_buf(),
            books: read_jsonl(&dir.join("books.jsonl"))?,
            chunks: read_jsonl(&dir.join("chunks.jsonl"))?,
            pairs,
            encoder_id,
            prepare: manifest.config.get("prepare").cloned(),
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
    /// The batch's texts. Pair batches ([`PairItems`]) hold first texts then second texts
    /// (`2n` rows); view batches ([`ViewItems`]) hold several chunks of each of their books.
    pub texts: TokenBatch,
    /// The labelled pairs, as row indices into `texts`.
    pub pairs: Vec<(usize, usize)>,
    /// Same book, per pair.
    pub labels: Vec<bool>,
    /// Book index of each row.
    pub books: Vec<u32>,
    /// Topic of each row.
    pub topics: Vec<u32>,
    /// The teacher's logit per pair, when distilling.
    pub teacher: Option<Vec<f32>>,
}

/// Turns a list of texts into token ids (special tokens added, truncated).
pub type Tokenize<'a> = dyn Fn(&[&str]) -> Result<Vec<Vec<u32>>> + 'a;

/// Turns a list of texts into every input the model reads (token ids, and the style
/// features, n-grams and precomputed body output it needs).
pub type Featurize<'a> = dyn Fn(&[&str]) -> Result<TokenBatch> + 'a;

/// Featurizes `texts` `chunk` at a time (bounded memory for large splits).
fn featurize_all(texts: &[&str], featurize: &Featurize<'_>) -> Result<TokenBatch> {
    let mut out = TokenBatch::default();
    for (k, chunk) in texts.chunks(512).enumerate() {
        let b = featurize(chunk)?;
        if k == 0 {
            out = b;
        } else {
            out.append(b);
        }
    }
    Ok(out)
}

/// Numbers book ids through `book_index` (new books get the next number).
fn number(book_index: &mut BTreeMap<String, u32>, book: &str) -> u32 {
    let next = book_index.len() as u32;
    *book_index.entry(book.to_owned()).or_insert(next)
}

/// Featurized pairs of one split, batched by index for the training engine.
#[derive(Debug, Clone)]
pub struct PairItems {
    first: TokenBatch,
    second: TokenBatch,
    labels: Vec<bool>,
    books: Vec<(u32, u32)>,
    topics: Vec<(u32, u32)>,
    teacher: Option<Vec<f32>>,
}

impl PairItems {
    /// Items of `pairs`, featurized by `featurize` (a list of texts at a time); book ids are
    /// numbered through `book_index` (new books get the next number).
    ///
    /// # Errors
    /// Errors of `featurize`; [`MatcherError::InvalidInput`] when there are no pairs.
    pub fn new(
        pairs: &[Pair],
        featurize: &Featurize<'_>,
        book_index: &mut BTreeMap<String, u32>,
    ) -> Result<Self> {
        if pairs.is_empty() {
            return Err(MatcherError::InvalidInput {
                reason: "no pairs to train or evaluate on".into(),
            });
        }
        let first: Vec<&str> = pairs.iter().map(|p| p.text1.as_str()).collect();
        let second: Vec<&str> = pairs.iter().map(|p| p.text2.as_str()).collect();
        let first = featurize_all(&first, featurize)?;
        let second = featurize_all(&second, featurize)?;
        let books = pairs
            .iter()
            .map(|p| (number(book_index, &p.book1), number(book_index, &p.book2)))
            .collect();
        Ok(PairItems {
            first,
            second,
            labels: pairs.iter().map(|p| p.label == 1).collect(),
            books,
            topics: pairs.iter().map(|p| (p.topic1, p.topic2)).collect(),
            teacher: None,
        })
    }

    /// [`PairItems::new`] with token ids only (no style inputs, no precomputed body output).
    ///
    /// # Errors
    /// As [`PairItems::new`].
    pub fn tokenized(
        pairs: &[Pair],
        tokenize: &Tokenize<'_>,
        book_index: &mut BTreeMap<String, u32>,
    ) -> Result<Self> {
        Self::new(
            pairs,
            &|texts: &[&str]| Ok(TokenBatch::new(tokenize(texts)?, None)),
            book_index,
        )
    }

    /// Attaches the teacher's logit for every pair (distillation).
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] when the count differs from the number of pairs.
    pub fn with_teacher(mut self, logits: Vec<f32>) -> Result<Self> {
        if logits.len() != self.labels.len() {
            return Err(MatcherError::InvalidInput {
                reason: format!(
                    "{} teacher scores for {} pairs",
                    logits.len(),
                    self.labels.len()
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

    /// The batch of pairs `indices` (host data only): rows `0..n` are the first texts, rows
    /// `n..2n` the second ones.
    pub fn make_batch(&self, indices: &[usize]) -> PairBatch {
        let n = indices.len();
        let mut texts = self.first.select(indices);
        texts.append(self.second.select(indices));
        let mut books = Vec::with_capacity(2 * n);
        let mut topics = Vec::with_capacity(2 * n);
        for side in 0..2 {
            for &i in indices {
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
        PairBatch {
            texts,
            pairs: (0..n).map(|k| (k, n + k)).collect(),
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

/// How training draws from every chunk of the training books instead of the prepared pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewsConfig {
    /// Chunks ("views") of each book in a batch.
    pub views: usize,
    /// Put one of each book's nearest neighbour books (`books.jsonl` `neighbours`, the hard
    /// negatives of data preparation) in its batch, with as many views.
    pub neighbours: bool,
    /// The books directory the dataset was prepared from. When given, the training books are
    /// chunked again from it, with the dataset's own standardization and chunking parameters
    /// but up to `chunks_per_book` chunks each, so training sees more of each book than the
    /// pairs use (the dataset's chunks, pairs, validation and test stay as they are). `None`:
    /// the dataset's chunks (`lexforge matcher pipeline` fills it in with its books).
    pub books: Option<PathBuf>,
    /// Most chunks per training book when `books` is given (`None`: all of them).
    pub chunks_per_book: Option<usize>,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig {
            views: 4,
            neighbours: true,
            books: None,
            chunks_per_book: Some(200),
        }
    }
}

impl ViewsConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`MatcherError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.views < 2 {
            return Err(MatcherError::InvalidParameter {
                parameter: "views.views",
                reason: format!(
                    "{} must be at least 2 (a positive needs two views)",
                    self.views
                ),
            });
        }
        if self.chunks_per_book == Some(0) {
            return Err(MatcherError::InvalidParameter {
                parameter: "views.chunks_per_book",
                reason: "must be at least 1 when given".into(),
            });
        }
        Ok(())
    }
}

/// The chunks of the `split` books of `dataset`, chunked again from `books` (the directory it
/// was prepared from) with the dataset's standardization and chunking parameters and at most
/// `chunks_per_book` chunks per book. Every chunk the dataset has for those books is kept
/// (with its topic); new chunks take their book's most common topic.
///
/// # Errors
/// [`MatcherError::Dataset`] when the dataset records no preparation parameters or none of
/// its `split` books is found in `books`; errors of reading and chunking the books.
pub(crate) fn rechunk_split(
    dataset: &PreparedDataset,
    split: Split,
    books: &Path,
    chunks_per_book: Option<usize>,
    cancel: &lexforge_core::CancelToken,
) -> Result<Vec<ChunkEntry>> {
    let refuse = |reason: String| MatcherError::Dataset {
        path: dataset.dir.clone(),
        reason,
    };
    let mut config: lexforge_data::PrepareConfig = dataset
        .prepare
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| refuse(format!("its preparation parameters do not parse: {e}")))?
        .ok_or_else(|| refuse("it records no preparation parameters".into()))?;
    config.chunk.max_chunks_per_book = chunks_per_book;
    let wanted: std::collections::BTreeSet<&str> = dataset
        .books
        .iter()
        .filter(|b| b.split == split)
        .map(|b| b.id.as_str())
        .collect();
    let corpus = lexforge_data::chunk_corpus(
        &lexforge_data::BookDirectory::new(books),
        &config,
        &lexforge_core::NoopSink,
        cancel,
    )?;
    let mut known: BTreeMap<(&str, u32), u32> = BTreeMap::new();
    let mut common: BTreeMap<&str, BTreeMap<u32, usize>> = BTreeMap::new();
    for c in dataset.chunks(split) {
        known.insert((c.book.as_str(), c.index), c.topic);
        *common
            .entry(c.book.as_str())
            .or_default()
            .entry(c.topic)
            .or_default() += 1;
    }
    let out: Vec<ChunkEntry> = corpus
        .chunks
        .into_iter()
        .filter(|c| wanted.contains(c.book.as_str()))
        .map(|c| {
            let topic = known
                .get(&(c.book.as_str(), c.index))
                .copied()
                .unwrap_or_else(|| {
                    common.get(c.book.as_str()).map_or(0, |t| {
                        t.iter().max_by_key(|(_, n)| **n).map_or(0, |(t, _)| *t)
                    })
                });
            ChunkEntry {
                book: c.book,
                index: c.index,
                split,
                topic,
                text: c.text,
            }
        })
        .collect();
    if out.is_empty() {
        return Err(refuse(format!(
            "none of its {} {} books is in {}",
            wanted.len(),
            split.name(),
            books.display()
        )));
    }
    Ok(out)
}

/// Book-balanced batches over every chunk of a split's books: item `i` is book `i mod B` with
/// `views` of its chunks (a seeded permutation of them, taken `views` at a time as `i / B`
/// grows, so an epoch sees every chunk), and the same number of chunks of one of its
/// neighbour books when [`ViewsConfig::neighbours`] is set. A batch's labelled pairs are all
/// pairs of its distinct rows (same book or not).
#[derive(Debug, Clone)]
pub struct ViewItems {
    table: TokenBatch,
    books: Vec<u32>,
    topics: Vec<u32>,
    by_book: Vec<Vec<usize>>,
    neighbours: Vec<Vec<usize>>,
    config: ViewsConfig,
    reps: usize,
}

impl ViewItems {
    /// Items over `chunks` (one split's; the dataset's own or ones chunked again from its
    /// books, see [`ViewsConfig::books`]), featurized by `featurize`, with neighbour books
    /// from `dataset`; book ids are numbered through `book_index`.
    ///
    /// # Errors
    /// [`MatcherError::InvalidParameter`] for `views < 2`; [`MatcherError::InvalidInput`]
    /// when fewer than two books have two chunks; errors of `featurize`.
    pub fn new(
        dataset: &PreparedDataset,
        chunks: &[ChunkEntry],
        config: &ViewsConfig,
        seed: u64,
        featurize: &Featurize<'_>,
        book_index: &mut BTreeMap<String, u32>,
    ) -> Result<Self> {
        config.validate()?;
        let mut rows_of: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (r, c) in chunks.iter().enumerate() {
            rows_of.entry(c.book.as_str()).or_default().push(r);
        }
        rows_of.retain(|_, rows| rows.len() >= 2);
        if rows_of.len() < 2 {
            return Err(MatcherError::InvalidInput {
                reason: format!(
                    "{} books have two chunks or more; training on views needs two",
                    rows_of.len()
                ),
            });
        }
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        let table = featurize_all(&texts, featurize)?;
        let books = chunks.iter().map(|c| number(book_index, &c.book)).collect();
        let topics = chunks.iter().map(|c| c.topic).collect();
        let names: Vec<&str> = rows_of.keys().copied().collect();
        let position: BTreeMap<&str, usize> =
            names.iter().enumerate().map(|(i, b)| (*b, i)).collect();
        let mut by_book: Vec<Vec<usize>> = rows_of.into_values().collect();
        let seed = lexforge_core::Seed(seed);
        for (b, rows) in by_book.iter_mut().enumerate() {
            rows.shuffle(&mut seed.rng(&format!("views/{}", names[b])));
        }
        let entries: BTreeMap<&str, &BookEntry> =
            dataset.books.iter().map(|b| (b.id.as_str(), b)).collect();
        let neighbours = names
            .iter()
            .map(|name| {
                entries.get(name).map_or_else(Vec::new, |b| {
                    b.neighbours
                        .iter()
                        .filter_map(|n| position.get(n.book.as_str()).copied())
                        .collect()
                })
            })
            .collect();
        let longest = by_book.iter().map(Vec::len).max().unwrap_or(0);
        Ok(ViewItems {
            table,
            books,
            topics,
            by_book,
            neighbours,
            reps: longest.div_ceil(config.views).max(1),
            config: config.clone(),
        })
    }

    /// Books with at least two chunks.
    pub fn num_books(&self) -> usize {
        self.by_book.len()
    }

    /// Chunks in all.
    pub fn num_chunks(&self) -> usize {
        self.table.len()
    }

    /// `views` rows of book `b` for repetition `rep`.
    fn views_of(&self, b: usize, rep: usize, out: &mut Vec<usize>) {
        let rows = &self.by_book[b];
        let take = self.config.views.min(rows.len());
        for k in 0..take {
            out.push(rows[(rep * self.config.views + k) % rows.len()]);
        }
    }

    /// The batch of items `indices` (host data only).
    pub fn make_batch(&self, indices: &[usize]) -> PairBatch {
        let nb = self.by_book.len();
        let mut rows = Vec::new();
        for &i in indices {
            let (b, rep) = (i % nb, i / nb);
            self.views_of(b, rep, &mut rows);
            if self.config.neighbours {
                let list = &self.neighbours[b];
                if !list.is_empty() {
                    self.views_of(list[rep % list.len()], rep, &mut rows);
                }
            }
        }
        rows.sort_unstable();
        rows.dedup();
        let books: Vec<u32> = rows.iter().map(|&r| self.books[r]).collect();
        let mut pairs = Vec::new();
        let mut labels = Vec::new();
        for i in 0..rows.len() {
            for j in i + 1..rows.len() {
                pairs.push((i, j));
                labels.push(books[i] == books[j]);
            }
        }
        PairBatch {
            texts: self.table.select(&rows),
            pairs,
            labels,
            topics: rows.iter().map(|&r| self.topics[r]).collect(),
            books,
            teacher: None,
        }
    }
}

impl BatchSource<PairBatch> for ViewItems {
    fn len(&self) -> usize {
        self.by_book.len() * self.reps
    }

    fn batch(
        &self,
        indices: &[usize],
        _device: &Device,
    ) -> std::result::Result<PairBatch, BoxError> {
        let n = BatchSource::len(self);
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Box::new(MatcherError::InvalidInput {
                reason: format!("view item {bad} out of {n}"),
            }));
        }
        Ok(self.make_batch(indices))
    }
}

impl BatchSource<PairBatch> for PairItems {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn batch(
        &self,
        indices: &[usize],
        _device: &Device,
    ) -> std::result::Result<PairBatch, BoxError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.labels.len()) {
            return Err(Box::new(MatcherError::InvalidInput {
                reason: format!("pair index {bad} out of {}", self.labels.len()),
            }));
        }
        Ok(self.make_batch(indices))
    }
}
