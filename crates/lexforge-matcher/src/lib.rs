//! lexforge book-text matcher: given two passages, the probability that they come
//! from the same book and how close they are in style; given a passage and a library, its book.
//!
//! Every public item is re-exported here, at the crate root; the modules are private.
//!
//! - The bi-encoder ([`BiEncoder`]: BERT-family body, pooling, optional style features and
//!   n-gram style channel, projection head, optional pair head and topic adversary) and its
//!   losses ([`supcon_loss`], [`info_nce_loss`], [`pairwise_loss`], distillation losses,
//!   [`grad_reverse`]).
//! - Prepared dataset directories and pair batches ([`PreparedDataset`], [`PairItems`],
//!   [`ViewItems`]).
//! - Training with the lexforge engine, then save, calibrate, evaluate ([`train`], [`resume`],
//!   [`MatcherTrainConfig`], [`TrainReport`]); the cross-encoder teacher ([`train_teacher`],
//!   [`Teacher`]).
//! - Platt + threshold and isotonic style calibration ([`Calibration`],
//!   [`StyleCalibration`]); ROC-AUC, ECE and retrieval metrics in [`EvalReport`].
//! - A trained matcher ([`Matcher`]): score, style similarity, library search.

mod artifacts;
mod calibration;
mod config;
mod cross;
mod dataset;
mod error;
mod evaluate;
mod losses;
mod matcher;
mod metrics;
mod model;
mod ngrams;
mod objective;
mod pipeline;
mod probe;
mod report;
mod search;
mod style;
mod train;

pub use calibration::{Calibration, StyleCalibration, ThresholdMetric};
pub use config::{AdversaryMode, DistillMode, LossConfig, MatcherTrainConfig};
pub use cross::{CrossEncoder, Teacher, TeacherConfig, TeacherReport, train_teacher};
pub use dataset::{
    BookEntry, ChunkEntry, Featurize, Neighbour, PairBatch, PairItems, PreparedDataset, Tokenize,
    ViewItems, ViewsConfig,
};
pub use error::{MatcherError, Result};
pub use evaluate::EvalReport;
pub use losses::{
    bce_with_logits, grad_reverse, info_nce_loss, margin_mse_loss, pairwise_loss,
    soft_pairwise_loss, supcon_loss,
};
pub use matcher::{HeadFile, Matcher, PairScore};
pub use metrics::{BinaryMetrics, RetrievalMetrics};
pub use model::{BiEncoder, HeadConfig, StyleChannel, TokenBatch};
pub use ngrams::{NgramHasher, SparseFeatures, StyleChannelConfig, sparse_cosine};
pub use objective::MatcherModel;
pub use pipeline::{DATASET_DIR, MATCHER_DIR, PipelineConfig, PipelineReport, pipeline};
pub use probe::{ProbeReport, linear_probe};
pub use report::{TeacherGate, TrainReport};
pub use search::{Library, SearchHit, SearchOptions};
pub use train::{resume, train};
