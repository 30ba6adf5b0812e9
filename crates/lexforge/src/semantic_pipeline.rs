//! The semantic-ID pipeline in one call: books with a catalogue → labelled word corpora →
//! semantic encoder → word generator. It lives in the facade because its LoRA generator's base
//! GPT-2 is trained by the language-model pipeline, a crate beside the semantic one.
//!
//! Every stage is a run directory inside `run_dir` (`corpora.json`, `encoder/`,
//! `encoder/generator/`, `base-lm/`): calling [`pipeline`] again reuses the stages that
//! completed and resumes the one that stopped, so a killed pipeline continues where it was.

use std::path::{Path, PathBuf};

use lexforge_core::{CancelToken, Device, EventSink, RunStatus};
use lexforge_data::BookDirectory;
use lexforge_lm::{LmError, LmRunConfig};
use lexforge_semantic::{
    BookWords, BookWordsConfig, CorpusSet, GENERATOR_DIR, GuidedConfig, GuidedReport,
    SemanticEncoder, SemanticError, SemanticTrainConfig, WordFrequencies, WordGeneratorConfig,
    WordGeneratorKind, WordGeneratorReport,
};
use serde::{Deserialize, Serialize};

/// The corpora file the pipeline writes into its directory.
pub const CORPORA_FILE: &str = "corpora.json";
/// The encoder run inside the pipeline's directory.
pub const ENCODER_DIR: &str = "encoder";
/// The base GPT-2 run the pipeline trains for a LoRA generator when none is given.
pub const BASE_LM_DIR: &str = "base-lm";

/// What [`pipeline`] does at each stage (`lexforge semantic pipeline --config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Words per corpus.
    pub words_per_corpus: usize,
    /// The word generator: `guided` (default) or `lora`.
    pub word_generator: WordGeneratorKind,
    /// How corpora are drawn from the books.
    pub corpora: BookWordsConfig,
    /// The semantic encoder's training.
    pub semantic: SemanticTrainConfig,
    /// The vocabulary-guided generator.
    pub guided: GuidedConfig,
    /// The LoRA generator's training.
    pub generator: WordGeneratorConfig,
    /// The small GPT-2 trained as the LoRA generator's base when none is given.
    pub base_lm: BaseLmConfig,
    /// wordfreq's English table (`large_en.msgpack.gz`). `None`: the one
    /// [`find_wordfreq`](lexforge_semantic::find_wordfreq) finds, else the books' own word
    /// counts (with a warning).
    pub wordfreq: Option<PathBuf>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            words_per_corpus: BookWords::WORDS_PER_CORPUS,
            word_generator: WordGeneratorKind::default(),
            corpora: BookWordsConfig::default(),
            semantic: SemanticTrainConfig::default(),
            guided: GuidedConfig::default(),
            generator: WordGeneratorConfig::default(),
            base_lm: BaseLmConfig::default(),
            wordfreq: None,
        }
    }
}

/// The small GPT-2 the pipeline trains on the corpora's words when no base is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaseLmConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Windows per batch.
    pub batch_size: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Width.
    pub n_embd: usize,
    /// BPE vocabulary size.
    pub vocab_size: usize,
}

impl Default for BaseLmConfig {
    fn default() -> Self {
        BaseLmConfig {
            steps: 400,
            batch_size: 16,
            n_layer: 2,
            n_embd: 128,
            vocab_size: 3000,
        }
    }
}

/// Which word generator to build, overriding [`PipelineConfig::word_generator`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GeneratorChoice {
    /// The config's `word_generator` (and a trained base for LoRA).
    #[default]
    FromConfig,
    /// The vocabulary-guided generator.
    Guided,
    /// LoRA adapters, on this GPT-2 directory (with a tokenizer) or on a base the pipeline
    /// trains (`None`).
    Lora(Option<PathBuf>),
    /// No generator: stop after the encoder.
    None,
}

/// The generator stage's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GeneratorStage {
    /// The vocabulary-guided generator was built.
    Guided(GuidedReport),
    /// LoRA adapters were trained on `base`.
    Lora {
        /// The base GPT-2 directory.
        base: PathBuf,
        /// The adapters' training.
        report: WordGeneratorReport,
    },
}

/// What [`pipeline`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// The pipeline's directory.
    pub run_dir: PathBuf,
    /// Corpora built.
    pub corpora: usize,
    /// Corpora the books could not fill, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Where the word frequencies came from (`wordfreq ...` or the books' own counts).
    pub frequencies: String,
    /// The encoder's training report.
    pub encoder: lexforge_semantic::TrainReport,
    /// The word generator, when one was built.
    pub generator: Option<GeneratorStage>,
}

