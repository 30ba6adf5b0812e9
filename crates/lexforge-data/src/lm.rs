//! Language-model data: a corpus tokenized into token files, cut into windows.
//!
//! [`tokenize_corpus`] streams documents from a [`CorpusProvider`] in batches, tokenizes each
//! batch in parallel and appends the ids to `train.tokens` / `validation.tokens` (little-endian
//! u32), so a corpus larger than memory works: only one batch of documents is held at a time.
//! [`LmWindows`] reads `block_size + 1` ids at `i * stride` from such a file (positioned reads,
//! no loading) and is a burn [`Dataset`]; [`LmBatcher`] stacks items into tensors.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_core::{CorpusProvider, Document};
use lexforge_tokenizers::{Tokenizer, holdout_key};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// File name of the training ids.
pub const TRAIN_TOKENS: &str = "train.tokens";
/// File name of the validation ids.
pub const VALIDATION_TOKENS: &str = "validation.tokens";

/// How to tokenize a corpus for LM training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizeOptions {
    /// Share of documents for validation, in (0, 0.5]. Each document goes to validation when
    /// its seeded key falls below this share, so the split is deterministic and streaming.
    pub validation_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// Id appended after every document (e.g. `<|endoftext|>`), so windows see boundaries.
    pub separator: Option<u32>,
    /// Documents tokenized per parallel batch (bounds memory).
    pub batch_documents: usize,
}

impl Default for TokenizeOptions {
    fn default() -> Self {
        TokenizeOptions {
            validation_fraction: 0.1,
            seed: 0,
            separator: None,
            batch_documents: 64,
        }
    }
}

/// How a corpus is cut into training and validation text, decided by [`SplitPlan::plan`].
///
/// # Invariants
/// With several documents the split is by whole document: exactly
/// `clamp(round(fraction * n), 1, n - 1)` of them (those with the lowest seeded keys of their
/// text) go to validation, so neither side is ever empty. A single document is cut instead:
/// its last `fraction` (at a line boundary) is validation, as nanoGPT does with one file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "unit", rename_all = "snake_case")]
pub enum SplitPlan {
    /// Whole documents: those whose key is at most `threshold`.
    Documents {
        /// Seed of the keys.
        seed: u64,
        /// Largest validation key.
        threshold: u64,
        /// Non-blank documents.
        documents: usize,
        /// Of which validation.
        validation_documents: usize,
    },
    /// The tail of the only document.
    Tail {
        /// Share of its bytes, cut forward to the next line start.
        fraction: f64,
    },
}

impl SplitPlan {
    /// Reads the corpus once (keys only, streaming) and plans the split.
    ///
    /// Fails with [`lexforge_core::Error::CorpusEmpty`] when no document has text.
    pub fn plan(corpus: &dyn CorpusProvider, options: &TokenizeOptions) -> Result<Self> {
        options.validate()?;
        let mut keys = Vec::new();
        for doc in corpus.documents()? {
            let doc = doc?;
            if !doc.text.trim().is_empty() {
                keys.push(holdout_key(options.seed, &doc.text));
            }
        }
        let n = keys.len();
        match n {
            0 => Err(lexforge_core::Error::CorpusEmpty {
                source_name: corpus.describe(),
            }
            .into()),
            1 => Ok(SplitPlan::Tail {
                fraction: options.validation_fraction,
            }),
            _ => {
                let k = ((options.validation_fraction * n as f64).round() as usize).clamp(1, n - 1);
                keys.sort_unstable();
                Ok(SplitPlan::Documents {
                    seed: options.seed,
                    threshold: keys[k - 1],
                    documents: n,
                    validation_documents: k,
                })
            }
        }
    }

    /// The training and the validation part of a document's `text` (one of them empty for a
    /// whole-document split).
    pub fn parts<'a>(&self, text: &'a str) -> (&'a str, &'a str) {
        match *self {
            SplitPlan::Documents {
                seed, threshold, ..
            } => {
                if holdout_key(seed, text) <= threshold {
                    ("", text)
                } else {
                    (text, "")
                }
            }
            SplitPlan::Tail { fraction } => {
                let mut cut = ((text.len() as f64) * (1.0 - fraction)) as usize;
                cut = text[cut.min(text.len())..]
                    .find('\n')
                    .map_or(text.len(), |i| cut + i + 1);
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                text.split_at(cut)
            }
        }
    }
}

