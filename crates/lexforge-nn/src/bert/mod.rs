//! BERT-family encoders (BERT, MiniLM, RoBERTa, XLM-RoBERTa): `config.rs` (HF field names),
//! `model.rs` (embeddings + post-norm layers over right-padded batches), `loader.rs` (HF
//! `model.safetensors` in and out through a remap table).

mod config;
mod loader;
mod model;

pub use config::{Activation, BertConfig, BertFamily};
pub use loader::{load_hf_dir, load_weights, save_hf_dir, save_hf_dir_from};
pub use model::{BertAttention, BertEmbeddings, BertLayer, BertModel};
