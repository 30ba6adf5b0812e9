//! lexforge training engine (issue #4). Landed so far: the learning-rate schedule
//! ([`LrSchedule`]: linear warmup then cosine decay), early stopping on validation loss
//! ([`EarlyStopping`]), the non-finite loss guard ([`check_loss`]) and AdamW with PyTorch
//! defaults and gradient-norm clipping ([`OptimizerConfig`]); the optimizer loop,
//! checkpoints and exact resume build on them.

mod early_stop;
mod error;
mod optimizer;
mod schedule;

pub use early_stop::{EarlyStopping, EarlyStoppingConfig, Verdict};
pub use error::{Result, TrainError, check_loss};
pub use optimizer::OptimizerConfig;
pub use schedule::LrSchedule;
