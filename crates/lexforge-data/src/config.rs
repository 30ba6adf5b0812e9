//! Every parameter of the book data-preparation pipeline ([`PrepareConfig`]), with its
//! defaults and checks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::chunk::ChunkConfig;
use crate::dedup::DedupConfig;
use crate::error::{DataError, Result};
use crate::mining::MiningConfig;
use crate::pairs::{PairConfig, Split, SplitConfig};
use crate::standardize::StandardizeConfig;
use crate::topics::TopicConfig;

/// Every parameter of the pipeline (serde: the `[prepare]` table of a config file, or the
/// keyword arguments of Python's `lexforge.data.prepare`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrepareConfig {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Text standardization.
    pub standardize: StandardizeConfig,
    /// Chunking.
    pub chunk: ChunkConfig,
    /// Deduplication.
    pub dedup: DedupConfig,
    /// Neighbour mining.
    pub mining: MiningConfig,
    /// Topic clustering.
    pub topics: TopicConfig,
    /// Split shares.
    pub splits: SplitConfig,
    /// Pair counts.
    pub pairs: PairConfig,
    /// Texts per encoder batch.
    pub encode_batch_size: usize,
    /// How the pair files are written: `jsonl` (default) or `parquet`.
    pub format: PairFormat,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            seed: 0,
            standardize: StandardizeConfig::default(),
            chunk: ChunkConfig::default(),
            dedup: DedupConfig::default(),
            mining: MiningConfig::default(),
            topics: TopicConfig::default(),
            splits: SplitConfig::default(),
            pairs: PairConfig::default(),
            encode_batch_size: 32,
            format: PairFormat::default(),
        }
    }
}

impl PrepareConfig {
    /// Checks every parameter, naming the first bad one.
    ///
    /// # Errors
    /// [`DataError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        self.chunk.validate()?;
        self.dedup.validate()?;
        self.mining.validate()?;
        self.pairs.validate()?;
        if self.topics.k == 0 {
            return Err(DataError::InvalidParameter {
                parameter: "topics.k",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.topics.fit_sample == 0 {
            return Err(DataError::InvalidParameter {
                parameter: "topics.fit_sample",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.encode_batch_size == 0 {
            return Err(DataError::InvalidParameter {
                parameter: "encode_batch_size",
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }

    /// The parameters stage A depends on (text, chunks, signatures, centroids, encoder
    /// batches); shards must agree on them with the merge.
    pub(crate) fn stage_a(&self) -> serde_json::Value {
        json!({
            "seed": self.seed,
            "standardize": self.standardize,
            "chunk": self.chunk,
            "num_perm": self.dedup.num_perm,
            "shingle_words": self.dedup.shingle_words,
            "num_chunks_for_embed": self.mining.num_chunks_for_embed,
            "encode_batch_size": self.encode_batch_size,
        })
    }
}

/// How a dataset's pair files are written (`lexforge prepare --format`). The chunk and book
/// tables stay JSON Lines either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairFormat {
    /// `train.jsonl`, `validation.jsonl`, `test.jsonl`: one JSON object per line.
    #[default]
    Jsonl,
    /// `train.parquet`, `validation.parquet`, `test.parquet` (see the module docs).
    Parquet,
}

impl PairFormat {
    /// Both formats, JSON Lines first.
    pub const ALL: [PairFormat; 2] = [PairFormat::Jsonl, PairFormat::Parquet];

    /// The file extension, which is also the name on the command line.
    pub fn extension(self) -> &'static str {
        match self {
            PairFormat::Jsonl => "jsonl",
            PairFormat::Parquet => "parquet",
        }
    }

    /// The file of `split`'s pairs in the dataset directory `dir`.
    pub fn split_path(self, dir: &Path, split: Split) -> PathBuf {
        dir.join(format!("{}.{}", split.name(), self.extension()))
    }
}
