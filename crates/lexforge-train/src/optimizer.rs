//! [`OptimizerConfig`]: AdamW with PyTorch's defaults, mapped onto burn's optimizer.

use burn::optim::{AdamWConfig, ModuleOptimizer};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// AdamW hyper-parameters with the defaults of `torch.optim.AdamW` (burn's own defaults differ:
/// epsilon 1e-5, weight decay 1e-4), plus gradient-norm clipping. The learning rate is not
/// here: [`crate::LrSchedule`] gives it per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the denominator.
    pub epsilon: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Clip the global gradient norm (over all parameters at once, as PyTorch's
    /// `clip_grad_norm_`) to this value (`None`: no clipping). Applied by the engine
    /// ([`crate::clip_global_norm`]), not by burn's optimizer, whose clipping is per parameter.
    pub grad_clip_norm: Option<f32>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            grad_clip_norm: Some(1.0),
        }
    }
}

impl OptimizerConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |parameter, reason: String| Err(TrainError::InvalidParameter { parameter, reason });
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(name, format!("{b} is not in [0, 1)"));
            }
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return bad("epsilon", format!("{} must be positive", self.epsilon));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(
                "weight_decay",
                format!("{} must be >= 0", self.weight_decay),
            );
        }
        if let Some(c) = self.grad_clip_norm
            && !(c > 0.0 && c.is_finite())
        {
            return bad("grad_clip_norm", format!("{c} must be positive"));
        }
        Ok(())
    }

    /// The burn optimizer (AdamW without clipping; the engine clips the global norm).
    pub fn build(&self) -> Result<ModuleOptimizer> {
        self.validate()?;
        Ok(AdamWConfig::new()
            .with_beta_1(self.beta1)
            .with_beta_2(self.beta2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay)
            .init())
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;

    #[derive(Module, Debug)]
    struct Quadratic {
        w: Param<Tensor<1>>,
    }

    #[test]
    fn defaults_are_pytorchs_and_bad_values_are_refused() {
        let c = OptimizerConfig::default();
        assert_eq!((c.epsilon, c.weight_decay), (1e-8, 0.01));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<OptimizerConfig>("{}").unwrap(), c);
        assert_eq!(serde_json::from_str::<OptimizerConfig>(&json).unwrap(), c);
        for bad in [
            OptimizerConfig {
                beta1: 1.0,
                ..c.clone()
            },
            OptimizerConfig {
                epsilon: 0.0,
                ..c.clone()
            },
            OptimizerConfig {
                weight_decay: -1.0,
                ..c.clone()
            },
            OptimizerConfig {
                grad_clip_norm: Some(0.0),
                ..c.clone()
            },
        ] {
            assert!(bad.build().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn minimizes_a_quadratic_with_clipped_steps() {
        let device = Device::flex().autodiff();
        let mut m = Quadratic {
            w: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![5.0f32, -3.0], [2]),
                &device,
            )),
        };
        let mut optim = OptimizerConfig {
            weight_decay: 0.0,
            ..OptimizerConfig::default()
        }
        .build()
        .unwrap();
        for _ in 0..300 {
            let loss = m.w.val().powf_scalar(2.0).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = optim.step(0.05, m, grads);
        }
        let w =
            m.w.val()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap();
        assert!(w.iter().all(|x| x.abs() < 0.1), "{w:?}");
    }
}
