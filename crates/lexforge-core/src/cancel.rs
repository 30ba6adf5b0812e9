//! Cooperative cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// A flag that long work checks between steps. Cloning shares the flag: cancel any clone and
/// every holder sees it.
///
/// # Design
/// Set by whoever represents the user (a Ctrl-C handler in the CLI, a `KeyboardInterrupt`
/// in the Python binding, a timeout); checked by the pipelines at safe points (between training
/// steps, between files), which then write what must survive (the last checkpoint) and return
/// [`Error::Cancelled`] or their own cancelled variant. Lock-free; safe from signal-handler
/// threads.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Error::Cancelled)` once cancellation was requested: `token.check()?` at each safe
    /// point.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_across_threads() {
        let t = CancelToken::new();
        assert!(t.check().is_ok());
        let t2 = t.clone();
        std::thread::spawn(move || t2.cancel()).join().unwrap();
        assert!(t.is_cancelled());
        assert!(matches!(t.check(), Err(Error::Cancelled)));
    }
}
