//! Quantizers: continuous latents → discrete codes, one code per ID component.
//!
//! - [`Fsq`]: finite scalar quantization (Mentzer et al. 2023) per component: each component
//!   owns a few latent dimensions, each bounded by `tanh` and rounded to one of its `levels`
//!   (straight-through gradient); the component's code is the mixed-radix index of its rounded
//!   values, so its codebook is implicit (the product of its levels, 32 by default).
//! - [`ResidualFsq`]: FSQ applied to the residual in stages, each stage's input scaled by
//!   `(levels − 1)^stage` so finer stages resolve what coarser ones left; one stage per
//!   component.
//! - [`ResidualVq`]: residual vector quantization with learned codebooks (one per stage),
//!   k-means initialization, exponential-moving-average codebook updates, dead-code
//!   replacement and a commitment loss.
//!
//! All implement [`Quantizer`]; [`AnyQuantizer`] holds one of them inside a model.
//!
//! # Shapes
//! Latents are `[n, latent_dim]`. Codes are host `u32`s, row-major `[n, components]`.

mod fsq;
mod rvq;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SemanticError};

pub use fsq::{Fsq, ResidualFsq};
pub use rvq::{EmaReport, ResidualVq};

/// What quantizing a batch gives.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// Quantized latents with straight-through gradients, `[n, latent_dim]`.
    pub latent: Tensor<2>,
    /// The quantized vector of each component (straight-through), each `[n, part_dim]`: the
    /// inputs of the supervised heads.
    pub parts: Vec<Tensor<2>>,
    /// Codes, row-major `[n, components]`.
    pub codes: Vec<u32>,
    /// Per component, logits of a soft assignment of each row to every code `[n, K]` (the
    /// entropy regularizer's input): minus squared distance over the temperature. Empty when
    /// quantized with temperature 0.
    pub assignment_logits: Vec<Tensor<2>>,
    /// Commitment loss `[1]` (residual VQ only).
    pub commitment: Option<Tensor<1>>,
}

/// The quantizer contract: latents to codes and codes back to latents.
pub trait Quantizer {
    /// Short name (`fsq`, `residual_fsq`, `residual_vq`).
    fn name(&self) -> &'static str;

    /// Width of the latents it quantizes.
    fn latent_dim(&self) -> usize;

    /// Codebook size of each component.
    fn codebook_sizes(&self) -> Vec<usize>;

    /// Quantizes `z` (`[n, latent_dim]`). `temperature` scales the soft-assignment logits;
    /// `0` skips them (`assignment_logits` empty), for callers that need no entropy term.
    ///
    /// # Errors
    /// [`SemanticError::InvalidInput`] when the width is wrong or values are not finite.
    fn quantize(&self, z: Tensor<2>, temperature: f64) -> Result<Quantized>;

    /// The quantized vector of each component of `codes` (row-major `[n, components]`) on
    /// `device`: what [`Quantizer::quantize`] returns as `parts` for latents with these codes.
    ///
    /// # Errors
    /// [`SemanticError::IdOutOfRange`] for a code outside its codebook,
    /// [`SemanticError::IdLength`] for a partial row.
    fn decode_parts(&self, codes: &[u32], device: &Device) -> Result<Vec<Tensor<2>>>;

    /// Whether the latent is the sum of the parts (residual quantizers) rather than their
    /// concatenation.
    fn residual(&self) -> bool;

    /// The quantized latents of `codes` (row-major `[n, components]`) on `device`,
    /// `[n, latent_dim]`: the codebook lookup.
    ///
    /// # Errors
    /// As [`Quantizer::decode_parts`].
    fn decode(&self, codes: &[u32], device: &Device) -> Result<Tensor<2>> {
        let parts = self.decode_parts(codes, device)?;
        if self.residual() {
            let mut iter = parts.into_iter();
            let first = iter
                .next()
                .ok_or_else(|| SemanticError::input("a quantizer without components"))?;
            Ok(iter.fold(first, |a, b| a + b))
        } else {
            Ok(Tensor::cat(parts, 1))
        }
    }
}

/// Which quantizer, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum QuantizerConfig {
    /// [`Fsq`]: `levels[k]` lists the levels of component `k`'s dimensions.
    Fsq {
        /// Levels per dimension, per component (each ≥ 2).
        levels: Vec<Vec<u32>>,
    },
    /// [`ResidualFsq`]: `stages` stages of one FSQ with `levels`.
    ResidualFsq {
        /// Levels per dimension of every stage.
        levels: Vec<u32>,
        /// Stages (components).
        stages: usize,
    },
    /// [`ResidualVq`].
    ResidualVq {
        /// Codes per stage.
        codebook_size: usize,
        /// Stages (components).
        stages: usize,
        /// Width of the latent and of each code.
        dim: usize,
        /// EMA decay of the codebook statistics.
        decay: f64,
        /// A code whose EMA cluster size falls below this is dead and replaced by a batch
        /// vector (0: never).
        dead_threshold: f64,
        /// Initialize codebooks by residual k-means over the training latents.
        kmeans_init: bool,
    },
}

