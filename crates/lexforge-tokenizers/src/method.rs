//! The tokenization methods ([`TokenizerMethod`]): their names and unknown tokens. The enum
//! the config, the backends and the errors all name; parsing one from text lives with the
//! config (`config.rs`), which reports a bad name as a [`crate::TokenizerError`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// A tokenization method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerMethod {
    /// Byte-level BPE, GPT-2 style: never produces an unknown token.
    Bpe,
    /// WordPiece, BERT style, with `[UNK]` and `##` continuation pieces.
    WordPiece,
    /// Unigram LM, SentencePiece style (Metaspace `▁`), optionally with byte fallback.
    Unigram,
    /// One token per character seen in training; `<unk>` for the rest.
    Char,
}

impl TokenizerMethod {
    /// Every method, in a stable order.
    pub const ALL: [TokenizerMethod; 4] = [
        TokenizerMethod::Bpe,
        TokenizerMethod::WordPiece,
        TokenizerMethod::Unigram,
        TokenizerMethod::Char,
    ];

    /// The lowercase name (`"bpe"`, `"wordpiece"`, `"unigram"`, `"char"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenizerMethod::Bpe => "bpe",
            TokenizerMethod::WordPiece => "wordpiece",
            TokenizerMethod::Unigram => "unigram",
            TokenizerMethod::Char => "char",
        }
    }

    /// The unknown token the method uses, if it has one.
    pub fn unk_token(self) -> Option<&'static str> {
        match self {
            TokenizerMethod::Bpe => None,
            TokenizerMethod::WordPiece => Some("[UNK]"),
            TokenizerMethod::Unigram | TokenizerMethod::Char => Some("<unk>"),
        }
    }
}

impl fmt::Display for TokenizerMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
