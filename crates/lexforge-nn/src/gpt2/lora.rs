//! LoRA fine-tuning of GPT-2 on burn's built-in adapters, the adapters saved apart from the
//! base model.
//!
//! [`apply_lora`] attaches burn [`LoraAdapter`]s to the targeted projection weights of every
//! block (by default the attention's `c_attn` and `c_proj`) and freezes every other parameter.
//! The model stays a [`Gpt2`]: its forward, the KV cache, [`CausalLm`](crate::generate::CausalLm)
//! generation, `valid()`, `fork()` and `to_device()` work unchanged, because an adapted weight's
//! `Param::val()` is `base + (alpha / rank) · (a @ b)`.
//!
//! # Design
//!
//! burn 0.22 stores an adapter *inside* the weight's `Param`, as a reparameterization whose
//! factors are ordinary parameters with their own ids:
//!
//! - **Shapes.** A weight `[d_in, d_out]` (burn's `Linear` and HF's `Conv1D` layout) gets
//!   `a: [d_in, rank]` (initialized N(0, 1/rank)) and `b: [rank, d_out]` (zeros), so a freshly
//!   adapted model computes exactly what the base did.
//! - **Training.** Module traversal visits the frozen base at `….weight` and the factors at
//!   `….weight.lora.a` / `….weight.lora.b`. `GradientsParams::from_grads` therefore collects
//!   gradients for the factors only; an optimizer never sees the base.
//! - **Records.** `Module::into_record` and `burn-store`'s safetensors export hold the base
//!   (unmerged) and the two factors under those paths, but not `scale` (a plain `f64` field):
//!   a record of an adapted model loads onto a model adapted with the same targets and rank,
//!   and computes with *that* model's `alpha / rank`.
//! - **Merging.** `Module::materialize` folds `scale · a @ b` into the base and drops the
//!   adapter ([`merge_adapters`]). `save_hf_dir` of an adapted model writes merged weights too,
//!   since it reads `val()`.
//!
//! On disk, adapters live apart from the base in a directory of two files, each written
//! atomically (adapters first):
//!
//! - [`ADAPTERS_FILE`] (`adapters.safetensors`, f32): for every adapted weight, its HF name
//!   plus `.lora_a` (`[d_in, rank]`) and `.lora_b` (`[rank, d_out]`), e.g.
//!   `transformer.h.0.attn.c_attn.weight.lora_a`. The effective weight is
//!   `W + (alpha / rank) · lora_a @ lora_b` in `x @ W` (Conv1D) orientation; PEFT's `lora_A`
//!   (`[rank, d_in]`) and `lora_B` (`[d_out, rank]`) are their transposes. The header's metadata
//!   repeats the adapter config under `lexforge.adapter_config`, so the two files cannot be
//!   paired wrongly after an interrupted save.
//! - [`ADAPTER_CONFIG_FILE`] (`adapter_config.json`): an [`AdapterConfig`] — format version,
//!   the [`LoraConfig`], and the [`BaseFingerprint`] (dimensions of the base it was trained on).
//!
//! [`load_adapters`] checks the fingerprint and every tensor name and shape before touching the
//! model; a mismatched, truncated or foreign directory is a typed error naming the file.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Lora, LoraAdapter, Module, Param, ParamGroup, Reparameterizer};
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::model::{Gpt2, Gpt2Block};
use crate::error::{AdapterProblem, NnError, Result};
use crate::hf::{self, HfReader, HfWriter};

