//! ID-conditioned word generation: a small GPT-2 (a language-model run directory or any HF
//! GPT-2 directory with a tokenizer) fine-tuned with LoRA adapters on sequences of an ID
//! followed by words of its corpus.
//!
//! A training sequence is `"[s c e v]"` then a space-separated seeded shuffle of some of the
//! corpus's words, then a newline; the loss covers only the tokens after the ID. The adapters are
//! saved apart from the base model:
//!
//! ```text
//! generator/
//!   adapters.safetensors     LoRA factors (lexforge_nn::gpt2::save_adapters)
//!   adapter_config.json      rank, alpha, targets, base fingerprint
//!   generator.json           the base model's directory, prompt format, training summary
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_core::{CancelToken, EventSink, Seed};
use lexforge_nn::generate::{GenerateConfig, generate};
use lexforge_nn::gpt2::{
    Gpt2, LoraConfig, LoraTarget, apply_lora, load_adapters, load_hf_dir, merge_adapters,
    save_adapters,
};
use lexforge_tokenizers::Tokenizer;
use lexforge_train::{
    BatchSource, BoxError, CheckpointDir, LossOutput, Resume, StopReason, TrainConfig,
    TrainContext, TrainModel, train,
};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::artifacts::write_json;
use crate::corpus::{CorpusSet, clean_word};
use crate::error::{Result, SemanticError};

/// The generator's settings file.
pub(crate) const GENERATOR_FILE: &str = "generator.json";

/// Settings of the word generator's fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WordGeneratorConfig {
    /// The LoRA adapters.
    pub lora: LoraConfig,
    /// Training sequences per corpus (cut from successive seeded shuffles of its words).
    pub sequences_per_corpus: usize,
    /// Words per training sequence. Several words per sequence let a generated word's theme
    /// carry to the next ones (measured on the fixture of `tests/it/words.rs`: 12 words, 6 of
    /// 6 IDs closer to their own corpus; 1 word, 5 of 6).
    pub words_per_sequence: usize,
    /// The optimizer loop.
    pub train: TrainConfig,
}

impl Default for WordGeneratorConfig {
    fn default() -> Self {
        WordGeneratorConfig {
            lora: LoraConfig::new(8, 16.0).with_targets(LoraTarget::ALL),
            sequences_per_corpus: 24,
            words_per_sequence: 12,
            train: TrainConfig {
                max_steps: 300,
                batch_size: 16,
                lr: 3e-3,
                min_lr: 3e-4,
                warmup_steps: 30,
                eval_every: 100,
                eval_batches: Some(4),
                checkpoint_every: 100,
                log_every: 10,
                ..TrainConfig::default()
            },
        }
    }
}

/// `generator.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorFile {
    /// Format version (1).
    pub format: u32,
    /// The base GPT-2 directory (config.json + model.safetensors; tokenizer beside it).
    pub base: PathBuf,
    /// The settings it was trained with.
    pub config: WordGeneratorConfig,
    /// Optimizer steps run.
    pub steps: u64,
    /// Final validation loss (per word token).
    pub val_loss: Option<f64>,
}

/// The prompt of an ID: `"[s c e v]"`.
pub(crate) fn id_prompt(id: &[u32]) -> String {
    let parts: Vec<String> = id.iter().map(u32::to_string).collect();
    format!("[{}]", parts.join(" "))
}

/// The tokenizer of a base directory: `tokenizer/` (a language-model run) or the directory
/// itself (an HF layout with `tokenizer.json`).
///
/// # Errors
/// Tokenizer loading errors.
pub(crate) fn base_tokenizer(base: &Path) -> Result<Tokenizer> {
    let sub = base.join("tokenizer");
    let path = if sub.is_dir() {
        sub
    } else {
        base.to_path_buf()
    };
    Tokenizer::load(path).map_err(|e| SemanticError::Artifact {
        path: base.to_path_buf(),
        reason: format!("no usable tokenizer: {e}"),
    })
}

