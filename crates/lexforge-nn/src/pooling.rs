//! Sentence pooling over token states, as sentence-transformers' `Pooling` module does, and
//! L2 normalization with optional Matryoshka-style truncation.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean of the real (unpadded) tokens.
    Mean,
    /// The first token (`[CLS]` / `<s>`).
    Cls,
    /// Elementwise maximum over the real tokens.
    Max,
    /// Sum of the real tokens divided by the square root of their count.
    MeanSqrtLen,
}

impl Pooling {
    /// The name used in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::MeanSqrtLen => "mean_sqrt_len",
        }
    }
}

impl std::str::FromStr for Pooling {
    type Err = NnError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "max" => Ok(Pooling::Max),
            "mean_sqrt_len" => Ok(Pooling::MeanSqrtLen),
            other => Err(NnError::InvalidConfig {
                field: "pooling",
                value: other.to_owned(),
                reason: "expected mean, cls, max or mean_sqrt_len".to_owned(),
            }),
        }
    }
}

/// sentence-transformers' `1_Pooling/config.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolingConfig {
    /// Width of the token states.
    #[serde(default)]
    pub word_embedding_dimension: Option<usize>,
    /// CLS pooling.
    #[serde(default)]
    pub pooling_mode_cls_token: bool,
    /// Mean pooling.
    #[serde(default)]
    pub pooling_mode_mean_tokens: bool,
    /// Max pooling.
    #[serde(default)]
    pub pooling_mode_max_tokens: bool,
    /// Mean × sqrt(len) pooling.
    #[serde(default)]
    pub pooling_mode_mean_sqrt_len_tokens: bool,
}

impl PoolingConfig {
    /// The single pooling mode this config selects.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] naming `path` when no mode or several (sentence-transformers
    /// would concatenate them; not supported) are on.
    pub fn mode(&self, path: &Path) -> Result<Pooling> {
        let modes: Vec<Pooling> = [
            (self.pooling_mode_cls_token, Pooling::Cls),
            (self.pooling_mode_mean_tokens, Pooling::Mean),
            (self.pooling_mode_max_tokens, Pooling::Max),
            (self.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
        ]
        .into_iter()
        .filter_map(|(on, p)| on.then_some(p))
        .collect();
        match modes.as_slice() {
            [one] => Ok(*one),
            _ => Err(NnError::InvalidConfig {
                field: "pooling_mode_*",
                value: format!("{} modes on in {}", modes.len(), path.display()),
                reason: "exactly one pooling mode is supported".to_owned(),
            }),
        }
    }
}

/// `[b, t, 1]`: 1 at real tokens, 0 at padding.
fn token_mask(lengths: &[usize], t: usize, device: &Device) -> Tensor<3> {
    let values: Vec<f32> = lengths
        .iter()
        .flat_map(|&len| (0..t).map(move |i| if i < len { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(values, [lengths.len(), t, 1]), device)
}

/// Pools token states into sentence vectors (differentiable: works under autodiff).
///
/// # Shapes
/// `hidden`: `[b, t, d]`, `lengths`: `b` real lengths in `1..=t` → `[b, d]`.
pub fn pool(hidden: Tensor<3>, lengths: &[usize], pooling: Pooling) -> Tensor<2> {
    let [b, t, d] = hidden.dims();
    let device = hidden.device();
    match pooling {
        Pooling::Cls => hidden.slice([0..b, 0..1, 0..d]).reshape([b, d]),
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let mask = token_mask(lengths, t, &device);
            let sum = (hidden * mask).sum_dim(1).reshape([b, d]);
            let denom: Vec<f32> = lengths
                .iter()
                .map(|&l| {
                    let l = (l as f32).max(1e-9);
                    if pooling == Pooling::Mean {
                        l
                    } else {
                        l.sqrt()
                    }
                })
                .collect();
            sum / Tensor::<2>::from_data(TensorData::new(denom, [b, 1]), &device)
        }
        Pooling::Max => {
            // As sentence-transformers: padding set to -1e9 before the maximum.
            let mask = token_mask(lengths, t, &device);
            let shifted = hidden * mask.clone() + (mask - 1.0) * 1e9;
            shifted.max_dim(1).reshape([b, d])
        }
    }
}

/// Keeps the first `truncate_dim` columns (all when `None`) and, when `normalize`, scales each
/// row to unit L2 norm (rows of norm below 1e-12 are divided by 1e-12, as torch's
/// `F.normalize`). Works on host rows `[rows, dim]` in place, returning the new width.
pub fn finish_rows(
    data: &mut Vec<f32>,
    dim: usize,
    truncate_dim: Option<usize>,
    normalize: bool,
) -> usize {
    let keep = truncate_dim.map_or(dim, |k| k.min(dim));
    if keep < dim {
        let rows = data.len() / dim.max(1);
        let mut out = Vec::with_capacity(rows * keep);
        for r in data.chunks_exact(dim) {
            out.extend_from_slice(&r[..keep]);
        }
        *data = out;
    }
    if normalize && keep > 0 {
        for r in data.chunks_exact_mut(keep) {
            let norm = r
                .iter()
                .map(|v| f64::from(*v) * f64::from(*v))
                .sum::<f64>()
                .sqrt()
                .max(1e-12) as f32;
            r.iter_mut().for_each(|v| *v /= norm);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_ignores_padding() {
        let d = Device::flex();
        // Row 0: two real tokens then padding holding large values.
        let h = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 100.0, 100.0], [1, 3, 2]),
            &d,
        );
        let vals = |t: Tensor<2>| t.into_data().try_into_vec_as::<f32>().unwrap_or_default();
        assert_eq!(vals(pool(h.clone(), &[2], Pooling::Mean)), vec![2.0, 3.0]);
        assert_eq!(vals(pool(h.clone(), &[2], Pooling::Max)), vec![3.0, 4.0]);
        assert_eq!(vals(pool(h.clone(), &[2], Pooling::Cls)), vec![1.0, 2.0]);
        let s = vals(pool(h, &[2], Pooling::MeanSqrtLen));
        assert!((s[0] - 4.0 / 2f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn truncation_renormalizes() {
        let mut v = vec![3.0f32, 4.0, 12.0, 0.0, 0.0, 0.0];
        let keep = finish_rows(&mut v, 3, Some(2), true);
        assert_eq!(keep, 2);
        assert_eq!(v, vec![0.6, 0.8, 0.0, 0.0]);
    }

    #[test]
    fn pooling_config_needs_exactly_one_mode() {
        let p = Path::new("1_Pooling/config.json");
        let none = PoolingConfig::default();
        assert!(none.mode(p).is_err());
        let both = PoolingConfig {
            pooling_mode_cls_token: true,
            pooling_mode_mean_tokens: true,
            ..PoolingConfig::default()
        };
        assert!(both.mode(p).is_err());
        let mean = PoolingConfig {
            pooling_mode_mean_tokens: true,
            ..PoolingConfig::default()
        };
        assert_eq!(mean.mode(p).ok(), Some(Pooling::Mean));
    }
}