impl QuantizerConfig {
    /// The names of the presets, as [`QuantizerConfig::preset`] takes them (the `type` of each).
    pub const PRESETS: [&'static str; 3] = ["fsq", "residual_fsq", "residual_vq"];

    /// The default configuration of the quantizer named `name` (`fsq`, `residual_fsq`,
    /// `residual_vq`): what `lexforge semantic train --quantizer` and Python's
    /// `semantic.train(quantizer=...)` take.
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] naming the presets.
    pub fn preset(name: &str) -> Result<Self, crate::error::SemanticError> {
        match name {
            "fsq" => Ok(Self::fsq_default()),
            "residual_fsq" => Ok(Self::residual_fsq_default()),
            "residual_vq" => Ok(Self::residual_vq_default()),
            other => Err(crate::error::SemanticError::param(
                "quantizer",
                format!("unknown quantizer {other:?}: {}", Self::PRESETS.join(", ")),
            )),
        }
    }

    /// FSQ with 4 components of levels `[8, 4]` (32 codes each).
    pub fn fsq_default() -> Self {
        QuantizerConfig::Fsq {
            levels: vec![vec![8, 4]; 4],
        }
    }

    /// Residual FSQ with 4 stages of levels `[8, 4]`.
    pub fn residual_fsq_default() -> Self {
        QuantizerConfig::ResidualFsq {
            levels: vec![8, 4],
            stages: 4,
        }
    }

    /// Residual VQ with 4 stages of 32 codes of width 32.
    pub fn residual_vq_default() -> Self {
        QuantizerConfig::ResidualVq {
            codebook_size: 32,
            stages: 4,
            dim: 32,
            decay: 0.95,
            dead_threshold: 1.0,
            kmeans_init: true,
        }
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let levels_ok = |l: &[u32]| !l.is_empty() && l.iter().all(|&x| (2..=256).contains(&x));
        match self {
            QuantizerConfig::Fsq { levels } => {
                if levels.is_empty() || !levels.iter().all(|l| levels_ok(l)) {
                    return Err(SemanticError::param(
                        "levels",
                        "every component needs at least one dimension with 2..=256 levels",
                    ));
                }
                if levels.iter().any(|l| codebook_size(l) > 1 << 16) {
                    return Err(SemanticError::param(
                        "levels",
                        "a codebook above 65,536 codes",
                    ));
                }
            }
            QuantizerConfig::ResidualFsq { levels, stages } => {
                if !levels_ok(levels) {
                    return Err(SemanticError::param(
                        "levels",
                        "each level must be in 2..=256",
                    ));
                }
                if *stages == 0 {
                    return Err(SemanticError::param("stages", "must be at least 1"));
                }
                if codebook_size(levels) > 1 << 16 {
                    return Err(SemanticError::param(
                        "levels",
                        "a codebook above 65,536 codes",
                    ));
                }
            }
            QuantizerConfig::ResidualVq {
                codebook_size,
                stages,
                dim,
                decay,
                dead_threshold,
                ..
            } => {
                if *codebook_size < 2 {
                    return Err(SemanticError::param("codebook_size", "must be at least 2"));
                }
                if *stages == 0 {
                    return Err(SemanticError::param("stages", "must be at least 1"));
                }
                if *dim == 0 {
                    return Err(SemanticError::param("dim", "must be at least 1"));
                }
                if !(0.0..1.0).contains(decay) {
                    return Err(SemanticError::param("decay", "must be in [0, 1)"));
                }
                if !(dead_threshold.is_finite() && *dead_threshold >= 0.0) {
                    return Err(SemanticError::param("dead_threshold", "must be >= 0"));
                }
            }
        }
        Ok(())
    }

    /// Width of the latents.
    pub fn latent_dim(&self) -> usize {
        match self {
            QuantizerConfig::Fsq { levels } => levels.iter().map(Vec::len).sum(),
            QuantizerConfig::ResidualFsq { levels, .. } => levels.len(),
            QuantizerConfig::ResidualVq { dim, .. } => *dim,
        }
    }

    /// Codebook size of each component.
    pub fn codebook_sizes(&self) -> Vec<usize> {
        match self {
            QuantizerConfig::Fsq { levels } => levels.iter().map(|l| codebook_size(l)).collect(),
            QuantizerConfig::ResidualFsq { levels, stages } => vec![codebook_size(levels); *stages],
            QuantizerConfig::ResidualVq {
                codebook_size,
                stages,
                ..
            } => vec![*codebook_size; *stages],
        }
    }
}

pub(super) fn codebook_size(levels: &[u32]) -> usize {
    levels.iter().map(|&l| l as usize).product()
}

