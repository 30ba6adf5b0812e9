//! Early stopping on validation loss.

use serde::{Deserialize, Serialize};

/// When to stop: after `patience` evaluations without an improvement of at least `min_delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingConfig {
    /// Evaluations without improvement tolerated.
    pub patience: u32,
    /// Smallest decrease of the validation loss that counts as an improvement.
    pub min_delta: f64,
}

/// What one evaluation means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A new best: save the best checkpoint.
    Improved,
    /// No improvement yet; keep going.
    Wait,
    /// Patience exhausted: stop.
    Stop,
}

/// Early-stopping state; serializable so that a resumed run continues counting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Its config.
    pub config: EarlyStoppingConfig,
    /// Best validation loss so far.
    pub best: Option<f64>,
    /// Evaluations since the best.
    pub bad_evals: u32,
}

impl EarlyStopping {
    /// Fresh state.
    pub fn new(config: EarlyStoppingConfig) -> Self {
        EarlyStopping {
            config,
            best: None,
            bad_evals: 0,
        }
    }

    /// Records a validation loss. A NaN or infinite loss never counts as an improvement.
    pub fn observe(&mut self, val_loss: f64) -> Verdict {
        let improved = val_loss.is_finite()
            && self
                .best
                .is_none_or(|best| val_loss < best - self.config.min_delta);
        if improved {
            self.best = Some(val_loss);
            self.bad_evals = 0;
            return Verdict::Improved;
        }
        self.bad_evals += 1;
        if self.bad_evals > self.config.patience {
            Verdict::Stop
        } else {
            Verdict::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_patience_evaluations_without_improvement() {
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            patience: 2,
            min_delta: 0.01,
        });
        assert_eq!(es.observe(3.0), Verdict::Improved);
        assert_eq!(es.observe(2.5), Verdict::Improved);
        assert_eq!(
            es.observe(2.495),
            Verdict::Wait,
            "below min_delta is not an improvement"
        );
        assert_eq!(es.observe(2.6), Verdict::Wait);
        assert_eq!(es.observe(2.7), Verdict::Stop);
        assert_eq!(es.best, Some(2.5));
        let mut again = EarlyStopping::new(es.config.clone());
        assert_eq!(
            again.observe(f64::NAN),
            Verdict::Wait,
            "NaN is never an improvement"
        );
        assert_eq!(again.observe(1.0), Verdict::Improved);
    }

    #[test]
    fn state_round_trips_for_resume() {
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            patience: 3,
            min_delta: 0.0,
        });
        es.observe(1.0);
        es.observe(1.2);
        let json = serde_json::to_string(&es).unwrap();
        let back: EarlyStopping = serde_json::from_str(&json).unwrap();
        assert_eq!(back, es);
    }
}
