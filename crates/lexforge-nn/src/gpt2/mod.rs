//! GPT-2: `config.rs` (HF field names), `attention.rs` (causal attention + KV cache),
//! `model.rs` (blocks, LM head), `loader.rs` (HF `model.safetensors` in and out).

mod attention;
mod config;
mod loader;
mod model;

pub use attention::{Gpt2Attention, LayerCache};
pub use config::Gpt2Config;
pub use loader::{load_hf_dir, save_hf_dir};
pub use model::{Gpt2, Gpt2Block, Gpt2Cache, Gpt2Mlp};
