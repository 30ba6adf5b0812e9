//! lexforge neural networks: GPT-2, char-LSTM, BERT-family encoders, pooling, LoRA, HF safetensors loading, generation and scoring (issues #4, #5).
//!
//! This crate is a placeholder in the layer order of `docs/architecture.md`; it holds no
//! functionality yet. Its issue fills it.