/// A tokenized sequence with the position where the words start.
#[derive(Debug, Clone)]
struct Sequence {
    ids: Vec<u32>,
    /// Index of the first token after the prompt.
    start: usize,
}

/// Tokenized sequences batched for [`WordLm`]: ID-conditioned sequences (scored after the
/// prompt) or plain lines (scored throughout, e.g. to pretrain a small base).
pub struct Sequences {
    items: Vec<Sequence>,
}

impl Sequences {
    /// Plain lines, every next token scored; lines of fewer than two tokens are dropped, longer
    /// ones cut at `max_len`.
    ///
    /// # Errors
    /// Tokenizer errors.
    pub fn from_lines(tokenizer: &Tokenizer, lines: &[&str], max_len: usize) -> Result<Self> {
        let mut items = Vec::new();
        for line in lines {
            let mut ids = tokenizer.encode(line)?;
            ids.truncate(max_len);
            if ids.len() >= 2 {
                items.push(Sequence { ids, start: 1 });
            }
        }
        Ok(Sequences { items })
    }
}

/// A batch: right-padded ids and the flat positions whose next token is scored.
#[derive(Debug, Clone)]
pub struct WordBatch {
    ids: Tensor<2, Int>,
    /// Flat `[b * t]` indices of scored positions and their targets.
    positions: Tensor<1, Int>,
    targets: Tensor<2, Int>,
    count: usize,
}

impl BatchSource<WordBatch> for Sequences {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn batch(
        &self,
        indices: &[usize],
        device: &Device,
    ) -> std::result::Result<WordBatch, BoxError> {
        let b = indices.len();
        let t = indices
            .iter()
            .map(|&i| self.items[i].ids.len() - 1)
            .max()
            .unwrap_or(1);
        let mut ids = vec![0i64; b * t];
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        for (r, &i) in indices.iter().enumerate() {
            let s = &self.items[i];
            for (j, &id) in s.ids[..s.ids.len() - 1].iter().enumerate() {
                ids[r * t + j] = i64::from(id);
            }
            // Position j predicts token j + 1; score the tokens from `start` on.
            for j in s.start.saturating_sub(1)..s.ids.len() - 1 {
                positions.push((r * t + j) as i64);
                targets.push(i64::from(s.ids[j + 1]));
            }
        }
        let count = positions.len();
        Ok(WordBatch {
            ids: Tensor::from_data(TensorData::new(ids, [b, t]), device),
            positions: Tensor::from_data(TensorData::new(positions, [count]), device),
            targets: Tensor::from_data(TensorData::new(targets, [count, 1]), device),
            count,
        })
    }
}

/// GPT-2 with its loss over the word tokens.
#[derive(Module, Debug)]
pub struct WordLm {
    /// The (adapted) network.
    pub net: Gpt2,
}

impl TrainModel for WordLm {
    type Batch = WordBatch;

    fn loss(&self, batch: &WordBatch) -> std::result::Result<LossOutput, BoxError> {
        let logits = self.net.forward(batch.ids.clone())?;
        let [b, t, v] = logits.dims();
        let rows = logits
            .reshape([b * t, v])
            .select(0, batch.positions.clone());
        let loss = lexforge_nn::fused::cross_entropy(rows, batch.targets.clone())?;
        Ok(LossOutput {
            loss,
            targets: batch.count,
        })
    }
}