pub(crate) fn host(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|e| SemanticError::input(format!("cannot read a tensor back: {e:?}")))
}

pub(super) fn row_tensor(values: Vec<f32>, device: &Device) -> Tensor<2> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [1, n]), device)
}

pub(super) fn check_latent(z: &Tensor<2>, dim: usize) -> Result<usize> {
    let [n, d] = z.dims();
    if d != dim {
        return Err(SemanticError::input(format!(
            "latents have width {d}, the quantizer expects {dim}"
        )));
    }
    Ok(n)
}

/// Squared distances `[n, K]` between the rows of `x` `[n, d]` and `codebook` `[K, d]`.
pub(super) fn sq_dist(x: Tensor<2>, codebook: Tensor<2>) -> Tensor<2> {
    let x2 = x.clone().square().sum_dim(1);
    let c2 = codebook.clone().square().sum_dim(1).transpose();
    x2 + c2 - x.matmul(codebook.transpose()).mul_scalar(2.0)
}

/// Component names for errors.
fn component_name(k: usize) -> &'static str {
    crate::corpus::COMPONENTS.get(k).copied().unwrap_or("extra")
}

/// Checks that `codes` is whole rows of in-range codes.
pub(crate) fn check_codes(codes: &[u32], sizes: &[usize]) -> Result<()> {
    let c = sizes.len();
    if !codes.len().is_multiple_of(c) {
        return Err(SemanticError::IdLength {
            expected: c,
            found: codes.len() % c,
        });
    }
    for row in codes.chunks(c) {
        for (k, (&v, &size)) in row.iter().zip(sizes).enumerate() {
            if v as usize >= size {
                return Err(SemanticError::IdOutOfRange {
                    component: k,
                    name: component_name(k),
                    value: i64::from(v),
                    size,
                });
            }
        }
    }
    Ok(())
}

/// One of the quantizers, as a module field.
#[derive(Module, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per model, never in a collection"
)]
pub enum AnyQuantizer {
    /// [`Fsq`].
    Fsq(Fsq),
    /// [`ResidualFsq`].
    ResidualFsq(ResidualFsq),
    /// [`ResidualVq`].
    ResidualVq(ResidualVq),
}

impl AnyQuantizer {
    /// The quantizer of `config` on `device` (residual-VQ codebooks random until
    /// [`ResidualVq::init_kmeans`]).
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] for unusable values.
    pub fn new(config: &QuantizerConfig, device: &Device) -> Result<Self> {
        Ok(match config {
            QuantizerConfig::Fsq { levels } => AnyQuantizer::Fsq(Fsq::new(levels.clone())?),
            QuantizerConfig::ResidualFsq { levels, stages } => {
                AnyQuantizer::ResidualFsq(ResidualFsq::new(levels.clone(), *stages)?)
            }
            QuantizerConfig::ResidualVq { .. } => {
                AnyQuantizer::ResidualVq(ResidualVq::new(config, device)?)
            }
        })
    }

    fn inner(&self) -> &dyn Quantizer {
        match self {
            AnyQuantizer::Fsq(q) => q,
            AnyQuantizer::ResidualFsq(q) => q,
            AnyQuantizer::ResidualVq(q) => q,
        }
    }
}

impl Quantizer for AnyQuantizer {
    fn name(&self) -> &'static str {
        self.inner().name()
    }

    fn latent_dim(&self) -> usize {
        self.inner().latent_dim()
    }

    fn codebook_sizes(&self) -> Vec<usize> {
        self.inner().codebook_sizes()
    }

    fn quantize(&self, z: Tensor<2>, temperature: f64) -> Result<Quantized> {
        self.inner().quantize(z, temperature)
    }

    fn decode_parts(&self, codes: &[u32], device: &Device) -> Result<Vec<Tensor<2>>> {
        self.inner().decode_parts(codes, device)
    }

    fn residual(&self) -> bool {
        self.inner().residual()
    }
}

/// What the quantizers' tests share: their device and a `[rows, cols]` tensor from values.
#[cfg(test)]
pub(crate) mod test_util {
    use burn::tensor::{Device, Tensor, TensorData};

    pub(crate) fn device() -> Device {
        Device::flex()
    }

    pub(crate) fn t2(values: Vec<f32>, rows: usize, cols: usize) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, [rows, cols]), &device())
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::device;
    use super::*;

    #[test]
    fn out_of_range_codes_are_typed_errors() {
        let q = Fsq::new(vec![vec![8, 4]; 4]).unwrap();
        let err = q.decode(&[0, 1, 32, 0], &device()).unwrap_err();
        assert!(matches!(
            err,
            SemanticError::IdOutOfRange {
                component: 2,
                value: 32,
                size: 32,
                ..
            }
        ));
        assert!(matches!(
            q.decode(&[0, 1, 2], &device()).unwrap_err(),
            SemanticError::IdLength { .. }
        ));
    }
}
