//! The word generator of a semantic encoder, whichever kind it is: vocabulary-guided
//! ([`GuidedWords`], the default) or a GPT-2 with LoRA adapters ([`LoraWordGenerator`]).
//! Both live in the encoder's `generator/` folder; the files present say which it is.

use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::encoder::SemanticEncoder;
use crate::error::{Result, SemanticError};
use crate::guided::{GUIDED_FILE, GuidedWords};
use crate::words::{GENERATOR_FILE, LoraWordGenerator};

/// Which word generator to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordGeneratorKind {
    /// Words from a real-word vocabulary, sampled so that their mean embedding lands on
    /// `decode(id)`, within the ID's complexity band ([`GuidedWords`]).
    #[default]
    Guided,
    /// A GPT-2 fine-tuned with LoRA adapters on `"[s c e v] words…"` ([`LoraWordGenerator`]).
    Lora,
}

impl std::str::FromStr for WordGeneratorKind {
    type Err = SemanticError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "guided" => Ok(WordGeneratorKind::Guided),
            "lora" => Ok(WordGeneratorKind::Lora),
            other => Err(SemanticError::param(
                "generator",
                format!("unknown word generator {other:?}: guided or lora"),
            )),
        }
    }
}

/// A loaded word generator.
#[derive(Debug)]
pub enum WordGenerator {
    /// Vocabulary-guided.
    Guided(Box<GuidedWords>),
    /// GPT-2 + LoRA.
    Lora(Box<LoraWordGenerator>),
}

impl WordGenerator {
    /// The kind of generator `dir` holds, from the files present (nothing is read).
    pub fn kind_in(dir: &Path) -> Option<WordGeneratorKind> {
        if GuidedWords::exists(dir) {
            Some(WordGeneratorKind::Guided)
        } else if dir.join(GENERATOR_FILE).is_file() {
            Some(WordGeneratorKind::Lora)
        } else {
            None
        }
    }

    /// Words a generation returns unless told otherwise.
    pub const WORDS: usize = 10;

    /// Loads the word generator of `encoder` (its `generator/` directory), on `device`.
    ///
    /// # Errors
    /// As [`WordGenerator::load`].
    pub fn of_encoder(encoder: &SemanticEncoder, device: &Device) -> Result<Self> {
        Self::load(
            &encoder.dir().join(crate::artifacts::GENERATOR_DIR),
            None,
            device,
        )
    }

    /// Loads the generator in `dir` (`guided.json` → guided, `generator.json` → LoRA, on the
    /// base recorded there or `base`).
    ///
    /// # Errors
    /// An I/O error (not found) when `dir` holds neither; [`SemanticError::Artifact`] for a
    /// damaged file.
    pub fn load(dir: &Path, base: Option<&Path>, device: &Device) -> Result<Self> {
        match Self::kind_in(dir) {
            Some(WordGeneratorKind::Guided) => {
                Ok(WordGenerator::Guided(Box::new(GuidedWords::load(dir)?)))
            }
            Some(WordGeneratorKind::Lora) => Ok(WordGenerator::Lora(Box::new(
                LoraWordGenerator::load(dir, base, device)?,
            ))),
            None => Err(lexforge_core::Error::io(
                "find the word generator",
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "neither {GUIDED_FILE} nor {GENERATOR_FILE} is there; build one with \
                         `lexforge semantic pipeline`, build_guided_generator or \
                         train_generator"
                    ),
                ),
            )
            .into()),
        }
    }

    /// Which kind it is.
    pub fn kind(&self) -> WordGeneratorKind {
        match self {
            WordGenerator::Guided(_) => WordGeneratorKind::Guided,
            WordGenerator::Lora(_) => WordGeneratorKind::Lora,
        }
    }

    /// Up to `n` distinct words for `id` of `encoder` (the encoder this generator belongs
    /// to); the same seed gives the same words.
    ///
    /// # Errors
    /// ID errors; generation errors.
    pub fn generate_words(
        &self,
        encoder: &SemanticEncoder,
        id: &[u32],
        n: usize,
        seed: u64,
    ) -> Result<Vec<String>> {
        match self {
            // Decodes the ID itself (typed errors for a bad one).
            WordGenerator::Guided(g) => g.generate_words(encoder, id, n, seed),
            WordGenerator::Lora(g) => {
                encoder.check_id(id)?;
                g.generate_words(id, n, seed)
            }
        }
    }
}