fn sequences(
    set: &CorpusSet,
    ids: &BTreeMap<String, Vec<u32>>,
    corpora: &[usize],
    config: &WordGeneratorConfig,
    tokenizer: &Tokenizer,
    max_len: usize,
    seed: Seed,
) -> Result<Sequences> {
    let mut items = Vec::new();
    for &c in corpora {
        let corpus = &set.corpora[c];
        let id = ids
            .get(&corpus.id)
            .ok_or_else(|| SemanticError::input(format!("corpus {:?} has no ID", corpus.id)))?;
        let prompt = id_prompt(id);
        let start = tokenizer.encode(&prompt)?.len();
        // Seeded shuffles of the words cut into sequences, round after round, so every word
        // appears about equally often.
        let mut made = 0;
        let mut round = 0;
        while made < config.sequences_per_corpus {
            let mut words = corpus.words.clone();
            words.shuffle(&mut seed.rng(&format!("words/{c}/{round}")));
            round += 1;
            for chunk in words.chunks(config.words_per_sequence) {
                if made == config.sequences_per_corpus {
                    break;
                }
                made += 1;
                let text = format!("{prompt} {}\n", chunk.join(" "));
                let mut tokens = tokenizer.encode(&text)?;
                tokens.truncate(max_len);
                if tokens.len() > start + 1 {
                    items.push(Sequence { ids: tokens, start });
                }
            }
        }
    }
    Ok(Sequences { items })
}

/// What [`train_word_generator`] reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordGeneratorReport {
    /// Why training stopped.
    pub stop: StopReason,
    /// Optimizer steps.
    pub steps: u64,
    /// Training and validation sequences.
    pub sequences: BTreeMap<String, usize>,
    /// Best validation loss per word token.
    pub val_loss: Option<f64>,
}

/// Fine-tunes LoRA adapters of the GPT-2 at `base` on the corpora of `set` with their `ids`
/// and saves them into `dir` (resuming from `dir/checkpoints`). A seeded tenth of the
/// sequences (at least one) is the validation set.
///
/// # Errors
/// A base without a GPT-2 or tokenizer, bad settings, training failures, I/O.
#[allow(clippy::too_many_arguments, reason = "the inputs of one run")]
pub fn train_word_generator(
    config: &WordGeneratorConfig,
    base: &Path,
    set: &CorpusSet,
    ids: &BTreeMap<String, Vec<u32>>,
    dir: &Path,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<WordGeneratorReport> {
    config.lora.validate()?;
    if config.sequences_per_corpus == 0 || config.words_per_sequence == 0 {
        return Err(SemanticError::param(
            "sequences_per_corpus",
            "sequences_per_corpus and words_per_sequence must be at least 1",
        ));
    }
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    let seed = Seed(config.train.seed);
    let tokenizer = base_tokenizer(base)?;
    seed.apply_to(&ad);
    let (gpt_config, net) = load_hf_dir(base, &ad)?;
    let net = apply_lora(net, &config.lora)?;
    let all: Vec<usize> = (0..set.corpora.len()).collect();
    let mut seqs = sequences(
        set,
        ids,
        &all,
        config,
        &tokenizer,
        gpt_config.n_positions,
        seed,
    )?;
    seqs.items.shuffle(&mut seed.rng("generator-split"));
    let n_valid = (seqs.items.len() / 10).max(1);
    if seqs.items.len() < n_valid + config.train.batch_size {
        return Err(SemanticError::param(
            "batch_size",
            format!(
                "{} sequences cannot fill a training batch of {} and a validation set",
                seqs.items.len(),
                config.train.batch_size
            ),
        ));
    }
    let valid = Sequences {
        items: seqs.items.split_off(seqs.items.len() - n_valid),
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| lexforge_core::Error::io("create directory", dir, e))?;
    let checkpoints = CheckpointDir::new(dir.join("checkpoints"), config.train.keep_checkpoints)?;
    let log = lexforge_core::JsonlSink::open(&dir.join("events.jsonl"))?;
    let tee = lexforge_core::Tee(&log, events);
    let ctx = TrainContext {
        run_id: "generator",
        kind: "semantic_generator",
        device: &ad,
        replicas: &[],
        train: &seqs,
        valid: &valid,
        checkpoints: &checkpoints,
        events: &tee,
        cancel,
    };
    let outcome = train(&config.train, &ctx, WordLm { net }, Resume::Latest)?;
    let mut report = WordGeneratorReport {
        stop: outcome.stop,
        steps: outcome.state.step,
        sequences: BTreeMap::from([
            ("train".to_owned(), seqs.items.len()),
            ("validation".to_owned(), valid.items.len()),
        ]),
        val_loss: outcome.state.best.map(|b| b.val_loss),
    };
    if outcome.stop == StopReason::Cancelled {
        return Ok(report);
    }
    let trained = if checkpoints.dir("best").exists() {
        checkpoints.load_weights("best", outcome.model)?
    } else {
        outcome.model
    };
    save_adapters(&trained.valid().net, &config.lora, dir)?;
    report.val_loss = outcome.state.best.map(|b| b.val_loss);
    write_json(
        &dir.join(GENERATOR_FILE),
        &GeneratorFile {
            format: 1,
            base: base.to_path_buf(),
            config: config.clone(),
            steps: report.steps,
            val_loss: report.val_loss,
        },
    )?;
    let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
    Ok(report)
}

/// A loaded word generator: the base GPT-2 with its adapters merged, and the tokenizer.
pub struct LoraWordGenerator {
    net: Gpt2,
    tokenizer: Tokenizer,
    file: GeneratorFile,
}

impl std::fmt::Debug for LoraWordGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoraWordGenerator")
            .field("base", &self.file.base)
            .field("lora", &self.file.config.lora)
            .finish()
    }
}