/// Why the pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Files, devices, run directories.
    #[error(transparent)]
    Core(#[from] lexforge_core::Error),
    /// Corpora, the encoder or a generator.
    #[error(transparent)]
    Semantic(#[from] SemanticError),
    /// The base GPT-2's training.
    #[error(transparent)]
    Lm(#[from] LmError),
}

impl PipelineError {
    /// The error family.
    pub fn kind(&self) -> lexforge_core::ErrorKind {
        match self {
            PipelineError::Core(e) => e.kind(),
            PipelineError::Semantic(e) => e.kind(),
            PipelineError::Lm(e) => e.kind(),
        }
    }
}

/// A run directory's state: `None` when it has no manifest.
fn stage_status(dir: &Path) -> Option<RunStatus> {
    lexforge_core::Manifest::load(dir).ok().map(|m| m.status)
}

/// Runs the pipeline on the books of `books_dir` (`{author}/{title}.txt`) with the catalogue
/// `metadata` (a CSV with genre and era columns) into `run_dir`, on `device`. Stages that
/// completed in an earlier call are reused and a stopped stage is resumed.
///
/// # Errors
/// A bad config, unreadable books, too few labelled groups, training failures, I/O.
#[allow(clippy::too_many_arguments, reason = "the inputs of one pipeline run")]
pub fn pipeline(
    config: &PipelineConfig,
    books_dir: &Path,
    metadata: &Path,
    run_dir: &Path,
    generator: &GeneratorChoice,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<PipelineReport, PipelineError> {
    config.semantic.validate()?;
    config.guided.validate()?;
    let freq = match &config.wordfreq {
        // A table that was asked for must load.
        Some(path) => Some(WordFrequencies::load_wordfreq(path)?),
        None => match WordFrequencies::open(None, "pip install wordfreq") {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(error = %e, "no wordfreq table; falling back to the books' word counts");
                None
            }
        },
    };
    let frequencies = freq.as_ref().map_or_else(
        || "the books' word counts".to_owned(),
        |f| f.source().to_owned(),
    );
    std::fs::create_dir_all(run_dir)
        .map_err(|e| lexforge_core::Error::io("create directory", run_dir, e))?;
    let corpora_path = run_dir.join(CORPORA_FILE);
    let set = if corpora_path.is_file() {
        CorpusSet::load(&corpora_path)?
    } else {
        let provider = BookDirectory::new(books_dir).with_metadata(metadata);
        let set = BookWords::new(&provider, freq.as_ref(), &config.corpora)?
            .build(config.words_per_corpus)?;
        set.save(&corpora_path)?;
        set
    };

    let enc_dir = run_dir.join(ENCODER_DIR);
    let encoder = match stage_status(&enc_dir) {
        Some(RunStatus::Completed) => lexforge_core::Manifest::load(&enc_dir)
            .map_err(PipelineError::from)
            .and_then(|_| {
                let report: lexforge_semantic::TrainReport =
                    read_metrics(&enc_dir.join("eval/metrics.json"))?;
                Ok(report)
            })?,
        Some(_) => lexforge_semantic::resume(&enc_dir, device, None, events, cancel)?,
        None => lexforge_semantic::train(&config.semantic, &set, &enc_dir, device, events, cancel)?,
    };
    let mut report = PipelineReport {
        run_dir: run_dir.to_path_buf(),
        corpora: set.corpora.len(),
        skipped: set.skipped.clone(),
        frequencies,
        encoder,
        generator: None,
    };
    if report.encoder.stop == lexforge_train::StopReason::Cancelled {
        return Ok(report);
    }
    let kind = match generator {
        GeneratorChoice::None => return Ok(report),
        GeneratorChoice::Guided => WordGeneratorKind::Guided,
        GeneratorChoice::Lora(_) => WordGeneratorKind::Lora,
        GeneratorChoice::FromConfig => config.word_generator,
    };
    let enc = SemanticEncoder::load(&enc_dir, device)?;
    let gen_dir = enc_dir.join(GENERATOR_DIR);
    report.generator = Some(match kind {
        WordGeneratorKind::Guided => {
            GeneratorStage::Guided(lexforge_semantic::build_guided_generator(
                &config.guided,
                &enc,
                freq.as_ref(),
                &gen_dir,
            )?)
        }
        WordGeneratorKind::Lora => {
            let base = match generator {
                GeneratorChoice::Lora(Some(base)) => base.clone(),
                _ => train_base_lm(
                    &set,
                    run_dir,
                    config.semantic.train.seed,
                    &config.base_lm,
                    device,
                    events,
                    cancel,
                )?,
            };
            let report = lexforge_semantic::train_word_generator(
                &config.generator,
                &base,
                &set,
                enc.ids(),
                &gen_dir,
                device,
                events,
                cancel,
            )?;
            GeneratorStage::Lora { base, report }
        }
    });
    Ok(report)
}

fn read_metrics<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PipelineError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| lexforge_core::Error::io("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        SemanticError::Artifact {
            path: path.to_path_buf(),
            reason: format!("not a training report: {e}"),
        }
        .into()
    })
}

