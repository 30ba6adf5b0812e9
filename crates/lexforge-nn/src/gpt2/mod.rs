//! GPT-2: `config.rs` (HF field names), `attention.rs` (causal attention + KV cache),
//! `model.rs` (blocks, LM head), `causal_lm.rs` (generation through the KV cache, as a
//! [`CausalLm`](crate::generate::CausalLm)), `loader.rs` (HF `model.safetensors` in and out),
//! `lora/` (LoRA adapters: attach, save apart from the base, load, merge).

mod attention;
mod causal_lm;
mod config;
mod loader;
mod lora;
mod model;

pub use attention::{Gpt2Attention, LayerCache};
pub use config::Gpt2Config;
pub use loader::{load_hf_dir, save_hf_dir};
pub use lora::{
    ADAPTER_CONFIG_FILE, ADAPTER_FORMAT, ADAPTERS_FILE, AdapterConfig, BaseFingerprint, LoraConfig,
    LoraTarget, adapted_weights, apply_lora, load_adapters, merge_adapters, save_adapters,
};
pub use model::{Gpt2, Gpt2Block, Gpt2Cache, Gpt2Mlp};
