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
//!
//! # Layout
//! `config.rs`: what gets adapted and how ([`LoraTarget`], [`LoraConfig`], the base's
//! [`BaseFingerprint`]); `attach.rs`: adapters on a model in memory ([`apply_lora`],
//! [`adapted_weights`], [`merge_adapters`]); `store.rs`: the adapter directory on disk
//! ([`save_adapters`], [`load_adapters`]).
//!
//! [`LoraAdapter`]: burn::module::LoraAdapter
//! [`Gpt2`]: super::Gpt2

mod attach;
mod config;
mod store;

pub use attach::{adapted_weights, apply_lora, merge_adapters};
pub use config::{BaseFingerprint, LoraConfig, LoraTarget};
pub use store::{
    ADAPTER_CONFIG_FILE, ADAPTER_FORMAT, ADAPTERS_FILE, AdapterConfig, load_adapters, save_adapters,
};

/// The fixtures the tests of every part share: a tiny GPT-2, its inputs, a few AdamW steps,
/// and the parameters as burn's traversal reports them.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use burn::module::{Module, ModuleVisitor, Param};
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::{Device, Int, Tensor, TensorData};

    use crate::gpt2::{Gpt2, Gpt2Config};

    pub(super) const VOCAB: usize = 64;

    pub(super) fn tiny() -> Gpt2Config {
        let mut c = Gpt2Config::new(VOCAB, 16, 32, 2, 4);
        c.resid_pdrop = 0.0;
        c.embd_pdrop = 0.0;
        c.attn_pdrop = 0.0;
        c
    }

    pub(super) fn ids(v: &[i64], device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
    }

    pub(super) const SEQ: [i64; 9] = [3, 17, 42, 8, 1, 29, 11, 60, 5];

    pub(super) fn logits(model: &Gpt2, device: &Device) -> Vec<f32> {
        model
            .forward(ids(&SEQ[..8], device))
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    pub(super) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    pub(super) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Next-token cross-entropy on [`SEQ`] (on the model's device).
    pub(super) fn loss(model: &Gpt2, device: &Device) -> Tensor<1> {
        let x = ids(&SEQ[..8], device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(SEQ[1..].to_vec(), [8]), device);
        let logits = model.forward(x).unwrap().reshape([8, VOCAB]);
        CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits, y)
    }

    /// `steps` AdamW steps on [`loss`]; returns the model and the number of gradients of the
    /// last step.
    pub(super) fn train(mut model: Gpt2, device: &Device, steps: usize) -> (Gpt2, usize) {
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

    pub(super) fn params(model: &Gpt2) -> Vec<(String, Vec<f32>, bool)> {
        let mut v = Params::default();
        model.visit(&mut v);
        v.values
    }
}