/// The base GPT-2's language-model config: a BPE tokenizer and a small GPT-2 on the word
/// files in `text_dir`.
fn base_lm_config(text_dir: &Path, seed: u64, base: &BaseLmConfig) -> LmRunConfig {
    use lexforge_lm::{
        CorpusConfig, Gpt2Spec, ModelConfig, SampleConfig, TokenizerSource, TokenizerSpec,
    };
    LmRunConfig {
        seed,
        replicas: Vec::new(),
        context: 64,
        corpus: CorpusConfig {
            paths: vec![text_dir.to_path_buf()],
            validation_fraction: 0.1,
            stride: None,
        },
        tokenizer: TokenizerSource {
            path: None,
            train: Some(TokenizerSpec {
                method: lexforge_tokenizers::TokenizerMethod::Bpe,
                vocab_size: base.vocab_size,
                options: Default::default(),
            }),
        },
        model: ModelConfig::Gpt2(Gpt2Spec {
            n_layer: base.n_layer,
            n_head: 4,
            n_embd: base.n_embd,
            dropout: 0.0,
            ..Gpt2Spec::default()
        }),
        train: lexforge_train::TrainConfig {
            max_steps: base.steps,
            batch_size: base.batch_size,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: base.steps / 10,
            eval_every: 100,
            eval_batches: Some(8),
            checkpoint_every: 100,
            log_every: 10,
            ..lexforge_train::TrainConfig::default()
        },
        samples: SampleConfig {
            prompts: Vec::new(),
            ..SampleConfig::default()
        },
    }
}

/// Trains (or resumes, or reuses) a small GPT-2 on the corpora's words through the
/// language-model pipeline (`run_dir/base-lm`): each line is a seeded shuffle of words of one
/// corpus behind a random ID, so the base learns the vocabulary, the prompt format and which
/// words go together (a line keeps to one theme), but not which ID owns which words: the
/// adapters learn that.
fn train_base_lm(
    set: &CorpusSet,
    run_dir: &Path,
    seed: u64,
    base: &BaseLmConfig,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<PathBuf, PipelineError> {
    use rand::Rng;
    use rand::seq::SliceRandom;
    let dir = run_dir.join(BASE_LM_DIR);
    match stage_status(&dir) {
        Some(RunStatus::Completed) => return Ok(dir),
        Some(_) => {
            lexforge_lm::resume(&dir, device, None, events, cancel)?;
            return Ok(dir);
        }
        None => {}
    }
    let text_dir = run_dir.join("base-lm-text");
    std::fs::create_dir_all(&text_dir)
        .map_err(|e| lexforge_core::Error::io("create directory", &text_dir, e))?;
    let mut rng = lexforge_core::Seed(seed).rng("semantic-base-lm");
    let sizes = 32u32;
    for file in 0..10 {
        let mut text = String::new();
        for _ in 0..6 {
            for corpus in &set.corpora {
                let mut w: Vec<&str> = corpus.words.iter().map(String::as_str).collect();
                w.shuffle(&mut rng);
                for chunk in w.chunks(12) {
                    let id: Vec<String> = (0..4)
                        .map(|_| rng.random_range(0..sizes).to_string())
                        .collect();
                    text.push_str(&format!("[{}] {}\n", id.join(" "), chunk.join(" ")));
                }
            }
        }
        // Lines of different corpora interleaved, so a training window mixes themes.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.shuffle(&mut rng);
        let text = lines.join("\n") + "\n";
        lexforge_core::atomic_write(
            &text_dir.join(format!("words-{file:02}.txt")),
            text.as_bytes(),
        )?;
    }
    let config = base_lm_config(&text_dir, seed, base);
    lexforge_lm::train(&config, &dir, device, events, cancel)?;
    Ok(dir)
}