impl TokenizeOptions {
    fn validate(&self) -> Result<()> {
        if !(self.validation_fraction > 0.0 && self.validation_fraction <= 0.5) {
            return Err(DataError::InvalidParameter {
                parameter: "validation_fraction",
                reason: format!("{} is not in (0, 0.5]", self.validation_fraction),
            });
        }
        if self.batch_documents == 0 {
            return Err(DataError::InvalidParameter {
                parameter: "batch_documents",
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

/// The training side of a corpus under a [`SplitPlan`]: what a tokenizer should be trained on
/// so that it never sees validation text.
pub struct TrainDocuments {
    corpus: Arc<dyn CorpusProvider>,
    plan: SplitPlan,
}

impl TrainDocuments {
    /// The training parts of the documents of `corpus`.
    pub fn new(corpus: Arc<dyn CorpusProvider>, plan: SplitPlan) -> Self {
        TrainDocuments { corpus, plan }
    }
}

impl CorpusProvider for TrainDocuments {
    fn describe(&self) -> String {
        format!("training side of {}", self.corpus.describe())
    }

    fn documents(
        &self,
    ) -> lexforge_core::Result<Box<dyn Iterator<Item = lexforge_core::Result<Document>> + Send + '_>>
    {
        let plan = self.plan;
        Ok(Box::new(self.corpus.documents()?.filter_map(
            move |d| match d {
                Ok(mut doc) => {
                    let train = plan.parts(&doc.text).0;
                    if train.trim().is_empty() {
                        return None;
                    }
                    if train.len() != doc.text.len() {
                        doc.text = train.to_owned();
                    }
                    Some(Ok(doc))
                }
                Err(e) => Some(Err(e)),
            },
        )))
    }
}

/// What [`tokenize_corpus`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizedCorpus {
    /// `train.tokens`.
    pub train: PathBuf,
    /// `validation.tokens`.
    pub validation: PathBuf,
    /// Documents / ids / UTF-8 bytes on each side.
    pub train_documents: usize,
    /// Validation documents.
    pub validation_documents: usize,
    /// Training ids.
    pub train_tokens: u64,
    /// Validation ids.
    pub validation_tokens: u64,
    /// Training text bytes.
    pub train_bytes: u64,
    /// Validation text bytes.
    pub validation_bytes: u64,
    /// Validation characters (for bits per character).
    pub validation_chars: u64,
    /// How the corpus was split.
    pub split: SplitPlan,
}

struct Side {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    documents: usize,
    tokens: u64,
    bytes: u64,
    chars: u64,
}

impl Side {
    fn create(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| lexforge_core::Error::io("create", &tmp, e))?;
        Ok(Side {
            path,
            tmp,
            out: BufWriter::new(file),
            documents: 0,
            tokens: 0,
            bytes: 0,
            chars: 0,
        })
    }

    fn push(&mut self, text: &str, ids: &[u32], separator: Option<u32>) -> Result<()> {
        let write = |out: &mut BufWriter<File>, id: u32| out.write_all(&id.to_le_bytes());
        for &id in ids.iter().chain(separator.as_ref()) {
            write(&mut self.out, id)
                .map_err(|e| lexforge_core::Error::io("write", &self.tmp, e))?;
        }
        self.documents += 1;
        self.tokens += (ids.len() + usize::from(separator.is_some())) as u64;
        self.bytes += text.len() as u64;
        self.chars += text.chars().count() as u64;
        Ok(())
    }

    /// Flushes, fsyncs and renames the file into place; returns the side's counts.
    fn finish(self) -> Result<SideCounts> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| lexforge_core::Error::io("write", &self.tmp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| lexforge_core::Error::io("fsync", &self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| lexforge_core::Error::io("rename", &self.path, e))?;
        Ok(SideCounts {
            path: self.path,
            documents: self.documents,
            tokens: self.tokens,
            bytes: self.bytes,
            chars: self.chars,
        })
    }
}

struct SideCounts {
    path: PathBuf,
    documents: usize,
    tokens: u64,
    bytes: u64,
    chars: u64,
}

/// Tokenizes every document of `corpus` with `tokenizer` into `out_dir/train.tokens` and
/// `out_dir/validation.tokens` (written under temporary names, renamed when complete).
///
/// The split follows [`SplitPlan::plan`] (one streaming pass for the keys, one to tokenize).
/// Fails with [`lexforge_core::Error::CorpusEmpty`] when there is no text, and with
/// [`DataError::EmptySplit`] if a side still ends up empty; nothing is left behind then.
pub fn tokenize_corpus(
    corpus: &dyn CorpusProvider,
    tokenizer: &Tokenizer,
    out_dir: &Path,
    options: &TokenizeOptions,
) -> Result<TokenizedCorpus> {
    let plan = SplitPlan::plan(corpus, options)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| lexforge_core::Error::io("create directory", out_dir, e))?;
    let mut train = Side::create(out_dir, TRAIN_TOKENS)?;
    let mut val = Side::create(out_dir, VALIDATION_TOKENS)?;
    let result = (|| -> Result<()> {
        let mut batch = Vec::with_capacity(options.batch_documents);
        let mut docs = corpus.documents()?;
        loop {
            batch.clear();
            for doc in docs.by_ref().take(options.batch_documents) {
                let doc = doc?;
                if !doc.text.trim().is_empty() {
                    batch.push(doc);
                }
            }
            if batch.is_empty() {
                break;
            }
            // (text, goes to validation) for every non-empty part of the batch's documents.
            let parts: Vec<(&str, bool)> = batch
                .iter()
                .flat_map(|d| {
                    let (t, v) = plan.parts(&d.text);
                    [(t, false), (v, true)]
                })
                .filter(|(t, _)| !t.trim().is_empty())
                .collect();
            let texts: Vec<&str> = parts.iter().map(|p| p.0).collect();
            let ids = tokenizer.encode_batch(&texts, false)?;
            for ((text, is_val), ids) in parts.iter().zip(&ids) {
                let side = if *is_val { &mut val } else { &mut train };
                side.push(text, ids, options.separator)?;
            }
        }
        Ok(())
    })();
    let cleanup = |t: &Side, v: &Side| {
        let _ = std::fs::remove_file(&t.tmp);
        let _ = std::fs::remove_file(&v.tmp);
    };
    if let Err(e) = result {
        cleanup(&train, &val);
        return Err(e);
    }
    for (side, name) in [(&train, "train"), (&val, "validation")] {
        if side.documents == 0 {
            let total = train.documents + val.documents;
            cleanup(&train, &val);
            if total == 0 {
                return Err(lexforge_core::Error::CorpusEmpty {
                    source_name: corpus.describe(),
                }
                .into());
            }
            return Err(DataError::EmptySplit {
                split: name,
                reason: format!(
                    "{total} document(s) and validation_fraction {} put none on this side; \
                     add documents or change the fraction or seed",
                    options.validation_fraction
                ),
            });
        }
    }
    let train = train.finish()?;
    let val = val.finish()?;
    tracing::info!(
        train_docs = train.documents,
        val_docs = val.documents,
        train_tokens = train.tokens,
        val_tokens = val.tokens,
        "corpus tokenized"
    );
    Ok(TokenizedCorpus {
        train: train.path,
        validation: val.path,
        train_documents: train.documents,
        validation_documents: val.documents,
        train_tokens: train.tokens,
        validation_tokens: val.tokens,
        train_bytes: train.bytes,
        validation_bytes: val.bytes,
        validation_chars: val.chars,
        split: plan,
    })
}

/// A token file opened for positioned reads.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    file: File,
    len: usize,
}

impl TokenFile {
    /// Opens `path` (a whole number of little-endian u32 ids).
    pub fn open(path: &Path) -> Result<Self> {
        let file =
            File::open(path).map_err(|e| lexforge_core::Error::io("open token file", path, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| lexforge_core::Error::io("stat token file", path, e))?
            .len();
        if bytes % 4 != 0 {
            return Err(DataError::TokenFile {
                path: path.to_path_buf(),
                reason: format!("{bytes} bytes is not a whole number of u32 ids"),
            });
        }
        Ok(TokenFile {
            path: path.to_path_buf(),
            file,
            len: (bytes / 4) as usize,
        })
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the file holds no id.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ids `start..start + n`.
    pub fn read(&self, start: usize, n: usize) -> Result<Vec<u32>> {
        let mut buf = vec![0u8; n * 4];
        self.file
            .read_exact_at(&mut buf, (start * 4) as u64)
            .map_err(|e| lexforge_core::Error::io("read token file", &self.path, e))?;
        Ok(buf
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// One training example: `input[i]` predicts `target[i] = input[i + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmItem {
    /// `block_size` ids.
    pub input: Vec<u32>,
    /// The same ids shifted by one.
    pub target: Vec<u32>,
}

/// Windows of `block_size + 1` ids every `stride` ids of a token file: a burn [`Dataset`].
///
/// Window `i` starts at `i * stride`; there are `(len - block_size - 1) / stride + 1` of them
/// (none when the file has `block_size` ids or fewer).
#[derive(Debug)]
pub struct LmWindows {
    file: TokenFile,
    block_size: usize,
    stride: usize,
}

impl LmWindows {
    /// Windows over `file`.
    pub fn new(file: TokenFile, block_size: usize, stride: usize) -> Result<Self> {
        if block_size == 0 || stride == 0 {
            return Err(DataError::InvalidParameter {
                parameter: if block_size == 0 {
                    "block_size"
                } else {
                    "stride"
                },
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(LmWindows {
            file,
            block_size,
            stride,
        })
    }

    /// The window length (model context).
    pub fn block_size(&self) -> usize {
        self.block_size
    }
}

impl Dataset<LmItem> for LmWindows {
    fn get(&self, index: usize) -> std::result::Result<LmItem, DatasetError> {
        if index >= self.len() {
            return Err(DatasetError::new(DataError::InvalidParameter {
                parameter: "index",
                reason: format!("window {index} of {}", self.len()),
            }));
        }
        let ids = self
            .file
            .read(index * self.stride, self.block_size + 1)
            .map_err(DatasetError::new)?;
        Ok(LmItem {
            input: ids[..self.block_size].to_vec(),
            target: ids[1..].to_vec(),
        })
    }

    fn len(&self) -> usize {
        if self.file.len() <= self.block_size {
            0
        } else {
            (self.file.len() - self.block_size - 1) / self.stride + 1
        }
    }
}

/// A batch of windows.
#[derive(Debug, Clone)]
pub struct LmBatch {
    /// `[batch, block_size]` ids.
    pub inputs: Tensor<2, Int>,
    /// `[batch, block_size]` next ids.
    pub targets: Tensor<2, Int>,
}

/// Stacks [`LmItem`]s into an [`LmBatch`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LmBatcher;

impl Batcher<LmItem, LmBatch> for LmBatcher {
    fn batch(&self, items: Vec<LmItem>, device: &Device) -> LmBatch {
        let b = items.len();
        let t = items.first().map_or(0, |i| i.input.len());
        let stack = |f: fn(&LmItem) -> &Vec<u32>| {
            let flat: Vec<i64> = items
                .iter()
                .flat_map(|i| f(i).iter().map(|&x| i64::from(x)))
                .collect();
            Tensor::<2, Int>::from_data(TensorData::new(flat, [b, t]), device)
        };
        LmBatch {
            inputs: stack(|i| &i.input),
            targets: stack(|i| &i.target),
        }
    }
}

/// The training engine reads windows by index: `indices` in order, stacked by [`LmBatcher`].
impl lexforge_train::BatchSource<LmBatch> for LmWindows {
    fn len(&self) -> usize {
        Dataset::len(self)
    }

    fn batch(
        &self,
        indices: &[usize],
        device: &Device,
    ) -> std::result::Result<LmBatch, lexforge_train::BoxError> {
        let items = indices
            .iter()
            .map(|&i| {
                self.get(i)
                    .map_err(|e| Box::new(e) as lexforge_train::BoxError)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(LmBatcher.batch(items, device))
    }
}
