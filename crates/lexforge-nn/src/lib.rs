//! lexforge neural networks: GPT-2 with HF-compatible weights and a KV cache, and generation
//! for any causal LM; LoRA fine-tuning of GPT-2 with adapters saved apart from the
//! base ([`gpt2::apply_lora`]); char-LSTM, BERT-family encoders and scoring follow.
//!
//! Models carry no backend type parameter: they are built on a burn 0.22 runtime
//! [`lexforge_core::Device`].

pub mod attention;
pub mod bert;
pub mod cache;
pub mod char_lstm;
pub mod encoder;
mod error;
pub mod fused;
pub mod generate;
pub mod gpt2;
pub mod hf;
mod host_gemm;
pub mod linear;
pub mod norm;
pub mod pooling;
pub mod score;

pub use error::{AdapterProblem, NnError, Result};
