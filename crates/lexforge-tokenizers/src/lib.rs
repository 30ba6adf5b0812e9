#![doc = include_str!("../README.md")]

mod backend;
mod char;
mod config;
mod error;
mod hf;
mod method;
mod registry;
mod split;
mod stats;
mod stream;
mod tokenizer;

pub use backend::{Encoding, LinePass, TextTokenizer, TokenClass, TokenizerBackend, TrainingText};
pub use char::{CharBackend, CharTokenizer};
pub use config::{Normalization, TokenizerConfig, TokenizerOptions, TokenizerTrainRequest};
pub use error::{Result, TokenizerError};
pub use hf::{HfBackend, HfTokenizer};
pub use method::TokenizerMethod;
pub use registry::{backend_for, backends};
pub use split::{Split, SplitUnit, holdout_key, holdout_split, lines_with_endings};
pub use stats::{CorpusSizes, Coverage, TokenizerStats, measure};
pub use tokenizer::{
    HF_TOKENIZERS_VERSION, TOKENIZER_FILE, Tokenizer, TokenizerInfo, TrainingInfo,
};
