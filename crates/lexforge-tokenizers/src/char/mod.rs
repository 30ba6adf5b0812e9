//! The char tokenizer, our own: one token per character, `<unk>` for unseen characters.
//!
//! `model.rs` encodes and decodes (an ASCII table plus a sorted table for other characters:
//! several hundred MB/s), `trainer.rs` counts characters, `serialization.rs` writes and reads
//! the equivalent HF `WordLevel` `tokenizer.json`.

mod model;
mod serialization;
mod trainer;

pub use model::CharTokenizer;

use crate::backend::{TextTokenizer, TokenizerBackend, TrainingText};
use crate::config::TokenizerConfig;
use crate::error::Result;
use crate::method::TokenizerMethod;

/// The char tokenizer backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct CharBackend;

impl TokenizerBackend for CharBackend {
    fn name(&self) -> &'static str {
        "char"
    }

    fn supported_methods(&self) -> &'static [TokenizerMethod] {
        &[TokenizerMethod::Char]
    }

    fn train(
        &self,
        config: &TokenizerConfig,
        text: TrainingText<'_>,
    ) -> Result<Box<dyn TextTokenizer>> {
        Ok(Box::new(trainer::train(config, text)?))
    }

    fn load_json(&self, json: &str) -> Result<Option<Box<dyn TextTokenizer>>> {
        Ok(serialization::from_json(json)?.map(|t| Box::new(t) as Box<dyn TextTokenizer>))
    }
}
