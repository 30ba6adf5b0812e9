//! What LoRA adapts and how: the targetable weights ([`LoraTarget`]), the hyper-parameters
//! ([`LoraConfig`]) and the dimensions of the base they must match ([`BaseFingerprint`]).

use burn::nn::Linear;
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};
use crate::gpt2::{Gpt2, Gpt2Block};

/// A GPT-2 weight that can carry an adapter; each names the same projection in every block.
///
/// Serialized as its path inside a block (`"attn.c_attn"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LoraTarget {
    /// `attn.c_attn`, the fused query/key/value projection `[n_embd, 3 n_embd]`.
    #[serde(rename = "attn.c_attn")]
    AttnQkv,
    /// `attn.c_proj`, the attention output projection `[n_embd, n_embd]`.
    #[serde(rename = "attn.c_proj")]
    AttnProj,
    /// `mlp.c_fc`, the MLP input projection `[n_embd, n_inner]`.
    #[serde(rename = "mlp.c_fc")]
    MlpFc,
    /// `mlp.c_proj`, the MLP output projection `[n_inner, n_embd]`.
    #[serde(rename = "mlp.c_proj")]
    MlpProj,
}

impl LoraTarget {
    /// The attention projections (the default targets).
    pub const ATTENTION: [LoraTarget; 2] = [LoraTarget::AttnQkv, LoraTarget::AttnProj];
    /// Every target: attention and MLP projections.
    pub const ALL: [LoraTarget; 4] = [
        LoraTarget::AttnQkv,
        LoraTarget::AttnProj,
        LoraTarget::MlpFc,
        LoraTarget::MlpProj,
    ];

    /// The path of the layer inside a block (`"attn.c_attn"`).
    pub fn name(self) -> &'static str {
        match self {
            LoraTarget::AttnQkv => "attn.c_attn",
            LoraTarget::AttnProj => "attn.c_proj",
            LoraTarget::MlpFc => "mlp.c_fc",
            LoraTarget::MlpProj => "mlp.c_proj",
        }
    }

    pub(super) fn linear(self, block: &Gpt2Block) -> &Linear {
        match self {
            LoraTarget::AttnQkv => &block.attn.c_attn,
            LoraTarget::AttnProj => &block.attn.c_proj,
            LoraTarget::MlpFc => &block.mlp.c_fc,
            LoraTarget::MlpProj => &block.mlp.c_proj,
        }
    }

    /// `[d_in, d_out]` of the weight in a base with dimensions `base`.
    pub(super) fn dims(self, base: &BaseFingerprint) -> [usize; 2] {
        let (d, inner) = (base.n_embd, base.n_inner);
        match self {
            LoraTarget::AttnQkv => [d, 3 * d],
            LoraTarget::AttnProj => [d, d],
            LoraTarget::MlpFc => [d, inner],
            LoraTarget::MlpProj => [inner, d],
        }
    }

    /// Module path of the weight in block `layer` (`h.0.attn.c_attn.weight`), as burn's
    /// traversal spells it.
    pub(super) fn module_path(self, layer: usize) -> String {
        format!("h.{layer}.{}.weight", self.name())
    }

    /// HF name of the weight in block `layer` (`transformer.h.0.attn.c_attn.weight`).
    pub(super) fn hf_name(self, layer: usize) -> String {
        format!("transformer.h.{layer}.{}.weight", self.name())
    }
}

fn d_rank() -> usize {
    8
}
fn d_alpha() -> f64 {
    16.0
}
fn d_targets() -> Vec<LoraTarget> {
    LoraTarget::ATTENTION.to_vec()
}

/// LoRA hyper-parameters. JSON fields: `rank`, `alpha`, `targets`; unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the adapters: at least 1, at most the smallest dimension of a targeted weight.
    #[serde(default = "d_rank")]
    pub rank: usize,
    /// Scaling numerator: the update is `(alpha / rank) · a @ b`. Finite and positive.
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    /// The weights that get adapters, in every block; not empty, no repeats.
    #[serde(default = "d_targets")]
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: d_rank(),
            alpha: d_alpha(),
            targets: d_targets(),
        }
    }
}

impl LoraConfig {
    /// Rank and alpha, with the default (attention) targets.
    pub fn new(rank: usize, alpha: f64) -> Self {
        LoraConfig {
            rank,
            alpha,
            targets: d_targets(),
        }
    }

    /// The same config adapting `targets`.
    pub fn with_targets(mut self, targets: impl IntoIterator<Item = LoraTarget>) -> Self {
        self.targets = targets.into_iter().collect();
        self
    }

    /// The same config also adapting the MLP projections (`mlp.c_fc`, `mlp.c_proj`).
    pub fn with_mlp(mut self) -> Self {
        for t in [LoraTarget::MlpFc, LoraTarget::MlpProj] {
            if !self.targets.contains(&t) {
                self.targets.push(t);
            }
        }
        self
    }