impl LoraWordGenerator {
    /// Loads the generator in `dir` onto the base recorded in `generator.json` (or `base`).
    ///
    /// # Errors
    /// [`SemanticError::Artifact`] for a missing or damaged file; adapter errors naming the
    /// file (a base of another shape included).
    pub fn load(dir: &Path, base: Option<&Path>, device: &Device) -> Result<Self> {
        let path = dir.join(GENERATOR_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| lexforge_core::Error::io("read generator settings", &path, e))?;
        let file: GeneratorFile =
            serde_json::from_str(&text).map_err(|e| SemanticError::Artifact {
                path: path.clone(),
                reason: format!("not valid: {e}"),
            })?;
        let base = base.map_or_else(|| file.base.clone(), Path::to_path_buf);
        let tokenizer = base_tokenizer(&base)?;
        let (_, net) = load_hf_dir(&base, device)?;
        let (_, net) = load_adapters(net, dir)?;
        Ok(LoraWordGenerator {
            net: merge_adapters(net),
            tokenizer,
            file,
        })
    }

    /// Up to `n` distinct clean words for `id`, sampled with `seed` (temperature 0.8, top-k
    /// 40) in rounds of 10 sequences until `n` are found or 8 rounds have run.
    ///
    /// # Errors
    /// Generation and tokenizer errors.
    pub fn generate_words(&self, id: &[u32], n: usize, seed: u64) -> Result<Vec<String>> {
        let prompt = self.tokenizer.encode(&id_prompt(id))?;
        let decode = |ids: &[u32]| self.tokenizer.decode(ids, true).unwrap_or_default();
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for round in 0..8u64 {
            let config = GenerateConfig {
                max_new_tokens: (24 * self.file.config.words_per_sequence.max(1)).min(512),
                temperature: 0.8,
                top_k: Some(40),
                stop_sequences: vec!["\n".into()],
                seed: Seed(seed).derive(&format!("words/{round}")).0,
                num_return_sequences: 10,
                ..GenerateConfig::default()
            };
            for g in generate(&self.net, &prompt, &config, &decode)? {
                for w in g.text.split_whitespace() {
                    if let Some(w) = clean_word(w)
                        && seen.insert(w.clone())
                    {
                        out.push(w);
                        if out.len() == n {
                            return Ok(out);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The settings it was trained with.
    pub fn info(&self) -> &GeneratorFile {
        &self.file
    }
}
