//! lexforge book-text matcher: given two passages, the probability that they come
//! from the same book and how close they are in style; given a passage and a library, its book.
//!
//! - [`model`]: the bi-encoder (BERT-family body, pooling, optional style features, projection
//!   head, optional pair head and topic adversary).
//! - [`losses`]: SupCon, InfoNCE, pairwise, distillation losses and gradient reversal.
//! - [`dataset`]: prepared dataset directories and pair batches.
//! - [`train`]: training with the lexforge engine, then save, calibrate, evaluate.
//! - [`calibration`], [`metrics`]: Platt + threshold and isotonic style calibration; ROC-AUC,
//!   ECE, retrieval metrics.
//! - [`matcher`]: a trained matcher: score, style similarity, library search.

pub mod calibration;
pub mod cross;
pub mod dataset;
mod error;
pub mod losses;
pub mod matcher;
pub mod metrics;
pub mod model;
pub mod ngrams;
pub mod probe;
pub mod style;
pub mod train;

pub use calibration::{Calibration, StyleCalibration, ThresholdMetric};
pub use cross::{CrossEncoder, Teacher, TeacherConfig, train_teacher};
pub use dataset::{PairBatch, PairItems, PreparedDataset, ViewItems, ViewsConfig};
pub use error::{MatcherError, Result};
pub use matcher::{EvalReport, Library, Matcher, PairScore, SearchHit, SearchOptions};
pub use model::{BiEncoder, HeadConfig, StyleChannel, TokenBatch};
pub use ngrams::{NgramHasher, SparseFeatures, StyleChannelConfig};
pub use train::{
    DistillMode, LossConfig, MatcherModel, MatcherTrainConfig, TeacherGate, TrainReport,
    train_matcher,
};
