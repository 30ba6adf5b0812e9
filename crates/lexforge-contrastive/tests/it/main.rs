//! Integration tests of lexforge-contrastive: the matcher end to end on real books with the real
//! all-MiniLM-L6-v2 (teacher, distillation, save, reload, calibrate, evaluate, search, bad
//! input), and the topic adversary on a synthetic shortcut set.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod adversary;
mod pipeline;
mod quality;