/// The adapter weights of an adapter directory.
pub const ADAPTERS_FILE: &str = "adapters.safetensors";
/// The adapter config of an adapter directory.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// The [`AdapterConfig::format`] this build writes and reads.
pub const ADAPTER_FORMAT: u32 = 1;
/// Key of the adapter config (compact JSON) in the safetensors header metadata.
const METADATA_KEY: &str = "lexforge.adapter_config";

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

    fn linear(self, block: &Gpt2Block) -> &Linear {
        match self {
            LoraTarget::AttnQkv => &block.attn.c_attn,
            LoraTarget::AttnProj => &block.attn.c_proj,
            LoraTarget::MlpFc => &block.mlp.c_fc,
            LoraTarget::MlpProj => &block.mlp.c_proj,
        }
    }

    /// `[d_in, d_out]` of the weight in a base with dimensions `base`.
    fn dims(self, base: &BaseFingerprint) -> [usize; 2] {
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
    fn module_path(self, layer: usize) -> String {
        format!("h.{layer}.{}.weight", self.name())
    }

    /// HF name of the weight in block `layer` (`transformer.h.0.attn.c_attn.weight`).
    fn hf_name(self, layer: usize) -> String {
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
    fn validate_for(&self, base: &BaseFingerprint) -> Result<()> {
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

    fn fields(&self) -> [(&'static str, usize); 5] {
        [
            ("n_layer", self.n_layer),
            ("n_embd", self.n_embd),
            ("n_inner", self.n_inner),
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
        ]
    }
}

/// The content of `adapter_config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// File format version ([`ADAPTER_FORMAT`]).
    pub format: u32,
    /// The LoRA hyper-parameters.
    pub lora: LoraConfig,
    /// The base the adapters were trained on.
    pub base: BaseFingerprint,
}

/// Every `(layer, target)` pair in block order, targets in [`LoraTarget::ALL`] order.
fn slots(n_layer: usize) -> impl Iterator<Item = (usize, LoraTarget)> {
    (0..n_layer).flat_map(|i| LoraTarget::ALL.into_iter().map(move |t| (i, t)))
}

/// Attaches LoRA adapters of `config` to `model` and freezes everything else: afterwards only
/// the factors `a` (`[d_in, rank]`, N(0, 1/rank), drawn from the device's RNG) and `b`
/// (`[rank, d_out]`, zeros) require gradients, and the model computes exactly what it did
/// before (`b = 0`).
///
/// Dropout layers keep their settings. Apply it on the training (autodiff) device, or on a
/// plain device followed by `Module::train` — the frozen state carries over either way.
///
/// # Errors
/// [`NnError::InvalidConfig`] for a bad config or a rank above a target's smallest dimension;
/// [`NnError::Adapter`] with [`AdapterProblem::AlreadyAdapted`] if a weight already has one.
pub fn apply_lora(model: Gpt2, config: &LoraConfig) -> Result<Gpt2> {
    config.validate_for(&BaseFingerprint::of(&model))?;
    ensure_unadapted(&model)?;
    let paths: Vec<String> = slots(model.h.len())
        .filter(|(_, t)| config.targets.contains(t))
        .map(|(i, t)| t.module_path(i))
        .collect();
    let lora = Lora::new(config.rank, config.alpha).set_param_group(ParamGroup::from_paths(paths));
    let model = model.apply_lora(lora);
    check_adapters(&model, config)?;
    tracing::debug!(
        rank = config.rank,
        alpha = config.alpha,
        adapters = adapted_weights(&model).len(),
        "LoRA adapters attached"
    );
    Ok(model)
}

/// The module paths (`h.{i}.attn.c_attn.weight`) of the weights of `model` that carry an
/// adapter, in block order.
pub fn adapted_weights(model: &Gpt2) -> Vec<String> {
    slots(model.h.len())
        .filter(|&(i, t)| t.linear(&model.h[i]).weight.adapter().is_some())
        .map(|(i, t)| t.module_path(i))
        .collect()
}

fn ensure_unadapted(model: &Gpt2) -> Result<()> {
    match adapted_weights(model).into_iter().next() {
        Some(param) => Err(NnError::Adapter {
            param,
            problem: AdapterProblem::AlreadyAdapted,
        }),
        None => Ok(()),
    }
}

/// Checks that exactly the targets of `config` carry adapters of its rank and scale.
fn check_adapters(model: &Gpt2, config: &LoraConfig) -> Result<()> {
    for (i, t) in slots(model.h.len()) {
        let adapter = t.linear(&model.h[i]).weight.adapter();
        let problem = match (config.targets.contains(&t), adapter) {
            (true, None) => Some(AdapterProblem::Missing),
            (false, Some(_)) => Some(AdapterProblem::NotTargeted),
            (false, None) => None,
            (true, Some(a)) => {
                let rank = a.a.val().dims()[1];
                if rank != config.rank {
                    Some(AdapterProblem::Rank {
                        expected: config.rank,
                        got: rank,
                    })
                } else if a.scale != config.scale() {
                    Some(AdapterProblem::Scale {
                        expected: config.scale(),
                        got: a.scale,
                    })
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            return Err(NnError::Adapter {
                param: t.module_path(i),
                problem,
            });
        }
    }
    Ok(())
}

/// Writes the adapters of `model` (built with `config`) into `dir` — [`ADAPTERS_FILE`] then
/// [`ADAPTER_CONFIG_FILE`], each atomically; the base weights are not written.
///
/// # Errors
/// [`NnError::Adapter`] if the model's adapters are not those of `config` (a target without
/// adapter, another rank or scale); I/O errors naming the file.
pub fn save_adapters(model: &Gpt2, config: &LoraConfig, dir: &Path) -> Result<()> {
    config.validate()?;
    check_adapters(model, config)?;
    let file = AdapterConfig {
        format: ADAPTER_FORMAT,
        lora: config.clone(),
        base: BaseFingerprint::of(model),
    };
    let mut w = HfWriter::new();
    for (i, t) in slots(model.h.len()) {
        if let Some(adapter) = t.linear(&model.h[i]).weight.adapter() {
            w.put(format!("{}.lora_a", t.hf_name(i)), adapter.a.val())?;
            w.put(format!("{}.lora_b", t.hf_name(i)), adapter.b.val())?;
        }
    }
    let serialize_error = |source| lexforge_core::Error::Serialize {
        what: "adapter config",
        source,
    };
    let compact = serde_json::to_string(&file).map_err(serialize_error)?;
    let pretty = serde_json::to_vec_pretty(&file).map_err(serialize_error)?;
    let bytes = w.to_bytes(HashMap::from([(METADATA_KEY.to_owned(), compact)]))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| lexforge_core::Error::io("create directory", dir, e))?;
    lexforge_core::atomic_write(&dir.join(ADAPTERS_FILE), &bytes)?;
    lexforge_core::atomic_write(&dir.join(ADAPTER_CONFIG_FILE), &pretty)?;
    Ok(())
}

/// Reads the adapter directory `dir` and attaches its adapters to `model` (a base without
/// adapters, e.g. fresh from [`load_hf_dir`](super::load_hf_dir)), which is frozen as by
/// [`apply_lora`]: on an autodiff device, training resumes on the loaded factors. Returns the
/// adapters' config and the adapted model; its logits are bit-identical to those of the model
/// the adapters were saved from (same base weights, evaluated on the same backend).
///
/// Everything is checked before the model is touched.
///
/// # Errors
/// Each naming the file: I/O errors (a missing file: not found); `lexforge_core::Error::Json`
/// for a config that is not an [`AdapterConfig`] (foreign or damaged);
/// `lexforge_core::Error::SchemaVersion` for another format; [`NnError::InvalidAdapterConfig`];
/// [`NnError::AdapterBaseMismatch`] for adapters of a base of other dimensions;
/// [`NnError::Weights`] for a truncated or non-safetensors file, or one written with another
/// config; [`NnError::MissingTensor`], [`NnError::ShapeMismatch`],
/// [`NnError::UnexpectedTensor`]. [`NnError::Adapter`] if `model` already has adapters.
pub fn load_adapters(model: Gpt2, dir: &Path) -> Result<(LoraConfig, Gpt2)> {
    let config_path = dir.join(ADAPTER_CONFIG_FILE);
    let file: AdapterConfig = hf::read_json(&config_path, "read adapter config")?;
    if file.format != ADAPTER_FORMAT {
        return Err(lexforge_core::Error::SchemaVersion {
            path: config_path,
            found: file.format,
            supported: ADAPTER_FORMAT,
        }
        .into());
    }
    let base = BaseFingerprint::of(&model);
    for ((field, adapters), (_, got)) in file.base.fields().into_iter().zip(base.fields()) {
        if adapters != got {
            return Err(NnError::AdapterBaseMismatch {
                path: config_path,
                field,
                adapters,
                model: got,
            });
        }
    }
    match file.lora.validate_for(&base) {
        Ok(()) => {}
        Err(NnError::InvalidConfig {
            field,
            value,
            reason,
        }) => {
            return Err(NnError::InvalidAdapterConfig {
                path: config_path,
                field,
                value,
                reason,
            });
        }
        Err(e) => return Err(e),
    }
    ensure_unadapted(&model)?;

    let path = dir.join(ADAPTERS_FILE);
    let bytes =
        std::fs::read(&path).map_err(|e| lexforge_core::Error::io("read adapters", &path, e))?;
    let st = hf::parse(&path, &bytes)?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| NnError::Weights {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if let Some(json) = header.metadata().as_ref().and_then(|m| m.get(METADATA_KEY)) {
        let written: Option<AdapterConfig> = serde_json::from_str(json).ok();
        if written.as_ref() != Some(&file) {
            return Err(NnError::Weights {
                path,
                reason: format!(
                    "written with another {ADAPTER_CONFIG_FILE} than the one beside it \
                     (an interrupted save, or files of two adapters mixed)"
                ),
            });
        }
    }
    let device = model.wte.weight.lazy_device();
    let reader = HfReader::new(&path, &st, "", &device);
    let mut factors = HashMap::new();
    let mut expected_names = Vec::new();
    for (i, t) in slots(base.n_layer).filter(|(_, t)| file.lora.targets.contains(t)) {
        let [d_in, d_out] = t.dims(&base);
        let (name_a, name_b) = (
            format!("{}.lora_a", t.hf_name(i)),
            format!("{}.lora_b", t.hf_name(i)),
        );
        let a = reader.get_data(&name_a, [d_in, file.lora.rank])?;
        let b = reader.get_data(&name_b, [file.lora.rank, d_out])?;
        factors.insert(t.module_path(i), (a, b));
        expected_names.extend([name_a, name_b]);
    }
    if let Some(name) = st
        .names()
        .into_iter()
        .find(|n| !expected_names.iter().any(|e| e == *n))
    {
        return Err(NnError::UnexpectedTensor {
            path,
            name: (*name).to_owned(),
        });
    }

    let model = model.apply_reparameterization(LoadedLora {
        factors,
        scale: file.lora.scale(),
    });
    check_adapters(&model, &file.lora)?;
    tracing::debug!(path = %path.display(), rank = file.lora.rank, "LoRA adapters loaded");
    Ok((file.lora, model))
}

/// A [`Reparameterizer`] attaching factors read from a file, freezing every parameter as
/// burn's [`Lora`] does.
struct LoadedLora {
    /// Module path of the weight → `(a [d_in, rank], b [rank, d_out])`.
    factors: HashMap<String, (TensorData, TensorData)>,
    scale: f64,
}

impl Reparameterizer for LoadedLora {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let device = param.lazy_device();
        let base = param.set_require_grad(false);
        match self.factors.remove(path) {
            Some((a, b)) if D == 2 => {
                // `from_data` places the factors as parameters (persistent allocations, gradients
                // required on an autodiff device), as burn's `Lora` builds its own.
                let adapter = LoraAdapter {
                    a: Param::from_data(a, &device),
                    b: Param::from_data(b, &device),
                    scale: self.scale,
                };
                (base, Some(adapter))
            }
            _ => (base, None),
        }
    }
}

/// Folds every adapter into its weight (`W + (alpha / rank) · a @ b`, computed once) and drops
/// it: a plain GPT-2 whose logits equal the adapted model's (up to float rounding), with every
/// parameter trainable again as in a model from [`Gpt2::new`]. Save it with
/// [`save_hf_dir`](super::save_hf_dir) to ship a standalone fine-tuned model.
pub fn merge_adapters(model: Gpt2) -> Gpt2 {
    model.materialize().set_require_grad(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use burn::module::ModuleVisitor;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::{Device, Int};

    use super::*;
    use crate::generate::{CausalLm, GenerateConfig, generate};
    use crate::gpt2::{Gpt2Config, load_hf_dir, save_hf_dir};

    const VOCAB: usize = 64;

    fn tiny() -> Gpt2Config {
        let mut c = Gpt2Config::new(VOCAB, 16, 32, 2, 4);
        c.resid_pdrop = 0.0;
        c.embd_pdrop = 0.0;
        c.attn_pdrop = 0.0;
        c
    }

    fn ids(v: &[i64], device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
    }

    const SEQ: [i64; 9] = [3, 17, 42, 8, 1, 29, 11, 60, 5];

    fn logits(model: &Gpt2, device: &Device) -> Vec<f32> {
        model
            .forward(ids(&SEQ[..8], device))
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Next-token cross-entropy on [`SEQ`] (on the model's device).
    fn loss(model: &Gpt2, device: &Device) -> Tensor<1> {
        let x = ids(&SEQ[..8], device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(SEQ[1..].to_vec(), [8]), device);
        let logits = model.forward(x).unwrap().reshape([8, VOCAB]);
        CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits, y)
    }

    /// `steps` AdamW steps on [`loss`]; returns the model and the number of gradients of the
    /// last step.
    fn train(mut model: Gpt2, device: &Device, steps: usize) -> (Gpt2, usize) {
        let mut optim = AdamWConfig::new().init();
        let mut n = 0;
        for _ in 0..steps {
            let grads = GradientsParams::from_grads(loss(&model, device).backward(), &model);
            n = grads.len();
            model = optim.step(1e-2, model, grads);
        }
        (model, n)
    }

    /// Every parameter's stored value by module path (bases unmerged, factors under
    /// `….lora.a` / `….lora.b`), as burn's traversal reports them.
    #[derive(Default)]
    struct Params {
        path: Vec<String>,
        values: Vec<(String, Vec<f32>, bool)>,
    }

    impl ModuleVisitor for Params {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let grad = t.is_require_grad();
            self.values.push((self.path.join("."), values(t), grad));
        }
    }

    fn params(model: &Gpt2) -> Vec<(String, Vec<f32>, bool)> {
        let mut v = Params::default();
        model.visit(&mut v);
        v.values
    }

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

    /// One AdamW step trains the factors only: every base parameter is bit-identical, `b`
    /// moved, the output moved. Gradients exist for exactly the factors.
    #[test]
    fn only_adapter_factors_train() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let base = Gpt2::new(&tiny(), &device).unwrap();
        let before = logits(&base, &device);
        let model = apply_lora(base, &LoraConfig::new(4, 8.0)).unwrap();
        assert_eq!(
            adapted_weights(&model),
            [
                "h.0.attn.c_attn.weight",
                "h.0.attn.c_proj.weight",
                "h.1.attn.c_attn.weight",
                "h.1.attn.c_proj.weight"
            ]
        );
        // b = 0: the adapted model computes exactly what the base did.
        assert_eq!(logits(&model, &device), before);
        let params_before = params(&model);
        let trainable: Vec<&str> = params_before
            .iter()
            .filter(|p| p.2)
            .map(|p| p.0.as_str())
            .collect();
        assert_eq!(trainable.len(), 8, "{trainable:?}");
        assert!(
            trainable
                .iter()
                .all(|p| p.ends_with(".weight.lora.a") || p.ends_with(".weight.lora.b"))
        );

        let (model, n_grads) = train(model, &device, 1);
        assert_eq!(n_grads, 8, "gradients for the 8 factors only");
        let params_after = params(&model);
        assert_eq!(params_before.len(), params_after.len());
        for ((path, a, _), (_, b, _)) in params_before.iter().zip(&params_after) {
            if path.contains(".lora.") {
                if path.ends_with(".lora.b") {
                    assert_ne!(a, b, "{path} did not move");
                }
            } else {
                assert_eq!(a, b, "{path} changed");
            }
        }
        let after = logits(&model, &device);
        assert!(max_abs_diff(&before, &after) > 1e-4);
    }

    /// What burn's records and burn-store see of an adapted model: the base unmerged at
    /// `….weight`, the factors at `….weight.lora.{a,b}`, and no scale.
    #[test]
    fn records_and_burn_store_hold_unmerged_base_and_factors() {
        use burn::store::{ModuleSnapshot, SafetensorsStore};
        let device = Device::flex().autodiff();
        device.seed(2);
        let base = Gpt2::new(&tiny(), &device).unwrap();
        let base_params = base.num_params();
        let (model, _) = train(
            apply_lora(base, &LoraConfig::new(4, 8.0)).unwrap(),
            &device,
            1,
        );
        // 2 layers × (c_attn: 32·4 + 4·96, c_proj: 32·4 + 4·32).
        assert_eq!(
            model.num_params(),
            base_params + 2 * (32 * 4 + 4 * 96 + 32 * 4 + 4 * 32)
        );

        let mut store = SafetensorsStore::from_bytes(None);
        model.save_into(&mut store).unwrap();
        let bytes = store.get_bytes().unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let names = st.names();
        for n in [
            "h.0.attn.c_attn.weight",
            "h.0.attn.c_attn.weight.lora.a",
            "h.0.attn.c_attn.weight.lora.b",
        ] {
            assert!(names.contains(&n), "{n} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("mlp.c_fc.weight.lora")));
        let stored = st.tensor("h.0.attn.c_attn.weight").unwrap();
        let stored: Vec<f32> = stored
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let w = &model.h[0].attn.c_attn.weight;
        assert_eq!(stored, values(w.base()), "the base is stored unmerged");
        assert_ne!(stored, values(w.val()));

        // A record round-trips onto a model adapted with the same config.
        let target = apply_lora(
            Gpt2::new(&tiny(), &device).unwrap(),
            &LoraConfig::new(4, 8.0),
        )
        .unwrap();
        let loaded = target.load_record(model.clone().into_record());
        assert_eq!(logits(&loaded, &device), logits(&model, &device));
    }

    /// Train on the autodiff device, save the adapters alone, load them onto a freshly loaded
    /// base: bit-identical logits; the directory holds the two files only.
    #[test]
    fn adapters_round_trip_onto_a_fresh_base_bit_identically() {
        let plain = Device::flex();
        let base_dir = tempfile::tempdir().unwrap();
        let config = tiny();
        save_hf_dir(
            &Gpt2::new(&config, &plain).unwrap(),
            &config,
            base_dir.path(),
        )
        .unwrap();

        let device = Device::flex().autodiff();
        device.seed(3);
        let (_, base) = load_hf_dir(base_dir.path(), &device).unwrap();
        let lora = LoraConfig::new(4, 8.0).with_mlp();
        let (trained, _) = train(apply_lora(base, &lora).unwrap(), &device, 2);

        let dir = tempfile::tempdir().unwrap();
        let adapter_dir = dir.path().join("adapter");
        save_adapters(&trained, &lora, &adapter_dir).unwrap();
        let mut files: Vec<String> = std::fs::read_dir(&adapter_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, [ADAPTER_CONFIG_FILE, ADAPTERS_FILE]);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(adapter_dir.join(ADAPTER_CONFIG_FILE)).unwrap())
                .unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json["lora"]["rank"], 4);
        assert_eq!(json["lora"]["alpha"], 8.0);
        assert_eq!(json["lora"]["targets"].as_array().unwrap().len(), 4);
        assert_eq!(json["base"]["n_layer"], 2);
        assert_eq!(json["base"]["n_embd"], 32);
        assert_eq!(json["base"]["vocab_size"], 64);
        let bytes = std::fs::read(adapter_dir.join(ADAPTERS_FILE)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), 2 * 2 * 4);
        let a = st.tensor("transformer.h.1.mlp.c_fc.weight.lora_a").unwrap();
        assert_eq!(a.shape(), [32, 4]);
        let b = st.tensor("transformer.h.1.mlp.c_fc.weight.lora_b").unwrap();
        assert_eq!(b.shape(), [4, 128]);
        assert!(bytes.len() < 40_000, "base weights are not in the file");

        let (_, fresh) = load_hf_dir(base_dir.path(), &plain).unwrap();
        let (loaded_config, loaded) = load_adapters(fresh, &adapter_dir).unwrap();
        assert_eq!(loaded_config, lora);
        let expected = logits(&trained.valid(), &plain);
        assert_eq!(logits(&loaded, &plain), expected, "bit-identical logits");

        // Loaded onto an autodiff base, training resumes on the factors only.
        let (_, fresh) = load_hf_dir(base_dir.path(), &device).unwrap();
        let (_, resumed) = load_adapters(fresh, &adapter_dir).unwrap();
        let (_, n_grads) = train(resumed, &device, 1);
        assert_eq!(n_grads, 16);
    }

    #[test]
    fn merged_model_matches_the_adapted_one() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let base = Gpt2::new(&tiny(), &device).unwrap();
        let base_params = base.num_params();
        let (adapted, _) = train(
            apply_lora(base, &LoraConfig::new(4, 8.0).with_mlp()).unwrap(),
            &device,
            2,
        );
        let merged = merge_adapters(adapted.clone());
        assert!(adapted_weights(&merged).is_empty());
        assert_eq!(merged.num_params(), base_params);
        let diff = max_abs_diff(&logits(&adapted, &device), &logits(&merged, &device));
        assert!(diff < 1e-5, "{diff}");
        // Plain again: everything trains.
        let (_, n_grads) = train(merged.clone(), &device, 1);
        assert_eq!(n_grads, base_params_count(&merged));

        // save_hf_dir of an adapted model writes the merged weights.
        let plain = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        save_hf_dir(&adapted, &tiny(), dir.path()).unwrap();
        let (_, reloaded) = load_hf_dir(dir.path(), &plain).unwrap();
        let diff = max_abs_diff(&logits(&reloaded, &plain), &logits(&merged.valid(), &plain));
        assert!(diff < 1e-5, "{diff}");
    }

    fn base_params_count(model: &Gpt2) -> usize {
        params(model).len()
    }

    /// Mismatched, truncated and foreign adapter directories are typed errors naming the file.
    #[test]
    fn bad_adapter_directories_are_typed_errors_naming_the_file() {
        let device = Device::flex();
        let lora = LoraConfig::new(4, 8.0);
        let model = apply_lora(Gpt2::new(&tiny(), &device).unwrap(), &lora).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("adapter");
        save_adapters(&model, &lora, &dir).unwrap();
        let weights = dir.join(ADAPTERS_FILE);
        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        let good_weights = std::fs::read(&weights).unwrap();
        let good_config = std::fs::read(&config_path).unwrap();
        let fresh = || Gpt2::new(&tiny(), &device).unwrap();
        let names = |e: &NnError, file: &str| {
            assert!(e.to_string().contains(file), "{e} does not name {file}");
        };

        // A base of other dimensions: the first differing field, naming the config.
        for (other, field) in [
            (Gpt2Config::new(VOCAB, 16, 64, 2, 4), "n_embd"),
            (Gpt2Config::new(VOCAB, 16, 32, 3, 4), "n_layer"),
            (Gpt2Config::new(50, 16, 32, 2, 4), "vocab_size"),
        ] {
            let e = load_adapters(Gpt2::new(&other, &device).unwrap(), &dir).unwrap_err();
            assert!(
                matches!(e, NnError::AdapterBaseMismatch { field: f, .. } if f == field),
                "{e}"
            );
            names(&e, ADAPTER_CONFIG_FILE);
        }

        // Truncated adapters.
        std::fs::write(&weights, &good_weights[..good_weights.len() / 2]).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(matches!(e, NnError::Weights { .. }), "{e}");
        names(&e, ADAPTERS_FILE);

        // Not safetensors at all.
        std::fs::write(&weights, b"not a safetensors file").unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(matches!(e, NnError::Weights { .. }), "{e}");
        names(&e, ADAPTERS_FILE);

        // A foreign safetensors file (the base model's weights).
        save_hf_dir(&fresh(), &tiny(), tmp.path()).unwrap();
        std::fs::copy(tmp.path().join("model.safetensors"), &weights).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(
            matches!(e, NnError::MissingTensor { ref name, .. }
                if name == "transformer.h.0.attn.c_attn.weight.lora_a"),
            "{e}"
        );
        names(&e, ADAPTERS_FILE);

        // Adapters of another rank written without metadata: a shape error; extra tensors.
        let mut w = HfWriter::new();
        let t = |dims: [usize; 2]| Tensor::<2>::zeros(dims, &device);
        for i in 0..2 {
            for (target, [d_in, d_out]) in [
                (LoraTarget::AttnQkv, [32, 96]),
                (LoraTarget::AttnProj, [32, 32]),
            ] {
                w.put(format!("{}.lora_a", target.hf_name(i)), t([d_in, 2]))
                    .unwrap();
                w.put(format!("{}.lora_b", target.hf_name(i)), t([2, d_out]))
                    .unwrap();
            }
        }
        std::fs::write(&weights, w.to_bytes(HashMap::new()).unwrap()).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(
            matches!(e, NnError::ShapeMismatch { ref expected, ref got, .. }
                if expected == &[32, 4] && got == &[32, 2]),
            "{e}"
        );
        names(&e, ADAPTERS_FILE);
        let mut w = HfWriter::new();
        for i in 0..2 {
            for (target, [d_in, d_out]) in [
                (LoraTarget::AttnQkv, [32, 96]),
                (LoraTarget::AttnProj, [32, 32]),
                (LoraTarget::MlpFc, [32, 128]),
            ] {
                w.put(format!("{}.lora_a", target.hf_name(i)), t([d_in, 4]))
                    .unwrap();
                w.put(format!("{}.lora_b", target.hf_name(i)), t([4, d_out]))
                    .unwrap();
            }
        }
        std::fs::write(&weights, w.to_bytes(HashMap::new()).unwrap()).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(matches!(e, NnError::UnexpectedTensor { .. }), "{e}");
        names(&e, ADAPTERS_FILE);

        // A config edited after the save: the header's copy disagrees.
        std::fs::write(&weights, &good_weights).unwrap();
        let mut edited: AdapterConfig = serde_json::from_slice(&good_config).unwrap();
        edited.lora.alpha = 4.0;
        std::fs::write(&config_path, serde_json::to_vec(&edited).unwrap()).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(matches!(e, NnError::Weights { .. }), "{e}");
        names(&e, ADAPTERS_FILE);

        // Impossible values, another format, a foreign (PEFT) config, no config at all.
        edited.lora.alpha = -1.0;
        std::fs::write(&config_path, serde_json::to_vec(&edited).unwrap()).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(
            matches!(e, NnError::InvalidAdapterConfig { field: "alpha", .. }),
            "{e}"
        );
        names(&e, ADAPTER_CONFIG_FILE);
        edited.lora.alpha = 8.0;
        edited.format = 2;
        std::fs::write(&config_path, serde_json::to_vec(&edited).unwrap()).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(
            matches!(
                e,
                NnError::Core(lexforge_core::Error::SchemaVersion { found: 2, .. })
            ),
            "{e}"
        );
        names(&e, ADAPTER_CONFIG_FILE);
        std::fs::write(
            &config_path,
            br#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["c_attn"]}"#,
        )
        .unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(
            matches!(e, NnError::Core(lexforge_core::Error::Json { .. })),
            "{e}"
        );
        names(&e, ADAPTER_CONFIG_FILE);
        std::fs::remove_file(&config_path).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert_eq!(e.kind(), lexforge_core::ErrorKind::NotFound, "{e}");
        names(&e, ADAPTER_CONFIG_FILE);

        // In-memory misuse: adapters twice; saving under another config.
        std::fs::write(&config_path, &good_config).unwrap();
        let e = apply_lora(model.clone(), &lora).unwrap_err();
        assert!(
            matches!(
                e,
                NnError::Adapter {
                    problem: AdapterProblem::AlreadyAdapted,
                    ..
                }
            ),
            "{e}"
        );
        let e = load_adapters(model.clone(), &dir).unwrap_err();
        assert!(matches!(e, NnError::Adapter { .. }), "{e}");
        let e = save_adapters(&model, &lora.clone().with_mlp(), &dir).unwrap_err();
        assert!(
            matches!(
                e,
                NnError::Adapter { ref param, problem: AdapterProblem::Missing }
                    if param == "h.0.mlp.c_fc.weight"
            ),
            "{e}"
        );
        let e = save_adapters(&model, &LoraConfig::new(4, 4.0), &dir).unwrap_err();
        assert!(
            matches!(
                e,
                NnError::Adapter {
                    problem: AdapterProblem::Scale { .. },
                    ..
                }
            ),
            "{e}"
        );
        // The failed saves left the directory as it was.
        assert_eq!(std::fs::read(&weights).unwrap(), good_weights);
        assert!(load_adapters(fresh(), &dir).is_ok());
    }

    /// The adapted model generates through `CausalLm`, survives `valid()`, `fork()` and
    /// `to_device()`, and keeps training the factors only after a fork.
    #[test]
    fn adapted_model_generates_and_survives_valid_fork_and_to_device() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let (model, _) = train(
            apply_lora(
                Gpt2::new(&tiny(), &device).unwrap(),
                &LoraConfig::new(4, 8.0),
            )
            .unwrap(),
            &device,
            1,
        );
        let plain = Device::flex();
        let inference = model.valid();
        assert_eq!(adapted_weights(&inference).len(), 4);
        let diff = max_abs_diff(&logits(&model, &device), &logits(&inference, &plain));
        assert!(
            diff < 1e-5,
            "training and inference attention agree: {diff}"
        );

        let config = GenerateConfig {
            max_new_tokens: 5,
            ..GenerateConfig::default()
        };
        let decode = |ids: &[u32]| format!("{ids:?}");
        let adapted = generate(&inference, &[1, 2, 3], &config, &decode).unwrap();
        let merged = generate(
            &merge_adapters(inference.clone()),
            &[1, 2, 3],
            &config,
            &decode,
        )
        .unwrap();
        assert_eq!(adapted[0].tokens_generated, 5);
        assert_eq!(
            adapted, merged,
            "greedy decoding agrees with the merged model"
        );
        let lp = inference.log_probs(&[1, 2, 3, 4]).unwrap();
        assert_eq!((lp.len(), lp[0].len()), (4, VOCAB));

        let moved = inference.clone().to_device(&plain);
        assert_eq!(adapted_weights(&moved).len(), 4);
        assert_eq!(logits(&moved, &plain), logits(&inference, &plain));

        let forked = model.fork(&device);
        assert_eq!(adapted_weights(&forked).len(), 4);
        let before = params(&forked);
        let (trained, n_grads) = train(forked, &device, 1);
        assert_eq!(n_grads, 8);
        for ((path, a, _), (_, b, _)) in before.iter().zip(&params(&trained)) {
            if !path.contains(".lora.") {
                assert_eq!(a, b, "{path} changed after a fork");
            }
        }
        // Back to training after valid(): the factors train, the bases stay frozen.
        let (_, n_grads) = train(trained.valid().train(), &device, 1);
        assert_eq!(n_grads, 8);
    }
}