    /// The factor of the low-rank update, `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Checks every field on its own (the rank against a model is checked by [`apply_lora`]).
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] naming the field (`rank`, `alpha` or `targets`).
    ///
    /// [`apply_lora`]: crate::gpt2::apply_lora
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, value: String, reason: &str| NnError::InvalidConfig {
            field,
            value,
            reason: reason.to_owned(),
        };
        if self.rank == 0 {
            return Err(bad("rank", "0".into(), "must be at least 1"));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(bad(
                "alpha",
                self.alpha.to_string(),
                "must be finite and positive",
            ));
        }
        let names = || {
            self.targets
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.targets.is_empty() {
            return Err(bad("targets", "[]".into(), "must name at least one weight"));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if self.targets[..i].contains(t) {
                return Err(bad(
                    "targets",
                    format!("[{}]", names()),
                    &format!("names {} twice", t.name()),
                ));
            }
        }
        Ok(())
    }

    /// Checks the rank against the weights it would adapt in a base of dimensions `base`.
    pub(super) fn validate_for(&self, base: &BaseFingerprint) -> Result<()> {
        self.validate()?;
        let max = self
            .targets
            .iter()
            .flat_map(|t| t.dims(base))
            .min()
            .unwrap_or(usize::MAX);
        if self.rank > max {
            return Err(NnError::InvalidConfig {
                field: "rank",
                value: self.rank.to_string(),
                reason: format!("must not exceed {max}, the smallest dimension of a target"),
            });
        }
        Ok(())
    }
}

/// The dimensions of a GPT-2 base model, recorded with its adapters so they are never loaded
/// onto another base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseFingerprint {
    /// Number of blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// MLP inner size.
    pub n_inner: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length.
    pub n_positions: usize,
}

impl BaseFingerprint {
    /// The dimensions of `model`, adapted or not (read from the weights' shapes, which
    /// neither initializes a lazy weight nor composes an adapted one).
    pub fn of(model: &Gpt2) -> Self {
        let [vocab_size, n_embd] = model.wte.weight.lazy_shape().dims();
        BaseFingerprint {
            n_layer: model.h.len(),
            n_embd,
            n_inner: model.h.first().map_or(4 * n_embd, |b| {
                b.mlp.c_fc.weight.lazy_shape().dims::<2>()[1]
            }),
            vocab_size,
            n_positions: model.n_positions(),
        }
    }

    pub(super) fn fields(&self) -> [(&'static str, usize); 5] {
        [
            ("n_layer", self.n_layer),
            ("n_embd", self.n_embd),
            ("n_inner", self.n_inner),
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
        ]
    }
}

/// Every `(layer, target)` pair in block order, targets in [`LoraTarget::ALL`] order.
pub(super) fn slots(n_layer: usize) -> impl Iterator<Item = (usize, LoraTarget)> {
    (0..n_layer).flat_map(|i| LoraTarget::ALL.into_iter().map(move |t| (i, t)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use burn::tensor::Device;

    use super::super::tests::tiny;
    use super::*;
    use crate::gpt2::apply_lora;

    #[test]
    fn config_defaults_json_and_validation_name_the_field() {
        let c = LoraConfig::default();
        assert_eq!((c.rank, c.alpha), (8, 16.0));
        assert_eq!(c.targets, LoraTarget::ATTENTION);
        assert_eq!(c.scale(), 2.0);
        let parsed: LoraConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, c);
        let mlp = LoraConfig::new(4, 8.0).with_mlp();
        assert_eq!(mlp.targets, LoraTarget::ALL);
        let json = serde_json::to_string(&mlp).unwrap();
        assert!(
            json.contains(r#""targets":["attn.c_attn","attn.c_proj","mlp.c_fc","mlp.c_proj"]"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<LoraConfig>(&json).unwrap(), mlp);
        let e = serde_json::from_str::<LoraConfig>(r#"{"rank": 4, "dropout": 0.1}"#).unwrap_err();
        assert!(e.to_string().contains("dropout"), "{e}");
        let e = serde_json::from_str::<LoraConfig>(r#"{"targets": ["c_attn"]}"#).unwrap_err();
        assert!(e.to_string().contains("c_attn"), "{e}");

        for (config, field) in [
            (LoraConfig::new(0, 16.0), "rank"),
            (LoraConfig::new(8, 0.0), "alpha"),
            (LoraConfig::new(8, f64::NAN), "alpha"),
            (LoraConfig::new(8, 16.0).with_targets([]), "targets"),
            (
                LoraConfig::new(8, 16.0).with_targets([LoraTarget::MlpFc, LoraTarget::MlpFc]),
                "targets",
            ),
        ] {
            let e = config.validate().unwrap_err();
            assert!(
                matches!(e, NnError::InvalidConfig { field: f, .. } if f == field),
                "{e}"
            );
        }
        // The rank is checked against the model: at most n_embd = 32 here.
        let model = Gpt2::new(&tiny(), &Device::flex()).unwrap();
        let e = apply_lora(model, &LoraConfig::new(33, 16.0)).unwrap_err();
        assert!(
            matches!(e, NnError::InvalidConfig { field: "rank", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("32"), "{e}");
    }
}
