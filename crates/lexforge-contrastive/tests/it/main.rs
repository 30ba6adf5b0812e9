//! Integration tests of lexforge-contrastive: the matcher end to end on real books with the real
//! all-MiniLM-L6-v2 (teacher, distillation, save, reload, calibrate, evaluate, search, bad
//! input), and the topic adversary on a synthetic shortcut set.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod adversary;
mod pipeline;
mod quality;

/// Tests that train take this lock: parameter init draws from the backend's process-wide RNG,
/// so a training beside another one in the same process would not start from its seed.
pub static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`TRAINING`] (a test that panicked while holding it does not poison the others).
pub fn training_lock() -> std::sync::MutexGuard<'static, ()> {
    TRAINING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
