//! lexforge book-text matcher (issue #7): given two passages, the probability that they come
//! from the same book and how close they are in style; given a passage and a library, its book.
//!
//! Landed so far: the evaluation metrics ([`metrics`]) and the calibration of cosine scores
//! ([`calibration`]: Platt temperature + bias with a fitted decision threshold, and an isotonic
//! style map). The bi-encoder, its losses and training follow.

pub mod calibration;
mod error;
pub mod losses;
pub mod metrics;

pub use calibration::{Calibration, StyleCalibration, ThresholdMetric};
pub use error::{MatcherError, Result};
