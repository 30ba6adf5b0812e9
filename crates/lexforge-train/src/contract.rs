//! What a model and its data implement to be trained: [`TrainModel`] (the loss of a batch,
//! and state updated after each step) and [`BatchSource`] (a batch from item indices).

use std::collections::BTreeMap;
use std::error::Error as StdError;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// A boxed error from the crate that owns the model or the data.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The loss of one batch.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// Mean loss over the batch's targets, shape `[1]`.
    pub loss: Tensor<1>,
    /// Number of targets the mean is over (tokens, for a language model); weights evaluation
    /// means and throughput.
    pub targets: usize,
}

/// A model the engine can train: a burn module that computes its own loss on a batch.
pub trait TrainModel: Module + Sized {
    /// What one batch is.
    type Batch;

    /// The mean loss of `batch`. Called on the autodiff device during training and on the
    /// plain device (after [`Module::valid`]) during evaluation.
    fn loss(&self, batch: &Self::Batch) -> std::result::Result<LossOutput, BoxError>;

    /// Updates what gradients do not learn (exponential moving averages of codebooks,
    /// dead-code replacement, usage counters, ...) after each optimizer step, from that step's
    /// last micro-batch, on the training device. Returns the updated model and metrics to
    /// report (sent as a `progress` event when non-empty, e.g. per-epoch codebook usage). The
    /// default leaves the model unchanged and reports nothing.
    ///
    /// # Invariants
    /// A pure function of (model, batch, info): exact resume relies on it. State it changes
    /// must live in the module's record so checkpoints carry it.
    fn after_step(
        self,
        batch: &Self::Batch,
        info: &StepInfo,
    ) -> std::result::Result<(Self, BTreeMap<String, f64>), BoxError> {
        let _ = (batch, info);
        Ok((self, BTreeMap::new()))
    }
}

/// Where the loop is when [`TrainModel::after_step`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepInfo {
    /// The optimizer step just taken (1-based).
    pub step: u64,
    /// The epoch (0-based) that step's last micro-batch belongs to.
    pub epoch: u64,
    /// Whether that micro-batch was the last full batch of its epoch.
    pub epoch_end: bool,
}

/// Items the engine can batch by index.
///
/// # Invariants
/// `batch` accepts any non-empty set of indices below `len()`, in the given order, and is a pure
/// function of them (same indices → same batch): exact resume relies on it.
pub trait BatchSource<B>: Sync {
    /// Number of items.
    fn len(&self) -> usize;

    /// Whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch of items `indices`, with tensors on `device`.
    fn batch(&self, indices: &[usize], device: &Device) -> std::result::Result<B, BoxError>;
}
