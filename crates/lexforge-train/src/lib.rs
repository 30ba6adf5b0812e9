//! lexforge training engine (issue #4). Landed so far: the learning-rate schedule
//! ([`LrSchedule`]: linear warmup then cosine decay), early stopping on validation loss
//! ([`EarlyStopping`]) and the non-finite loss guard ([`check_loss`]); the optimizer loop,
//! checkpoints and exact resume build on them.

mod early_stop;
mod error;
mod schedule;

pub use early_stop::{EarlyStopping, EarlyStoppingConfig, Verdict};
pub use error::{Result, TrainError, check_loss};
pub use schedule::LrSchedule;
