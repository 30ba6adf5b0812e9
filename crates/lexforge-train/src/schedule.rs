//! Learning-rate schedule: linear warmup, then cosine decay to a floor.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// `lr(step)`: rises linearly from `peak / warmup_steps` to `peak` over `warmup_steps`, then
/// follows a half cosine from `peak` down to `min_lr` at `total_steps`, and stays there.
/// (The schedule of GPT-2/nanoGPT training; `warmup_steps = 0` starts at the peak.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Floor reached at `total_steps`.
    pub min_lr: f64,
    /// Warmup length in optimizer steps.
    pub warmup_steps: u64,
    /// Total optimizer steps.
    pub total_steps: u64,
}

impl LrSchedule {
    /// Checks `0 <= min_lr <= peak`, `warmup_steps <= total_steps`, `total_steps > 0`.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |parameter, reason: String| Err(TrainError::InvalidParameter { parameter, reason });
        if !(self.peak.is_finite() && self.peak > 0.0) {
            return bad("lr", format!("{} must be positive", self.peak));
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.peak) {
            return bad(
                "min_lr",
                format!("{} must be in [0, lr = {}]", self.min_lr, self.peak),
            );
        }
        if self.total_steps == 0 {
            return bad("total_steps", "must be at least 1".to_owned());
        }
        if self.warmup_steps > self.total_steps {
            return bad(
                "warmup_steps",
                format!(
                    "{} exceeds total_steps {}",
                    self.warmup_steps, self.total_steps
                ),
            );
        }
        Ok(())
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        if step >= self.total_steps {
            return self.min_lr;
        }
        let span = (self.total_steps - self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / span;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_lr + (self.peak - self.min_lr) * cosine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s = LrSchedule {
            peak: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 10,
            total_steps: 110,
        };
        s.validate().unwrap();
        assert!((s.lr(0) - 1e-4).abs() < 1e-12);
        assert!((s.lr(9) - 1e-3).abs() < 1e-12);
        assert!((s.lr(10) - 1e-3).abs() < 1e-12, "peak right after warmup");
        assert!(
            (s.lr(60) - 5.5e-4).abs() < 1e-9,
            "halfway: the mean of peak and floor"
        );
        assert!((s.lr(110) - 1e-4).abs() < 1e-12);
        assert_eq!(s.lr(500), 1e-4);
        let lrs: Vec<f64> = (10..110).map(|i| s.lr(i)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]), "monotone decay");
    }

    #[test]
    fn bad_schedules_name_the_parameter() {
        let ok = LrSchedule {
            peak: 1e-3,
            min_lr: 0.0,
            warmup_steps: 0,
            total_steps: 10,
        };
        ok.validate().unwrap();
        assert_eq!(ok.lr(0), 1e-3);
        for (s, p) in [
            (
                LrSchedule {
                    peak: 0.0,
                    ..ok.clone()
                },
                "lr",
            ),
            (
                LrSchedule {
                    min_lr: 1.0,
                    ..ok.clone()
                },
                "min_lr",
            ),
            (
                LrSchedule {
                    total_steps: 0,
                    ..ok.clone()
                },
                "total_steps",
            ),
            (
                LrSchedule {
                    warmup_steps: 11,
                    ..ok.clone()
                },
                "warmup_steps",
            ),
        ] {
            let e = s.validate().unwrap_err();
            assert!(
                matches!(e, TrainError::InvalidParameter { parameter, .. } if parameter == p),
                "{e}"
            );
        }
    }
}
